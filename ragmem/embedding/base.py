"""The ``Embedder`` interface, and what its backends share: normalising vectors, counting
tokens untruncated, and the precision a new index gets by default."""

from __future__ import annotations

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


def cuda_available() -> bool:
    """Whether torch sees a GPU; imports torch only on a machine with an NVIDIA driver."""
    if not Path("/proc/driver/nvidia/version").exists():
        return False
    import torch

    return bool(torch.cuda.is_available())


def default_precision(device: str | None = None) -> str:
    """What ``precision="auto"`` means for a new index: fp16 on a GPU, fp32 on a CPU.

    int8 stays opt-in on CPUs: on AVX2 without VNNI it embeds 1.3x faster than fp32 at a
    cosine of 0.995-0.997 to the fp32 vectors (eval/reports/int8-embedding.md).
    """
    if device is not None:
        return "fp16" if device.startswith("cuda") else "fp32"
    return "fp16" if cuda_available() else "fp32"
