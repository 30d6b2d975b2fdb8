"""An exported embedder folder (``model.onnx``, ``tokenizer.json``, ``spec.json``) opened
with ONNX Runtime and ``tokenizers``, and texts run through it: what ``OnnxEmbedder``
embeds with and what the export is checked with, no PyTorch."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragmem.embedding.base import normalised

if TYPE_CHECKING:
    from tokenizers import Tokenizer


@dataclass(frozen=True)
class OnnxSpec:
    """What the exported graph needs around it (``spec.json`` beside ``model.onnx``)."""

    dim: int
    max_tokens: int
    pooling: str  # "mean" or "cls"
    precision: str
    source: str


@dataclass(frozen=True)
class OnnxSession:
    session: Any  # onnxruntime.InferenceSession
    tokenizer: Tokenizer  # truncating at spec.max_tokens, no padding
    spec: OnnxSpec

    @classmethod
    def open(cls, folder: Path, threads: int | None = None) -> OnnxSession:
        return cls.around(cpu_session(folder / "model.onnx", threads), folder)

    @classmethod
    def around(cls, session: Any, folder: Path) -> OnnxSession:
        """``session`` (anything with ``InferenceSession.run``'s shape) with the tokenizer
        and spec that ``folder`` holds beside its model."""
        from tokenizers import Tokenizer

        spec = OnnxSpec(**json.loads((folder / "spec.json").read_text(encoding="utf-8")))
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer.enable_truncation(spec.max_tokens)
        tokenizer.no_padding()
        return cls(session, tokenizer, spec)

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """float32 (len(texts), dim), unit rows."""
        out = np.zeros((len(texts), self.spec.dim), dtype=np.float32)
        if len(texts) == 0:
            return out
        encodings = self.tokenizer.encode_batch(list(texts))
        # Longest first, in batches of similar length: little padding, and a batch's
        # dynamic activation scale (int8) is not set by padding positions.
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            width = len(encodings[rows[0]].ids)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                n = len(encodings[i].ids)
                ids[r, :n] = encodings[i].ids
                mask[r, :n] = 1
            hidden = self.session.run(None, {"input_ids": ids, "attention_mask": mask,
                                             "token_type_ids": np.zeros_like(ids)})[0]
            out[rows] = _pool(hidden, mask, self.spec.pooling)
        return normalised(out)


def _pool(hidden: np.ndarray, mask: np.ndarray, pooling: str) -> np.ndarray:
    if pooling == "cls":
        return hidden[:, 0]
    weights = mask[..., None].astype(np.float32)
    return (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)


def cpu_session(model: Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session over ``model`` (no torch)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    # Idle threads sleep instead of spinning: on a CPU shared with other work,
    # spinning takes cores from it (and from our own other threads) for nothing.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
