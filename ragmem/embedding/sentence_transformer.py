"""The PyTorch backend: a sentence-transformers model, fp32 on CPU, fp16 on CUDA."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from ragmem.config import DEFAULT_EMBEDDER, EmbedderConfig
from ragmem.embedding.base import CountsTokens, TokenCounter, cuda_available, normalised
from ragmem.models import load_error, resolve


class SentenceTransformerEmbedder(CountsTokens):
    """A sentence-transformers model, loaded on first use (embed, count_tokens, dim)."""

    def __init__(
        self, model: str = DEFAULT_EMBEDDER, batch_size: int = EmbedderConfig.batch_size,
        device: str | None = None
    ) -> None:
        self.model_id = model
        self.batch_size = batch_size
        self._device = device
        self._model: Any = None
        self._counter: TokenCounter | None = None
        self._lock = threading.Lock()

    @property
    def precision(self) -> str:
        return "fp16" if self._resolved_device().startswith("cuda") else "fp32"

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
        return normalised(vectors)

    def _resolved_device(self) -> str:
        if self._device is None:
            self._device = "cuda" if cuda_available() else "cpu"
        return self._device

    def _loaded(self) -> Any:
        with self._lock:
            if self._model is None:
                self._model, self._counter = self._load()
            return self._model

    def _load(self) -> tuple[Any, TokenCounter]:
        from sentence_transformers import SentenceTransformer

        resolved = resolve(self.model_id, "embedder")
        device = self._resolved_device()
        try:
            model = SentenceTransformer(resolved.path, device=device)
        except (OSError, ValueError) as error:  # not found, or not a model
            raise load_error(resolved, error) from error
        if device.startswith("cuda"):
            model.half()
        return model, TokenCounter(model.tokenizer.backend_tokenizer)
