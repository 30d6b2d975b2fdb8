"""Decoder-only transformers models (AutoModelForCausalLM), with their chat template.

Scoring runs every continuation of a trie in one forward after the cached prompt, each
token attending to the prompt and its own ancestors only (a 4D mask), and can return
the hidden states there (``continuation_states``).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np

from ragmem.generation.base import PromptState
from ragmem.generation.token_trie import TokenTrie
from ragmem.generation.transformers_model import TransformersGenerator


class CausalGenerator(TransformersGenerator):
    """A decoder-only model (AutoModelForCausalLM); its chat template when it has one."""

    @staticmethod
    def _auto_class() -> Any:
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM

    def render(self, instruction: str, user: str) -> str:
        self._loaded()
        if getattr(self._tokenizer, "chat_template", None):
            messages = [
                {"role": "system", "content": instruction},
                {"role": "user", "content": user},
            ]
            return str(
                self._tokenizer.apply_chat_template(
                    messages, add_generation_prompt=True, tokenize=False
                )
            )
        return f"{instruction}\n\n{user}\nAnswer:"

    def _adds_special_tokens(self, text: str) -> bool:
        # A rendered chat template already starts with BOS; don't add a second one.
        bos = self._tokenizer.bos_token
        return not (bos and text.startswith(bos))

    def _prefill(self, ids: list[int]) -> tuple[np.ndarray, Any]:
        import torch
        from transformers import DynamicCache

        model = self._loaded()
        cache = DynamicCache(config=model.config)
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([ids], device=model.device), use_cache=True,
                           logits_to_keep=1, **{_cache_argument(model): cache}).logits
            return torch.log_softmax(logits[0, -1].float(), dim=-1).cpu().numpy(), cache

    resumes_prompts = True

    def _resume(self, cache: Any, ids: list[int]) -> tuple[np.ndarray, Any]:
        import torch

        model = self._loaded()
        resumed = _fork(cache)  # positions follow from the cache's length
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([ids], device=model.device), use_cache=True,
                           logits_to_keep=1, **{_cache_argument(model): resumed}).logits
            return torch.log_softmax(logits[0, -1].float(), dim=-1).cpu().numpy(), resumed

    def _node_logprobs(self, state: PromptState, trie: TokenTrie,
                       nodes: Sequence[int]) -> np.ndarray:
        """All trie nodes in one row after the cached prompt, each at position
        ``len(prompt) + depth`` and attending to the prompt and its own ancestors only
        (a 4D mask): a continuation sees exactly what it would see alone."""
        return self._node_forward(state, trie, nodes, (), ())[0]

    def hidden_size(self) -> int | None:
        return int(self._loaded().config.hidden_size)

    def _node_forward(self, state: PromptState, trie: TokenTrie, nodes: Sequence[int],
                      layers: tuple[int, ...], at: Sequence[int]
                      ) -> tuple[np.ndarray, np.ndarray]:
        import torch

        model = self._loaded()
        device = model.device
        n, prompt_len = len(trie.tokens), len(state.ids)
        allowed = np.ones((n, prompt_len + n), dtype=bool)
        allowed[:, prompt_len:] = trie.ancestry()
        dtype = model.dtype
        mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(
            torch.from_numpy(~allowed), torch.finfo(dtype).min
        )
        positions = [prompt_len + d for d in trie.depths]
        # logits_to_keep must not be empty (it would keep every row): one spare row.
        keep = list(nodes) or [0]
        with torch.inference_mode():
            output = model(
                input_ids=torch.tensor([trie.tokens], device=device),
                position_ids=torch.tensor([positions], device=device),
                attention_mask=mask[None, None].to(device),
                use_cache=True,
                logits_to_keep=torch.tensor(keep, device=device),
                output_hidden_states=bool(layers),
                **{_cache_argument(model): _fork(state.cache)},
            )
            logprobs = torch.log_softmax(output.logits[0].float(), dim=-1).cpu().numpy()
            logprobs = logprobs[:len(nodes)]
            if not layers:
                return logprobs, np.empty((0,), dtype=np.float32)
            rows = torch.tensor(list(at), device=device)
            states = torch.stack([output.hidden_states[k][0, rows].float() for k in layers],
                                 dim=1)
            return logprobs, states.cpu().numpy()


def _cache_argument(model: Any) -> str:
    """transformers 5 renamed ``past_key_values`` to ``cache``; take what the model has."""
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _fork(cache: Any) -> Any:
    """A cache that can grow without touching ``cache``: its layers append by rebinding
    (``torch.cat``), so copies of the layer objects share the prompt's tensors unchanged."""
    fork = copy.copy(cache)
    fork.layers = [copy.copy(layer) for layer in cache.layers]
    return fork
