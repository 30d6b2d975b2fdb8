"""The harness end to end on tiny fixtures: fakes for speed, the real embedder for the CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ragmem.assistant import Assistant
from ragmem.cli import cli
from ragmem.config import Config
from ragmem.errors import ModelError
from ragmem.evaluation import load_beir, load_leval_mc, load_qa_jsonl, load_squad
from ragmem.evaluation.baselines import evaluate_bm25
from ragmem.evaluation.harness import abstains, evaluate_mc, evaluate_qa, evaluate_retrieval
from ragmem.evaluation.indexes import beir_documents, index_name, open_index
from ragmem.types import Document
from tests.conftest import ECHO, EchoGenerator, KeywordEmbedder, WordCountScorer

FIXTURES = Path(__file__).parent.parent / "fixtures" / "eval"
QUALITY = ("retrieval", "evidence", "working_memory", "answers")


def quality(report: dict) -> dict:
    """The sections that must not change between runs of the same command."""
    return {k: v for k, v in report["metrics"].items() if k in QUALITY}


def test_beir_documents_keep_title_and_text():
    docs = beir_documents("beir", load_beir(FIXTURES / "beir").corpus)
    assert [d.text for d in docs[:1]] == ["Cats\n\nCats purr when content."]
    assert docs[2].text == "Fish swim in schools."  # no title: text alone
    assert docs[0].path == "beir:d1"
    assert docs[0].content_hash == hashlib.sha256(docs[0].text.encode()).hexdigest()


def test_index_name_changes_with_what_the_index_holds():
    docs = beir_documents("beir", load_beir(FIXTURES / "beir").corpus)
    name = index_name("scifact/test", docs, "m", {"window_tokens": 256})
    assert name.startswith("eval-scifact-")
    assert name == index_name("scifact/train", docs, "m", {"window_tokens": 256})
    assert name != index_name("scifact/test", docs, "m", {"window_tokens": 128})
    assert name != index_name("scifact/test", docs[:-1], "m", {"window_tokens": 256})
    assert name == index_name("scifact/test", docs, "m", {"window_tokens": 256}, "faiss")
    assert name != index_name("scifact/test", docs, "m", {"window_tokens": 256}, "milvus")


def test_retrieval_report_and_same_numbers_on_rerun():
    data = load_beir(FIXTURES / "beir")
    first = evaluate_retrieval(data, Config(), embedder=KeywordEmbedder(), command="test")
    second = evaluate_retrieval(data, Config(), embedder=KeywordEmbedder(), command="test")
    assert first["index"]["built"] is True and second["index"]["built"] is False
    assert quality(first) == quality(second)
    assert first["questions"][0] == {"qid": "q1", "top10": ["d1", "d4", "d3", "d2"]}
    metrics = first["metrics"]["retrieval"]
    assert metrics["recall@100"] == 1.0 and metrics["mrr@10"] > 0.5
    assert first["dataset"]["n_questions"] == 2  # q3 has no qrels: not a test query
    assert first["run"]["command"] == "test"
    assert first["run"]["models"]["embedder"]["name"] == "keyword-test"
    assert "cost" in first["metrics"] and "index_build_s" in first["metrics"]["cost"]


def test_selection_is_deterministic():
    data = load_beir(FIXTURES / "beir")
    limited = evaluate_retrieval(data, embedder=KeywordEmbedder(), limit=1)
    assert [q["qid"] for q in limited["questions"]] == ["q1"]
    assert limited["dataset"]["selection"] == "first 1 in file order"


def test_bm25_baseline_ranks_the_matching_document_first():
    report = evaluate_bm25(load_beir(FIXTURES / "beir"))
    assert report["questions"][0]["top10"][0] == "d1"
    assert report["metrics"]["retrieval"]["recall@1"] == pytest.approx(0.75)
    assert "stemmer" in report["run"]["baseline"]


def test_qa_long_document_with_fakes():
    data = load_squad(FIXTURES / "squad_v1.json")
    kwargs = {"embedder": KeywordEmbedder(), "generator": EchoGenerator(), "budgets": (256, 512)}
    first = evaluate_qa(data, ECHO, **kwargs)
    second = evaluate_qa(data, ECHO, **kwargs)
    assert quality(first) == quality(second)
    metrics = first["metrics"]
    assert metrics["evidence"]["evidence_recall@100"] == 1.0
    assert metrics["working_memory"]["answer_in_context"] == 1.0
    assert set(metrics["answers"]) >= {"exact_match", "f1", "citation_accuracy"}
    assert metrics["answers"]["citation_accuracy"] == 1.0  # the echo cites passage [1]
    assert set(metrics["latency"]) >= {"retrieve_p50_s", "fill_p95_s", "generate_p50_s"}
    curve = first["curves"]["answer_in_context_vs_budget"]
    assert [p["token_budget"] for p in curve] == [256, 512]
    record = first["questions"][0]
    assert record["tokens_used"] <= record["token_budget"]


def test_qa_absent_asks_without_the_questions_own_document():
    """--absent: each question's article is filtered out, so no evidence is found and
    an answer is a false one (the echo always answers: nothing abstains)."""
    data = load_squad(FIXTURES / "squad_v1.json")
    report = evaluate_qa(data, ECHO, embedder=KeywordEmbedder(),
                         generator=EchoGenerator(), budgets=(256,), absent=True)
    metrics = report["metrics"]
    assert metrics["evidence"]["evidence_recall@100"] == 0.0
    assert metrics["working_memory"]["answer_in_context"] == 0.0
    assert metrics["answers"] == {"abstained_absent": 0.0, "false_answers_absent": 1.0}
    for record in report["questions"]:
        assert record["answer"] and not record["abstained"]


def test_qa_scores_gold_in_answer_and_cited_spans():
    data = load_squad(FIXTURES / "squad_v1.json")
    report = evaluate_qa(data, ECHO, embedder=KeywordEmbedder(),
                         generator=EchoGenerator(), budgets=(256,))
    answers = report["metrics"]["answers"]
    assert {"gold_in_answer", "citation_span_accuracy"} <= set(answers)
    for record in report["questions"]:  # the echo answers with a whole sentence
        assert record["gold_in_answer"] == (record["f1"] > 0 and any(
            g.lower() in record["answer"].lower() for g in record["golds"]))


def test_qa_without_generation_skips_answer_metrics():
    data = load_squad(FIXTURES / "squad_v1.json")
    report = evaluate_qa(data, ECHO, embedder=KeywordEmbedder(), generator=EchoGenerator(),
                         generate=False)
    assert "answers" not in report["metrics"]
    assert "generate_p50_s" not in report["metrics"]["latency"]
    assert report["metrics"]["working_memory"]["answer_in_context"] == 1.0


def test_qa_v2_reports_abstention():
    data = load_squad(FIXTURES / "squad_v2.json")
    report = evaluate_qa(data, ECHO, embedder=KeywordEmbedder(), generator=EchoGenerator())
    answers = report["metrics"]["answers"]
    assert answers["abstained_impossible"] == 0.0  # the echo always answers


def test_qa_jsonl_against_an_existing_index(tmp_path):
    text = "The sky is blue on a clear day."
    assistant = Assistant.create(tmp_path / "idx", ECHO, embedder=KeywordEmbedder(),
                                 generator=EchoGenerator())
    assistant.add_documents([Document("sky.txt", "sky.txt", text, content_hash="h")])
    report = evaluate_qa(load_qa_jsonl(FIXTURES / "qa.jsonl"), assistant=assistant)
    records = {r["qid"]: r for r in report["questions"]}
    assert records["p1"]["answer_in_context"] is True
    assert report["dataset"]["documents"] == 1


def test_multiple_choice_scores_options():
    data = load_leval_mc(FIXTURES / "leval_mc.jsonl")
    report = evaluate_mc(data, embedder=KeywordEmbedder(), generator=WordCountScorer())
    assert [r["gold"] for r in report["questions"]] == ["B", "A", "A"]
    assert all(len(r["scores"]) == 4 for r in report["questions"])
    # The option made of the passage's own words is the likeliest: "crow", "cheese"; a
    # tie goes to the first option.
    assert [r["pick"] for r in report["questions"]] == ["B", "A", "A"]
    assert report["metrics"]["answers"]["accuracy"] == 1.0
    assert report["metrics"]["answers"]["chance"] == 0.25


def test_multiple_choice_needs_a_generator_that_scores():
    data = load_leval_mc(FIXTURES / "leval_mc.jsonl")
    with pytest.raises(ModelError, match="echo-test cannot score text"):
        evaluate_mc(data, embedder=KeywordEmbedder(), generator=EchoGenerator())


@pytest.mark.parametrize("text, expected", [
    ("I don't know.", True), ("The passages do not contain the answer.", True), ("", True),
    ("In 1850 [1].", False),
])
def test_abstains(text, expected):
    assert abstains(text) is expected


@pytest.mark.slow
def test_cli_eval_retrieval_with_the_real_embedder(tmp_path):
    """The default MiniLM on four documents: the same command gives the same numbers."""
    runner = CliRunner()
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        result = runner.invoke(cli, ["eval", "retrieval", str(FIXTURES / "beir"), "--out",
                                     str(out), "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["metrics"]["retrieval"]["recall@100"] == 1.0
    a, b = (json.loads((o / "report.json").read_text()) for o in outs)
    assert quality(a) == quality(b)
    assert a["questions"][0]["top10"][0] == "d1"
    beir = FIXTURES / "beir"
    assert a["run"]["command"] == f"ragmem eval retrieval {beir} --out {outs[0]} --json"
    assert a["run"]["models"]["embedder"]["sha256"]  # the weight files are hashed
    assert (outs[0] / "summary.md").is_file() and (outs[0] / "recall_at_k.png").is_file()
    compared = runner.invoke(cli, ["eval", "compare", str(outs[0] / "report.json"),
                                   str(outs[1] / "report.json")])
    assert compared.exit_code == 0
    assert "| retrieval.ndcg@10 |" in compared.output and "+0.0000" in compared.output


def test_cli_eval_reports_a_missing_split(tmp_path):
    result = CliRunner().invoke(cli, ["eval", "retrieval", str(FIXTURES / "beir"), "--split",
                                      "dev", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "splits found: test" in result.output


def arguana_like(root: Path) -> Path:
    """Queries that are themselves corpus documents (as in ArguAna): each query's
    relevant document is another one, and its own text is the perfect lexical match."""
    corpus = {"a1": "Cats purr when they are content and calm.",
              "a2": "Purring cats are not always content: they purr when hurt too.",
              "b1": "Dogs bark at strangers to warn their pack.",
              "b2": "Barking at strangers is learned, not a warning at all."}
    root.mkdir()
    (root / "corpus.jsonl").write_text("".join(
        json.dumps({"_id": k, "title": "", "text": v}) + "\n" for k, v in corpus.items()))
    (root / "queries.jsonl").write_text("".join(
        json.dumps({"_id": k, "text": corpus[k]}) + "\n" for k in ("a1", "b1")))
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\na1\ta2\t1\nb1\tb2\t1\n")
    return root


def test_a_querys_own_document_is_not_ranked_unless_asked(tmp_path):
    data = load_beir(arguana_like(tmp_path / "arguana"))
    kept = evaluate_retrieval(data, embedder=KeywordEmbedder(), ignore_identical_ids=False)
    dropped = evaluate_retrieval(data, embedder=KeywordEmbedder())
    assert [q["top10"][0] for q in kept["questions"]] == ["a1", "b1"]  # finds itself
    assert [q["top10"][0] for q in dropped["questions"]] == ["a2", "b2"]
    assert all(q["qid"] not in q["top10"] for q in dropped["questions"])
    assert kept["metrics"]["retrieval"]["recall@1"] == 0.0
    assert dropped["metrics"]["retrieval"]["recall@1"] == 1.0
    assert any("ignore_identical_ids" in n for n in dropped["notes"])
    bm25 = evaluate_bm25(data)
    assert all(q["qid"] not in q["top10"] for q in bm25["questions"])
    assert evaluate_bm25(data, ignore_identical_ids=False)["questions"][0]["top10"][0] == "a1"


def test_cli_keep_identical_ids_flag(tmp_path, monkeypatch):
    import ragmem.evaluation.harness as harness

    seen = []
    real = harness.evaluate_retrieval

    def spy(*args, **kwargs):
        seen.append(kwargs["ignore_identical_ids"])
        return real(*args, **{**kwargs, "embedder": KeywordEmbedder()})

    monkeypatch.setattr(harness, "evaluate_retrieval", spy)
    root = arguana_like(tmp_path / "arguana")
    for flags in ([], ["--keep-identical-ids"]):
        result = CliRunner().invoke(cli, ["eval", "retrieval", str(root), "--out",
                                          str(tmp_path / "out"), "--no-plots", "--json",
                                          *flags])
        assert result.exit_code == 0, result.output
    assert seen == [True, False]


def test_qa_harness_retrieves_once_and_answers_as_ask_does():
    """The harness composes ask()'s steps itself, one retrieval per question serving both
    evidence@k and the passages: its answers and prompts are ask()'s."""
    data = load_squad(FIXTURES / "squad_v1.json")
    assistant, _ = open_index(data.name, data.documents, ECHO, embedder=KeywordEmbedder(),
                              generator=EchoGenerator())
    expected = {ex.question: assistant.ask(ex.question) for ex in data.examples}
    calls = []
    real = assistant.retriever.retrieve_many

    def counting(questions, *args, **kwargs):
        calls.append(list(questions))
        return real(questions, *args, **kwargs)

    assistant.retriever.retrieve_many = counting  # a spy on the harness's collaborator
    report = evaluate_qa(data, ECHO, assistant=assistant, budgets=(256,))
    assert len(calls) == len(report["questions"]) == len(expected)
    for record in report["questions"]:
        answer = expected[record["question"]]
        assert (record["answer"], record["tokens_used"]) == (answer.text, answer.tokens_used)


