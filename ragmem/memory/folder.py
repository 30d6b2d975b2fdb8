"""The index folder: its write lock, which files belong in it, and opening its docstore.

The docstore is the store of record (every document's text and vectors): nothing
rebuilds it. So it is created in one place only, ``LongTermMemory.create`` on a folder
that holds no index yet; every other open asks SQLite for an existing file
(``mode=rw``/``mode=ro``), and a missing one is an error that says so, never a new empty
index. A reader-side command (``info``, ``ask``, ``check``) cannot make one by accident.
"""

from __future__ import annotations

import fnmatch
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ragmem.errors import Fix, IndexCorruptError, IndexLockedError
from ragmem.memory.docstore import Docstore
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


def open_docstore(directory: Path, *, readonly: bool = False) -> Docstore:
    """The existing docstore of the index at ``directory``; a missing or unreadable one
    is an ``IndexCorruptError`` that says how to recover (it is never created here)."""
    path = directory / DOCSTORE
    if not path.exists():
        raise IndexCorruptError(missing_docstore(directory))
    try:
        return Docstore(path, readonly=readonly)
    except sqlite3.DatabaseError as exc:
        if not path.exists():  # deleted between the two lines
            raise IndexCorruptError(missing_docstore(directory)) from exc
        raise IndexCorruptError(unreadable_docstore(directory, exc)) from exc


_NO_OTHER_COPY = ("it holds the index's text and vectors, which no other file has: restore "
                  "it from a backup, or index the sources again into a new index")


def missing_docstore(directory: Path) -> str:
    return f"{directory / DOCSTORE} is missing; {_NO_OTHER_COPY}"


def unreadable_docstore(directory: Path, exc: BaseException) -> str:
    return (f"{directory / DOCSTORE} is not a readable SQLite database "
            f"({' '.join(str(exc).split())}); {_NO_OTHER_COPY}")


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


def clear_half_created(directory: Path) -> None:
    """Remove what a creator killed before it wrote the manifest left: a docstore with no
    documents. A docstore *with* documents is a lost manifest: that is for repair.
    Call it holding the write lock."""
    path = directory / DOCSTORE
    if path.exists() and path.stat().st_size > 0:
        try:
            store = Docstore(path)  # completes a schema cut short; we hold the lock
            try:
                n = store.counts(exact=True)["documents"]
            finally:
                store.close()
        except sqlite3.DatabaseError as exc:
            raise IndexCorruptError(unreadable_docstore(directory, exc)) from exc
        if n:
            raise IndexCorruptError(f"{directory} has {n} documents but no {MANIFEST}",
                                    Fix("repair", str(directory)))
    for pattern in INDEX_FILES:
        for leftover in directory.glob(pattern):
            if leftover.name != LOCK:
                leftover.unlink(missing_ok=True)
