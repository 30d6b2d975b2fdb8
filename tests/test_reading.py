"""The extractive reader: the packaged MiniLM with its shipped start/end head."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragmem.chunking import split_sentences
from ragmem.config import ReaderConfig
from ragmem.errors import RagmemError
from ragmem.reading import Context, Reader, encode, tokenizer_for
from ragmem.types import Passage

DEMO = Path(__file__).resolve().parents[1] / "ragmem" / "demo" / "corpus"


def passage_of(doc_id: str, text: str, start: int, end: int) -> Passage:
    sentences = tuple(s for s in split_sentences(doc_id, text) if start <= s.start < end)
    return Passage(doc_id, doc_id, sentences[0].start, sentences[-1].end, 1.0, sentences)


def test_context_maps_characters_to_their_sentence() -> None:
    sentences = split_sentences("d", "One two.  Three four five. Six.")
    c = Context.of(sentences)
    assert c.text == "One two. Three four five. Six."
    assert [c.sentence_of(i) for i in (0, 7, 8, 9, 25, 26)] == [0, 0, -1, 1, -1, 2]


def test_a_long_passage_is_read_in_overlapping_pieces_that_cover_it() -> None:
    from ragmem.models import resolve

    tok = tokenizer_for(resolve(ReaderConfig().base_model, "embedder").path, 64, 16)
    context = " ".join(f"Sentence number {i} says something." for i in range(40))
    pieces = encode(tok, "What does it say?", [context])
    assert len(pieces) > 3 and all(len(p.ids) <= 64 for _, p in pieces)
    covered = {o for _, p in pieces for o, s in zip(p.offsets, p.sequence_ids, strict=True)
               if s == 1}
    assert max(e for _, e in covered) == len(context)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reader trained by the shipped command on four questions (no weights ship)."""
    from ragmem.training.reader import main
    from tests.training.test_reader import squad_file

    folder = tmp_path_factory.mktemp("reader")
    out = folder / "reader.safetensors"
    main(["train", "--squad", str(squad_file(folder / "squad.json")), "--held-out", "1",
          "--epochs", "3", "--batch", "4", "--out", str(out), "--threshold-questions", "4"])
    return out


TOWER = ("The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris. "
         "It was designed by the engineering company of Gustave Eiffel and completed in 1889 "
         "as the entrance to the World's Fair. The tower is 330 metres tall and was the "
         "tallest man-made structure in the world for 41 years.")


@pytest.mark.slow
def test_the_packaged_reader_answers_with_exact_spans_of_the_file(tmp_path: Path) -> None:
    """The shipped weights: every span slices back out of the file it cites, best
    first; a plain encyclopedic question is answered, one the text lacks abstains."""
    path = tmp_path / "tower.txt"
    path.write_text("Landmarks\n\n" + TOWER, encoding="utf-8")
    text = path.read_text(encoding="utf-8")
    p = passage_of(path.name, text, 0, len(text))
    reader = Reader()
    assert reader.schema.ranking == "shared"
    for question, answer in [("When was the Eiffel Tower completed?", "1889"),
                             ("How tall is the tower?", "330 metres")]:
        spans = reader.read(question, [p])
        assert all(text[s.start:s.end] == s.text for s in spans)
        assert spans == sorted(spans, key=lambda s: -s.score)
        assert all(0.0 <= s.probability <= 1.0 and 0.0 <= s.no_answer <= 1.0 for s in spans)
        assert spans[0].text == answer and spans[0].probability >= reader.abstain_below
    absent = reader.read("Which team won Super Bowl 50?", [p])
    assert absent[0].probability < reader.abstain_below


@pytest.mark.slow
def test_spans_of_a_hard_wrapped_story_are_exact() -> None:
    """Sentences with line breaks inside (the demo's Gutenberg texts) map back exactly."""
    path = DEMO / "doyle-the-red-headed-league.txt"
    text = path.read_text(encoding="utf-8")
    at = text.index("City and Suburban Bank")
    p = passage_of(path.name, text, at - 1500, at + 500)
    spans = Reader().read("Which bank's cellar were the robbers tunnelling into?", [p])
    assert spans and all(text[s.start:s.end] == s.text for s in spans)
    assert all(p.start <= s.start < s.end <= p.end for s in spans)
    assert any("City and Suburban Bank" in s.text for s in spans[:3])


@pytest.mark.slow
def test_onnx_and_torch_read_the_same_spans() -> None:
    path = DEMO / "doyle-a-scandal-in-bohemia.txt"
    text = path.read_text(encoding="utf-8")
    p = passage_of(path.name, text, 2000, 6000)
    question = "Who is always the woman to Sherlock Holmes?"
    onnx = Reader(ReaderConfig(runtime="onnx")).read(question, [p])
    torch = Reader(ReaderConfig(runtime="torch")).read(question, [p])
    assert [s.text for s in onnx[:5]] == [s.text for s in torch[:5]]
    assert all(abs(a.score - b.score) < 1e-3 for a, b in zip(onnx, torch, strict=False))


def test_the_packaged_weights_ship_with_their_schema() -> None:
    from ragmem.reader_model import describe  # torch, but no model load

    info = json.loads(describe(Reader().weights_path))
    assert info["ranking"] == "shared" and info["format"] == 1
    assert 0.0 < float(info["abstain_below"]) < 1.0
    assert Reader().weights_path.stat().st_size <= 25 * 2**20


@pytest.mark.slow
def test_damaged_or_mismatched_weights_are_one_error_line(tmp_path: Path,
                                                          tiny_weights: Path) -> None:
    from safetensors.torch import load_file, save_file

    from ragmem.reader_model import read_weights

    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(tiny_weights.read_bytes()[:5000])
    with pytest.raises(RagmemError, match="missing or damaged.*retrain") as error:
        Reader(ReaderConfig(weights=str(damaged))).read("Who?", [passage_of("d", "A b.", 0, 4)])
    assert "\n" not in str(error.value)

    schema, _ = read_weights(tiny_weights)
    tensors = load_file(str(tiny_weights))
    other = tmp_path / "other-base.safetensors"
    save_file(tensors, str(other), metadata={**schema.metadata(), "base_sha256": "0" * 64})
    with pytest.raises(RagmemError, match="trained on a base model with sha256 000000"):
        Reader(ReaderConfig(weights=str(other))).schema  # noqa: B018

    name = next(k for k in tensors if not k.startswith("qa."))
    bad = tmp_path / "bad-shape.safetensors"
    save_file({**tensors, name: tensors[name][:1]}, str(bad), metadata=schema.metadata())
    with pytest.raises(RagmemError, match="do not fit the base model"):
        Reader(ReaderConfig(weights=str(bad))).schema  # noqa: B018
