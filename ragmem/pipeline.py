"""retrieve -> fill -> answer, composed once.

``Assistant.ask`` and ``stream``, ``Chat``, ``ragmem ask --no-generate`` and the
evaluation harness all run a question through this one composition; each adds only
what is its own (a chat's condensed query and history, the harness's deeper list).

    >>> pipeline = Pipeline(retriever, working_memory, answerer)      # doctest: +SKIP
    >>> filled = pipeline.fill("Who is Irene Adler?")                 # doctest: +SKIP
    >>> filled.buffer.passages[0].doc_id, filled.timings.retrieve_s   # doctest: +SKIP
    ('doyle.md', 0.012)
    >>> pipeline.answer(filled).citations                             # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from ragmem.answering import Answerer
from ragmem.retrieval import Retriever, check_question
from ragmem.types import Answer, Filter, Hit, Passage, Timings
from ragmem.working_memory import Buffer, WorkingMemory


@dataclass(frozen=True)
class Filled:
    """A question's working memory, ready to answer: the windows retrieval found (best
    first), the passages made of the first ``top_k`` of them, the filled ``buffer``,
    and the time each step took."""

    hits: tuple[Hit, ...]
    passages: tuple[Passage, ...]
    buffer: Buffer
    timings: Timings


class Pipeline:
    """The stages of one question: ``fill`` (retrieve, then fill the working memory),
    then ``answer`` or ``stream``."""

    def __init__(self, retriever: Retriever, working_memory: WorkingMemory,
                 answerer: Answerer) -> None:
        self.retriever = retriever
        self.working_memory = working_memory
        self.answerer = answerer

    def fill(self, question: str, top_k: int | None = None, where: Filter | None = None, *,
             query: str | None = None, history: str = "", depth: int | None = None) -> Filled:
        """Retrieve for ``query`` (default: the question itself), widen the first
        ``top_k`` windows to passages, and fill the working memory with them, after
        ``history`` (a rendered conversation that fits its share). ``depth``: retrieve
        that many windows (``Filled.hits``) and make passages of the first ``top_k``,
        the windows a plain ``top_k`` search finds (the ranking does not depend on the
        depth; with a reranker, the first ``top_k`` of the reranked deeper list)."""
        question = check_question(question)
        query = question if query is None else check_question(query)
        k = top_k or self.retriever.config.top_k
        t0 = time.perf_counter()
        hits = self.retriever.retrieve(query, max(k, depth or 0), where)
        passages = self.retriever.expand(hits[:k], query)
        t1 = time.perf_counter()
        buffer = self.working_memory.fill(question, passages, history)
        timings = Timings(retrieve_s=t1 - t0, fill_s=time.perf_counter() - t1)
        return Filled(tuple(hits), tuple(passages), buffer, timings)

    def answer(self, filled: Filled) -> Answer:
        """The answer to a filled working memory, its timings added to the fill's."""
        return self.answerer.answer(filled.buffer, filled.timings)

    def stream(self, filled: Filled) -> Iterator[str | Answer]:
        """``answer``, streamed: the text as it is written, then the ``Answer``."""
        yield from self.answerer.stream(filled.buffer, filled.timings)

    def ask(self, question: str, top_k: int | None = None,
            where: Filter | None = None) -> Answer:
        """retrieve -> fill -> answer."""
        return self.answer(self.fill(question, top_k, where))

