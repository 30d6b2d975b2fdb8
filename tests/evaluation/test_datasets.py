"""Loaders on tiny fixture files in each format, and long-document span mapping."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragmem.evaluation.datasets import (
    DatasetError,
    load_beir,
    load_leval_mc,
    load_qa_jsonl,
    load_squad,
    select,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "eval"
SHARED = Path("/work/shared/datasets")


def test_beir_reads_crlf_qrels_with_a_header():
    assert b"\r\n" in (FIXTURES / "beir/qrels/test.tsv").read_bytes()
    data = load_beir(FIXTURES / "beir", "test")
    assert data.qrels == {"q1": {"d1": 1}, "q2": {"d4": 2, "d3": 1}}
    assert data.queries == {"q1": "why do cats purr", "q2": "which animals migrate"}
    assert data.corpus["d3"] == ("", "Fish swim in schools.")
    assert data.name == "beir/test"
    assert len(data.sha256) == 64
    assert data.sha256 == load_beir(FIXTURES / "beir", "test").sha256


def test_beir_missing_split_names_the_splits_there():
    with pytest.raises(DatasetError, match="splits found: test"):
        load_beir(FIXTURES / "beir", "dev")


def test_squad_long_document_spans_slice_back_to_the_answers():
    data = load_squad(FIXTURES / "squad_v1.json")
    docs = {d.doc_id: d for d in data.documents}
    assert list(docs) == ["Alpha", "Beta"]
    alpha = docs["Alpha"].text
    assert alpha == "Alpha was founded in 1850 by Ada.\n\nIts river is called the Blue River."
    by_qid = {e.qid: e for e in data.examples}
    a2 = by_qid["a2"]
    assert a2.answers == ("the Blue River", "Blue River")
    assert a2.spans[0] == (35 + 20, 35 + 34)  # shifted by paragraph 1 and "\n\n"
    assert alpha[slice(*a2.paragraph_spans[0])] == "Its river is called the Blue River."
    for e in data.examples:
        assert e.doc_id is not None
        text = docs[e.doc_id].text
        assert [text[s:e_] for s, e_ in e.spans] == list(e.answers)
        assert len(e.paragraph_spans) == len(e.spans)
        assert not e.is_impossible
    assert data.sha256 == hashlib.sha256((FIXTURES / "squad_v1.json").read_bytes()).hexdigest()


def test_squad_paragraph_mode_keeps_one_document_per_paragraph():
    data = load_squad(FIXTURES / "squad_v1.json", long_document=False)
    assert [d.doc_id for d in data.documents] == ["Alpha#p0", "Alpha#p1", "Beta#p0"]
    a2 = next(e for e in data.examples if e.qid == "a2")
    assert a2.doc_id == "Alpha#p1" and a2.spans[0] == (20, 34)


def test_squad_v2_unanswerable_questions():
    data = load_squad(FIXTURES / "squad_v2.json")
    g1, g2 = data.examples
    assert not g1.is_impossible and g1.answers == ("a tall tower",)
    assert g2.is_impossible and g2.answers == () and g2.spans == ()


def write_squad(directory: Path, paragraphs: list[tuple[str, list[tuple[int, str]]]]) -> Path:
    path = directory / "squad.json"
    data = {
        "version": "1.1",
        "data": [
            {
                "title": "T",
                "paragraphs": [
                    {
                        "context": c,
                        "qas": [
                            {
                                "id": f"q{i}-{j}",
                                "question": "?",
                                "answers": [{"answer_start": s, "text": t}],
                            }
                            for j, (s, t) in enumerate(answers)
                        ],
                    }
                    for i, (c, answers) in enumerate(paragraphs)
                ],
            }
        ],
    }
    path.write_text(json.dumps(data))
    return path


def test_squad_wrong_answer_start_is_repaired_to_the_nearest_occurrence(tmp_path):
    path = write_squad(tmp_path, [("x cat y cat z", [(7, "cat")]), ("no", [])])
    data = load_squad(path)
    (e,) = data.examples
    assert e.spans == ((8, 11),)
    assert (data.relocated_answers, data.dropped_answers, data.skipped_questions) == (1, 0, 0)
    assert "1 reference answers had an answer_start" in data.notes()[0]


def test_squad_answer_nowhere_in_its_paragraph_is_dropped_and_its_question_skipped(tmp_path):
    # CMRC 2018 dev: 193 references (often rewritten: "39764.0") occur nowhere.
    bad = write_squad(tmp_path, [("x cat", [(2, "cat"), (-1, "dog")]), ("y", [(0, "y")])])
    data = load_squad(bad)
    assert [e.qid for e in data.examples] == ["q0-0", "q1-0"]
    assert (data.relocated_answers, data.dropped_answers, data.skipped_questions) == (0, 1, 1)
    assert data.notes() == ["1 reference answers occur nowhere in their paragraph: they "
                            "still count for EM/F1 (as the official scripts score) but have "
                            "no span; 1 questions left with no answer in their paragraph "
                            "were skipped"]
    assert load_squad(write_squad(tmp_path, [("ok", [(0, "ok")])])).notes() == []


def test_squad_question_keeps_the_references_found(tmp_path):
    path = tmp_path / "multi.json"
    qa = {"id": "q", "question": "?", "answers": [
        {"answer_start": 0, "text": "长城"}, {"answer_start": 9, "text": "改写的答案"},
        {"answer_start": 5, "text": "长城"}]}
    path.write_text(json.dumps({"data": [{"title": "T", "paragraphs": [
        {"context": "长城很长。", "qas": [qa]}]}]}, ensure_ascii=False))
    data = load_squad(path)
    (e,) = data.examples
    assert e.answers == ("长城", "长城") and e.spans == ((0, 2), (0, 2))
    assert e.references == ("长城", "改写的答案", "长城")  # EM/F1 score against all three
    assert (data.relocated_answers, data.dropped_answers, data.skipped_questions) == (1, 1, 0)


paragraph = st.text(st.characters(codec="utf-8"), min_size=1)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(paragraph, st.data()), min_size=1, max_size=4))
def test_long_document_offsets_round_trip(drawn):
    paragraphs = []
    for context, data in drawn:
        start = data.draw(st.integers(0, len(context) - 1))
        end = data.draw(st.integers(start + 1, len(context)))
        paragraphs.append((context, [(start, context[start:end])]))
    with tempfile.TemporaryDirectory() as d:
        data_set = load_squad(write_squad(Path(d), paragraphs))
    (doc,) = data_set.documents
    assert doc.text == "\n\n".join(c for c, _ in paragraphs)
    for e in data_set.examples:
        assert doc.text[slice(*e.spans[0])] == e.answers[0]
        # Repair may pick an earlier equal occurrence, but always inside the paragraph.
        p_start, p_end = e.paragraph_spans[0]
        assert p_start <= e.spans[0][0] and e.spans[0][1] <= p_end


@pytest.mark.skipif(not (SHARED / "squad_v1.1_dev").is_dir(), reason="shared data absent")
def test_real_squad_sample_spans_slice_back():
    data = load_squad(SHARED / "squad_v1.1_dev/dev-v1.1.sample2000.seed20240601.json")
    docs = {d.doc_id: d.text for d in data.documents}
    assert len(data.examples) == 2000 and len(docs) == 48
    for e in data.examples:
        assert e.doc_id is not None
        assert [docs[e.doc_id][s:t] for s, t in e.spans] == list(e.answers)
    assert data.sha256.startswith("400af93c")


def test_plain_qa_jsonl_defaults():
    data = load_qa_jsonl(FIXTURES / "qa.jsonl")
    p1, p2, p3 = data.examples
    assert (p1.qid, p1.doc_id, p1.spans, p1.answers) == ("p1", "sky.txt", ((11, 15),), ("blue",))
    assert (p2.qid, p2.doc_id, p2.answers, p2.is_impossible) == ("2", None, ("Shakespeare",), False)
    assert p3.is_impossible and data.documents == []


def test_plain_qa_jsonl_errors_say_which_line(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text('{"question": "q", "answers": ["a"]}\n{"question": "q"}\n')
    with pytest.raises(DatasetError, match=r"qa.jsonl:2 lacks answers"):
        load_qa_jsonl(path)


def test_leval_multiple_choice():
    data = load_leval_mc(FIXTURES / "leval_mc.jsonl")
    assert [d.doc_id for d in data.documents] == ["leval_mc-000", "leval_mc-001"]
    first, second, third = data.examples
    assert first.question == "Who met the fox?"
    assert first.options == ("A wolf", "A crow", "A bear", "Nobody")
    assert first.gold == 1 and first.doc_id == "leval_mc-000"
    assert (second.gold, third.gold, third.qid) == (0, 0, "leval_mc-001-00")


@pytest.mark.skipif(not (SHARED / "quality_leval").is_dir(), reason="shared data absent")
def test_real_quality_file():
    data = load_leval_mc(SHARED / "quality_leval/quality.jsonl")
    assert len(data.documents) == 15 and len(data.examples) == 202
    assert all(len(e.options) == 4 for e in data.examples)
    assert [sum(e.gold == g for e in data.examples) for g in range(4)] == [56, 52, 43, 51]


def test_select_is_deterministic_and_keeps_file_order():
    items = list(range(100))
    assert select(items, limit=3) == [0, 1, 2]
    sample = select(items, sample=10, seed=3)
    assert sample == sorted(sample) and len(set(sample)) == 10
    assert sample == select(items, sample=10, seed=3) != select(items, sample=10, seed=4)
    assert select(items, sample=500) == items and select(items) == items
    with pytest.raises(DatasetError, match="not both"):
        select(items, limit=1, sample=1)
