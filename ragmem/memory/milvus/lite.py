"""milvus-lite, the Milvus of a ``.db`` URI, running in this process: what ragmem does
for it that a Milvus server does for itself.

**Keyword scores after edits.** milvus-lite keeps BM25's statistics (how many windows,
their mean length, how many hold each term) per segment, over every row the segment
file holds: rows deleted or replaced since it was written still count, until a
compaction rewrites the file, and each segment scores with its own statistics. So an
index that was edited (updated, removed, resumed after a kill) scored the same question
differently from a clean build of the same documents (7.26 against 7.59 for "Who is
Irene Adler?" on the demo corpus), and ranked differently. ``compact_lite`` rewrites a
collection into one segment of its live rows, which is what a clean build holds: BM25
then reads the statistics of exactly the live windows, and an edited index scores and
ranks as a clean build does. milvus-lite's own compaction is not forced through its API
(``compact()`` is a no-op there), so this reaches into its engine; where that engine
differs (another milvus-lite), ``compact_lite`` says so and changes nothing.

The bound: milvus-lite caps a segment at ``MAX_SEGMENT_ROWS`` (100,000) rows. Above
that, a collection is several segments whatever is done, each scoring with its own
statistics, and ``compact_lite`` leaves it to milvus-lite's own compaction.

**Private files.** milvus-lite creates its files with the process's umask (0644 and
0755 folders); they hold the documents' text, so ``make_private`` sets them to 0600 and
0700, as the FAISS store's files are made.

**Reading without writing.** milvus-lite has no read-only open: opening a collection
replays the log a killed writer left and writes it out as a segment on close, removes
files a flush cut short left behind, and builds a segment's missing index. ``ragmem
check`` must change nothing, so it opens a ``snapshot``: a copy of the folder, taken
under milvus-lite's own lock, in a private temp folder, removed afterwards. The copy
costs the folder's size on the temp folder's disk, and the time to copy it.

**Keepalive.** pymilvus pings its server every 10 s, even idle; milvus-lite's gRPC
server runs in this process, on loopback, where a ping finds nothing that a call would
not, so a lite client pings never (``GRPC_OPTIONS``).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ragmem.errors import StoreError
from ragmem.memory.manifest import DIR_MODE, FILE_MODE

# A keepalive interval of 2^31-1 ms is gRPC's "never".
GRPC_OPTIONS = {"grpc.keepalive_time_ms": 2**31 - 1,
                "grpc.keepalive_permit_without_calls": False}


def locked(folder: Path) -> bool:
    """Whether another process holds milvus-lite's lock on ``folder`` (its LOCK file,
    an flock)."""
    lock = folder / "LOCK"
    if not lock.exists():
        return False
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


@contextmanager
def snapshot(folder: Path, busy: str) -> Iterator[Path]:
    """A copy of the milvus-lite ``folder`` to open in its place (a path ending in .db,
    in a 0700 temp folder, its files 0600 as the originals), removed on exit. It is
    taken under milvus-lite's lock, so no other process writes meanwhile; ``busy`` is
    the error for one that holds it."""
    fd = os.open(folder / "LOCK", os.O_RDONLY) if (folder / "LOCK").exists() else None
    temp = Path(tempfile.mkdtemp(prefix="ragmem-check-"))
    try:
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError as exc:
                raise StoreError(busy) from exc
        copy = temp / folder.name
        try:
            shutil.copytree(folder, copy, symlinks=True, ignore=lambda _, names: [
                n for n in names if n == "LOCK"])
        except OSError as exc:  # shutil.Error too: the temp folder's disk is full
            raise StoreError(f"cannot copy milvus-lite at {folder} into {temp} to read it "
                             f"({' '.join(str(exc).split())[:200]}); make room there, or "
                             "point TMPDIR at a disk with room for it") from exc
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        yield copy
    finally:
        if fd is not None:
            os.close(fd)
        shutil.rmtree(temp, ignore_errors=True)


def make_private(folder: Path) -> None:
    """Every file under ``folder`` 0600 and every folder 0700 (less the umask, as the
    FAISS store's). milvus-lite may remove a file meanwhile: that one needs nothing."""
    umask = os.umask(0)
    os.umask(umask)
    for root, dirs, files in os.walk(folder):
        for name, mode in [*((d, DIR_MODE) for d in dirs), *((f, FILE_MODE) for f in files)]:
            try:
                os.chmod(os.path.join(root, name), mode & ~umask, follow_symlinks=False)
            except (FileNotFoundError, NotImplementedError):
                pass
    try:
        os.chmod(folder, DIR_MODE & ~umask)
    except FileNotFoundError:
        pass


def compact_lite(folder: str, collection: str) -> str | None:
    """Rewrite ``collection`` of the milvus-lite open here at ``folder`` into one segment
    of its live rows, unless it is one already or holds more than a segment can (see the
    module docstring). Returns why it could not, or None (done, or nothing to do)."""
    try:
        from milvus_lite.constants import MAX_SEGMENT_ROWS
        from milvus_lite.server_manager import server_manager_instance

        db = server_manager_instance._servers[os.path.abspath(folder)][1]
        engine = db.get_collection(collection)
        engine.flush()  # rows still in memory become a segment file first
        engine._wait_for_bg()  # milvus-lite's own compaction, if one is under way
        segments = engine._segments_snapshot()
        live = int(engine.num_entities)
        if live > MAX_SEGMENT_ROWS or (
                len(segments) <= 1 and sum(s.num_rows for s in segments) == live):
            return None
        _rewrite(engine)
    except (ImportError, AttributeError, KeyError, TypeError) as exc:
        return (f"this milvus-lite ({_version()}) has no engine ragmem knows how to compact "
                f"({type(exc).__name__}: {exc})")
    return None


def _rewrite(engine: Any) -> None:
    """milvus-lite's own compaction step (merge, drop replaced and deleted rows, then
    drop the tombstones no file needs), over all of each partition's files at once."""
    manager, manifest, deltas = engine._compaction_mgr, engine._manifest, engine._delta_index
    with engine._maintenance_lock:
        for partition in manifest.list_partitions():
            files = list(manifest.get_data_files(partition))
            if files:
                where = os.path.join(engine.data_dir, "partitions", partition)
                manager._compact_files(partition, where, files, manifest, deltas)
        manager._gc_tombstones(manifest, deltas)
        engine._refresh_segment_cache()
        engine._cleanup_orphan_index_files()
    engine._ensure_loaded_segments_indexed()  # the new segment's vector and scalar indexes


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"milvus-lite {version('milvus-lite')}"
    except PackageNotFoundError:
        return "milvus-lite of unknown version"
