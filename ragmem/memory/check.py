"""``ragmem check``: verify that every part of an index agrees, and repair what can be
rebuilt from the docstore alone (the FAISS index and the manifest) without the sources."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ragmem.config import IndexConfig
from ragmem.errors import RagmemError
from ragmem.memory.docstore import Docstore
from ragmem.memory.manifest import read_manifest
from ragmem.memory.store import DOCSTORE, LongTermMemory, file_sha256


@dataclass(frozen=True)
class CheckReport:
    path: str
    problems: tuple[str, ...]
    repairable: bool  # every problem can be fixed by `repair` without the source files
    checked: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def check(directory: Path) -> CheckReport:
    problems: list[str] = []
    checked: list[str] = []
    repairable = True
    manifest = read_manifest(directory)  # raises with a fix for missing/newer/unreadable
    checked.append("manifest")
    store = Docstore(directory / DOCSTORE)
    try:
        integrity = store.conn.execute("PRAGMA integrity_check").fetchone()[0]
        checked.append("sqlite integrity")
        if integrity != "ok":
            problems.append(f"docstore fails SQLite's integrity check: {integrity}")
            repairable = False
        counts = store.counts(exact=True)
        if manifest.counts != counts:
            problems.append(f"manifest counts {manifest.counts} differ from docstore {counts}")
        if store.counts() != counts:
            problems.append(f"stored counts {store.counts()} differ from the rows {counts}")
        checked.append("counts")
        bad_vec = store.conn.execute(
            "SELECT COUNT(*) FROM windows WHERE length(vector) != ?", (manifest.dim * 4,)
        ).fetchone()[0]
        if bad_vec:
            problems.append(f"{bad_vec} window vectors are not {manifest.dim}-dimensional")
            repairable = False
        bad_span = store.conn.execute(
            'SELECT COUNT(*) FROM windows w JOIN documents d USING (doc_id) '
            'WHERE w.start < 0 OR w."end" > length(d.text) OR w.start >= w."end"'
        ).fetchone()[0]
        orphans = store.conn.execute(
            "SELECT COUNT(*) FROM windows WHERE doc_id NOT IN (SELECT doc_id FROM documents)"
        ).fetchone()[0]
        if bad_span or orphans:
            problems.append(f"{bad_span} windows with spans outside their document, "
                            f"{orphans} windows without a document")
            repairable = False
        checked.append("window spans")
        fts_only, win_only = store.conn.execute(
            "SELECT (SELECT COUNT(*) FROM windows_fts WHERE rowid NOT IN "
            "(SELECT window_id FROM windows)), (SELECT COUNT(*) FROM windows WHERE window_id "
            "NOT IN (SELECT rowid FROM windows_fts))").fetchone()
        if fts_only or win_only:
            problems.append(f"lexical index disagrees with windows: {fts_only} extra, "
                            f"{win_only} missing")
        checked.append("lexical ids == window ids")
        snapshot = store.get_meta("snapshot")
        if snapshot is not None:
            path = directory / snapshot
            want = store.get_meta("snapshot_sha256")
            if not path.exists():
                problems.append(f"FAISS snapshot {snapshot} is missing")
            elif want is not None and file_sha256(path) != want:
                problems.append(f"FAISS snapshot {snapshot} fails its sha256 checksum")
            checked.append("faiss checksum")
    finally:
        store.close()
    if not any("snapshot" in p for p in problems):
        try:
            memory = LongTermMemory.open(directory)
            in_faiss = np.sort(memory.vectors.ids())
            in_store = memory.docstore.window_ids()
            if not np.array_equal(in_faiss, in_store):
                extra = len(np.setdiff1d(in_faiss, in_store))
                missing = len(np.setdiff1d(in_store, in_faiss))
                problems.append(f"FAISS and docstore disagree: {extra} ids only in FAISS, "
                                f"{missing} only in the docstore")
            checked.append("faiss ids == docstore ids")
            memory.close()
        except RagmemError as exc:
            problems.append(str(exc))
    return CheckReport(str(directory), tuple(problems), repairable, tuple(checked))


def repair(directory: Path) -> CheckReport:
    """Rebuild the FAISS index from the docstore's vectors and rewrite the manifest."""
    manifest = read_manifest(directory)
    memory = LongTermMemory(directory, Docstore(directory / DOCSTORE), manifest,
                            IndexConfig(factory=manifest.index_factory))
    try:
        with memory.locked():
            with memory.docstore.transaction():
                memory.docstore.conn.execute("DELETE FROM meta WHERE key = 'counts'")
                exact = memory.docstore.counts(exact=True)
                memory.docstore.set_meta("counts", json.dumps(exact))
            memory.rebuild_vectors(manifest.index_factory)
    finally:
        memory.close()
    return check(directory)
