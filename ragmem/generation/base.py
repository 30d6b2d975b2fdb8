"""The two capabilities of a language model, as ragmem uses them.

``Generator`` writes: a prompt in the model's format (``render``), its length in the
model's tokens (``count_tokens``), and greedy text after it (``generate``, ``stream``).
The working memory and the generate answer mode need nothing more, so a test fake that
writes (``tests/conftest.py``'s ``EchoGenerator``) is a whole ``Generator``.

``Scorer`` scores what could follow a prompt: the log-probability of each token of a
continuation (``continuation_logprobs``), the distribution after a prefix
(``next_logprobs``), the model's hidden state at a continuation's end
(``continuation_states``), and summed option scores (``score_options``). The LM-scored
span ranker and multiple-choice evaluation need it; ``scorer_of`` says whether a
generator has it. Both backends (``ragmem.generation.transformers_model``,
``ragmem.generation.llamacpp``) write it once, on ``ragmem.generation.scoring.TokenScorer``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

Continuation = str | Sequence[int]  # text as it follows the prompt, or its token ids
# Prompt tokens re-tokenised with a continuation: enough to see any merge at the boundary.
TAIL_TOKENS = 4


class Generator(Protocol):
    """A model that writes text after a prompt. Decoding is greedy: the same prompt
    always gives the same text."""

    model_id: str

    @property
    def context_length(self) -> int:
        """The most tokens the model attends to, prompt and answer together."""
        ...

    def render(self, instruction: str, user: str) -> str:
        """The prompt string for a system ``instruction`` and a ``user`` message."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text``, as ``generate`` would encode it."""
        ...

    def generate(self, prompt: str, max_new_tokens: int) -> str:
        """Greedy text after ``prompt``, stripped."""
        ...

    def stream(self, prompt: str, max_new_tokens: int) -> Iterator[str]:
        """The text of ``generate`` in pieces: ``"".join(stream(p, n)) == generate(p, n)``."""
        ...


@dataclass(frozen=True, eq=False)
class PromptState:
    """A prompt run through the model once (``Scorer.prefill``): every continuation
    scored after it reuses its keys and values instead of running the prompt again.

    ``next_logprobs`` is the (vocab,) float32 log-distribution of the token after the
    prompt. ``cache`` is the backend's own: a transformers KV cache, an encoder output,
    a llama.cpp context position. Reading is thread-safe; nothing mutates a state.
    """

    prompt: str
    ids: tuple[int, ...]
    next_logprobs: np.ndarray = field(repr=False)
    cache: Any = field(repr=False)
    # The prompt's last tokens and the text they came from: a continuation is tokenised
    # together with them, so it gets the tokens it would have after the prompt.
    tail_text: str = field(default="", repr=False)
    tail_ids: tuple[int, ...] = field(default=(), repr=False)


# Methods only: ``isinstance`` on a runtime protocol looks up every member, and a
# property (``context_length``) would load the model to answer.
@runtime_checkable
class Scorer(Protocol):
    """A model that scores continuations of a prompt (see the module docstring)."""

    def render(self, instruction: str, user: str) -> str:
        """The prompt string, as ``Generator.render``: scores are read after it."""
        ...

    def prefill(self, prompt: str) -> PromptState:
        """Run ``prompt`` once; continuations of it then cost their own tokens."""
        ...

    def prefill_shared(self, prompts: Sequence[str]) -> list[PromptState]:
        """``prefill`` each prompt, their common first tokens run once."""
        ...

    def continuation_ids(self, state: PromptState, text: str) -> list[int]:
        """The tokens of ``text`` as they follow ``state``'s prompt."""
        ...

    def continuation_logprobs(self, state: PromptState,
                              continuations: Sequence[Continuation]) -> list[np.ndarray]:
        """Per-token log-probs (float32) of each continuation after the prompt."""
        ...

    def continuation_states(self, state: PromptState, continuations: Sequence[Continuation],
                            layers: Sequence[int]) -> tuple[list[np.ndarray], np.ndarray]:
        """``continuation_logprobs`` and the hidden states at each continuation's last
        token, (len(continuations), len(layers), hidden_size()); only where
        ``hidden_size()`` is not None."""
        ...

    def hidden_size(self) -> int | None:
        """The width of ``continuation_states``' states; None when there are none."""
        ...

    def next_logprobs(self, state: PromptState,
                      prefixes: Sequence[Sequence[int]]) -> np.ndarray:
        """(len(prefixes), vocab) log-probs of the token after each answer prefix."""
        ...

    def end_of_answer_ids(self) -> list[int]:
        """The tokens that end an answer (end of sequence; a chat model's end of turn)."""
        ...

    def score_options(self, prompt: str, options: Sequence[str]) -> list[float]:
        """Summed log-likelihood of each option's tokens after ``prompt``."""
        ...


def scorer_of(model: object) -> Scorer | None:
    """``model`` as a ``Scorer`` when it can score continuations, else None: what the
    model can do decides, never its name."""
    return model if isinstance(model, Scorer) else None


def stripped(pieces: Iterator[str]) -> Iterator[str]:
    """``pieces`` of generated text re-cut so they join to the stripped text: trailing
    whitespace is held back until more text follows, leading whitespace dropped."""
    pending, started = "", False
    for piece in pieces:
        text = pending + piece
        if not started:
            text = text.lstrip()
        body = text.rstrip()
        pending = text[len(body):]
        if body:
            started = True
            yield body


def greedy_token(logits: np.ndarray, seen: set[int], repetition_penalty: float) -> int:
    """The argmax token after transformers' repetition penalty, for the backends that
    decode themselves (NumPy, llama.cpp): a seen token's logit is divided by the
    penalty when positive, multiplied when negative.

        >>> greedy_token(np.array([2.0, 1.5, -1.0]), {0}, 2.0)
        1
    """
    if repetition_penalty != 1.0 and seen:
        logits = logits.copy()
        index = np.fromiter(seen, dtype=np.int64)
        picked = logits[index]
        logits[index] = np.where(picked > 0, picked / repetition_penalty,
                                 picked * repetition_penalty)
    return int(np.argmax(logits))
