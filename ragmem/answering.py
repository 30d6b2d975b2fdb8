"""Working memory -> Answer, in one of two modes.

``extract`` (the default): the answer is a verbatim span of the evidence, located
exactly in its document, so ``document.text[citation.start:citation.end] == answer.text``.
An English question is read by the trained extractive reader (``ragmem.reading``: the
packaged MiniLM with a start/end head, every passage of the working memory in one
forward pass); a Chinese one, which that reader's vocabulary cannot read, by the
Chinese span finder (``ragmem.chinese_answers``: whole jieba words placed by the
question's words around its question word; ``AnsweringConfig.chinese``). When the best
span's probability is below the threshold chosen on training questions, the answer
abstains: "not found in the indexed documents", with the sentence it came from as a
suggestion, never as a citation.

``generate``: the generator's own text; its citations are the ``[n]`` it writes.

    >>> answerer = answerer_for(AnsweringConfig(), ReaderConfig(), generator)  # doctest: +SKIP
    >>> answer = answerer.answer(working_memory.fill(question, passages))      # doctest: +SKIP
    >>> answer.text, answer.citations[0].start                                  # doctest: +SKIP
    ('the City and Suburban Bank', 24813)
"""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

from ragmem.config import AnsweringConfig, ReaderConfig, WorkingMemoryConfig
from ragmem.generation import Generator, scorer_of
from ragmem.reading import Reader, ReadSpan
from ragmem.types import Answer, Citation, Passage, Timings
from ragmem.working_memory import Buffer, suggestion

if TYPE_CHECKING:
    from ragmem.embedding import Embedder

NOT_FOUND = "Not found in the indexed documents."
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


class SpanFinder(Protocol):
    """What the extract mode needs: spans of the passages, best first, and the
    probability below which the best one is not good enough to answer with."""

    @property
    def abstain_below(self) -> float: ...

    def read(self, question: str, passages: Sequence[Passage]) -> list[ReadSpan]: ...


class Answerer(ABC):
    """Turns a filled working memory into an ``Answer``."""

    mode: str
    generator: Generator | None  # the model it answers with (a chat rewrites with it too)

    @abstractmethod
    def answer(self, buffer: Buffer, timings: Timings | None = None) -> Answer:
        """The answer for ``buffer``; ``timings`` of the earlier stages are kept and the
        answering time added (as ``generate_s``)."""

    def stream(self, buffer: Buffer, timings: Timings | None = None) -> Iterator[str | Answer]:
        """The answer's text in pieces, then the finished ``Answer``."""
        answer = self.answer(buffer, timings)
        yield answer.text
        yield answer


class GenerateAnswerer(Answerer):
    """The generator's own text; citations are the ``[n]`` markers it writes."""

    mode = "generate"
    generator: Generator

    def __init__(self, generator: Generator,
                 max_new_tokens: int = WorkingMemoryConfig.max_new_tokens) -> None:
        self.generator = generator
        self.max_new_tokens = max_new_tokens

    def answer(self, buffer: Buffer, timings: Timings | None = None) -> Answer:
        t0 = time.perf_counter()
        text = self.generator.generate(buffer.prompt, self.max_new_tokens)
        timings = replace(timings or Timings(), generate_s=time.perf_counter() - t0)
        return _generated(buffer, text, timings)

    def stream(self, buffer: Buffer, timings: Timings | None = None) -> Iterator[str | Answer]:
        t0 = time.perf_counter()
        parts = []
        for piece in self.generator.stream(buffer.prompt, self.max_new_tokens):
            parts.append(piece)
            yield piece
        timings = replace(timings or Timings(), generate_s=time.perf_counter() - t0)
        yield _generated(buffer, "".join(parts).strip(), timings)


def _generated(buffer: Buffer, text: str, timings: Timings) -> Answer:
    citations = buffer.citations_in(text)
    hints = () if citations else tuple(s for s in [suggestion(text, buffer.passages)] if s)
    return Answer(question=buffer.question, text=text, citations=citations,
                  passages=buffer.passages, prompt=buffer.prompt, dropped=buffer.dropped,
                  timings=timings, tokens_used=buffer.tokens_used,
                  token_budget=buffer.token_budget, mode="generate", suggestions=hints)



