"""Texts -> vectors: the ``Embedder`` interface and its sentence-transformers backend.

    >>> embedder = SentenceTransformerEmbedder()      # loads nothing yet
    >>> embedder.embed(["a cat", "a dog"]).shape      # doctest: +SKIP
    (2, 384)

Vectors are float32 and L2-normalised, so an inner product is a cosine similarity.
``model_id`` is stored in index manifests: an index only opens with the embedder
that built it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ragmem.config import DEFAULT_EMBEDDER, EmbedderConfig
from ragmem.models import load_error, resolve

if TYPE_CHECKING:
    from tokenizers import Tokenizer


class Embedder(Protocol):
    @property
    def model_id(self) -> str: ...

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


class SentenceTransformerEmbedder:
    """A sentence-transformers model, loaded on first use (embed, count_tokens, dim)."""

    def __init__(
        self, model: str = DEFAULT_EMBEDDER, batch_size: int = 64, device: str | None = None
    ) -> None:
        self.model_id = model
        self.batch_size = batch_size
        self._device = device
        self._model: Any = None
        self._counter: Tokenizer | None = None
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        return int(self._loaded().get_embedding_dimension())

    @property
    def max_tokens(self) -> int:
        return int(self._loaded().max_seq_length)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        model = self._loaded()
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = model.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        # Normalise here, in float32: on CUDA the model runs in fp16.
        vectors = np.asarray(vectors, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

    def count_tokens(self, text: str) -> int:
        self._loaded()
        assert self._counter is not None
        return len(self._counter.encode(text, add_special_tokens=True).ids)

    def _loaded(self) -> Any:
        with self._lock:
            if self._model is None:
                self._model, self._counter = self._load()
            return self._model

    def _load(self) -> tuple[Any, Tokenizer]:
        import torch
        from sentence_transformers import SentenceTransformer

        resolved = resolve(self.model_id, "embedder")
        device = self._device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            model = SentenceTransformer(resolved.path, device=device)
        except (OSError, ValueError) as error:  # not found, or not a model
            raise load_error(resolved, error) from error
        if device.startswith("cuda"):
            model.half()
        # A private copy of the fast tokenizer for counting: the shared one keeps whatever
        # truncation the last encode set, and transformers warns about long inputs.
        counter = model.tokenizer.backend_tokenizer.__class__.from_str(
            model.tokenizer.backend_tokenizer.to_str()
        )
        counter.no_truncation()
        counter.no_padding()
        return model, counter


def from_config(cfg: EmbedderConfig) -> Embedder:
    return SentenceTransformerEmbedder(cfg.model, batch_size=cfg.batch_size, device=cfg.device)
