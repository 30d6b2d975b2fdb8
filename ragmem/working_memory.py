"""Working memory: a bounded prompt buffer, counted in the generator's own tokens.

Room is reserved first for the instruction, the question and the answer
(``max_new_tokens``); the highest-scoring evidence fills the rest as whole sentences,
numbered ``[1]``, ``[2]``... so the answer can cite it. Whatever does not fit is
reported in ``Buffer.dropped``. In a chat, the conversation so far (rendered and fitted
by ``ragmem.conversation``) comes before the passages, within ``history_budget``: a
share of the budget, so the evidence always keeps the rest.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Protocol

from ragmem.config import WorkingMemoryConfig
from ragmem.errors import RagmemError
from ragmem.types import Citation, Passage, Sentence


class PromptModel(Protocol):
    """What the working memory needs from a generator."""

    @property
    def context_length(self) -> int: ...

    def count_tokens(self, text: str) -> int: ...

    def render(self, instruction: str, user: str) -> str: ...


@cache
def default_instruction() -> str:
    return resources.files("ragmem").joinpath("prompts/instruction.txt").read_text().strip()


@dataclass(frozen=True)
class Buffer:
    question: str
    prompt: str
    passages: tuple[Passage, ...]  # as numbered in the prompt, [1] first
    dropped: tuple[str, ...]
    tokens_used: int
    token_budget: int  # for the prompt: the generator's window less max_new_tokens

    def citations_in(self, answer: str) -> tuple[Citation, ...]:
        """Citations for the ``[n]`` markers in ``answer``, each pointing at the sentence
        of passage n that shares most words with the answer. No marker, no citation: a
        citation is only made where the answer says what it rests on."""
        numbers = [int(n) for n in re.findall(r"\[(\d+)\]", answer)]
        numbers = [n for n in dict.fromkeys(numbers) if 1 <= n <= len(self.passages)]
        return tuple(_cite(n, self.passages[n - 1], answer) for n in numbers)


def suggestion(answer: str, passages: Sequence[Passage]) -> Citation | None:
    """The evidence sentence sharing most words with ``answer``: where a reader could
    check it. A suggestion, not a citation: nothing says the answer rests on it."""
    if not passages or not _words(answer):
        return None
    number = _best_passage(answer, passages)
    return _cite(number, passages[number - 1], answer)


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def _best_sentence(answer: str, sentences: Sequence[Sentence]) -> Sentence:
    words = _words(re.sub(r"\[\d+\]", " ", answer))
    return max(sentences, key=lambda s: len(words & _words(s.text)))


def _best_passage(answer: str, passages: Sequence[Passage]) -> int:
    words = _words(answer)
    scores = [max(len(words & _words(s.text)) for s in p.sentences) for p in passages]
    return scores.index(max(scores)) + 1


def _cite(number: int, passage: Passage, answer: str) -> Citation:
    s = _best_sentence(answer, passage.sentences)
    return Citation(number, passage.doc_id, passage.path, s.start, s.end, s.text,
                    passage.section_at(s.start))


def render_evidence(passages: Sequence[Passage]) -> str:
    return "\n\n".join(f"[{i}] {p.text}" for i, p in enumerate(passages, start=1))


def render_user(question: str, passages: Sequence[Passage], history: str = "") -> str:
    conversation = f"{history}\n\n" if history else ""
    return f"{conversation}Passages:\n{render_evidence(passages)}\n\nQuestion: {question}"


def order_passages(passages: Sequence[Passage], order: str) -> list[Passage]:
    """Arrange passages (given best first) for the prompt.

    >>> [p for p in order_passages([1, 2, 3, 4, 5], "edges")]  # doctest: +SKIP
    [1, 3, 5, 4, 2]
    """
    if order == "score":
        return list(passages)
    if order == "edges":
        return [*passages[0::2], *reversed(passages[1::2])]
    if order == "document":
        return sorted(passages, key=lambda p: (p.doc_id, p.start))
    raise RagmemError(f"unknown passage order {order!r}; use score, edges or document")


class WorkingMemory:
    def __init__(self, model: PromptModel, config: WorkingMemoryConfig | None = None,
                 instruction: str | None = None) -> None:
        self.model = model
        self.config = config or WorkingMemoryConfig()
        self.instruction = instruction or default_instruction()

    @property
    def token_budget(self) -> int:
        """Tokens the prompt may take: the smaller of the configured budget and the
        generator's context, less the room kept for the answer."""
        window = self.model.context_length
        if self.config.token_budget is not None:
            window = min(window, self.config.token_budget)
        return window - self.config.max_new_tokens

    def history_budget(self, question: str) -> int:
        """Tokens the conversation so far may take: its ``history_share`` of the budget,
        less whatever the question itself would take from that share."""
        share = int(self.token_budget * self.config.history_share)
        return max(0, min(share, self.token_budget - self._count(question, [])))

    def _count(self, question: str, passages: Sequence[Passage], history: str = "") -> int:
        return self.model.count_tokens(self._prompt(question, passages, history))

    def _prompt(self, question: str, passages: Sequence[Passage], history: str = "") -> str:
        return self.model.render(self.instruction, render_user(question, passages, history))

    def fill(self, question: str, passages: Sequence[Passage], history: str = "") -> Buffer:
        """Best passages first; a passage that does not fit whole is trimmed from its far
        ends (neighbours before the matched core), down to a single sentence. ``history``
        (a rendered conversation) must fit ``history_budget(question)``."""
        budget = self.token_budget
        if history and self.model.count_tokens(history) > self.history_budget(question):
            raise RagmemError(
                f"the conversation history takes {self.model.count_tokens(history)} tokens, "
                f"over its {self.history_budget(question)}-token share of the prompt; "
                "fit it first with ragmem.conversation.fit_history")
        base = self._count(question, [], history)
        if base > budget:
            raise RagmemError(
                f"the question alone takes {base} tokens, over the {budget}-token prompt "
                "budget; shorten the question or raise working_memory.token_budget")
        kept: list[Passage] = []
        dropped: list[str] = []
        used = base
        for p in passages:
            fitted = self._fit(question, kept, p, budget, history)
            label = f"{p.doc_id}:{p.start}-{p.end} (score {p.score:.3f})"
            if fitted is None:
                dropped.append(f"{label}: no sentence fits the {budget - used} tokens left")
                continue
            if len(fitted.sentences) < len(p.sentences):
                cut = len(p.sentences) - len(fitted.sentences)
                dropped.append(f"{label}: {cut} of {len(p.sentences)} sentences trimmed "
                               "to fit the budget")
            kept.append(fitted)
            used = self._count(question, kept, history)
        kept = order_passages(kept, self.config.order)
        prompt = self._prompt(question, kept, history)
        tokens = self.model.count_tokens(prompt)
        while tokens > budget and kept:  # reordering can shift token boundaries slightly
            dropped.append(f"{kept[-1].doc_id}:{kept[-1].start}-{kept[-1].end}: dropped after "
                           "reordering pushed the prompt over budget")
            kept = kept[:-1]
            prompt = self._prompt(question, kept, history)
            tokens = self.model.count_tokens(prompt)
        return Buffer(question, prompt, tuple(kept), tuple(dropped), tokens, budget)

    def _fit(self, question: str, kept: list[Passage], p: Passage,
             budget: int, history: str = "") -> Passage | None:
        sentences = list(p.sentences)
        from_front = False
        while sentences:
            candidate = Passage(p.doc_id, p.path, sentences[0].start, sentences[-1].end,
                                p.score, tuple(sentences), p.sections)
            if self._count(question, [*kept, candidate], history) <= budget:
                return candidate
            # Neighbours were added on both sides of the matched window: shed them evenly.
            sentences.pop(0 if from_front else -1)
            from_front = not from_front
        return None