class ExtractAnswerer(Answerer):
    """Answers with the best verbatim span its finder proposes (see the module
    docstring); ``chinese`` finds the spans of questions written in Chinese."""

    mode = "extract"

    def __init__(self, reader: SpanFinder, chinese: Callable[[], SpanFinder] | None = None,
                 generator: Generator | None = None) -> None:
        self.reader = reader
        self._chinese = chinese
        self.generator = generator

    def finder(self, question: str) -> SpanFinder:
        if self._chinese is not None and _CJK.search(question):
            return self._chinese()
        return self.reader

    def answer(self, buffer: Buffer, timings: Timings | None = None) -> Answer:
        t0 = time.perf_counter()
        finder = self.finder(buffer.question)
        spans = finder.read(buffer.question, buffer.passages)
        timings = replace(timings or Timings(), generate_s=time.perf_counter() - t0)
        base = Answer(question=buffer.question, text=NOT_FOUND, citations=(),
                      passages=buffer.passages, prompt=buffer.prompt, dropped=buffer.dropped,
                      timings=timings, tokens_used=buffer.tokens_used,
                      token_budget=buffer.token_budget, mode="extract", abstained=True)
        if not spans:
            return base
        best = spans[0]
        cited = _citation(best, buffer.passages)
        if best.probability < finder.abstain_below:
            # Not supported enough to answer; the sentence it came from is where to look.
            s = best.sentence
            hint = replace(cited, start=s.start, end=s.end, quote=s.text)
            return replace(base, confidence=best.probability, suggestions=(hint,))
        return replace(base, text=best.text, citations=(cited,), abstained=False,
                       confidence=best.probability)


def _citation(span: ReadSpan, passages: Sequence[Passage]) -> Citation:
    p = passages[span.passage]
    return Citation(span.passage + 1, p.doc_id, p.path, span.start, span.end, span.text,
                    p.section_at(span.start))


def answerer_for(config: AnsweringConfig, reader: ReaderConfig, generator: Generator | None,
                 embedder: Embedder | None = None, *,
                 max_new_tokens: int = WorkingMemoryConfig.max_new_tokens) -> Answerer:
    """The answerer ``config.mode`` asks for: "auto" extracts when there is no generator
    or it can score spans (a ``Scorer``), and lets one that can only write answer in its
    own words. The extract mode's spans come from ``config.extractor``: the span ranker,
    or a trained reader; a Chinese question's from ``config.chinese`` (cue-placed
    jieba-word spans by default, ``ragmem.chinese_answers``)."""
    mode = config.mode
    if mode == "auto":
        mode = "extract" if generator is None or scorer_of(generator) is not None \
            else "generate"
    if mode == "extract":
        def ranker() -> SpanFinder:
            from ragmem.span_ranking import SpanRanker

            return SpanRanker(scorer_of(generator), config, embedder)

        shared_ranker = _once(ranker)

        def chinese() -> SpanFinder:
            from ragmem.chinese_answers import ChineseSpans

            rescorer = scorer_of(generator) if config.chinese == "rescored" else None
            return ChineseSpans(config, scorer=rescorer)

        if config.extractor == "reader":
            return ExtractAnswerer(Reader(reader), _once(chinese), generator)
        return ExtractAnswerer(_Lazy(shared_ranker), _once(chinese), generator)
    assert generator is not None, "the generate mode needs a generator"
    return GenerateAnswerer(generator, max_new_tokens)


class _Lazy:
    """A span finder made on first use (the span ranker loads weights and a model)."""

    def __init__(self, make: Callable[[], SpanFinder]) -> None:
        self._make = make

    @property
    def abstain_below(self) -> float:
        return self._make().abstain_below

    def read(self, question: str, passages: Sequence[Passage]) -> list[ReadSpan]:
        return self._make().read(question, passages)


def _once(make: Callable[[], SpanFinder]) -> Callable[[], SpanFinder]:
    made: list[SpanFinder] = []

    def get() -> SpanFinder:
        if not made:
            made.append(make())
        return made[0]

    return get
