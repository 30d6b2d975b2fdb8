"""The ONNX Runtime backend, on CPU: the model exported once (``onnx_export``), then run
with ``onnxruntime`` and ``tokenizers`` alone, no PyTorch, so a query process starts
fast."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ragmem.config import DEFAULT_EMBEDDER, EmbedderConfig
from ragmem.embedding.base import normalised, token_counter_of
from ragmem.embedding.onnx_export import OnnxSpec, onnx_model
from ragmem.errors import ModelError
from ragmem.models import require_local

if TYPE_CHECKING:
    from tokenizers import Tokenizer


class OnnxEmbedder:
    """A sentence-transformers model run by ONNX Runtime on CPU, ``int8`` or ``fp32``.

    The first use exports the model (PyTorch, a few seconds) into the cache; later
    processes load the cached file with ONNX Runtime alone.
    """

    def __init__(self, model: str = DEFAULT_EMBEDDER, precision: str = "int8",
                 batch_size: int = EmbedderConfig.batch_size, threads: int | None = None) -> None:
        if precision not in ("int8", "fp32"):
            raise ModelError(f"the ONNX embedder runs int8 or fp32, not {precision!r}")
        self.model_id = model
        self.precision = precision
        self.batch_size = batch_size
        self._threads = threads
        self._session: Any = None
        self._tokenizer: Tokenizer | None = None
        self._counter: Tokenizer | None = None
        self._spec: OnnxSpec | None = None
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        return self._loaded().dim

    @property
    def max_tokens(self) -> int:
        return self._loaded().max_tokens

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        spec = self._loaded()
        out = np.zeros((len(texts), spec.dim), dtype=np.float32)
        if len(texts) == 0:
            return out
        assert self._tokenizer is not None
        encodings = self._tokenizer.encode_batch(list(texts))
        # Longest first, in batches of similar length: little padding, and a batch's
        # dynamic activation scale is not set by padding positions.
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            width = len(encodings[rows[0]].ids)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                n = len(encodings[i].ids)
                ids[r, :n] = encodings[i].ids
                mask[r, :n] = 1
            hidden = self._session.run(None, {"input_ids": ids, "attention_mask": mask,
                                              "token_type_ids": np.zeros_like(ids)})[0]
            out[rows] = _pool(hidden, mask, spec.pooling)
        return normalised(out)

    def count_tokens(self, text: str) -> int:
        self._loaded()
        assert self._counter is not None
        return len(self._counter.encode(text, add_special_tokens=True).ids)

    def _loaded(self) -> OnnxSpec:
        with self._lock:
            if self._spec is None:
                self._load()
            assert self._spec is not None
            return self._spec

    def _load(self) -> None:
        try:
            import onnx  # noqa: F401  (needed to export and quantise)
            import onnxruntime as ort
        except ImportError as error:
            raise ModelError(
                f"embedder precision {self.precision} runs on ONNX Runtime, which is not "
                "installed; pip install 'ragmem[int8]' (or set "
                "RAGMEM_EMBEDDER_PRECISION=fp32)") from error
        from tokenizers import Tokenizer

        resolved = require_local(self.model_id, "embedder")
        folder = onnx_model(resolved, self.precision)
        spec = OnnxSpec(**json.loads((folder / "spec.json").read_text(encoding="utf-8")))
        options = ort.SessionOptions()
        # Idle threads sleep instead of spinning: on a CPU shared with other work, spinning
        # takes cores from it (and from our own other threads) for nothing.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if self._threads:
            options.intra_op_num_threads = self._threads
        self._session = ort.InferenceSession(str(folder / "model.onnx"), options,
                                             providers=["CPUExecutionProvider"])
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._counter = token_counter_of(tokenizer)
        tokenizer.enable_truncation(spec.max_tokens)
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self._spec = spec


def _pool(hidden: np.ndarray, mask: np.ndarray, pooling: str) -> np.ndarray:
    if pooling == "cls":
        return hidden[:, 0]
    weights = mask[..., None].astype(np.float32)
    return (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
