"""Working memory over a conversation: follow-up questions, earlier turns in the prompt.

    >>> chat = Chat(assistant)                                    # doctest: +SKIP
    >>> chat.ask("Who walked on the Moon in 1969?").text          # doctest: +SKIP
    'Neil Armstrong walked on the Moon in 1969 [1].'
    >>> chat.ask("And when did he die?").citations                # doctest: +SKIP

Two things change from a single ``Assistant.ask``:

**Retrieval sees a self-contained query.** "And when did he die?" finds nothing on its
own. ``condense`` decides a question is a follow-up when it has a referring word (he,
it, this, there...), opens with a connective ("and", "what about"...) or has at most
three words; it then appends the key terms of the last turn: the content words of that
turn's own retrieval query (so context carries over a chain of follow-ups), then the
names and numbers in its answer (where a "he" usually points), at most
``RetrievalConfig.condense_terms``:

    condense("And when did he die?", [Turn("Who walked on the Moon in 1969?", ...,
             answer "Neil Armstrong walked on the Moon in 1969 [1].")])
    -> "And when did he die? walked Moon 1969 Neil Armstrong"

The heuristic is the default because it is free and deterministic; a wrong guess only
adds a few terms to the search (hybrid retrieval keeps the question's own terms), and
the generator still reads the original question. ``rewrite="generator"`` has the
generator rewrite a follow-up instead, which is better with a capable model but costs a
generation per turn and, with the default 135M model, often drifts, so it is off.

**The prompt carries the conversation so far**, as a "Conversation so far:" block of
Q/A pairs before the passages, inside one user message, so ``render(instruction, user)``
works for every generator, chat template or not. Citation markers are stripped from
earlier answers: their numbers belonged to earlier passages. The block gets at most
``WorkingMemoryConfig.history_share`` of the prompt budget (``WorkingMemory.
history_budget``), so the evidence always keeps the rest. ``fit_history`` fills it
newest first: a turn goes in whole if it fits, else with its answer cut to the first
sentence, else it and every older turn are left out, so the oldest go first and there
is never a gap. What was shortened or left out is listed in ``Answer.dropped``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, get_args

from ragmem.config import RetrievalConfig, Rewrite
from ragmem.errors import RagmemError
from ragmem.pipeline import Filled
from ragmem.retrieval import check_question
from ragmem.types import Answer, Filter

if TYPE_CHECKING:
    from ragmem.assistant import Assistant
    from ragmem.generation import Generator

HISTORY_HEADER = "Conversation so far:"
REWRITE_INSTRUCTION = ("Rewrite the follow-up question so that it can be understood without "
                       "the conversation. Reply with the rewritten question only.")
REWRITES: tuple[str, ...] = get_args(Rewrite)

_REFERRING = frozenset(
    "he she it they him her his hers its them their theirs this that these those there "
    "then one ones former latter".split())
_OPENERS = ("and ", "but ", "also ", "so ", "then ", "what about ", "how about ")
_STOP = _REFERRING | frozenset(
    "a an the and or but of to in on at by for with from as about into than what who whom "
    "whose which when where why how is are was were be been being do does did has have had "
    "i you we me my your our not no yes can could would should will shall may might must "
    "tell me please also so".split())


@dataclass(frozen=True)
class Turn:
    """One question and its answer; ``query`` is what retrieval searched for."""

    question: str
    query: str
    answer: Answer

    def render(self, compressed: bool = False) -> str:
        """``Q: ...`` / ``A: ...``; compressed, the answer is cut to its first sentence."""
        text = _plain(self.answer.text)
        if compressed:
            text = first_sentence(text)
        return f"Q: {_plain(self.question)}\nA: {text}"


def _plain(text: str) -> str:
    """One line, without ``[n]`` citation markers."""
    return " ".join(re.sub(r"\s*\[\d+\]", "", text).split())


def first_sentence(text: str) -> str:
    """``"It was 1969. He was 38."`` -> ``"It was 1969."``"""
    return re.split(r"(?<=[.!?])\s+(?=[A-Z0-9\"'])", text.strip(), maxsplit=1)[0]


def is_follow_up(question: str) -> bool:
    """Whether ``question`` probably leans on an earlier turn."""
    words = re.findall(r"\w+", question.lower())
    return (len(words) <= 3 or any(w in _REFERRING for w in words)
            or f"{question.strip().lower()} ".startswith(_OPENERS))


def condense(question: str, turns: Sequence[Turn],
             max_terms: int = RetrievalConfig.condense_terms) -> str:
    """The retrieval query for ``question``: itself, or for a follow-up, itself plus the
    last turn's key terms (see the module docstring)."""
    if not turns or not is_follow_up(question):
        return question
    last = turns[-1]
    have = {w.lower() for w in re.findall(r"\w+", question)}
    names = re.findall(r"\b(?:[A-Z][\w'-]*|\d[\d.,]*\d|\d)", _plain(last.answer.text))
    terms: list[str] = []
    for word in [*re.findall(r"\w+", last.query), *names]:
        key = word.lower()
        if key not in have and key not in _STOP:
            have.add(key)
            terms.append(word)
    return f"{question} {' '.join(terms[:max_terms])}".strip()


