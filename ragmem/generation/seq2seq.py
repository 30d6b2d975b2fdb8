"""Encoder-decoder transformers models (AutoModelForSeq2SeqLM), such as T5 or BART.

The prompt is the encoder's; an answer, and every continuation scored, is the
decoder's from its start token, so nothing of the prompt's tokens precedes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ragmem.generation.base import PromptState
from ragmem.generation.token_trie import TokenTrie
from ragmem.generation.transformers_model import TransformersGenerator


class Seq2SeqGenerator(TransformersGenerator):
    """An encoder-decoder model (AutoModelForSeq2SeqLM), such as T5 or BART."""

    # T5 has relative positions and no hard limit; 512 is what it was trained on.
    default_context_length = 512
    encoder_decoder = True

    @staticmethod
    def _auto_class() -> Any:
        from transformers import AutoModelForSeq2SeqLM

        return AutoModelForSeq2SeqLM

    def render(self, instruction: str, user: str) -> str:
        return f"{instruction}\n\n{user}"

    def _prompt_tokens(self, prompt: str) -> tuple[list[int], str, tuple[int, ...]]:
        # The answer is the decoder's: nothing of the prompt precedes it.
        self._loaded()
        return self._encode(prompt)["input_ids"][0].tolist(), "", ()

    def _option_ids(self, state: PromptState, option: str) -> list[int]:
        # With its EOS: the model must also say the answer ends there.
        ids = list(self._tokenizer(option)["input_ids"])
        if not self._plain_ids(option):
            raise ValueError(f"continuation {option!r} has no tokens; pass non-empty text")
        return ids

    def _prefill(self, ids: list[int]) -> tuple[np.ndarray, Any]:
        import torch

        model = self._loaded()
        input_ids = torch.tensor([ids], device=model.device)
        mask = torch.ones_like(input_ids)
        with torch.inference_mode():
            encoded = model.get_encoder()(input_ids=input_ids, attention_mask=mask)
        cache = (encoded.last_hidden_state, mask)
        return self._decode(cache, [[]])[0], cache

    def _node_logprobs(self, state: PromptState, trie: TokenTrie,
                       nodes: Sequence[int]) -> np.ndarray:
        prefixes = []
        for node in nodes:
            path = []
            while node >= 0:
                path.append(trie.tokens[node])
                node = trie.parents[node]
            prefixes.append(path[::-1])
        return self._decode(state.cache, prefixes)

    def _decode(self, cache: Any, prefixes: Sequence[Sequence[int]]) -> np.ndarray:
        """Decoder log-probs after each prefix: one right-padded row each, the encoder
        output shared (expanded, not copied) across the rows."""
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        model = self._loaded()
        hidden, mask = cache
        start = model.config.decoder_start_token_id
        pad = model.config.pad_token_id or 0
        width = 1 + max(len(p) for p in prefixes)
        rows = [[start, *p] + [pad] * (width - 1 - len(p)) for p in prefixes]
        n = len(rows)
        with torch.inference_mode():
            logits = model(
                encoder_outputs=BaseModelOutput(last_hidden_state=hidden.expand(n, -1, -1)),
                attention_mask=mask.expand(n, -1),
                decoder_input_ids=torch.tensor(rows, device=hidden.device),
                use_cache=False,
            ).logits
            last = logits[torch.arange(n), torch.tensor([len(p) for p in prefixes])]
            return torch.log_softmax(last.float(), dim=-1).cpu().numpy()
