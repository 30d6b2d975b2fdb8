"""The extractive reader: the packaged MiniLM with its shipped start/end head."""

from __future__ import annotations

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


@pytest.mark.slow
def test_the_packaged_reader_answers_with_exact_spans_of_the_file() -> None:
    """Every span it proposes slices back out of the file it cites."""
    path = DEMO / "doyle-the-red-headed-league.txt"
    text = path.read_text(encoding="utf-8")
    at = text.index("City and Suburban Bank")
    p = passage_of(path.name, text, at - 1500, at + 500)
    spans = Reader().read("Which bank's cellar were the robbers tunnelling into?", [p])
    assert spans and all(text[s.start:s.end] == s.text for s in spans)
    assert "City and Suburban Bank" in spans[0].text
    assert spans[0].probability >= Reader().abstain_below
    assert spans == sorted(spans, key=lambda s: -s.probability)


@pytest.mark.slow
def test_the_packaged_reader_is_unsure_when_the_passage_does_not_answer() -> None:
    text = (DEMO / "wells-the-time-machine.txt").read_text(encoding="utf-8")
    p = passage_of("tm", text, 5000, 6500)
    reader = Reader()
    spans = reader.read("Which bank's cellar were the robbers tunnelling into?", [p])
    assert not spans or spans[0].probability < reader.abstain_below


@pytest.mark.slow
def test_damaged_or_mismatched_weights_are_one_error_line(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from ragmem.reader_model import read_weights

    shipped = Reader().weights_path
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(shipped.read_bytes()[:5000])
    with pytest.raises(RagmemError, match="missing or damaged.*retrain") as error:
        Reader(ReaderConfig(weights=str(damaged))).read("Who?", [passage_of("d", "A b.", 0, 4)])
    assert "\n" not in str(error.value)

    schema, _ = read_weights(shipped)
    tensors = load_file(str(shipped))
    other = tmp_path / "other-base.safetensors"
    save_file(tensors, str(other), metadata={**schema.metadata(), "base_sha256": "0" * 64})
    with pytest.raises(RagmemError, match="trained on a base model with sha256 000000"):
        Reader(ReaderConfig(weights=str(other))).schema  # noqa: B018

    name = next(k for k in tensors if not k.startswith("qa."))
    bad = tmp_path / "bad-shape.safetensors"
    save_file({**tensors, name: tensors[name][:1]}, str(bad), metadata=schema.metadata())
    with pytest.raises(RagmemError, match="do not fit the base model"):
        Reader(ReaderConfig(weights=str(bad))).schema  # noqa: B018


def test_the_shipped_weights_are_small_safetensors_with_their_schema() -> None:
    from ragmem.reader_model import FORMAT, read_weights

    path = Reader().weights_path
    assert path.suffix == ".safetensors" and path.stat().st_size <= 25 * 2 ** 20
    schema, tensors = read_weights(path)
    assert schema.format == FORMAT and len(schema.base_sha256) == 64
    assert "qa.weight" in tensors and 0 < schema.abstain_below < 1
    assert "python -m ragmem.training.reader train" in schema.trained