def rewrite_with(generator: Generator, question: str, turns: Sequence[Turn]) -> str:
    """A follow-up rewritten by ``generator`` as a standalone question; the heuristic's
    query when it answers nothing usable."""
    if not turns or not is_follow_up(question):
        return question
    history = render_history([t.render(compressed=True) for t in turns[-3:]])
    prompt = generator.render(REWRITE_INSTRUCTION,
                              f"{history}\n\nFollow-up question: {question}")
    lines = generator.generate(prompt, 48).strip().splitlines()
    return lines[0].strip() if lines and lines[0].strip() else condense(question, turns)


def render_history(rendered_turns: Sequence[str]) -> str:
    return f"{HISTORY_HEADER}\n" + "\n".join(rendered_turns) if rendered_turns else ""


def fit_history(turns: Sequence[Turn], count_tokens: Callable[[str], int],
                budget: int) -> tuple[str, tuple[str, ...]]:
    """The history block within ``budget`` tokens, and notes on what was cut.

    Newest first: each turn whole, else compressed, else it and all older turns are out.
    """
    kept: list[str] = []
    notes: list[str] = []
    for number in range(len(turns), 0, -1):
        turn = turns[number - 1]
        full, short = turn.render(), turn.render(compressed=True)
        if count_tokens(render_history([full, *kept])) <= budget:
            kept.insert(0, full)
        elif count_tokens(render_history([short, *kept])) <= budget:
            kept.insert(0, short)
            notes.append(f"history: turn {number} cut to its answer's first sentence "
                         f"to fit the {budget}-token history share")
        else:
            span = f"turns 1-{number}" if number > 1 else "turn 1"
            notes.append(f"history: {span} left out, over the {budget}-token history share")
            break
    return render_history(kept), tuple(reversed(notes))


class Chat:
    """A conversation over ``assistant``'s documents: ``ask``/``stream`` a question,
    follow-ups included; ``turns`` so far; ``reset`` to start over. It runs the
    assistant's ``pipeline`` (retrieve -> fill -> answer), with the condensed query for
    retrieval and the fitted history in the working memory. ``rewrite`` (default
    ``config.retrieval.rewrite``): how a follow-up becomes a retrieval query.

        >>> chat = Chat(assistant, top_k=3)                       # doctest: +SKIP
    """

    def __init__(self, assistant: Assistant, *, top_k: int | None = None,
                 where: Filter | None = None, rewrite: str | None = None) -> None:
        self.pipeline = assistant.pipeline
        self.top_k = top_k
        self.where = where
        config = assistant.config.retrieval
        rewrite = rewrite or config.rewrite
        if rewrite not in REWRITES:
            raise RagmemError(f"unknown rewrite {rewrite!r}; use {' or '.join(REWRITES)}")
        self.rewrite = rewrite
        self.condense_terms = config.condense_terms
        self._turns: list[Turn] = []

    @property
    def turns(self) -> tuple[Turn, ...]:
        return tuple(self._turns)

    def reset(self) -> None:
        """Forget the conversation; the next question starts afresh."""
        self._turns.clear()

    def query(self, question: str) -> str:
        """What retrieval will search for when ``question`` is asked next."""
        generator = self.pipeline.answerer.generator
        if self.rewrite == "generator" and generator is not None:
            return rewrite_with(generator, question, self._turns)
        return condense(question, self._turns, self.condense_terms)

    def ask(self, question: str) -> Answer:
        query, filled = self._fill(question)
        answer = self.pipeline.answer(filled)
        self._turns.append(Turn(filled.buffer.question, query, answer))
        return answer

    def stream(self, question: str) -> Iterator[str | Answer]:
        """The answer's text as it is generated, then the ``Answer``; the turn is kept
        once the answer is complete."""
        query, filled = self._fill(question)
        for piece in self.pipeline.stream(filled):
            if isinstance(piece, Answer):
                self._turns.append(Turn(filled.buffer.question, query, piece))
            yield piece

    def _fill(self, question: str) -> tuple[str, Filled]:
        """The pipeline's fill for the condensed query, history first within its share;
        what the history lost is listed first in ``dropped``."""
        question = check_question(question)
        query = self.query(question)
        memory = self.pipeline.working_memory
        history, notes = fit_history(self._turns, memory.model.count_tokens,
                                     memory.history_budget(question))
        filled = self.pipeline.fill(question, self.top_k, self.where, query=query,
                                    history=history)
        buffer = replace(filled.buffer, dropped=notes + filled.buffer.dropped)
        return query, replace(filled, buffer=buffer)
