"""The ``Embedder`` interface, and what its backends share: normalising vectors, counting
tokens untruncated, and the precision a new index gets by default."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from tokenizers import Tokenizer

PRECISIONS = ("fp32", "fp16", "int8")


class Embedder(Protocol):
    @property
    def model_id(self) -> str: ...

    @property
    def precision(self) -> str:
        """What made the vectors: "fp32", "fp16" or "int8" (stored in the index)."""
        ...

    @property
    def dim(self) -> int: ...

    @property
    def max_tokens(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 array of shape (len(texts), dim), each row of unit length."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text`` untruncated, special tokens included."""
        ...


def normalised(vectors: Any) -> np.ndarray:
    # Normalise here, in float32: on CUDA the model runs in fp16.
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def token_counter_of(tokenizer: Tokenizer) -> Tokenizer:
    # A private copy of the fast tokenizer for counting: the shared one keeps whatever
    # truncation the last encode set, and transformers warns about long inputs.
    counter = tokenizer.__class__.from_str(tokenizer.to_str())
    counter.no_truncation()
    counter.no_padding()
    return counter


class TokenCounter:
    """``count_tokens`` of a fast tokenizer (special tokens included, untruncated), and
    for chunking the character spans of a whole text's tokens (``spans``): a document is
    tokenised once and any run of its sentences counted from that.

    ``spans`` is offered only where counting a piece from the whole text's tokens gives
    what tokenising the piece alone gives: a WordPiece model after BERT's pre-tokenizer
    (every word, punctuation mark and CJK character tokenised on its own, e.g.
    all-MiniLM-L6-v2). A byte-level BPE or SentencePiece model tokenises a word
    differently after a space, so it counts pieces one by one, as before.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = token_counter_of(tokenizer)
        self.special = len(self._tokenizer.encode("", add_special_tokens=True).ids)
        spec = json.loads(self._tokenizer.to_str())
        self.exact_spans = (spec.get("model") or {}).get("type") == "WordPiece" and \
            (spec.get("pre_tokenizer") or {}).get("type") == "BertPreTokenizer"
        unknown = (spec.get("model") or {}).get("unk_token")
        self._unknown = self._tokenizer.token_to_id(unknown) if unknown else None

    def __call__(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=True).ids)

    def unknown_share(self, text: str) -> float:
        """The share of ``text``'s tokens that are the unknown token (0 for a tokenizer
        without one, such as a byte-level BPE, which reads any text)."""
        if self._unknown is None:
            return 0.0
        ids = self._tokenizer.encode(text, add_special_tokens=False).ids
        return sum(i == self._unknown for i in ids) / len(ids) if ids else 0.0

    def spans(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        """Per text, the (start, end) character offsets of its tokens, no special tokens;
        empty lists where ``exact_spans`` is false (then count pieces with ``__call__``)."""
        if not self.exact_spans:
            return [[] for _ in texts]
        return [e.offsets for e in self._tokenizer.encode_batch(list(texts),
                                                                add_special_tokens=False)]


def cuda_available() -> bool:
    """Whether torch sees a GPU; imports torch only on a machine with an NVIDIA driver."""
    if not Path("/proc/driver/nvidia/version").exists():
        return False
    import torch

    return bool(torch.cuda.is_available())


def default_precision(device: str | None = None, backend: str = "auto") -> str:
    """What ``precision="auto"`` means for a new index: fp16 on a GPU; on a CPU int8 on
    OpenVINO (fp32 where openvino is missing or the torch backend is asked for).

    On the full SciFact test (5,183 documents, 300 claims) int8 ranks within 0.005
    nDCG@10 of fp32, dense and hybrid, and indexes 2.6x as fast (eval/reports/precision.md);
    an index built at another precision keeps its own (the manifest records it).
    """
    on_gpu = device.startswith("cuda") if device is not None else cuda_available()
    if on_gpu:
        return "fp16"
    if backend == "torch" or importlib.util.find_spec("openvino") is None:
        return "fp32"
    return "int8"


class CountsTokens:
    """``count_tokens`` and ``token_counter`` for an embedder whose ``_loaded`` sets
    ``_counter`` (one place for both backends)."""

    _counter: TokenCounter | None

    def _loaded(self) -> object:
        raise NotImplementedError

    def count_tokens(self, text: str) -> int:
        return self.token_counter(text)

    @property
    def token_counter(self) -> TokenCounter:
        """``count_tokens``, with token spans for chunking (``TokenCounter``)."""
        self._loaded()
        assert self._counter is not None
        return self._counter
