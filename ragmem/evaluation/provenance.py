"""What a report records so that a number can be traced back and reproduced.

The ragmem version, the command line, the full configuration, each model's name and
the sha256 of its weight files, the machine, and the peak memory of the process.
"""

from __future__ import annotations

import platform
import resource
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

from ragmem.config import Config
from ragmem.errors import RagmemError
from ragmem.memory.faiss.snapshot import file_sha256

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".onnx")


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


@cache
def model_files(name: str, kind: str) -> dict[str, Any]:
    """``{"name", "path", "sha256": {file: digest}}`` for the weights a model name loads.

    A name that is not a local directory (an id left to the Hugging Face cache, or a
    test fake) is recorded by name alone, with ``"sha256": {}``.
    """
    from ragmem.models import resolve

    try:
        resolved = resolve(name, "generator" if kind == "generator" else "embedder")
    except RagmemError as exc:
        return {"name": name, "path": None, "sha256": {}, "note": str(exc)}
    folder = Path(resolved.path)
    if not folder.is_dir():
        return {"name": resolved.name, "path": resolved.path, "sha256": {}}
    digests = {}
    for file in sorted(folder.rglob("*")):
        if file.is_file() and file.suffix in WEIGHT_SUFFIXES:
            if resolved.gguf_file and file.suffix == ".gguf" and file.name != resolved.gguf_file:
                continue
            digests[str(file.relative_to(folder))] = file_sha256(file)
    return {"name": resolved.name, "path": str(folder), "sha256": digests}


def git_state() -> str | None:
    """``"<commit>"`` or ``"<commit>-dirty"`` for the ragmem source tree, None outside git."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=True,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--",
                                "ragmem"], check=True, capture_output=True, text=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def run_info(config: Config, command: str | None, models: dict[str, str]) -> dict[str, Any]:
    """The ``run`` section of a report; ``models`` maps a role to the model id used."""
    from ragmem import __version__

    return {
        "ragmem_version": __version__,
        "git": git_state(),
        "command": command if command is not None else " ".join(sys.argv),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "models": {role: model_files(name, role) for role, name in models.items()},
        "config": config.to_dict(),
    }
