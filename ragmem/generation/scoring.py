"""Continuation scoring, written once for every backend (the ``Scorer`` capability of
``ragmem.generation.base``).

A prompt runs through the model once (``prefill``); every continuation scored after it
attends to its cached keys and values, and all continuations of one call run in one
forward over a trie of their tokens (``token_trie``), shared prefixes once:

    >>> state = generator.prefill(prompt)                                # doctest: +SKIP
    >>> generator.continuation_logprobs(state, [" Paris", " Berlin"])    # doctest: +SKIP
    [array([-0.4], dtype=float32), array([-3.1], dtype=float32)]
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from ragmem.generation.base import Continuation, PromptState
from ragmem.generation.token_trie import TokenTrie, chunks, common_prefix


class TokenScorer(ABC):
    """The ``Scorer`` capability, written once on a backend's steps: ``_prefill`` (run
    the prompt) and ``_node_logprobs`` (run a trie of continuation tokens after it),
    with the tokenizer's ``_plain_ids`` and ``_prompt_tokens``. A backend whose
    ``_node_forward`` also returns hidden states says so with ``hidden_size``."""

    resumes_prompts = False  # whether _resume can run more prompt after a _prefill cache

    def hidden_size(self) -> int | None:
        """The width of ``continuation_states``' hidden states; None without them."""
        return None

    @abstractmethod
    def render(self, instruction: str, user: str) -> str:
        """The prompt string for a system ``instruction`` and a ``user`` message."""

    @abstractmethod
    def _prefill(self, ids: list[int]) -> tuple[np.ndarray, Any]:
        """The (vocab,) log-probs after the prompt ``ids``, and the state to reuse."""

    @abstractmethod
    def _node_logprobs(self, state: PromptState, trie: TokenTrie,
                       nodes: Sequence[int]) -> np.ndarray:
        """(len(nodes), vocab) float32 log-probs of the token after each trie node, the
        prompt before the trie."""

    @abstractmethod
    def _plain_ids(self, text: str) -> list[int]:
        """``text``'s tokens, no special tokens added."""

    @abstractmethod
    def _prompt_tokens(self, prompt: str) -> tuple[list[int], str, tuple[int, ...]]:
        """The prompt's ids as ``generate`` encodes them, and its tail (see PromptState)."""

    def _option_ids(self, state: PromptState, option: str) -> list[int]:
        """The tokens ``score_options`` scores for ``option``."""
        return self.continuation_ids(state, option)

    # -- scoring continuations of one prompt -------------------------------------------
    def prefill(self, prompt: str) -> PromptState:
        """Run ``prompt`` through the model once; score continuations of it with
        ``continuation_logprobs`` and ``next_logprobs`` at the cost of their own tokens."""
        ids, tail_text, tail_ids = self._prompt_tokens(prompt)
        if not ids:
            raise ValueError("prefill needs a non-empty prompt")
        next_logprobs, cache = self._prefill(ids)
        return PromptState(prompt, tuple(ids), next_logprobs, cache, tail_text, tail_ids)

    def prefill_shared(self, prompts: Sequence[str]) -> list[PromptState]:
        """``prefill`` each of ``prompts``, running their common first tokens once: prompts
        that differ only at the end (one context, two questions) cost the context once
        plus their own ends. Each state is the one ``prefill`` would give, up to float
        rounding. A backend that cannot resume a prompt (``resumes_prompts`` false)
        prefills each in full."""
        if len(prompts) < 2 or not self.resumes_prompts:
            return [self.prefill(p) for p in prompts]
        encoded = [self._prompt_tokens(p) for p in prompts]
        shared = common_prefix([ids for ids, _, _ in encoded])
        shared = min([shared, *(len(ids) - 1 for ids, _, _ in encoded)])  # each keeps a token
        if shared < 1:
            return [self.prefill(p) for p in prompts]
        _, cache = self._prefill(encoded[0][0][:shared])
        out = []
        for prompt, (ids, tail_text, tail_ids) in zip(prompts, encoded, strict=True):
            next_logprobs, resumed = self._resume(cache, ids[shared:])
            out.append(PromptState(prompt, tuple(ids), next_logprobs, resumed, tail_text,
                                   tail_ids))
        return out

    def _resume(self, cache: Any, ids: list[int]) -> tuple[np.ndarray, Any]:
        """``_prefill``'s result for the cached prompt followed by ``ids``, leaving
        ``cache`` as it was."""
        raise NotImplementedError(f"{type(self).__name__} cannot resume a prompt")

    def continuation_ids(self, state: PromptState, text: str) -> list[int]:
        """The tokens of ``text`` as they follow ``state``'s prompt: tokenised together with
        the prompt's last tokens, so a BPE merge across the boundary is what the model
        would see (after a chat template's assistant turn, an answer starts with no space;
        after ``Answer:``, pass ``" Paris"``). When the joint tokens would change the
        prompt's own last tokens, ``text`` is tokenised alone."""
        if state.tail_ids:
            joint = self._plain_ids(state.tail_text + text)
            k = len(state.tail_ids)
            if tuple(joint[:k]) == state.tail_ids and len(joint) > k:
                return joint[k:]
        ids = self._plain_ids(text)
        if not ids:
            raise ValueError(f"continuation {text!r} has no tokens; pass non-empty text")
        return ids

    def continuation_logprobs(self, state: PromptState,
                              continuations: Sequence[Continuation]) -> list[np.ndarray]:
        """Per-token log-probs (float32) of each continuation after ``state``'s prompt.
        A continuation is text (see ``continuation_ids``) or token ids. All of them run
        in one forward over a trie of their tokens (shared prefixes once), attending to
        the prompt's cached keys and values."""
        return self._score_continuations(state, continuations, ())[0]

    def continuation_states(self, state: PromptState, continuations: Sequence[Continuation],
                            layers: Sequence[int]) -> tuple[list[np.ndarray], np.ndarray]:
        """``continuation_logprobs``, and the model's hidden states at each continuation's
        last token, from the same forward: (len(continuations), len(layers), hidden)
        float32, ``layers`` counted as transformers does (0: the embeddings; -1: the
        last, after the final norm). What a small trained head reads: the state after
        "question, context, span, end of answer" is the model's view of the span as the
        answer. Only backends with a ``hidden_size`` have it."""
        if self.hidden_size() is None:
            raise NotImplementedError(f"{type(self).__name__} does not expose hidden states")
        logprobs, states = self._score_continuations(state, continuations, tuple(layers))
        assert states is not None
        return logprobs, states

    def _score_continuations(self, state: PromptState, continuations: Sequence[Continuation],
                             layers: tuple[int, ...]
                             ) -> tuple[list[np.ndarray], np.ndarray | None]:
        sequences = [self._tokens(state, c) for c in continuations]
        if any(not s for s in sequences):
            raise ValueError("continuations must be non-empty")
        out = [np.empty(len(s), dtype=np.float32) for s in sequences]
        hidden: np.ndarray | None = None
        for chunk in chunks(sequences):
            trie = TokenTrie.build([sequences[i] for i in chunk])
            # Token j's log-prob is read from the distribution after its parent node.
            parents = sorted({trie.parents[n] for path in trie.paths for n in path} - {-1})
            rows = np.empty((0, 0), dtype=np.float32)
            if parents or layers:  # a trie of one-token continuations needs no forward
                lasts = [path[-1] for path in trie.paths]
                rows, states = self._node_forward(state, trie, parents, layers, lasts)
                if layers:
                    if hidden is None:
                        hidden = np.empty((len(sequences), *states.shape[1:]),
                                          dtype=np.float32)
                    hidden[chunk] = states
            row_of = {node: r for r, node in enumerate(parents)}
            for i, path in zip(chunk, trie.paths, strict=True):
                for j, node in enumerate(path):
                    parent = trie.parents[node]
                    dist = state.next_logprobs if parent < 0 else rows[row_of[parent]]
                    out[i][j] = dist[trie.tokens[node]]
        return out, hidden

    def _node_forward(self, state: PromptState, trie: TokenTrie, nodes: Sequence[int],
                      layers: tuple[int, ...], at: Sequence[int]
                      ) -> tuple[np.ndarray, np.ndarray]:
        """``_node_logprobs`` for ``nodes``, and (len(at), len(layers), hidden) states of
        the trie nodes ``at`` (empty when ``layers`` is)."""
        if layers:
            raise NotImplementedError(f"{type(self).__name__} does not expose hidden states")
        return self._node_logprobs(state, trie, nodes), np.empty((0,), dtype=np.float32)

    def next_logprobs(self, state: PromptState, prefixes: Sequence[Sequence[int]]) -> np.ndarray:
        """(len(prefixes), vocab) float32 log-probs of the token after each token prefix
        of an answer (``[]``: right after the prompt); what a beam search needs per step."""
        out = np.empty((len(prefixes), len(state.next_logprobs)), dtype=np.float32)
        out[:] = state.next_logprobs
        pending = [i for i, p in enumerate(prefixes) if len(p)]
        sequences = [list(prefixes[i]) for i in pending]
        for chunk in chunks(sequences):
            trie = TokenTrie.build([sequences[i] for i in chunk])
            lasts = sorted({path[-1] for path in trie.paths})
            rows = self._node_logprobs(state, trie, lasts)
            row_of = {node: r for r, node in enumerate(lasts)}
            for i, path in zip(chunk, trie.paths, strict=True):
                out[pending[i]] = rows[row_of[path[-1]]]
        return out

    def end_of_answer_ids(self) -> list[int]:
        """The tokens that end an answer (end of sequence; a chat model's end of turn).
        Scoring a span followed by them asks whether the answer stops right there."""
        raise NotImplementedError(f"{type(self).__name__} does not say where an answer ends")

    def score_options(self, prompt: str, options: Sequence[str]) -> list[float]:
        """Summed log-likelihood of each option's tokens given ``prompt`` (the prompt is
        run once; see ``prefill``)."""
        state = self.prefill(prompt)
        if not options:
            return []
        ids = [self._option_ids(state, option) for option in options]
        return [float(lp.sum(dtype=np.float64)) for lp in self.continuation_logprobs(state, ids)]

    def _tokens(self, state: PromptState, continuation: Continuation) -> list[int]:
        if isinstance(continuation, str):
            return self.continuation_ids(state, continuation)
        return [int(t) for t in continuation]
