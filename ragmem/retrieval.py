"""Question -> hits in long-term memory -> passages (small-to-big).

A window is the unit of search; the evidence handed on is wider: the matched window's
sentences plus neighbours on each side, with overlapping or adjacent spans of one
document merged into one passage.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ragmem.config import RetrievalConfig
from ragmem.embedding import Embedder
from ragmem.errors import QuestionError, RagmemError
from ragmem.memory.base import Memory
from ragmem.reranking import Reranker, rerank
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


def _sections(sections: Sequence[Sequence[object]], start: int,
              end: int) -> tuple[tuple[int, str], ...]:
    """The entries of a document's section list that a span [start, end) falls under.

    >>> _sections([[0, "A"], [5, "A › B"], [9, "C"], [20, "D"]], 6, 12)
    ((5, 'A › B'), (9, 'C'))
    """
    out: list[tuple[int, str]] = []
    for offset, path in sections:
        at = int(offset)  # type: ignore[call-overload]
        if at >= end:
            break
        if at <= start:
            out = []
        out.append((at, str(path)))
    return tuple(out)


def fuse(rankings: Sequence[Sequence[Hit]], weights: Sequence[float],
         k: int = RetrievalConfig.rrf_k) -> list[Hit]:
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


def fuse_scores(rankings: Sequence[Sequence[Hit]], weights: Sequence[float],
                norm: str = "minmax", depth: int = 100) -> list[Hit]:
    """Weighted sum of per-list normalised scores; a window missing from a list gets 0
    there. ``norm``: "minmax" maps each list's top ``depth`` scores onto [0, 1] (deeper
    hits are clipped at 0); "zscore" centres and scales by the top ``depth``. The
    statistics come from a fixed depth so that asking for more hits does not reorder
    the first ones.
    """
    scores: dict[int, float] = {}
    first: dict[int, Hit] = {}
    total = sum(weights) or 1.0
    for hits, weight in zip(rankings, weights, strict=True):
        if not hits:
            continue
        values = np.array([h.score for h in hits], dtype=np.float64)
        top = values[:depth]
        if norm == "minmax":
            span = top.max() - top.min()
            scaled = np.clip((values - top.min()) / span, 0.0, None) if span > 0 \
                else np.ones_like(values)
        elif norm == "zscore":
            std = top.std()
            scaled = (values - top.mean()) / std if std > 0 else np.zeros_like(values)
        else:
            raise RagmemError(f"unknown fusion {norm!r}; use rrf, minmax or zscore")
        weight /= total
        for hit, value in zip(hits, scaled, strict=True):
            scores[hit.window_id] = scores.get(hit.window_id, 0.0) + weight * float(value)
            first.setdefault(hit.window_id, hit)
    order = sorted(scores, key=lambda wid: -scores[wid])
    return [replace(first[wid], score=scores[wid]) for wid in order]


class Retriever:
    def __init__(self, memory: Memory, embedder: Embedder,
                 config: RetrievalConfig | None = None,
                 reranker: Reranker | None = None) -> None:
        self.memory = memory
        self.embedder = embedder
        self.config = config or RetrievalConfig()
        self.reranker = reranker
        self._last_query: tuple[str, np.ndarray] | None = None

    def retrieve(self, question: str, top_k: int | None = None,
                 where: Filter | None = None) -> list[Hit]:
        """The top-k windows for ``question``, best first; with a reranker, the first
        stage's ``rerank_candidates`` windows rescored by it.

        Without a reranker the order does not depend on ``top_k``: a shorter list is
        the start of a longer one (hybrid fusion normalises over a fixed depth)."""
        return self.retrieve_many([question], top_k, where)[0]

    def retrieve_many(self, questions: Sequence[str], top_k: int | None = None,
                      where: Filter | None = None) -> list[list[Hit]]:
        """``retrieve`` for each question; the questions are embedded together, in the
        embedder's batches, which is what makes many questions cheaper than a loop."""
        questions = [check_question(q) for q in questions]
        k = top_k or self.config.top_k
        depth = k if self.reranker is None else max(k, self.config.rerank_candidates)
        vectors = self._query_vectors(questions)
        out = []
        for i, question in enumerate(questions):
            found = self._first_stage(question, None if vectors is None else vectors[i:i + 1],
                                      depth, where)
            out.append(found if self.reranker is None
                       else rerank(self.reranker, question, found)[:k])
        return out

    def _first_stage(self, question: str, vector: np.ndarray | None, k: int,
                     where: Filter | None) -> list[Hit]:
        mode = self.config.mode
        if vector is None:  # lexical mode
            return self.memory.lexical_search(question, k, where, self.config.lexical_terms)
        depth = max(k, self.config.candidates)
        if mode == "hybrid" and self._unreadable(question):
            # As deep as it is fused, so the first k are those of the fused depth.
            return self.memory.lexical_search(question, depth, where,
                                              self.config.lexical_terms)[:k]
        # Always `candidates` deep, even for a few: FAISS breaks exact ties (copies of a
        # text) differently at different depths, and the first k must not depend on k.
        dense = self.memory.search(vector, depth, where=where)[0]
        if mode == "dense":
            return dense[:k]
        lexical = self.memory.lexical_search(question, depth, where, self.config.lexical_terms)
        weights = [self.config.dense_weight, self.config.lexical_weight]
        if self.config.fusion == "rrf":
            return fuse([dense, lexical], weights, self.config.rrf_k)[:k]
        return fuse_scores([dense, lexical], weights, self.config.fusion,
                           self.config.candidates)[:k]

    def _unreadable(self, question: str) -> bool:
        """Whether the embedder cannot read ``question``: more than
        ``max_unknown_share`` of its word pieces are unknown to it. all-MiniLM-L6-v2 knows
        none of 20-94% of a Chinese question's pieces (CMRC 2018 dev) and all of an English
        one's; its vector is then noise, and fusing it pushed the right article from first
        to lower for most Chinese questions (eval/reports/chinese/README.md)."""
        if not hasattr(type(self.embedder), "token_counter"):
            return False
        counter = getattr(self.embedder, "token_counter")  # noqa: B009
        return bool(counter.unknown_share(question) > self.config.max_unknown_share)

    def _query_vectors(self, questions: Sequence[str]) -> np.ndarray | None:
        """The questions' embeddings (None in lexical mode, which needs none)."""
        if self.config.mode == "lexical":
            return None
        if len(questions) == 1:
            return self._query_vector(questions[0])
        vectors = self.embedder.embed(list(questions))
        if len(questions):
            self._last_query = (questions[-1], vectors[-1:])
        return vectors

    def _query_vector(self, question: str) -> np.ndarray:
        # retrieve() and the sentence-level step both need it: embed each question once.
        if self._last_query is None or self._last_query[0] != question:
            self._last_query = (question, self.embedder.embed([question]))
        return self._last_query[1]

    def expand(self, hits: Sequence[Hit], question: str | None = None) -> list[Passage]:
        """Small-to-big: each hit widened to neighbouring sentences, merged per document.

        With ``sentence_level`` (and a question), a hit is first narrowed to its sentence
        most similar to the question, then widened: the evidence is centred on the best
        sentence rather than on the whole window.
        """
        n = self.config.neighbour_sentences
        centres = [(h.first, h.last) for h in hits]
        if self.config.sentence_level and question is not None and hits:
            centres = self._best_sentences(hits, question)
        spans = merge_spans([_Span(h.doc_id, max(0, a - n), b + n, h.score)
                             for h, (a, b) in zip(hits, centres, strict=True)])
        passages: list[Passage] = []
        per_doc: dict[str, int] = {}
        for s in spans:
            if self.config.per_document and per_doc.get(s.doc_id, 0) >= self.config.per_document:
                continue
            sentences = tuple(self.memory.sentences(s.doc_id, s.first, s.last))
            if not sentences:
                continue
            start, end = sentences[0].start, sentences[-1].end
            passage = Passage(s.doc_id, self.memory.document_path(s.doc_id), start, end,
                              s.score, sentences,
                              _sections(self.memory.document_sections(s.doc_id), start, end))
            if any(near_duplicate(passage, p, self.config.dedupe_threshold) for p in passages):
                continue
            per_doc[s.doc_id] = per_doc.get(s.doc_id, 0) + 1
            passages.append(passage)
        return passages

    def _best_sentences(self, hits: Sequence[Hit], question: str) -> list[tuple[int, int]]:
        groups = [self.memory.sentences(h.doc_id, h.first, h.last) for h in hits]
        texts = [s.text for g in groups for s in g]
        scores = self.embedder.embed(texts) @ self._query_vector(question)[0]
        out, i = [], 0
        for h, g in zip(hits, groups, strict=True):
            if not g:
                out.append((h.first, h.last))
                continue
            best = g[int(np.argmax(scores[i:i + len(g)]))].index
            out.append((best, best))
            i += len(g)
        return out

    def passages(self, question: str, top_k: int | None = None,
                 where: Filter | None = None) -> list[Passage]:
        question = check_question(question)
        return self.expand(self.retrieve(question, top_k, where), question)


def near_duplicate(a: Passage, b: Passage, threshold: float) -> bool:
    """Jaccard similarity of the two passages' word sets at or above ``threshold``.

    The same text often sits in several files (copies, versions, quoted sections);
    one copy in the prompt is enough.
    """
    if threshold >= 1.0:
        return False
    wa, wb = _words(a.text), _words(b.text)
    if not wa or not wb:
        return False
    return len(wa & wb) / len(wa | wb) >= threshold


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def check_question(question: str) -> str:
    if not isinstance(question, str) or not question.strip():
        raise QuestionError("the question is empty; ask something, e.g. "
                            "ragmem ask demo \"Who is Irene Adler?\"")
    return question.strip()
