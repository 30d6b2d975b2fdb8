"""The FAISS store's files in the index folder: opening its docstore, and clearing what a
creator killed half-way left.

The docstore is the store of record (every document's text and vectors): nothing
rebuilds it. So it is created in one place only, ``LongTermMemory.create`` on a folder
that holds no index yet; every other open asks SQLite for an existing file
(``mode=rw``/``mode=ro``), and a missing one is an error that says so, never a new empty
index. A reader-side command (``info``, ``ask``, ``check``) cannot make one by accident.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ragmem.errors import Fix, IndexCorruptError
from ragmem.memory.faiss.docstore import Docstore
from ragmem.memory.folder import INDEX_FILES, LOCK
from ragmem.memory.manifest import DOCSTORE, MANIFEST


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
