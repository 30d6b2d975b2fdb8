"""``ragmem check`` for a FAISS index: verify that every part of it agrees, and repair
what can be rebuilt from the docstore alone (the FAISS index, the manifest, the counts) without the
sources.

``check`` never writes: it opens the docstore read-only (SQLite may still create its
own ``-wal``/``-shm`` files beside it) and changes no file of the index. ``repair``
writes, holding the write lock.

The docstore is the source of truth; everything else is derived from it:

- the docstore itself: nothing rebuilds it. A missing or unreadable one is reported as
  damage that only a backup or indexing the sources again can fix.
- the manifest: its fixed part is copied in the docstore's meta, its counts are the
  docstore's. A kill between a write's commit and its manifest leaves the manifest's
  counts one write behind: a note (a lagging copy, not a problem), which the next
  write or ``repair`` brings up to date; a lost or truncated manifest is a problem
  that ``repair`` rewrites.
- the FAISS snapshot: its sha256 is verified in full; ``repair`` rebuilds it from the
  vectors stored with each window.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ragmem.config import IndexConfig, MilvusConfig
from ragmem.errors import Fix, IndexCorruptError, IndexNotFoundError, RagmemError
from ragmem.memory.faiss.docstore import Docstore
from ragmem.memory.faiss.files import missing_docstore, open_docstore, unreadable_docstore
from ragmem.memory.faiss.snapshot import NAME, SHA256, file_sha256
from ragmem.memory.faiss.store import LongTermMemory
from ragmem.memory.findings import CheckReport, Findings, check_embedder
from ragmem.memory.folder import write_lock
from ragmem.memory.manifest import DOCSTORE, MANIFEST, Manifest, manifest_from_json, read_manifest

if TYPE_CHECKING:
    from ragmem.embedding import Embedder


def check(directory: Path, embedder: Embedder | None = None,
          milvus: MilvusConfig | None = None) -> CheckReport:
    """Verify the FAISS index at ``directory``. ``embedder`` is the model to verify
    against the manifest (its id and dimension); by default the one the manifest names
    is loaded. ``milvus`` is unused: every checker takes the same arguments."""
    found = Findings()
    if not (directory / MANIFEST).exists() and not (directory / DOCSTORE).exists():
        read_manifest(directory)  # raises: no index here at all
    try:
        store = open_docstore(directory, readonly=True)
    except IndexCorruptError as exc:  # missing: the store of record is gone
        found.problem(exc.problem, repairable=False)
        return found.report(directory)
    try:
        if not _has_table(store, "meta"):
            found.problem(f"{store.path} holds no index (a create was cut short); index "
                          "the sources into it again", repairable=False)
            return found.report(directory)
        manifest = _manifest(directory, store, found)
        _check_docstore(store, manifest, found)
        if manifest is not None:
            _check_snapshot(directory, store, found)
            _compare_counts(store, manifest, found)
    except sqlite3.DatabaseError as exc:
        found.problem(unreadable_docstore(directory, exc), repairable=False)
        return found.report(directory)
    finally:
        store.close()
    if manifest is None:
        return found.report(directory)
    if "manifest" in found.checked and not any("snapshot" in p for p in found.problems):
        _check_faiss_ids(directory, found)
    check_embedder(manifest, embedder, found)
    return found.report(directory)


def _manifest(directory: Path, store: Docstore, found: Findings) -> Manifest | None:
    """The manifest, or (when it is lost or unreadable) the docstore's copy of it."""
    try:
        manifest = read_manifest(directory)
    except (IndexCorruptError, IndexNotFoundError) as exc:
        found.problem(exc.problem)  # the fix is the caller's to word (CLI: the command)
        copy = store.get_meta("manifest")
        return manifest_from_json(copy) if copy else None
    found.checked.append("manifest")
    return manifest


def _check_docstore(store: Docstore, manifest: Manifest | None, found: Findings) -> None:
    integrity = str(store.conn.execute("PRAGMA integrity_check").fetchone()[0])
    found.checked.append("sqlite integrity")
    if integrity != "ok":
        found.problem(f"docstore fails SQLite's integrity check ({integrity}); restore it "
                      "from a backup, or index the sources again into a new index",
                      repairable=False)
    counts = store.counts(exact=True)
    if store.counts() != counts:
        found.problem(f"stored counts {store.counts()} differ from the rows {counts}")
    found.checked.append("counts")
    if manifest is not None:
        bad_vec = _count(store, "SELECT COUNT(*) FROM windows WHERE length(vector) != ?",
                         manifest.dim * 4)
        if bad_vec:
            found.problem(f"{bad_vec} window vectors are not {manifest.dim}-dimensional; "
                          "index the sources again into a new index", repairable=False)
    bad_span = _count(store, 'SELECT COUNT(*) FROM windows w JOIN documents d USING (doc_id) '
                      'WHERE w.start < 0 OR w."end" > length(d.text) OR w.start >= w."end"')
    orphans = _count(store, "SELECT COUNT(*) FROM windows WHERE doc_id NOT IN "
                            "(SELECT doc_id FROM documents)")
    if bad_span or orphans:
        found.problem(f"{bad_span} windows with spans outside their document, {orphans} "
                      "windows without a document; index the sources again into a new index",
                      repairable=False)
    found.checked.append("window spans")
    if not _has_table(store, "windows_fts"):
        found.problem("no lexical index (the index predates it)")  # repair builds it
        return
    fts_only = _count(store, "SELECT COUNT(*) FROM windows_fts WHERE rowid NOT IN "
                             "(SELECT window_id FROM windows)")
    win_only = _count(store, "SELECT COUNT(*) FROM windows WHERE window_id NOT IN "
                             "(SELECT rowid FROM windows_fts)")
    if fts_only or win_only:
        found.problem(f"lexical index disagrees with windows: {fts_only} extra, "
                      f"{win_only} missing")
    found.checked.append("lexical ids == window ids")


