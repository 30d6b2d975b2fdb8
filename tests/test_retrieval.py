from __future__ import annotations

from pathlib import Path

import pytest

from ragmem import Assistant
from ragmem.config import Config, RetrievalConfig
from ragmem.errors import QuestionError
from ragmem.retrieval import Retriever, _Span, merge_spans
from ragmem.types import Filter
from tests.conftest import KeywordEmbedder


def test_merge_spans_joins_overlapping_and_adjacent_ranges_per_document() -> None:
    spans = [_Span("a", 5, 7, 0.2), _Span("a", 0, 2, 0.5), _Span("a", 3, 4, 0.9),
             _Span("b", 0, 1, 0.7), _Span("a", 9, 9, 0.1)]
    assert merge_spans(spans) == [_Span("a", 0, 7, 0.9), _Span("b", 0, 1, 0.7),
                                  _Span("a", 9, 9, 0.1)]


@pytest.fixture
def assistant(corpus_dir: Path, tmp_path: Path) -> Assistant:
    a = Assistant.create(tmp_path / "idx", Config(), embedder=KeywordEmbedder())
    a.index([corpus_dir])
    return a


def test_keyword_ranking_finds_the_right_document(assistant: Assistant) -> None:
    hits = assistant.retrieve("tallest volcano Olympus Mons", top_k=3)
    assert hits[0].doc_id == "space/mars.md"
    assert "Olympus Mons" in hits[0].text
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_small_to_big_adds_neighbours_with_exact_offsets(assistant: Assistant) -> None:
    retriever = Retriever(assistant.memory, assistant.embedder,
                          RetrievalConfig(top_k=1, neighbour_sentences=1))
    (passage,) = retriever.passages("Neil Armstrong walked 1969")
    text = assistant.memory.document_text(passage.doc_id)
    assert passage.doc_id == "space/moon.txt"
    for s in passage.sentences:
        assert text[s.start:s.end] == s.text
    assert passage.start == passage.sentences[0].start
    assert passage.end == passage.sentences[-1].end


def test_empty_question_is_refused(assistant: Assistant) -> None:
    with pytest.raises(QuestionError, match="question is empty"):
        assistant.retrieve("   ")


def test_filter_restricts_to_documents(assistant: Assistant) -> None:
    hits = assistant.retrieve("Moon Mars cats", top_k=5, where=Filter(path_glob="cat*"))
    assert hits and {h.doc_id for h in hits} == {"cats.txt"}


def test_sentence_level_centres_the_passage_on_the_best_sentence(corpus_dir: Path,
                                                                 tmp_path: Path) -> None:
    long = " ".join(f"Filler sentence number {i} about nothing." for i in range(30))
    (corpus_dir / "long.txt").write_text(long + " The zebra crossed the river at dawn. " + long)
    a = Assistant.create(tmp_path / "idx", embedder=KeywordEmbedder())
    a.index([corpus_dir])
    cfg = RetrievalConfig(top_k=1, neighbour_sentences=1, sentence_level=True, mode="dense")
    (p,) = Retriever(a.memory, a.embedder, cfg).passages("zebra crossed river dawn")
    assert len(p.sentences) == 3 and p.sentences[1].text == "The zebra crossed the river at dawn."
    wide = RetrievalConfig(top_k=1, neighbour_sentences=1, mode="dense")
    (q,) = Retriever(a.memory, a.embedder, wide).passages("zebra crossed river dawn")
    assert len(q.sentences) > 3


def test_duplicates_removed_and_per_document_cap(corpus_dir: Path, tmp_path: Path) -> None:
    (corpus_dir / "copy.txt").write_text((corpus_dir / "cats.txt").read_text())
    a = Assistant.create(tmp_path / "idx", embedder=KeywordEmbedder())
    a.index([corpus_dir])
    cfg = RetrievalConfig(top_k=4, mode="dense")
    texts = [p.text for p in Retriever(a.memory, a.embedder, cfg).passages("clowder of cats")]
    assert len(texts) == len(set(texts))
    keep_all = RetrievalConfig(top_k=4, mode="dense", dedupe_threshold=1.0)
    dup = [p.text for p in Retriever(a.memory, a.embedder, keep_all).passages("clowder of cats")]
    assert len(dup) > len(set(dup))
    capped = RetrievalConfig(top_k=8, mode="dense", per_document=1, neighbour_sentences=0)
    docs = [p.doc_id for p in Retriever(a.memory, a.embedder, capped).passages("Moon Mars")]
    assert len(docs) == len(set(docs))


