"""Optional second retrieval stage: a cross-encoder rescores the first stage's windows.

A bi-encoder (the embedder) and BM25 score question and window apart; a cross-encoder
reads them together, which ranks better and costs one forward pass per pair, so it
only sees the first ``rerank_candidates`` windows:

    >>> reranker = CrossEncoderReranker("cross-encoder/ms-marco-MiniLM-L-6-v2")  # doctest: +SKIP
    >>> rerank(reranker, "Who is Irene Adler?", hits)[:5]                     # doctest: +SKIP

Off by default (``RetrievalConfig.reranker = None``); any sentence-transformers
``CrossEncoder`` id or local directory works. The model loads on first use.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from ragmem.config import RetrievalConfig
from ragmem.errors import ModelError
from ragmem.types import Hit

_FIX = ("pass a local cross-encoder directory or an id already in your Hugging Face "
        "cache, e.g. --reranker cross-encoder/ms-marco-MiniLM-L-6-v2")


class Reranker(Protocol):
    """Relevance of each text to the question; higher is better, any scale."""

    @property
    def model_id(self) -> str: ...

    def score(self, question: str, texts: Sequence[str]) -> list[float]: ...


def rerank(reranker: Reranker, question: str, hits: Sequence[Hit]) -> list[Hit]:
    """``hits`` best first by the reranker, each carrying the reranker's score. Ties keep
    the first stage's order (the sort is stable)."""
    if not hits:
        return []
    scores = reranker.score(question, [h.text for h in hits])
    order = sorted(range(len(hits)), key=lambda i: -scores[i])
    return [replace(hits[i], score=float(scores[i])) for i in order]


class CrossEncoderReranker:
    """A sentence-transformers ``CrossEncoder`` (any id or local dir), loaded on first use."""

    def __init__(self, model: str, batch_size: int = 32, device: str | None = None) -> None:
        self.model_id = model
        self.batch_size = batch_size
        self._device = device
        self._model: Any = None
        self._lock = threading.Lock()

    def score(self, question: str, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        scores = self._loaded().predict([(question, t) for t in texts],
                                        batch_size=self.batch_size, show_progress_bar=False,
                                        convert_to_numpy=True)
        return [float(s) for s in scores.reshape(len(texts), -1)[:, 0]]

    def _loaded(self) -> Any:
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    def _load(self) -> Any:
        name = self.model_id
        local = Path(name).expanduser()
        if name.startswith(("/", "./", "../", "~")) and not local.is_dir():
            raise ModelError(f"no cross-encoder directory at {name}; {_FIX}")
        try:
            import torch
            from sentence_transformers import CrossEncoder
        except ImportError as error:
            raise ModelError(f"reranking needs sentence-transformers ({error}); "
                             "pip install sentence-transformers") from error
        device = self._device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            return CrossEncoder(str(local) if local.is_dir() else name, device=device)
        except (OSError, ValueError) as error:  # not found, or not a model
            lines = str(error).strip().splitlines()
            reason = lines[0][:200] if lines else type(error).__name__
            raise ModelError(f"cannot load reranker {name} ({reason}); {_FIX}") from error


def from_config(cfg: RetrievalConfig) -> Reranker | None:
    """The configured reranker, or None when reranking is off."""
    return CrossEncoderReranker(cfg.reranker) if cfg.reranker else None
