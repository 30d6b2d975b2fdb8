"""Answerer: a filled working memory -> a cited Answer, whole or streamed."""

from __future__ import annotations

from dataclasses import replace

from ragmem.answering import Answerer
from ragmem.config import WorkingMemoryConfig
from ragmem.types import Answer, Timings
from ragmem.working_memory import WorkingMemory
from tests.conftest import EchoGenerator
from tests.test_working_memory import passage


def filled() -> tuple[EchoGenerator, WorkingMemory]:
    generator = EchoGenerator()
    return generator, WorkingMemory(generator, WorkingMemoryConfig(token_budget=400))


def test_answer_cites_what_the_text_uses_and_keeps_earlier_timings() -> None:
    generator, wm = filled()
    buffer = wm.fill("Which words?", [passage("a", [4, 5], 0.9), passage("b", [3], 0.5)])
    answer = Answerer(generator, max_new_tokens=8).answer(buffer, Timings(retrieve_s=1.5))
    assert answer.text.endswith("[1]")  # the echo cites passage [1]
    assert [c.number for c in answer.citations] == [1]
    assert answer.citations[0].doc_id == "a"
    assert answer.passages == buffer.passages and answer.prompt == buffer.prompt
    assert answer.tokens_used == buffer.tokens_used
    assert answer.timings.retrieve_s == 1.5 and answer.timings.generate_s > 0


def test_stream_joins_to_the_same_answer() -> None:
    generator, wm = filled()
    buffer = wm.fill("Which words?", [passage("a", [4, 5], 0.9)])
    answerer = Answerer(generator)
    *pieces, streamed = list(answerer.stream(buffer))
    whole = answerer.answer(buffer)
    assert isinstance(streamed, Answer) and all(isinstance(p, str) for p in pieces)
    assert "".join(str(p) for p in pieces).strip() == streamed.text == whole.text
    assert replace(streamed, timings=Timings()) == replace(whole, timings=Timings())
