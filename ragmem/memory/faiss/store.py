"""LongTermMemory: the docstore and the FAISS index kept in step, on disk under one folder.

Layout of ``indexes/NAME/``::

    manifest.json        format version, embedder id and dim, chunking, counts
    docstore.sqlite      documents, sentences, windows + vectors, change log (WAL)
    vectors-<seq>.faiss  FAISS snapshot holding every change up to log entry <seq>
    write.lock           held by the one writer (and by the creator)

Every file is created 0600 in a 0700 folder (tighter where the umask says so): the
docstore holds the documents' whole text.

A write is one SQLite transaction. The FAISS snapshot is rewritten only when the
change log since the last one grows large; opening replays the log on top of it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ragmem import __version__
from ragmem.config import IndexConfig
from ragmem.errors import Fix, IndexCorruptError, IndexMismatchError
from ragmem.memory.base import MemoryInfo, StoredDocument, check_vectors
from ragmem.memory.faiss.docstore import Docstore
from ragmem.memory.faiss.files import clear_half_created, open_docstore, unreadable_docstore
from ragmem.memory.faiss.snapshot import (
    record_snapshot,
    restate_snapshot,
    verify_snapshot,
)
from ragmem.memory.faiss.vectors import LayeredIndex, VectorIndex, default_factory
from ragmem.memory.folder import refuse_foreign, write_lock
from ragmem.memory.manifest import (
    DIR_MODE,
    DOCSTORE,
    FORMAT_VERSION,
    MANIFEST,
    Manifest,
    create_private,
    read_manifest,
    refuse_mismatch,
    write_manifest,
)
from ragmem.types import Document, Filter, Hit, Sentence, Window

__all__ = ["LongTermMemory", "Writer"]

TRAIN_SAMPLE = 100_000  # vectors an approximate index is trained on


class Writer:
    """Changes made inside ``LongTermMemory.writer()``; all land in one transaction."""

    def __init__(self, memory: LongTermMemory) -> None:
        self._memory = memory
        self.added_windows = 0
        self.removed_windows = 0

    def add(self, doc: Document, sentences: Sequence[Sentence], windows: Sequence[Window],
            vectors: np.ndarray) -> None:
        check_vectors(vectors, len(windows), self._memory.dim)
        store = self._memory.docstore
        self.removed_windows += len(store.delete_document(doc.doc_id))
        self.added_windows += len(store.add_document(doc, sentences, windows, vectors))

    def move(self, doc_id: str, path: str, mtime: float) -> bool:
        return self._memory.docstore.move_document(doc_id, path, mtime)

    def remove(self, doc_id: str) -> int:
        n = len(self._memory.docstore.delete_document(doc_id))
        self.removed_windows += n
        return n


class LongTermMemory:
    def __init__(self, directory: Path, docstore: Docstore, manifest: Manifest,
                 config: IndexConfig) -> None:
        self.directory = directory
        self.docstore = docstore
        self.manifest = manifest
        self.config = config
        self.dim = manifest.dim
        self._vectors: VectorIndex | LayeredIndex | None = None
        self._writing = False
        self._snapshot: str | None = None
        self._seq = 0

    # -- opening ------------------------------------------------------------
    @classmethod
    def create(cls, directory: Path, *, embedder: str, dim: int, chunking: dict[str, object],
               config: IndexConfig | None = None, precision: str = "fp32",
               allow_precision_mismatch: bool = False) -> LongTermMemory:
        """Open the index at ``directory``, creating an empty one if there is none.

        Creation holds the write lock. What a creator killed half-way left behind (a
        docstore without documents and no manifest) is cleared and created again; a
        folder with anything else in it is refused.
        """
        config = config or IndexConfig()

        def existing() -> LongTermMemory:
            return cls.open(directory, embedder=embedder, config=config, precision=precision,
                            allow_precision_mismatch=allow_precision_mismatch)

        if (directory / MANIFEST).exists():
            return existing()
        refuse_foreign(directory)
        directory.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        with write_lock(directory):
            if not (directory / MANIFEST).exists():  # else: created meanwhile by another
                clear_half_created(directory)
                now = time.time()
                manifest = Manifest(embedder=embedder, dim=dim, chunking=dict(chunking),
                                    index_factory=config.factory or "IDMap2,Flat",
                                    created_at=now, updated_at=now,
                                    counts={"documents": 0, "sentences": 0, "windows": 0},
                                    ragmem_version=__version__, embedder_precision=precision)
                create_private(directory / DOCSTORE)
                # The one place a docstore is made: a folder with no index in it yet.
                docstore = Docstore(directory / DOCSTORE, create=True)
                docstore.set_meta("manifest", manifest.fixed_json())
                write_manifest(directory, manifest)  # last: the index exists from here on
                return cls(directory, docstore, manifest, config)
        return existing()

    @classmethod
    def open(cls, directory: Path, *, embedder: str | None = None,
             config: IndexConfig | None = None, precision: str | None = None,
             allow_precision_mismatch: bool = False, readonly: bool = False) -> LongTermMemory:
        """Open an existing index. ``embedder`` and ``precision``, when given, must be
        what made its vectors (a precision mismatch passes with
        ``allow_precision_mismatch``). ``readonly``: SQLite opens the docstore read-only
        (``ragmem check``: it never writes)."""
        manifest = read_manifest(directory)
        refuse_mismatch(manifest, directory, embedder, precision, allow_precision_mismatch)
        if manifest.store != "faiss":
            raise IndexMismatchError(
                f"index {directory} is stored in {manifest.store}, not FAISS; open it with "
                "ragmem.memory.open_memory")
        if manifest.format_version > FORMAT_VERSION:  # 2 is a Milvus index's, not ours
            raise IndexMismatchError(
                f"{directory} has index format {manifest.format_version}, newer than this "
                f"ragmem reads for FAISS ({FORMAT_VERSION}); upgrade ragmem "
                "(pip install -U ragmem)")
        docstore = open_docstore(directory, readonly=readonly)
        memory = cls(directory, docstore, manifest, config or IndexConfig())
        try:
            memory.refresh()
        except sqlite3.DatabaseError as exc:
            memory.close()
            raise IndexCorruptError(unreadable_docstore(directory, exc)) from exc
        except BaseException:
            memory.close()
            raise
        return memory

    def close(self) -> None:
        self.docstore.close()

    # -- keeping FAISS in step with the docstore ----------------------------
    @property
    def vectors(self) -> VectorIndex | LayeredIndex:
        if self._vectors is None:
            self.refresh()
        assert self._vectors is not None
        return self._vectors

    def refresh(self) -> None:
        """Bring the in-memory FAISS index up to the docstore's last committed change."""
        snapshot = self.docstore.get_meta("snapshot")
        if self._vectors is None or snapshot != self._snapshot:
            self._load_snapshot(snapshot)
        if self.docstore.last_change() > self._seq:
            added, deleted, last = self.docstore.changes_since(self._seq)
            assert self._vectors is not None
            if added and not self._vectors.is_trained:  # a new index with an IVF factory
                self._vectors = self._build(self.manifest.index_factory)
                self._seq = self.docstore.last_change()
                return
            try:
                self._vectors.remove(deleted)
            except RuntimeError:  # HNSW cannot delete: rebuild it from the docstore
                self._vectors = self._build(self.manifest.index_factory)
                self._seq = self.docstore.last_change()
                return
            if added:
                self._vectors.add(added, self.docstore.vectors(added, self.dim))
            self._seq = last

    def _load_snapshot(self, snapshot: str | None) -> None:
        kw: dict[str, Any] = {"use_gpu": self.config.use_gpu, "nprobe": self.config.nprobe,
                              "ef_search": self.config.ef_search}
        if snapshot is None:
            self._vectors = VectorIndex.empty(self.dim, self.manifest.index_factory, **kw)
            self._seq = 0
        else:
            path = self.directory / snapshot
            # Cheap on every open (see ragmem.memory.faiss.snapshot); `ragmem check` verifies
            # the full sha256 every time.
            verify_snapshot(self.docstore, self.directory, snapshot)
            mmap = self.config.mmap and not self._writing
            try:
                loaded = VectorIndex.load(path, mmap=mmap, **kw)
            except RuntimeError as exc:  # FAISS's own reader found the file damaged
                reason = " ".join(str(exc).split())[-160:]
                raise IndexCorruptError(f"{path} is damaged ({reason})",
                                        Fix("repair", str(self.directory))) from exc
            if loaded.cpu.d != self.dim:
                raise IndexCorruptError(
                    f"{path} holds {loaded.cpu.d}-dimensional vectors, not {self.dim}",
                    Fix("repair", str(self.directory)))
            self._vectors = LayeredIndex(loaded, self.dim) if mmap else loaded
            self._seq = int(self.docstore.get_meta("snapshot_seq", "0") or 0)
        self._snapshot = snapshot

    def _write_snapshot(self) -> None:
        """Save FAISS as of ``self._seq``; then drop the log it covers and the old file."""
        seq = self._seq
        name = f"vectors-{seq}.faiss"
        path = self.directory / name
        self.vectors.save(path)
        old = self.docstore.get_meta("snapshot")
        with self.docstore.transaction():
            record_snapshot(self.docstore, path, seq)
            self.docstore.drop_changes(seq)
        self._snapshot = name
        if old and old != name:
            (self.directory / old).unlink(missing_ok=True)

    # -- writing ------------------------------------------------------------
    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the index's write lock (released by the OS if this process dies)."""
        with write_lock(self.directory):
            yield

    @contextmanager
    def writer(self) -> Iterator[Writer]:
        """Hold the write lock and one transaction: the whole batch lands, or none of it."""
        with self.locked():
            self._remove_stray_files()
            if isinstance(self._vectors, LayeredIndex):  # a writer changes the snapshot
                self._vectors = None
            self._writing = True
            writer = Writer(self)
            with self.docstore.transaction():
                # A snapshot verified in full on open (its recorded state missing or
                # stale) gets its state recorded, so that later opens are cheap.
                restate_snapshot(self.docstore, self.directory)
                yield writer
            self.refresh()
            factory = self._wanted_factory()
            if factory is not None:
                self.rebuild_vectors(factory)
            pending = self.docstore.last_change() - int(
                self.docstore.get_meta("snapshot_seq", "0") or 0)
            # Opening replays the log since the snapshot; see IndexConfig.snapshot_share.
            if self.docstore.get_meta("snapshot") is None or pending > max(
                    self.config.snapshot_min_changes,
                    int(self.vectors.ntotal * self.config.snapshot_share)):
                self._write_snapshot()
            self._write_manifest()

    def _write_manifest(self) -> None:
        self.manifest = replace(self.manifest, counts=self.docstore.counts(),
                                updated_at=time.time(), ragmem_version=__version__)
        if self.docstore.get_meta("manifest") != (fixed := self.manifest.fixed_json()):
            self.docstore.set_meta("manifest", fixed)  # for `check --repair`; rarely changes
        write_manifest(self.directory, self.manifest)

    def _remove_stray_files(self) -> None:
        # Left by a writer killed between writing a snapshot and committing its name.
        current = self.docstore.get_meta("snapshot")
        for path in self.directory.glob("vectors-*.faiss"):
            if path.name != current:
                path.unlink(missing_ok=True)
        for path in self.directory.glob(".*.tmp"):
            path.unlink(missing_ok=True)

    def rebuild_vectors(self, factory: str | None = None) -> None:
        """Rebuild FAISS from the vectors in the docstore (no re-embedding), then snapshot."""
        factory = factory or self.config.factory or default_factory(
            self.docstore.counts()["windows"], self.config.approximate_from)
        self._vectors = self._build(factory)
        self._seq = self.docstore.last_change()
        self.manifest = replace(self.manifest, index_factory=factory)
        self._write_snapshot()
        self._write_manifest()

    def _build(self, factory: str) -> VectorIndex:
        index = VectorIndex.empty(self.dim, factory, use_gpu=self.config.use_gpu,
                                  nprobe=self.config.nprobe, ef_search=self.config.ef_search)
        if not index.is_trained:
            index.train(_sample(self.docstore, TRAIN_SAMPLE, self.dim))
        for ids, vecs in self.docstore.iter_vectors():
            index.add(ids, vecs)
        return index

    def _wanted_factory(self) -> str | None:
        """The factory the index should move to now, if it should move at all."""
        if self.config.factory and self.config.factory != self.manifest.index_factory:
            return self.config.factory  # the user asked for another index type
        n = self.vectors.ntotal
        if self.config.factory is None and self.manifest.index_factory == "IDMap2,Flat" \
                and n >= self.config.approximate_from:
            return default_factory(n, self.config.approximate_from)
        return None

    # -- reading ------------------------------------------------------------
    def search(self, queries: np.ndarray, top_k: int,
               where: Filter | None = None) -> list[list[Hit]]:
        """Top-k windows per query vector; ``where`` restricts the search inside FAISS."""
        self.refresh()
        if self.vectors.ntotal == 0:
            return [[] for _ in range(len(queries))]
        allowed = None
        if where is not None:
            allowed = self.docstore.window_ids_matching(where)
            if len(allowed) == 0:
                return [[] for _ in range(len(queries))]
        scores, ids = self.vectors.search(queries, top_k, allowed)
        out = []
        for row_scores, row_ids in zip(scores, ids, strict=True):
            keep = row_ids >= 0
            out.append(self.docstore.hits(row_ids[keep].tolist(), row_scores[keep].tolist()))
        return out

    def lexical_search(self, question: str, top_k: int, where: Filter | None = None,
                       max_terms: int | None = None) -> list[Hit]:
        """BM25 over window text (SQLite FTS5), best first; a question of more than
        ``max_terms`` terms is searched by its most informative ones (highest IDF)."""
        allowed = self.docstore.window_ids_matching(where) if where is not None else None
        if allowed is not None and len(allowed) == 0:
            return []
        pairs = self.docstore.lexical_search(question, top_k, allowed, max_terms)
        return self.docstore.hits([p[0] for p in pairs], [p[1] for p in pairs])

    def documents(self) -> list[StoredDocument]:
        return self.docstore.documents()

    def content_hashes(self) -> dict[str, str]:
        return self.docstore.content_hashes()

    def counts(self) -> dict[str, int]:
        return self.docstore.counts()

    def document_path(self, doc_id: str) -> str:
        return self.docstore.document_path(doc_id)

    def document_text(self, doc_id: str) -> str:
        return self.docstore.document_text(doc_id)

    def document_sections(self, doc_id: str) -> list[list[Any]]:
        return self.docstore.document_sections(doc_id)

    def sentences(self, doc_id: str, first: int, last: int) -> list[Sentence]:
        return self.docstore.sentences(doc_id, first, last)

    def windows(self, doc_id: str) -> list[Window]:
        return self.docstore.windows(doc_id)

    def info(self) -> MemoryInfo:
        counts = self.docstore.counts()
        size = sum(p.stat().st_size for p in self.directory.iterdir() if p.is_file())
        return MemoryInfo(
            path=str(self.directory), embedder=self.manifest.embedder, dim=self.dim,
            documents=counts["documents"], sentences=counts["sentences"],
            windows=counts["windows"], index_type=self.manifest.index_factory,
            vectors_in_index=self.vectors.ntotal, size_bytes=size,
            updated_at=self.manifest.updated_at, chunking=dict(self.manifest.chunking))


def _sample(docstore: Docstore, n: int, dim: int) -> np.ndarray:
    """A seeded sample of stored vectors, to train an approximate index on."""
    ids = docstore.window_ids()
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(ids, size=min(n, len(ids)), replace=False))
    return docstore.vectors(pick.tolist(), dim)
