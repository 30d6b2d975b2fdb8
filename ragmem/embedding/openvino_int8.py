"""The int8 embedder: the fp32 ONNX export (``onnx_export``) quantised once by NNCF,
statically (activation scales fixed by calibration), and run by OpenVINO's CPU plugin.

Of the CPU precisions measured on the full SciFact test (eval/reports/precision.md) this
was the fastest: 2.6x fp32's indexing speed, within 0.005 nDCG@10 of fp32 dense and
hybrid. ONNX Runtime's dynamic int8 (per-batch activation scales) lost: 1.5-1.7x.

Calibration reads the windows of the bundled demo corpus (``ragmem/demo/corpus``: English
prose that ships with ragmem), chunked as an index chunks them, so the quantised model is
the same on every machine. The result is cached beside the fp32 export, with OpenVINO's
compiled-kernel cache, so a later process only loads it (~0.1 s). Building it needs
``nncf``; running it needs ``openvino`` alone, no PyTorch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ragmem.config import cache_home
from ragmem.embedding.onnx_export import CHECK_TEXTS, built_once, onnx_model
from ragmem.embedding.onnx_session import OnnxSession
from ragmem.errors import ModelError
from ragmem.models import ResolvedModel

# Bumped whenever the quantisation recipe or its calibration texts change.
INT8_RECIPE = 1
DEMO_CORPUS = Path(__file__).resolve().parents[1] / "demo" / "corpus"
# Each check text's int8 vector against fp32's: the model measured 0.993 at worst on
# SciFact documents and questions; below this the quantisation went wrong.
MIN_COSINE = 0.98


def openvino_model(resolved: ResolvedModel) -> Path:
    """The cached folder holding the int8 ``model.xml``/``model.bin``, ``tokenizer.json``
    and ``spec.json`` for ``resolved``; quantised on first use."""
    source = onnx_model(resolved)
    folder = source.with_name(f"{source.name.removesuffix('-fp32')}-int8v{INT8_RECIPE}")

    def build(tmp: Path) -> None:
        try:
            import nncf
            import openvino as ov
        except ImportError as error:
            raise ModelError(f"quantising {resolved.name} to int8 needs openvino and nncf "
                             f"({error}); pip install openvino nncf, or set "
                             "RAGMEM_EMBEDDER_PRECISION=fp32") from error
        fp32 = OnnxSession.open(source)
        texts = calibration_texts(fp32.tokenizer)

        def feeds(text: str) -> dict[str, np.ndarray]:
            ids = np.array([fp32.tokenizer.encode(text).ids], dtype=np.int64)
            return {"input_ids": ids, "attention_mask": np.ones_like(ids),
                    "token_type_ids": np.zeros_like(ids)}

        nncf.set_log_level(logging.WARNING)
        print(f"ragmem: quantising {resolved.name} to int8 once (calibrating on the demo "
              f"corpus, about a minute on 2 cores; cached in {folder.parent})",
              file=sys.stderr, flush=True)
        # NNCF draws its progress bars on stdout, which `--json` keeps for the result.
        with contextlib.redirect_stdout(sys.stderr):
            quantised = nncf.quantize(ov.Core().read_model(str(source / "model.onnx")),
                                      nncf.Dataset(texts, feeds), subset_size=len(texts),
                                      model_type=nncf.ModelType.TRANSFORMER)
        ov.save_model(quantised, str(tmp / "model.xml"))
        (tmp / "tokenizer.json").write_bytes((source / "tokenizer.json").read_bytes())
        spec = json.loads((source / "spec.json").read_text(encoding="utf-8"))
        (tmp / "spec.json").write_text(json.dumps(spec | {"precision": "int8"}),
                                       encoding="utf-8")
        _check(fp32, openvino_session(tmp), resolved.name)

    return built_once(folder, "spec.json", build)


def calibration_texts(tokenizer: Any) -> list[str]:
    """The demo corpus's windows, as ``chunk_document`` makes them for this tokenizer."""
    from ragmem.chunking import chunk_document
    from ragmem.embedding.base import TokenCounter
    from ragmem.types import Document

    count = TokenCounter(tokenizer)
    texts: list[str] = []
    for path in sorted(DEMO_CORPUS.glob("*.txt")):
        doc = Document(doc_id=path.name, path=str(path), text=path.read_text(encoding="utf-8"))
        texts.extend(window.text for window in chunk_document(doc, count)[1])
    return texts


class _Compiled:
    """``onnxruntime.InferenceSession.run``'s shape over an OpenVINO compiled model; one
    infer request a call, so threads may embed at once (as ONNX Runtime allows)."""

    def __init__(self, compiled: Any) -> None:
        self._compiled = compiled

    def run(self, _outputs: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [self._compiled.create_infer_request().infer(feeds)[0]]


def openvino_session(folder: Path, threads: int | None = None) -> OnnxSession:
    """The int8 model in ``folder`` compiled for the CPU (kernels cached in the ragmem
    cache), with its tokenizer and spec."""
    try:
        import openvino as ov
    except ImportError as error:
        raise ModelError("embedder precision int8 runs on OpenVINO, which is not installed; "
                         "pip install openvino, or set RAGMEM_EMBEDDER_PRECISION=fp32"
                         ) from error
    core = ov.Core()
    config: dict[str, Any] = {"CACHE_DIR": str(cache_home() / "openvino")}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = core.compile_model(str(folder / "model.xml"), "CPU", config)
    return OnnxSession.around(_Compiled(compiled), folder)


def _check(fp32: OnnxSession, int8: OnnxSession, name: str) -> None:
    cosine = (fp32.embed(CHECK_TEXTS) * int8.embed(CHECK_TEXTS)).sum(axis=1).min()
    if cosine < MIN_COSINE:
        raise ModelError(f"the int8 model of {name} gives vectors at cosine {cosine:.4f} to "
                         f"fp32's (at least {MIN_COSINE} expected); set "
                         "RAGMEM_EMBEDDER_PRECISION=fp32 and report it")
