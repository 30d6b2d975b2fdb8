"""Is the FAISS snapshot on disk the one ragmem wrote? Checked on every open, cheaply.

When a writer saves ``vectors-<seq>.faiss`` it records, in the docstore's meta and in
the same transaction as the snapshot's name: its size, its sha256, and the state the
file system reports for it (size, inode, mtime and ctime in ns). Opening compares:

- the state is the same: the file has not been written, replaced or touched since
  (one ``stat``: microseconds, whatever the index's size). ctime cannot be set back by
  a user, and changes with any write, rename, ``touch`` or ``chmod``;
- the state differs (the folder was copied or restored, the file touched or written):
  the whole file is hashed and must match its sha256 (0.36 s for the 377 MiB snapshot
  of 1M windows, on 2 cores; eval/reports/open-check-1m.md). The next writer records
  the new state.

A snapshot that fails is refused, with ``ragmem check NAME --repair`` as the fix (that
rebuilds it from the vectors in the docstore); it is never searched.

What this does not catch: a change that leaves size, inode and both timestamps as
they were - a write in the same clock tick as ragmem's own (timestamps move in steps
of a few ms on Linux, 1-2 s on some file systems), or the disk flipping bits under the
file system. ``ragmem check`` hashes the whole file every time.

An index whose snapshot predates the recorded state is verified by its sha256 on each
open until its next write records the state; one that predates the sha256 (before
``ragmem check`` existed) can only be checked by size, as before.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ragmem.errors import Fix, IndexCorruptError
from ragmem.memory.faiss.docstore import Docstore

# The docstore meta keys that describe the current snapshot.
NAME, SEQ, BYTES, SHA256, STATE = ("snapshot", "snapshot_seq", "snapshot_bytes",
                                   "snapshot_sha256", "snapshot_stat")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_state(path: Path) -> str:
    """What the file system says about ``path``, as recorded: one JSON line."""
    st = path.stat()
    return json.dumps({"size": st.st_size, "ino": st.st_ino, "mtime_ns": st.st_mtime_ns,
                       "ctime_ns": st.st_ctime_ns}, sort_keys=True)


def record_snapshot(store: Docstore, path: Path, seq: int) -> None:
    """Make ``path`` the current snapshot (call inside a docstore transaction)."""
    store.set_meta(NAME, path.name)
    store.set_meta(SEQ, str(seq))
    store.set_meta(BYTES, str(path.stat().st_size))
    store.set_meta(SHA256, file_sha256(path))
    store.set_meta(STATE, file_state(path))


def verify_snapshot(store: Docstore, directory: Path, name: str) -> bool:
    """Raise ``IndexCorruptError`` unless the snapshot ``name`` is what was recorded.
    Returns True when its state is the recorded one (the cheap case), False when the
    whole file had to be hashed (``restate_snapshot`` can then record the state)."""
    path = directory / name
    fix = Fix("repair", str(directory))
    size = store.get_meta(BYTES)
    if not path.exists() or (size is not None and path.stat().st_size != int(size)):
        raise IndexCorruptError(f"{path} is missing or damaged", fix)
    if store.get_meta(STATE) == file_state(path):
        return True
    want = store.get_meta(SHA256)
    if want is not None and file_sha256(path) != want:
        raise IndexCorruptError(f"{path} fails its checksum (it changed after ragmem wrote "
                                "it); never searched", fix)
    return False


def restate_snapshot(store: Docstore, directory: Path) -> None:
    """Record the current snapshot's state after verifying it in full (a writer calls
    this holding the lock, inside its transaction): later opens are cheap again."""
    name = store.get_meta(NAME)
    if name is None or store.get_meta(SHA256) is None:
        return  # no snapshot, or one from before checksums: nothing to verify against
    if not verify_snapshot(store, directory, name):
        store.set_meta(STATE, file_state(directory / name))
