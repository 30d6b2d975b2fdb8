"""Question -> hits in long-term memory -> passages (small-to-big).

A window is the unit of search; the evidence handed on is wider: the matched window's
sentences plus neighbours on each side, with overlapping or adjacent spans of one
document merged into one passage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from ragmem.config import RetrievalConfig
from ragmem.embedding import Embedder
from ragmem.errors import QuestionError, RagmemError
from ragmem.memory import LongTermMemory
from ragmem.types import Filter, Hit, Passage


@dataclass(frozen=True)
class _Span:
    doc_id: str
    first: int
    last: int
    score: float


def merge_spans(spans: Sequence[_Span]) -> list[_Span]:
    """Merge overlapping or adjacent sentence ranges of the same document; keep the best score.

    >>> merge_spans([_Span("a", 0, 2, .5), _Span("a", 3, 4, .9), _Span("b", 0, 1, .7)])
    [_Span(doc_id='a', first=0, last=4, score=0.9), _Span(doc_id='b', first=0, last=1, score=0.7)]
    """
    by_doc: dict[str, list[_Span]] = {}
    for s in spans:
        by_doc.setdefault(s.doc_id, []).append(s)
    merged: list[_Span] = []
    for doc_id, items in by_doc.items():
        items.sort(key=lambda s: s.first)
        cur = items[0]
        for s in items[1:]:
            if s.first <= cur.last + 1:
                cur = _Span(doc_id, cur.first, max(cur.last, s.last), max(cur.score, s.score))
            else:
                merged.append(cur)
                cur = s
        merged.append(cur)
    merged.sort(key=lambda s: -s.score)
    return merged


def fuse(rankings: Sequence[Sequence[Hit]], weights: Sequence[float], k: int = 60) -> list[Hit]:
    """Weighted reciprocal-rank fusion: score = sum of weight / (k + rank), rank from 1.

    Ties keep the order of first appearance (dense before lexical), so results are stable.
    """
    scores: dict[int, float] = {}
    first: dict[int, Hit] = {}
    for hits, weight in zip(rankings, weights, strict=True):
        for rank, hit in enumerate(hits, start=1):
            scores[hit.window_id] = scores.get(hit.window_id, 0.0) + weight / (k + rank)
            first.setdefault(hit.window_id, hit)
    order = sorted(scores, key=lambda wid: -scores[wid])
    return [replace(first[wid], score=scores[wid]) for wid in order]


class Retriever:
    def __init__(self, memory: LongTermMemory, embedder: Embedder,
                 config: RetrievalConfig | None = None) -> None:
        self.memory = memory
        self.embedder = embedder
        self.config = config or RetrievalConfig()

    def retrieve(self, question: str, top_k: int | None = None,
                 where: Filter | None = None) -> list[Hit]:
        """The top-k windows for ``question``, best first."""
        question = check_question(question)
        k = top_k or self.config.top_k
        mode = self.config.mode
        if mode == "lexical":
            return self.memory.lexical_search(question, k, where)
        dense = self.memory.search(self.embedder.embed([question]),
                                   k if mode == "dense" else max(k, self.config.candidates),
                                   where=where)[0]
        if mode == "dense":
            return dense
        if mode != "hybrid":
            raise RagmemError(f"unknown retrieval mode {mode!r}; use dense, lexical or hybrid")
        lexical = self.memory.lexical_search(question, max(k, self.config.candidates), where)
        return fuse([dense, lexical], [self.config.dense_weight, self.config.lexical_weight],
                    self.config.rrf_k)[:k]

    def expand(self, hits: Sequence[Hit]) -> list[Passage]:
        """Small-to-big: each hit's sentences plus neighbours, merged per document."""
        n = self.config.neighbour_sentences
        spans = merge_spans([_Span(h.doc_id, max(0, h.first - n), h.last + n, h.score)
                             for h in hits])
        store = self.memory.docstore
        passages = []
        for s in spans:
            sentences = tuple(store.sentences(s.doc_id, s.first, s.last))
            if not sentences:
                continue
            passages.append(Passage(s.doc_id, store.document_path(s.doc_id), sentences[0].start,
                                    sentences[-1].end, s.score, sentences))
        return passages

    def passages(self, question: str, top_k: int | None = None,
                 where: Filter | None = None) -> list[Passage]:
        return self.expand(self.retrieve(question, top_k, where))


def check_question(question: str) -> str:
    if not isinstance(question, str) or not question.strip():
        raise QuestionError("the question is empty; ask something, e.g. "
                            "ragmem ask demo \"Who is Irene Adler?\"")
    return question.strip()
