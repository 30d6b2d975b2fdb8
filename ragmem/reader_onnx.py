"""The reader on ONNX Runtime: exported from torch once, cached, then read without torch.

Asking should not pay for importing torch (about 2 s of a cold start on 2 cores). The
first use of a weights file exports the loaded reader (``ragmem.reader_model``, which
checks the schema and the base model's sha256) to fp32 ONNX in ``cache_home() / "onnx"``,
checks its logits against torch's on a fixed question and passage, and only then caches
it with the schema beside it. The cache folder is named by the weights file and the base
model file (path, size, modification time), so a changed or damaged file is exported,
and so checked, again.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragmem.config import cache_home
from ragmem.embedding.onnx_export import built_once
from ragmem.embedding.onnx_session import cpu_session
from ragmem.errors import ModelError

if TYPE_CHECKING:
    from collections.abc import Callable

    from ragmem.reader_schema import ReaderSchema

RECIPE = 1  # bumped when the export changes: cached graphs are rebuilt
MAX_LOGIT_DIFF = 1e-3
CHECK = ("Which bank's cellar were the robbers tunnelling into?",
         "I walked round the corner, saw the City and Suburban Bank abutted on our friend's "
         "premises, and felt that I had solved my problem. " * 3)


def onnx_folder(base_dir: str, weights: Path,
                sample: Callable[[ReaderSchema], dict[str, np.ndarray]]) -> Path:
    """The cached folder with ``model.onnx`` and ``schema.json`` for these weights on
    this base model; exported on first use, and checked against torch on ``sample``'s
    arrays (the reader's own tokenisation of ``CHECK``)."""
    folder = cache_home() / "onnx" / f"reader-{_fingerprint(base_dir, weights)}"
    return built_once(folder, "schema.json", lambda tmp: _export(base_dir, weights, tmp, sample))


def open_session(folder: Path, threads: int | None = None) -> Any:
    """An ONNX Runtime session over the folder's graph (no torch)."""
    return cpu_session(folder / "model.onnx", threads)


def run(session: Any, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    start, end = session.run(["start", "end"], arrays)
    return start, end


def _export(base_dir: str, weights: Path, tmp: Path,
            sample_of: Callable[[ReaderSchema], dict[str, np.ndarray]]) -> None:
    import torch

    from ragmem.reader_model import load_reader

    net, schema = load_reader(base_dir, weights)  # the schema and base checks
    names = ["input_ids", "attention_mask", "token_type_ids"]
    sample = torch.ones((2, 8), dtype=torch.long)
    axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "start", "end"]}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shape-dependent branches
        torch.onnx.export(net, (sample, sample, torch.zeros_like(sample)),
                          str(tmp / "model.onnx"), input_names=names,
                          output_names=["start", "end"], dynamic_axes=axes,
                          opset_version=17, dynamo=False)
    arrays = sample_of(schema)
    with torch.inference_mode():
        expected = [t.numpy() for t in net(**{k: torch.from_numpy(v)
                                              for k, v in arrays.items()})]
    got = run(open_session(tmp), arrays)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(expected, got, strict=True))
    if diff > MAX_LOGIT_DIFF:
        raise ModelError(f"the reader's ONNX export differs from torch by {diff:.2g} in its "
                         f"logits (at most {MAX_LOGIT_DIFF} expected); set "
                         "RAGMEM_READER_RUNTIME=torch")
    (tmp / "schema.json").write_text(json.dumps(asdict(schema)), encoding="utf-8")


def _fingerprint(base_dir: str, weights: Path) -> str:
    parts = [str(RECIPE)]
    for path in (Path(weights), Path(base_dir) / "model.safetensors"):
        try:
            st = path.stat()
        except OSError:
            parts.append(f"{path}:absent")  # the export's load names what is missing
            continue
        parts.append(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]
