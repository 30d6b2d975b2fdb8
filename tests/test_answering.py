"""Answerer: a filled working memory -> a cited Answer, whole or streamed."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ragmem.answering import NOT_FOUND, ExtractAnswerer, GenerateAnswerer, answerer_for
from ragmem.config import AnsweringConfig, ReaderConfig, WorkingMemoryConfig
from ragmem.reading import ReadSpan
from ragmem.types import Answer, Timings
from ragmem.working_memory import Buffer, WorkingMemory
from tests.conftest import EchoGenerator
from tests.test_extraction import passage as extraction_passage
from tests.test_working_memory import passage


def filled() -> tuple[EchoGenerator, WorkingMemory]:
    generator = EchoGenerator()
    return generator, WorkingMemory(generator, WorkingMemoryConfig(token_budget=400))


def test_answer_cites_what_the_text_uses_and_keeps_earlier_timings() -> None:
    generator, wm = filled()
    buffer = wm.fill("Which words?", [passage("a", [4, 5], 0.9), passage("b", [3], 0.5)])
    answer = GenerateAnswerer(generator, max_new_tokens=8).answer(buffer, Timings(retrieve_s=1.5))
    assert answer.text.endswith("[1]")  # the echo cites passage [1]
    assert [c.number for c in answer.citations] == [1]
    assert answer.citations[0].doc_id == "a"
    assert answer.passages == buffer.passages and answer.prompt == buffer.prompt
    assert answer.tokens_used == buffer.tokens_used
    assert answer.timings.retrieve_s == 1.5 and answer.timings.generate_s > 0


def test_stream_joins_to_the_same_answer() -> None:
    generator, wm = filled()
    buffer = wm.fill("Which words?", [passage("a", [4, 5], 0.9)])
    answerer = GenerateAnswerer(generator)
    *pieces, streamed = list(answerer.stream(buffer))
    whole = answerer.answer(buffer)
    assert isinstance(streamed, Answer) and all(isinstance(p, str) for p in pieces)
    assert "".join(str(p) for p in pieces).strip() == streamed.text == whole.text
    assert replace(streamed, timings=Timings()) == replace(whole, timings=Timings())


# -- extract mode: the best span its finder proposes, or an honest abstention --------

BANK = ["Jabez Wilson was a pawnbroker with fiery red hair.",
        "The robbers dug a tunnel into the cellar of the City and Suburban Bank.",
        "Holmes waited for them in the dark with Watson and Jones."]


def bank_buffer(at: int = 500, question: str = "Which bank's cellar did the robbers dig into?"
                ) -> tuple[Buffer, str]:
    """A working memory over one document whose text starts ``at`` characters in."""
    p = extraction_passage("league.txt", BANK, at=at)
    document = " " * at + " ".join(BANK)
    wm = WorkingMemory(EchoGenerator(), WorkingMemoryConfig(token_budget=400))
    return wm.fill(question, [p]), document


class LastWords:
    """A span finder that proposes the last two words of each sentence, with a fixed
    probability: the extract mode's logic without a model."""

    def __init__(self, probability: float, abstain_below: float) -> None:
        self.probability = probability
        self.abstain_below = abstain_below

    def read(self, question: str, passages: Any) -> list[ReadSpan]:
        out = []
        for i, p in enumerate(passages):
            for s in p.sentences:
                a = s.text.rstrip(".").rsplit(" ", 2)[0]
                cut = len(a) + 1
                out.append(ReadSpan(i, s, s.start + cut, s.end - 1, s.text[cut:-1],
                                    self.probability, 0.0))
        return out[1:2]


def test_extract_answer_is_a_span_of_the_document_and_its_own_citation() -> None:
    buffer, document = bank_buffer()
    answer = ExtractAnswerer(LastWords(0.9, 0.5)).answer(buffer, Timings(retrieve_s=0.5))
    assert answer.mode == "extract" and not answer.abstained
    (cite,) = answer.citations
    assert document[cite.start:cite.end] == cite.quote == answer.text == "Suburban Bank"
    assert cite.number == 1 and cite.doc_id == "league.txt"
    assert answer.confidence == 0.9
    assert answer.timings.retrieve_s == 0.5 and answer.timings.generate_s > 0


def test_extract_abstains_below_the_threshold_and_cites_nothing() -> None:
    buffer, document = bank_buffer()
    answer = ExtractAnswerer(LastWords(0.4, 0.5)).answer(buffer)
    assert answer.abstained and answer.text == NOT_FOUND and answer.citations == ()
    (hint,) = answer.suggestions  # the sentence of the best span, as a place to look
    assert document[hint.start:hint.end] == hint.quote == BANK[1]
    assert answer.confidence == 0.4
    assert answer.to_dict()["abstained"] is True


def test_extract_with_no_evidence_abstains() -> None:
    wm = WorkingMemory(EchoGenerator(), WorkingMemoryConfig(token_budget=400))
    answer = ExtractAnswerer(LastWords(0.9, 0.5)).answer(wm.fill("Who?", []))
    assert answer.abstained and answer.citations == () and answer.suggestions == ()


def test_a_chinese_question_goes_to_the_chinese_finder() -> None:
    english, chinese = LastWords(0.9, 0.5), LastWords(0.2, 0.5)
    answerer = ExtractAnswerer(english, lambda: chinese)
    assert answerer.finder("Who wrote it?") is english
    assert answerer.finder("谁写了《茶经》？") is chinese
    buffer, _ = bank_buffer(question="谁写了《茶经》？")
    assert answerer.answer(buffer).abstained  # the Chinese finder's 0.2 < 0.5


def test_generate_mode_marks_an_uncited_answer_a_suggestion_not_a_citation() -> None:
    class Uncited(EchoGenerator):
        def generate(self, prompt: str, max_new_tokens: int) -> str:
            return super().generate(prompt, max_new_tokens).removesuffix(" [1]")

    generator = Uncited()
    wm = WorkingMemory(generator, WorkingMemoryConfig(token_budget=400))
    buffer = wm.fill("Which words?", [passage("a", [4, 5], 0.9)])
    answer = GenerateAnswerer(generator, max_new_tokens=8).answer(buffer)
    assert answer.citations == () and answer.mode == "generate"
    (hint,) = answer.suggestions  # the sentence it echoed, as a place to look
    assert hint.quote in answer.text


def test_answerer_for_picks_the_mode() -> None:
    generator = EchoGenerator()
    reader = ReaderConfig()
    assert answerer_for(AnsweringConfig(mode="generate"), reader, generator).mode == "generate"
    assert answerer_for(AnsweringConfig(mode="extract"), reader, generator).mode == "extract"
    # "auto": extract with no generator or one that can score spans; a generator that
    # can only write (the echo) answers in its own words.
    assert answerer_for(AnsweringConfig(), reader, None).mode == "extract"
    assert answerer_for(AnsweringConfig(), reader, generator).mode == "generate"
    by_reader = answerer_for(AnsweringConfig(mode="extract", extractor="reader"), reader,
                             generator)
    assert isinstance(by_reader, ExtractAnswerer) and by_reader.finder("Who?") is \
        by_reader.reader and by_reader.finder("谁写了《茶经》？") is not by_reader.reader
