"""A sentence-transformers model exported to ONNX once, into the cache
(``cache_home() / "onnx"``): the fp32 graph with its attention and GELU fused, checked
against PyTorch. ONNX Runtime runs it (``onnx_runtime``); the int8 model is quantised
from it (``openvino_int8``). Exporting needs PyTorch and ``onnx``; running does not.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ragmem.config import cache_home
from ragmem.embedding.onnx_session import OnnxSession, OnnxSpec
from ragmem.errors import ModelError
from ragmem.models import ResolvedModel, load_error

# Bumped whenever the export recipe changes: cached files are rebuilt.
ONNX_RECIPE = 1


def onnx_model(resolved: ResolvedModel) -> Path:
    """The cached folder holding the fp32 ``model.onnx``, ``tokenizer.json`` and
    ``spec.json`` for ``resolved``; exported on first use."""
    folder = cache_home() / "onnx" / f"{_slug(resolved.name)}-{_fingerprint(resolved)}-fp32"
    return built_once(folder, "spec.json", lambda tmp: _export(resolved, tmp))


def built_once(folder: Path, marker: str, build: Callable[[Path], None]) -> Path:
    """``folder``, built by ``build`` into a temp folder beside it that becomes it only
    when ``build`` succeeds (so ``marker`` inside it means whole); of two processes
    building at once, one does it and the other waits and reuses it."""
    if (folder / marker).exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock

    with FileLock(str(folder) + ".lock"):
        if not (folder / marker).exists():
            tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
            try:
                build(tmp)
                tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared like any other
                shutil.rmtree(folder, ignore_errors=True)
                os.replace(tmp, folder)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _export(resolved: ResolvedModel, tmp: Path) -> None:
    """The model as fused fp32 ONNX, its tokenizer and its spec, into ``tmp``."""
    import torch
    from sentence_transformers import SentenceTransformer

    try:
        st: Any = SentenceTransformer(resolved.path, device="cpu")
    except (OSError, ValueError) as error:
        raise load_error(resolved, error) from error
    kinds = [type(m).__name__ for m in st]
    pooling = getattr(st[1], "pooling_mode", None) if len(st) > 1 else None
    if kinds[:2] != ["Transformer", "Pooling"] or set(kinds[2:]) - {"Normalize"} \
            or pooling not in ("mean", "cls"):
        raise ModelError(
            f"{resolved.name} ({' + '.join(kinds)}, pooling {pooling}) cannot run on the ONNX "
            "embedder, which takes a transformer with mean or CLS pooling; "
            "set RAGMEM_EMBEDDER_PRECISION=fp32")
    transformer: Any = st[0].auto_model.eval()
    # The eager attention exports to the pattern ONNX Runtime fuses into one kernel.
    transformer.set_attn_implementation("eager")

    class Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.transformer(input_ids=input_ids, attention_mask=attention_mask,
                                    token_type_ids=token_type_ids).last_hidden_state

    names = ["input_ids", "attention_mask", "token_type_ids"]
    sample = torch.ones((2, 8), dtype=torch.long)
    axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]}
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer's notes on shape-dependent Python branches: the axes are dynamic.
        warnings.simplefilter("ignore")
        torch.onnx.export(Hidden(), (sample, sample, torch.zeros_like(sample)),
                          str(tmp / "unfused.onnx"), input_names=names,
                          output_names=["last_hidden_state"], dynamic_axes=axes,
                          opset_version=17, dynamo=False)
    config = transformer.config
    _optimise(tmp / "unfused.onnx", tmp / "model.onnx", config.num_attention_heads,
              config.hidden_size)
    (tmp / "unfused.onnx").unlink()
    st.tokenizer.backend_tokenizer.save(str(tmp / "tokenizer.json"))
    spec = OnnxSpec(dim=int(st.get_embedding_dimension()), max_tokens=int(st.max_seq_length),
                    pooling=str(pooling), precision="fp32", source=resolved.path)
    (tmp / "spec.json").write_text(json.dumps(vars(spec), indent=2), encoding="utf-8")
    _check_against_torch(st, tmp, resolved.name)


# Fixed texts the export is checked on: short and long, the truncation limit included.
CHECK_TEXTS = ("a cat", "Which bank's cellar were the robbers tunnelling into?",
               "Coronary heart disease risk rises with LDL cholesterol. " * 3,
               "The quick brown fox jumps over the lazy dog. " * 80)
MIN_COSINE = 0.9999


def _check_against_torch(st: Any, folder: Path, name: str) -> None:
    """The exported fp32 graph must give torch's vectors on ``CHECK_TEXTS`` (cosine >=
    ``MIN_COSINE`` each); a graph that does not is never cached."""
    torch_vectors = st.encode(list(CHECK_TEXTS), convert_to_numpy=True,
                              normalize_embeddings=True)
    onnx_vectors = OnnxSession.open(folder).embed(CHECK_TEXTS)
    cosine = (torch_vectors * onnx_vectors).sum(axis=1).min()
    if cosine < MIN_COSINE:
        raise ModelError(f"the ONNX export of {name} gives vectors at cosine {cosine:.5f} to "
                         f"torch's (at least {MIN_COSINE} expected); set "
                         "RAGMEM_EMBEDDER_BACKEND=torch and report it")


def _optimise(src: Path, dst: Path, heads: int, hidden: int) -> None:
    """Fuse attention, GELU and layer norms (ONNX Runtime's BERT optimiser)."""
    import logging

    from onnxruntime.transformers import optimizer

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    model = optimizer.optimize_model(str(src), model_type="bert", num_heads=heads,
                                     hidden_size=hidden, opt_level=1)
    model.save_model_to_file(str(dst))


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-")[:60]


def _fingerprint(resolved: ResolvedModel) -> str:
    """Changes when the source weights or the recipe change (size and mtime: cheap)."""
    digest = hashlib.sha256(f"{resolved.path}\n{ONNX_RECIPE}\n".encode())
    folder = Path(resolved.path)
    if folder.is_dir():
        for path in sorted(folder.glob("*")):
            if path.is_file():
                stat = path.stat()
                digest.update(f"{path.name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:12]
