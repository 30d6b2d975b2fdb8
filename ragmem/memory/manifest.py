"""The versioned JSON manifest that names what built an index, and how index files are
written: atomically, and private to their owner (0600 files in a 0700 folder, or
tighter where the umask says so).

The docstore keeps a copy of the manifest's fixed part (embedder, dim, chunking, index
type) in its meta table, so ``ragmem check --repair`` can rebuild a lost or truncated
manifest from the docstore alone."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragmem.errors import Fix, IndexCorruptError, IndexMismatchError, IndexNotFoundError

FORMAT_VERSION = 1  # what a FAISS + SQLite index is written with
# A Milvus index is written with 2, so that a ragmem from before Milvus support says
# "upgrade ragmem" instead of looking for a docstore that is not there.
MILVUS_FORMAT_VERSION = 2
READS_FORMAT_VERSION = 2  # the newest format this ragmem opens
MANIFEST = "manifest.json"
DOCSTORE = "docstore.sqlite"
FILE_MODE = 0o600  # the umask can only take from these
DIR_MODE = 0o700


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
    # Where the memory lives: "faiss" (FAISS + SQLite in the folder; every manifest
    # without the field) or "milvus", whose `milvus` settings say where: {"uri",
    # "collection", "full_text"} (a lite URI relative to the index folder).
    store: str = "faiss"
    milvus: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(self._fields(), indent=2, sort_keys=True)

    def fixed_json(self) -> str:
        """What a write never changes (no counts, no times): the docstore's copy."""
        fixed = {k: v for k, v in self._fields().items()
                 if k not in ("counts", "updated_at", "ragmem_version")}
        return json.dumps(fixed, sort_keys=True)

    def _fields(self) -> dict[str, Any]:
        # A FAISS index's manifest stays as it was before there was a choice of store.
        data = asdict(self)
        if self.store == "faiss":
            del data["store"], data["milvus"]
        return data


def manifest_from_json(text: str) -> Manifest:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("the manifest is not a JSON object")
    known = set(Manifest.__dataclass_fields__)
    return Manifest(**{k: v for k, v in data.items() if k in known})


def read_manifest(index_dir: Path) -> Manifest:
    path = index_dir / MANIFEST
    if not path.exists():
        if (index_dir / DOCSTORE).exists():
            raise IndexCorruptError(
                f"{index_dir} has a docstore but no {MANIFEST} (lost, or the index was "
                "killed while it was created)", Fix("repair", str(index_dir)))
        raise IndexNotFoundError(f"no ragmem index at {index_dir} (missing {MANIFEST})",
                                 Fix("build", str(index_dir)))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        version = data.get("format_version")
        if isinstance(version, int) and version > READS_FORMAT_VERSION:
            raise IndexMismatchError(
                f"{index_dir} has index format {version}, newer than this ragmem reads "
                f"({READS_FORMAT_VERSION}); upgrade ragmem (pip install -U ragmem)"
            )
        manifest = manifest_from_json(json.dumps(data))
        if not isinstance(version, int) or not isinstance(manifest.dim, int):
            raise ValueError("format_version or dim is missing")
    except (OSError, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise IndexCorruptError(f"{path} is unreadable ({' '.join(str(exc).split())})",
                                Fix("repair", str(index_dir))) from exc
    return manifest


def refuse_mismatch(manifest: Manifest, directory: Path, embedder: str | None,
                    precision: str | None, allow_precision_mismatch: bool) -> None:
    """Opening an index with ``embedder`` (and ``precision``), when given, requires
    that they made its vectors (a precision mismatch passes when allowed)."""
    if embedder is not None and embedder != manifest.embedder:
        raise IndexMismatchError(
            f"index {directory} was built with embedder {manifest.embedder!r}, not "
            f"{embedder!r}", Fix("embedder", str(directory), manifest.embedder))
    if precision is not None and precision != manifest.embedder_precision \
            and not allow_precision_mismatch:
        raise IndexMismatchError(
            f"index {directory} holds {manifest.embedder_precision} vectors and the "
            f"embedder runs in {precision}; leave the precision out (or set "
            f"RAGMEM_EMBEDDER_PRECISION={manifest.embedder_precision}), or set "
            "RAGMEM_EMBEDDER_ALLOW_PRECISION_MISMATCH=true to query it anyway")


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename over ``path``.
    The file is ``FILE_MODE`` less the umask (mkstemp's own 0600)."""
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


def create_private(path: Path) -> None:
    """Create ``path`` empty with ``FILE_MODE`` (less the umask) if it does not exist:
    SQLite then opens it as a new database, and gives its -wal and -shm the same mode."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        pass


def _fsync_dir(folder: Path) -> None:
    # The rename itself is only durable once the directory entry is on disk.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
