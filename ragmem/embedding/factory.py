"""The embedder a config asks for, and its token counter without its weights."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path

from ragmem.config import EmbedderConfig
from ragmem.embedding.base import (
    PRECISIONS,
    Embedder,
    TokenCounter,
    cuda_available,
    default_precision,
)
from ragmem.embedding.onnx_runtime import OnnxEmbedder
from ragmem.embedding.sentence_transformer import SentenceTransformerEmbedder
from ragmem.errors import ModelError
from ragmem.models import resolve


def token_counter(cfg: EmbedderConfig) -> Callable[[str], int]:
    """``count_tokens`` of the embedder ``cfg`` makes, without loading its weights: from
    the model folder's ``tokenizer.json`` (the tokenizers library alone, ~0.2 s) when it
    has one (a ``TokenCounter``, with token spans for chunking), else from the embedder
    itself. For workers that only chunk."""
    resolved = resolve(cfg.model, "embedder")
    path = Path(resolved.path) / "tokenizer.json"
    if not path.is_file():
        return counter_of(from_config(cfg))
    from tokenizers import Tokenizer

    return TokenCounter(Tokenizer.from_file(str(path)))


def counter_of(embedder: Embedder) -> Callable[[str], int]:
    """What chunking counts ``embedder``'s tokens with: its ``token_counter`` (a
    ``TokenCounter``: a document tokenised once) where it has one, else ``count_tokens``.
    Nothing loads until the first count: a run that reads no document loads no model."""
    if hasattr(type(embedder), "token_counter"):
        return _LazyCounter(embedder)
    return embedder.count_tokens


class _LazyCounter:
    """An embedder's ``TokenCounter``, fetched (the model loaded) on first use."""

    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder

    def _counter(self) -> TokenCounter:
        counter: TokenCounter = getattr(self._embedder, "token_counter")  # noqa: B009
        return counter

    @property
    def exact_spans(self) -> bool:
        return self._counter().exact_spans

    def __call__(self, text: str) -> int:
        return self._counter()(text)

    def spans(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        return self._counter().spans(texts)


def from_config(cfg: EmbedderConfig) -> Embedder:
    """The embedder ``cfg`` asks for; ``precision="auto"`` is :func:`default_precision`."""
    precision = cfg.precision if cfg.precision != "auto" else \
        default_precision(cfg.device, cfg.backend)
    if precision not in PRECISIONS:
        raise ModelError(f"unknown embedder precision {cfg.precision!r}; use auto, "
                         f"{', '.join(PRECISIONS)}")
    if precision == "int8" or (precision == "fp32" and _onnx_fp32(cfg)):
        if cfg.device is not None and cfg.device.startswith("cuda"):
            raise ModelError(f"{precision} on OpenVINO / ONNX Runtime runs on the CPU, not "
                             f"{cfg.device}; use precision fp16 on a GPU")
        return OnnxEmbedder(cfg.model, precision, batch_size=cfg.batch_size)
    device = cfg.device or ("cuda" if precision == "fp16" else "cpu")
    if precision == "fp16" and not device.startswith("cuda"):
        raise ModelError("fp16 embedding runs on a GPU and none is in use here; "
                         "use precision int8 or fp32 on a CPU")
    batch = cfg.gpu_batch_size if device.startswith("cuda") else cfg.batch_size
    return SentenceTransformerEmbedder(cfg.model, batch_size=batch, device=device)


def _onnx_fp32(cfg: EmbedderConfig) -> bool:
    """Whether fp32 runs on ONNX Runtime: asked for, or ``auto`` on a CPU with
    onnxruntime installed (the vectors match torch's to cosine 0.9999+, checked when the
    model is exported, and a query process needs no torch)."""
    if cfg.backend != "auto":
        return cfg.backend == "onnx"
    if cfg.device is not None and not cfg.device.startswith("cpu"):
        return False
    return importlib.util.find_spec("onnxruntime") is not None and \
        (cfg.device is not None or not cuda_available())
