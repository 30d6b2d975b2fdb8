"""The versioned JSON manifest that names what built an index."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragmem.errors import IndexCorruptError, IndexMismatchError, IndexNotFoundError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Manifest:
    embedder: str
    dim: int
    chunking: dict[str, Any]
    index_factory: str
    format_version: int = FORMAT_VERSION
    created_at: float = 0.0
    updated_at: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    ragmem_version: str = ""
    # What made the vectors (see ragmem.embedding); indexes from before it was recorded
    # were all built in fp32 on a CPU.
    embedder_precision: str = "fp32"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


def read_manifest(index_dir: Path) -> Manifest:
    path = index_dir / MANIFEST
    if not path.exists():
        raise IndexNotFoundError(
            f"no ragmem index at {index_dir} (missing {MANIFEST}); "
            f"build one with: ragmem index PATH --index {index_dir.name}"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise IndexCorruptError(
            f"{path} is unreadable ({exc}); run: ragmem check {index_dir} --repair"
        ) from exc
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise IndexMismatchError(
            f"{index_dir} has index format {version}, newer than this ragmem reads "
            f"({FORMAT_VERSION}); upgrade ragmem (pip install -U ragmem)"
        )
    known = set(Manifest.__dataclass_fields__)
    return Manifest(**{k: v for k, v in data.items() if k in known})


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_manifest(index_dir: Path, manifest: Manifest) -> None:
    write_atomic(index_dir / MANIFEST, manifest.to_json().encode("utf-8"))


def _fsync_dir(folder: Path) -> None:
    # The rename itself is only durable once the directory entry is on disk.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
