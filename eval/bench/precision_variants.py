"""Precision options of issue 25 that ragmem does not ship, as embedders the benchmark can
index with (``index_throughput --paths ragmem-openvino-int8,ragmem-int8-all``); each is
kept only if it wins.

**int8, every product** (``Int8AllEmbedder``): ragmem's ONNX Runtime int8 recipe without its
one exception: the FFN's second products are quantised too (dynamic, per channel).

**OpenVINO int8** (``OpenVinoInt8Embedder``), calibrated by NNCF:
The graph is ragmem's own fp32 export (``ragmem.embedding.onnx_model``: the same fused
ONNX that ONNX Runtime runs, cosine 1.0 to PyTorch); NNCF quantises it statically
(``ModelType.TRANSFORMER``: activations' scales fixed from calibration, unlike ONNX
Runtime's per-batch dynamic ones) on windows of SciFact *train* documents (those the
train qrels judge; the test split's documents and claims are not seen), each window as
ragmem's chunker makes it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from eval.bench.index_throughput_data import say
from ragmem.embedding import OnnxEmbedder, onnx_model
from ragmem.embedding.base import TokenCounter
from ragmem.embedding.onnx_session import OnnxSession
from ragmem.models import resolve

CALIBRATION_TEXTS = 300


class _OvSession:
    """``onnxruntime.InferenceSession.run``'s shape over an OpenVINO compiled model."""

    def __init__(self, compiled: Any) -> None:
        self._compiled = compiled

    def run(self, _outputs: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [self._compiled(feeds)[0]]


def calibration_texts(corpus: Path, n: int = CALIBRATION_TEXTS) -> list[str]:
    """Windows (as ragmem chunks them) of the SciFact documents its train qrels judge."""
    from ragmem.chunking import chunk_document
    from ragmem.config import EmbedderConfig
    from ragmem.embedding import token_counter
    from ragmem.types import Document

    judged: set[str] = set()
    with open(corpus / "qrels" / "train.tsv", encoding="utf-8") as f:
        next(f)
        judged.update(line.split("\t")[1] for line in f if line.strip())
    count = token_counter(EmbedderConfig())
    texts: list[str] = []
    with open(corpus / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row["_id"] not in judged:
                continue
            doc = Document(doc_id=row["_id"], path=row["_id"], text=row["text"])
            texts.extend(w.text for w in chunk_document(doc, count)[1])
            if len(texts) >= n:
                break
    return texts[:n]


class OpenVinoInt8Embedder(OnnxEmbedder):
    """all-MiniLM-L6-v2 quantised by NNCF and run by OpenVINO's CPU plugin; embeds as
    ``OnnxEmbedder`` does (same tokenizer, batching, pooling)."""

    def __init__(self, corpus: Path, model: str = "all-MiniLM-L6-v2") -> None:
        super().__init__(model, "fp32")
        self.precision = "int8"
        self._corpus = corpus
        self.calibration_s = 0.0

    def _load(self) -> None:
        import nncf
        import openvino as ov

        folder = onnx_model(resolve(self.model_id, "embedder"), "fp32")
        fp32 = OnnxSession.open(folder)
        t = time.perf_counter()
        texts = calibration_texts(self._corpus)
        tokenizer = fp32.tokenizer

        def feeds(text: str) -> dict[str, np.ndarray]:
            ids = np.array([tokenizer.encode(text).ids], dtype=np.int64)
            return {"input_ids": ids, "attention_mask": np.ones_like(ids),
                    "token_type_ids": np.zeros_like(ids)}

        core = ov.Core()
        quantised = nncf.quantize(core.read_model(str(folder / "model.onnx")),
                                  nncf.Dataset(texts, feeds), subset_size=len(texts),
                                  model_type=nncf.ModelType.TRANSFORMER)
        compiled = core.compile_model(quantised, "CPU")
        self.calibration_s = time.perf_counter() - t
        say(f"openvino int8: NNCF calibrated on {len(texts)} SciFact train windows in "
            f"{self.calibration_s:.1f}s")
        self._session = OnnxSession(_OvSession(compiled), tokenizer, fp32.spec)
        self._counter = TokenCounter(tokenizer)
        self._spec = fp32.spec


class Int8AllEmbedder(OnnxEmbedder):
    """ragmem's fp32 export quantised whole by ONNX Runtime (``quantize_dynamic``, int8
    per-channel weights, uint8 activations), the six FFN-out products included."""

    def __init__(self, model: str = "all-MiniLM-L6-v2") -> None:
        super().__init__(model, "fp32")
        self.precision = "int8"

    def _load(self) -> None:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        source = onnx_model(resolve(self.model_id, "embedder"), "fp32")
        folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"ragmem-int8-all-{source.name}"
        if not (folder / "model.onnx").exists():
            folder.mkdir(parents=True, exist_ok=True)
            for name in ("spec.json", "tokenizer.json"):
                (folder / name).write_bytes((source / name).read_bytes())
            quantize_dynamic(str(source / "model.onnx"), str(folder / "model.part.onnx"),
                             weight_type=QuantType.QInt8, per_channel=True,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
            (folder / "model.part.onnx").rename(folder / "model.onnx")
        self._session = OnnxSession.open(folder, self._threads)
        self._counter = TokenCounter(self._session.tokenizer)
        self._spec = self._session.spec