QUESTIONS = ["tallest volcano Olympus Mons", "What is a group of cats called?",
             "Who walked on the Moon?", "iron oxide", "How long does the Moon take?",
             "kittens", "the fourth planet"]


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_retrieve_many_equals_one_at_a_time(corpus_dir: Path, tmp_path: Path,
                                            mode: str) -> None:
    a = Assistant.create(tmp_path / "idx", Config(retrieval=RetrievalConfig(mode=mode)),
                         embedder=KeywordEmbedder())
    a.index([corpus_dir])
    where = Filter(path_glob="space/*")
    assert a.retrieve_many(QUESTIONS, top_k=4) == [a.retrieve(q, top_k=4) for q in QUESTIONS]
    assert a.retrieve_many(QUESTIONS, where=where) == [a.retrieve(q, where=where)
                                                       for q in QUESTIONS]
    assert a.retrieve_many([]) == []


@pytest.mark.slow
def test_retrieve_many_with_the_real_embedder_ranks_as_one_at_a_time(
        corpus_dir: Path, tmp_path: Path) -> None:
    """MiniLM pads a batch to its longest question: the vectors differ in the last bits
    (~1e-7), never enough to reorder anything."""
    from ragmem.embedding import SentenceTransformerEmbedder

    a = Assistant.create(tmp_path / "idx", embedder=SentenceTransformerEmbedder(device="cpu"))
    a.index([corpus_dir])
    many = a.retrieve_many(QUESTIONS, top_k=6)
    for question, hits in zip(QUESTIONS, many, strict=True):
        one = a.retrieve(question, top_k=6)
        assert [h.window_id for h in hits] == [h.window_id for h in one]
        assert [h.score for h in hits] == pytest.approx([h.score for h in one], abs=1e-5)


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_a_shorter_list_is_the_start_of_a_longer_one(corpus_dir: Path, tmp_path: Path,
                                                     mode: str) -> None:
    """What lets the QA harness retrieve once for evidence@100 and the top_k passages."""
    a = Assistant.create(tmp_path / "idx", Config(retrieval=RetrievalConfig(mode=mode)),
                         embedder=KeywordEmbedder())
    a.index([corpus_dir])
    for question in QUESTIONS:
        deep = a.retrieve(question, top_k=100)
        for k in (1, 2, 5):
            assert a.retrieve(question, top_k=k) == deep[:k]


class _ReadsEnglishOnly(KeywordEmbedder):
    """KeywordEmbedder whose tokenizer is all-MiniLM-L6-v2's (no weights loaded): most
    Chinese characters are unknown to it, and its vector of a Chinese question is noise."""

    @property
    def token_counter(self) -> object:
        from tokenizers import Tokenizer

        from ragmem.embedding.base import TokenCounter
        from ragmem.models import resolve

        path = Path(resolve("all-MiniLM-L6-v2", "embedder").path) / "tokenizer.json"
        return TokenCounter(Tokenizer.from_file(str(path)))

    def embed(self, texts: object) -> object:
        import numpy as np

        rng = np.random.default_rng(len(list(texts)))  # type: ignore[arg-type]
        out = rng.normal(size=(len(list(texts)), self.dim)).astype("float32")  # type: ignore[arg-type]
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_hybrid_searches_a_question_the_embedder_cannot_read_by_bm25_alone(
        tmp_path: Path) -> None:
    docs = tmp_path / "zh"
    docs.mkdir()
    (docs / "a.txt").write_text("长短期记忆通过模型参数实现，用于存储和更新历史信息。",
                                encoding="utf-8")
    (docs / "b.txt").write_text("工作记忆是一个容量有限的缓冲区。", encoding="utf-8")
    (docs / "c.txt").write_text("The working memory holds numbered sentences.", encoding="utf-8")
    a = Assistant.create(tmp_path / "idx", embedder=_ReadsEnglishOnly())
    a.index([docs])
    lexical = Assistant.open(tmp_path / "idx", Config(retrieval=RetrievalConfig(
        mode="lexical")), embedder=_ReadsEnglishOnly())
    question = "长期记忆通常用什么来实现？"
    assert a.retriever._unreadable(question) and not a.retriever._unreadable("What holds it?")
    assert a.retrieve(question, top_k=2) == lexical.retrieve(question, top_k=2)
    assert a.retrieve(question, top_k=1)[0].doc_id.endswith("a.txt")
    # The share is the rule's: raised above 1, the noisy vector is fused again.
    fused = Assistant.open(tmp_path / "idx", Config(retrieval=RetrievalConfig(
        max_unknown_share=1.0)), embedder=_ReadsEnglishOnly())
    assert not fused.retriever._unreadable(question)