def _count(store: Docstore, sql: str, *args: object) -> int:
    return int(store.conn.execute(sql, args).fetchone()[0])


def _has_table(store: Docstore, name: str) -> bool:
    return store.conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?",
                              (name,)).fetchone() is not None


def _check_snapshot(directory: Path, store: Docstore, found: Findings) -> None:
    snapshot = store.get_meta(NAME)
    if snapshot is None:
        return
    path = directory / snapshot
    want = store.get_meta(SHA256)
    if not path.exists():
        found.problem(f"FAISS snapshot {snapshot} is missing")
    elif want is not None and file_sha256(path) != want:
        found.problem(f"FAISS snapshot {snapshot} fails its sha256 checksum")
    found.checked.append("faiss checksum")


def _compare_counts(store: Docstore, manifest: Manifest, found: Findings) -> None:
    """A manifest whose counts lag the docstore's committed ones (a kill between a
    write's commit and its manifest) is a copy one write behind, not damage: a note."""
    counts = store.counts()
    if manifest.counts == counts or "manifest" not in found.checked:
        return
    if counts != store.counts(exact=True):
        found.problem(f"manifest counts {manifest.counts} differ from docstore {counts}")
        return
    found.notes.append(f"the manifest's counts {manifest.counts} lag the docstore's {counts} "
                       "(a write was cut short after its commit; nothing is lost): the next "
                       "write, or check --repair, brings them up to date")


def _check_faiss_ids(directory: Path, found: Findings) -> None:
    try:
        memory = LongTermMemory.open(directory, readonly=True)
    except RagmemError as exc:
        found.problem(exc.problem)
        return
    try:
        in_faiss = np.sort(memory.vectors.ids())
        in_store = memory.docstore.window_ids()
        if not np.array_equal(in_faiss, in_store):
            extra = len(np.setdiff1d(in_faiss, in_store))
            missing = len(np.setdiff1d(in_store, in_faiss))
            found.problem(f"FAISS and docstore disagree: {extra} ids only in FAISS, "
                          f"{missing} only in the docstore")
        found.checked.append("faiss ids == docstore ids")
    finally:
        memory.close()


def repair(directory: Path, embedder: Embedder | None = None, *,
           embedder_name: str | None = None, milvus: MilvusConfig | None = None) -> CheckReport:
    """Rebuild, from the docstore alone, what can be: the counts, the FAISS index (from
    the stored vectors) and the manifest (from the docstore's copy of it, or, for an index
    made before that copy existed, from ``embedder_name`` and the stored vectors' size).
    Then check again."""
    if not (directory / DOCSTORE).exists():
        read_manifest(directory)  # not an index: raises with the fix
        raise IndexCorruptError(missing_docstore(directory))
    with write_lock(directory):
        store = open_docstore(directory)
        try:
            manifest = _manifest_to_repair(directory, store, embedder_name)
            memory = LongTermMemory(directory, store, manifest,
                                    IndexConfig(factory=manifest.index_factory))
            with store.transaction():
                store.recount()
            memory.rebuild_vectors(manifest.index_factory)  # and writes the manifest
        except sqlite3.DatabaseError as exc:
            raise IndexCorruptError(unreadable_docstore(directory, exc)) from exc
        finally:
            store.close()
    return check(directory, embedder)


def _manifest_to_repair(directory: Path, store: Docstore,
                        embedder_name: str | None) -> Manifest:
    try:
        return read_manifest(directory)
    except (IndexCorruptError, IndexNotFoundError):
        pass
    copy = store.get_meta("manifest")
    if copy:
        return manifest_from_json(copy)
    if embedder_name is None:
        raise IndexCorruptError(
            f"{directory / MANIFEST} is lost and this index predates the docstore's copy "
            "of it", Fix("repair_with", str(directory)))
    row = store.conn.execute("SELECT length(vector) FROM windows LIMIT 1").fetchone()
    vector_bytes = None if row is None else int(row[0])  # 4 x dim
    if vector_bytes is None:
        from ragmem.embedding import SentenceTransformerEmbedder

        dim = SentenceTransformerEmbedder(embedder_name).dim
    else:
        dim = vector_bytes // 4
    from ragmem.config import ChunkingConfig

    return Manifest(embedder=embedder_name, dim=dim, chunking=vars(ChunkingConfig()),
                    index_factory="IDMap2,Flat")
