"""The index folder, whichever store keeps the memory: its write lock, and which files
belong in it (a new index is never made in a folder that holds anything else). The
FAISS store's own files are in ``ragmem.memory.faiss.files``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ragmem.errors import IndexCorruptError, IndexLockedError
from ragmem.memory.manifest import DOCSTORE, FILE_MODE, MANIFEST

LOCK = "write.lock"

# What creating and writing an index leave in its folder; anything else is not ours.
INDEX_FILES = (DOCSTORE, f"{DOCSTORE}-wal", f"{DOCSTORE}-shm", f"{DOCSTORE}-journal", LOCK,
               "vectors-*.faiss", f".{MANIFEST}.*.tmp", ".vectors-*.faiss.*.tmp")


@contextmanager
def write_lock(directory: Path) -> Iterator[None]:
    """The index's write lock, taken without waiting (released by the OS if we die)."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(directory / LOCK), mode=FILE_MODE)
    try:
        lock.acquire(timeout=0)
    except Timeout as exc:
        raise IndexLockedError(
            f"another ragmem process is writing to {directory}; wait for it to "
            "finish and try again") from exc
    try:
        yield
    finally:
        lock.release()


def refuse_if_locked(directory: Path) -> None:
    """Raise ``IndexLockedError`` now if another process holds the folder's write lock.

    A writer calls this before it loads models or connects to a store, so that a second
    writer is refused in milliseconds, not after seconds of loading. It is only a probe:
    the write itself still takes the lock (``write_lock``)."""
    if (directory / LOCK).exists():
        with write_lock(directory):
            pass


def refuse_foreign(directory: Path, extra: tuple[str, ...] = ()) -> None:
    """Refuse to create an index in a folder holding anything but an index's files (or
    ``extra`` ones: another store's)."""
    if not directory.exists():
        return
    if not directory.is_dir():
        raise IndexCorruptError(f"{directory} is a file, not an index folder; pick another "
                                "index name")
    foreign = [p.name for p in directory.iterdir()
               if not any(fnmatch.fnmatchcase(p.name, pat) for pat in (*INDEX_FILES, *extra))]
    if foreign:
        raise IndexCorruptError(
            f"{directory} exists and is not a ragmem index (it holds {foreign[0]!r}); pick "
            "another index name or empty the folder")