def cmrc_like(path: Path) -> Path:
    """Two Chinese articles in SQuAD form, with CMRC 2018 dev's flaws: one answer_start
    that is off, one reference that occurs nowhere (its question is skipped)."""
    def article(title: str, context: str, qas: list) -> dict:
        return {"title": title, "paragraphs": [{"context": context, "qas": [
            {"id": qid, "question": q, "answers": [{"text": t, "answer_start": s}]}
            for qid, q, t, s in qas]}]}
    data = {"version": "v1.0", "data": [
        article("茶经", "陆羽写了《茶经》。《茶经》共有三卷十章。",
                [("Q1", "谁写了《茶经》？", "陆羽", 3), ("Q2", "《茶经》共有几卷？", "三卷", 15)]),
        article("长安", "长安城是唐朝的都城，人口超过一百万。",
                [("Q3", "长安城是哪个朝代的都城？", "唐朝", 4),
                 ("Q4", "长安有多大？", "39764.0", -1)]),
    ]}
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def test_qa_on_chinese_scores_characters_and_counts_repairs(tmp_path):
    data = load_squad(cmrc_like(tmp_path / "cmrc.json"))
    assert [e.qid for e in data.examples] == ["Q1", "Q2", "Q3"]  # Q4 has no answer here
    config = Config().with_overrides({"answering": {"mode": "extract"}})
    report = evaluate_qa(data, config, embedder=KeywordEmbedder(), generator=EchoGenerator(),
                         budgets=(256,))
    repairs = ("relocated_answers", "dropped_answers", "skipped_questions")
    assert [report["dataset"][k] for k in repairs] == [1, 1, 1]
    assert any("re-located" in n for n in report["notes"])
    answers = report["metrics"]["answers"]
    assert answers["answers_cutting_a_word"] == 0.0
    assert report["metrics"]["evidence"]["article@5"] == 1.0
    for record in report["questions"]:
        assert record["em"] in (0.0, 1.0) and 0.0 <= record["f1"] <= 1.0
        if record["answer"] in record["golds"]:  # character EM for a Chinese question
            assert record["em"] == 1.0 and record["f1"] == 1.0
