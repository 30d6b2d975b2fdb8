"""Working memory -> Answer: generate from the filled prompt, then cite what the text uses.

    >>> answerer = Answerer(generator, max_new_tokens=96)             # doctest: +SKIP
    >>> answer = answerer.answer(working_memory.fill(question, passages))  # doctest: +SKIP
    >>> answer.citations[0].path                                       # doctest: +SKIP

The citations come from the ``[n]`` markers in the generated text
(``Buffer.citations_in``); the ``Answer`` carries the passages and the prompt, so the
CLI and the evaluation harness only read fields.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from ragmem.config import WorkingMemoryConfig
from ragmem.types import Answer, Timings
from ragmem.working_memory import Buffer

if TYPE_CHECKING:
    from ragmem.generation import Generator


class Answerer:
    def __init__(self, generator: Generator,
                 max_new_tokens: int = WorkingMemoryConfig.max_new_tokens) -> None:
        self.generator = generator
        self.max_new_tokens = max_new_tokens

    def answer(self, buffer: Buffer, timings: Timings | None = None) -> Answer:
        """Generate the answer for a filled working memory; ``timings`` of the earlier
        stages are kept and the generation time added."""
        t0 = time.perf_counter()
        text = self.generator.generate(buffer.prompt, self.max_new_tokens)
        timings = replace(timings or Timings(), generate_s=time.perf_counter() - t0)
        return _answer(buffer, text, timings)

    def stream(self, buffer: Buffer, timings: Timings | None = None) -> Iterator[str | Answer]:
        """``answer``, streamed: the text in pieces, then the finished ``Answer``."""
        t0 = time.perf_counter()
        parts = []
        for piece in self.generator.stream(buffer.prompt, self.max_new_tokens):
            parts.append(piece)
            yield piece
        timings = replace(timings or Timings(), generate_s=time.perf_counter() - t0)
        yield _answer(buffer, "".join(parts).strip(), timings)


def _answer(buffer: Buffer, text: str, timings: Timings) -> Answer:
    return Answer(question=buffer.question, text=text,
                  citations=buffer.citations_in(text), passages=buffer.passages,
                  prompt=buffer.prompt, dropped=buffer.dropped, timings=timings,
                  tokens_used=buffer.tokens_used, token_budget=buffer.token_budget)
