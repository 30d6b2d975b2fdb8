"""The CPU backend without PyTorch: the model exported once (``onnx_export``), then run
in fp32 by ``onnxruntime`` or in int8 by OpenVINO (``openvino_int8``), with ``tokenizers``,
so a query process starts fast."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from ragmem.config import DEFAULT_EMBEDDER, EmbedderConfig
from ragmem.embedding.base import CountsTokens, TokenCounter
from ragmem.embedding.onnx_export import onnx_model
from ragmem.embedding.onnx_session import OnnxSession, OnnxSpec
from ragmem.embedding.openvino_int8 import openvino_model, openvino_session
from ragmem.errors import ModelError
from ragmem.models import require_local


class OnnxEmbedder(CountsTokens):
    """A sentence-transformers model on CPU: ``fp32`` on ONNX Runtime, ``int8`` on
    OpenVINO.

    The first use exports the model (PyTorch, a few seconds; int8 then 30-70 s of
    calibration, about a minute) into the cache; later processes load the cached files alone.
    """

    def __init__(self, model: str = DEFAULT_EMBEDDER, precision: str = "int8",
                 batch_size: int = EmbedderConfig.batch_size, threads: int | None = None) -> None:
        if precision not in ("int8", "fp32"):
            raise ModelError(f"the ONNX embedder runs int8 or fp32, not {precision!r}")
        self.model_id = model
        self.precision = precision
        self.batch_size = batch_size
        self._threads = threads
        self._session: OnnxSession | None = None
        self._counter: TokenCounter | None = None
        self._spec: OnnxSpec | None = None
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        return self._loaded().dim

    @property
    def max_tokens(self) -> int:
        return self._loaded().max_tokens

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self._loaded()
        assert self._session is not None
        return self._session.embed(texts, self.batch_size)

    def _loaded(self) -> OnnxSpec:
        with self._lock:
            if self._spec is None:
                self._load()
            assert self._spec is not None
            return self._spec

    def _load(self) -> None:
        resolved = require_local(self.model_id, "embedder")
        if self.precision == "int8":
            self._session = openvino_session(openvino_model(resolved), self._threads)
        else:
            try:
                import onnxruntime  # noqa: F401
            except ImportError as error:
                raise ModelError(
                    "embedder precision fp32 on ONNX Runtime needs onnxruntime, which is "
                    "not installed; pip install onnxruntime onnx (or set "
                    "RAGMEM_EMBEDDER_BACKEND=torch)") from error
            self._session = OnnxSession.open(onnx_model(resolved), self._threads)
        self._counter = TokenCounter(self._session.tokenizer)
        self._spec = self._session.spec
