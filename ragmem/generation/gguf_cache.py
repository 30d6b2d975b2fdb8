"""A packaged GGUF model as transformers weights: dequantised once (about 10 s) into a
safetensors cache under ``cache_home()/models/NAME``, stamped with the GGUF's path, size
and mtime; later loads read the cache (well under a second). A changed GGUF is converted
again. Writes are atomic: a reader never sees half a cache.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ragmem.config import cache_home
from ragmem.models import ResolvedModel

logger = logging.getLogger(__name__)


def load_gguf(resolved: ResolvedModel, auto_class: Any, dtype: Any) -> tuple[Any, Any]:
    """Model and tokenizer of a GGUF model, from the cache, converting on first use."""
    from transformers import AutoTokenizer

    assert resolved.gguf_file is not None
    source = Path(resolved.path) / resolved.gguf_file
    stat = source.stat()
    stamp = {"gguf": str(source), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    cached = cache_home() / "models" / resolved.name
    if _stamp(cached) == stamp:
        return (
            auto_class.from_pretrained(cached, dtype=dtype),
            AutoTokenizer.from_pretrained(cached),
        )
    model, tokenizer = _dequantise(resolved.path, resolved.gguf_file, auto_class)
    _save_atomically(model, tokenizer, stamp, cached)
    return model.to(dtype), tokenizer


def cached_folder(resolved: ResolvedModel) -> Path:
    """The safetensors cache folder of a GGUF model (config, weights, tokenizer),
    converted with transformers on first use; later calls only read its stamp."""
    assert resolved.gguf_file is not None
    source = Path(resolved.path) / resolved.gguf_file
    stat = source.stat()
    stamp = {"gguf": str(source), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    cached = cache_home() / "models" / resolved.name
    if _stamp(cached) != stamp:
        from transformers import AutoModelForCausalLM

        model, tokenizer = _dequantise(resolved.path, resolved.gguf_file, AutoModelForCausalLM)
        _save_atomically(model, tokenizer, stamp, cached)
    return cached


def _dequantise(directory: str, gguf_file: str, auto_class: Any) -> tuple[Any, Any]:
    import torch
    from transformers import AutoTokenizer, GgufConfig

    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=gguf_file)
    # dequantize=True: plain float32 tensors that save_pretrained can write, whether or
    # not GGUF matmul kernels are installed.
    model = auto_class.from_pretrained(
        directory,
        gguf_file=gguf_file,
        quantization_config=GgufConfig(dequantize=True),
        dtype=torch.float32,
    )
    return model, tokenizer


def _stamp(cached: Path) -> dict[str, Any] | None:
    try:
        result: dict[str, Any] = json.loads((cached / "ragmem-source.json").read_text())
        return result
    except (OSError, ValueError):
        return None


def _save_atomically(model: Any, tokenizer: Any, stamp: dict[str, Any], cached: Path) -> None:
    """Write to a temp dir beside ``cached``, then rename: a reader never sees half a cache,
    and of two processes converting at once the first rename wins."""
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cached.name}-", dir=cached.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "ragmem-source.json").write_text(json.dumps(stamp))
        if cached.exists():  # stale: the package's GGUF changed
            shutil.rmtree(cached, ignore_errors=True)
        os.replace(tmp, cached)
    except OSError as error:  # another process won the rename, or no write access
        if not _stamp(cached):
            logger.warning("could not cache %s at %s (%s)", model.name_or_path, cached, error)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
