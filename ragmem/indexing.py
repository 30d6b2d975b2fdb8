"""Documents -> long-term memory: chunk, embed in batches, store; incremental by content hash.

    >>> indexer = Indexer(memory, embedder, ChunkingConfig())        # doctest: +SKIP
    >>> stats = indexer.index(["notes/"], sync=True)                  # doctest: +SKIP
    >>> stats.added, stats.unchanged, stats.removed                    # doctest: +SKIP
    (2, 40, 1)

A document whose ``content_hash`` is already stored is skipped: only new and changed
documents are chunked and embedded. One whose file moved (a renamed or moved folder
whose files keep their ids) gets its new path and mtime in the same write, and is
counted ``unchanged`` and ``moved``: nothing cites a file that is gone. Windows of many
documents are pooled up to ``embed_batch`` per embedder call (bigger batches are
faster). A whole run is one write of the memory: in the FAISS store it lands completely
or not at all; in the Milvus store document by document (a run cut short is finished by
running it again). Bad files are skipped and reported in ``IndexStats.failed``
(unreadable, hostile, too big, too slow to read, or failing to read or chunk in a way
nobody foresaw); the rest are indexed.

The work is in steps that an ``Engine`` can take over (``ragmem.ingest``): read, skip
the unchanged, chunk and embed. Without one, this process does them;
``ragmem.distributed.RayEngine`` does them on a Ray cluster (``engine_for`` picks it
by name). Either way the
``Indexer`` alone writes, counts and reports, through the same ``memory.writer()``: the
result, and what a write promises, are the same.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from ragmem.config import ChunkingConfig, DocumentsConfig, EngineName, IndexConfig
from ragmem.documents import discover
from ragmem.embedding import Embedder
from ragmem.embedding.factory import counter_of
from ragmem.errors import ConfigError, IndexMismatchError
from ragmem.ingest import (
    Embedded,
    Engine,
    Event,
    Source,
    SourceRead,
    chunk_source,
    read_source,
)
from ragmem.memory.base import Memory, MemoryWriter, StoredDocument
from ragmem.types import Document, Sentence, Window

if TYPE_CHECKING:
    from ragmem.config import Config
    from ragmem.memory.manifest import Manifest

ENGINES: tuple[str, ...] = get_args(EngineName)


def engine_for(name: str, config: Config, manifest: Manifest) -> Engine | None:
    """The ingest engine ``name`` picks for the index of ``manifest``: None for "local"
    (the ``Indexer`` reads, chunks and embeds in this process), a Ray Data engine for
    "ray" (``ragmem.distributed``, imported only then)."""
    if name == "local":
        return None
    if name == "ray":
        from ragmem.distributed import ray_engine

        return ray_engine(config, manifest)
    raise ConfigError(f"unknown ingest engine {name!r}; use {' or '.join(ENGINES)}")


def owned_and_gone(unseen: Iterable[str], paths: Mapping[str, str],
                   roots: Sequence[str | Path], read_cleanly: set[str]) -> list[str]:
    """What a ``sync`` run may remove, of the stored documents no source of it holds
    (``unseen``): a document whose source file (``paths``: doc_id -> its stored,
    absolute path) lies under one of the run's ``roots`` (a folder, or a file itself)
    and is gone, or was read without a problem in this run (so it no longer holds the
    document: a .jsonl that dropped a record). Documents of other roots, and of files
    that are there but could not be read this time, are kept.

    >>> owned_and_gone(["a/x.txt", "b/y.txt"], {"a/x.txt": "/no/a/x.txt",
    ...                "b/y.txt": "/no/b/y.txt"}, ["/no/a"], set())
    ['a/x.txt']
    """
    under = [variant for root in roots for variant in _variants(str(root))]
    gone = []
    for doc_id in sorted(unseen):
        path = paths.get(doc_id, "")
        # A path that is not absolute (a document added from memory, not a file) has
        # no root: it is never a sync's to remove.
        if not os.path.isabs(path):
            continue
        if not any(v == r or v.startswith(r.rstrip(os.sep) + os.sep)
                   for v in _variants(path) for r in under):
            continue
        if not os.path.lexists(path) or any(v in read_cleanly for v in _variants(path)):
            gone.append(doc_id)
    return gone


def _move(writer: MemoryWriter, old: StoredDocument, file: str) -> bool:
    """Point ``old`` at ``file``, the file it was read from this time, if it names
    another file (its file moved or was renamed; a path through a link to the same file
    is left as it is). A document's path is its file's absolute path
    (``ragmem.documents``)."""
    path = os.path.abspath(file)
    if old.path == path or os.path.realpath(old.path) == os.path.realpath(path):
        return False
    try:
        mtime = os.stat(path).st_mtime
    except OSError:  # gone since it was read (or no file's name): the next run moves it
        return False
    return writer.move(old.doc_id, path, mtime)


def _hashes(stored: Mapping[str, StoredDocument]) -> dict[str, str]:
    return {doc_id: d.content_hash for doc_id, d in stored.items()}


def _variants(path: str) -> set[str]:
    # As given (what a document stores: ``Document.path`` is absolute, links kept) and
    # with links resolved: a root named through a link still owns its documents.
    return {os.path.abspath(path), os.path.realpath(path)}


@dataclass(frozen=True)
class IndexProgress:
    files_done: int
    files_total: int
    sentences: int
    windows: int
    elapsed_s: float
    current: str = ""


@dataclass(frozen=True)
class IndexStats:
    files: int
    added: int
    updated: int
    unchanged: int
    removed: int
    sentences: int
    windows: int
    seconds: float
    failed: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    moved: int = 0  # of the unchanged: their file moved, and they now name it

    @property
    def windows_per_s(self) -> float:
        return self.windows / self.seconds if self.seconds > 0 else 0.0


class Indexer:
    """Adds documents to ``memory``: chunked by ``chunking``, embedded by ``embedder``;
    files over ``max_file_bytes``, or slower than ``max_read_seconds`` to read, are
    skipped."""

    def __init__(self, memory: Memory, embedder: Embedder,
                 chunking: ChunkingConfig | None = None,
                 embed_batch: int = IndexConfig.embed_batch,
                 max_file_bytes: int = DocumentsConfig.max_file_bytes,
                 max_read_seconds: float = DocumentsConfig.max_read_seconds) -> None:
        self.memory = memory
        self.embedder = embedder
        self.chunking = chunking or ChunkingConfig()
        self.embed_batch = embed_batch
        self.max_file_bytes = max_file_bytes
        self.max_read_seconds = max_read_seconds

    def index(self, paths: Sequence[str | Path], *, sync: bool = False,
              progress: Callable[[IndexProgress], None] | None = None,
              engine: Engine | None = None) -> IndexStats:
        """Add new and changed documents of ``paths`` (files or folders); with ``sync``,
        also remove the stored documents under ``paths`` whose files are gone (see
        ``owned_and_gone``; documents of other paths are kept). Bad files, and bad
        lines of a .jsonl, are reported in ``failed`` as ``(where, reason)``.
        ``engine`` reads, chunks and embeds instead of this process (the write stays
        here)."""
        stored = {d.doc_id: d for d in self.memory.documents()}
        files = discover(paths, {d.doc_id: d.path for d in stored.values()})
        if engine is None:
            sources = (read_source(root, file, self.max_file_bytes, self.max_read_seconds)
                       for root, file in files)
            return self._ingest(sources, len(files), sync, paths, progress, stored)
        self._check_chunking()  # before an engine starts a cluster for nothing
        known = _hashes(stored)
        return self._write(engine.run(files, known), known, len(files),
                           paths if sync else None, progress, stored)

    def add_documents(self, documents: Iterable[Document], *, total: int = 0,
                      progress: Callable[[IndexProgress], None] | None = None) -> IndexStats:
        """Index documents already in memory (a dataset, another store) like files."""
        return self._ingest(((d.doc_id, [d], []) for d in documents), total, False, (),
                            progress, None)

    def remove(self, doc_ids: Sequence[str]) -> int:
        """Delete documents by id; returns how many existed."""
        known = self.memory.content_hashes()
        n = 0
        with self.memory.writer() as writer:
            for doc_id in doc_ids:
                if doc_id in known:
                    writer.remove(doc_id)
                    n += 1
        return n

    def ingest(self, sources: Iterable[Source], total: int, *, sync: bool = False,
               roots: Sequence[str | Path] = (),
               progress: Callable[[IndexProgress], None] | None = None) -> IndexStats:
        """The work of ``index`` over already-read sources (named by their file's path);
        ``total`` is for progress. ``sync`` removes only documents under ``roots``."""
        stored = {d.doc_id: d for d in self.memory.documents()}
        return self._ingest(sources, total, sync, roots, progress, stored)

    def _ingest(self, sources: Iterable[Source], total: int, sync: bool,
                roots: Sequence[str | Path], progress: Callable[[IndexProgress], None] | None,
                stored: Mapping[str, StoredDocument] | None) -> IndexStats:
        self._check_chunking()
        # The stored documents, read once for the moves, give the hashes too (on Milvus
        # content_hashes() would be a second pass over every header).
        known = self.memory.content_hashes() if stored is None else _hashes(stored)
        return self._write(self._events(sources, known), known, total,
                           roots if sync else None, progress, stored)

    def _events(self, sources: Iterable[Source], known: Mapping[str, str]) -> Iterator[Event]:
        """The local engine: chunk new and changed documents here and embed their windows
        pooled across documents, ``embed_batch`` at a time (bigger batches are faster)."""
        pending: list[tuple[Document, list[Sentence], list[Window]]] = []
        pending_windows = 0

        def flush() -> Iterator[Embedded]:
            nonlocal pending_windows
            vectors = self.embedder.embed([w.text for _, _, ws in pending for w in ws])
            offset = 0
            for doc, sentences, windows in pending:
                yield Embedded(doc, sentences, windows,
                               vectors[offset:offset + len(windows)])
                offset += len(windows)
            pending.clear()
            pending_windows = 0

        for source in sources:
            (name, docs, problems), chunked = chunk_source(
                source, known, counter_of(self.embedder), self.chunking)
            n_sent = n_win = 0
            for doc, sentences, windows in chunked:
                pending.append((doc, sentences, windows))
                n_sent += len(sentences)
                n_win += len(windows)
                pending_windows += len(windows)
                if pending_windows >= self.embed_batch:
                    yield from flush()
            yield SourceRead(name, tuple((d.doc_id, d.content_hash) for d in docs),
                             tuple(problems), n_sent, n_win)
        if pending:
            yield from flush()

    def _write(self, events: Iterable[Event], known: Mapping[str, str], total: int,
               sync_roots: Sequence[str | Path] | None,
               progress: Callable[[IndexProgress], None] | None,
               stored: Mapping[str, StoredDocument] | None) -> IndexStats:
        """Store what ``events`` brings in one writer batch (all or nothing), count it,
        and, given ``sync_roots``, remove the documents under them whose files are gone.
        Given the ``stored`` documents (the events' sources are files, each named by its
        path), an unchanged document whose file moved is moved in the same batch."""
        start = time.perf_counter()
        failed: list[tuple[str, str]] = []
        seen: set[str] = set()
        read_cleanly: set[str] = set()
        n_sources = added = updated = unchanged = moved = n_sent = n_win = 0
        with self.memory.writer() as writer:
            for event in events:
                if isinstance(event, Embedded):
                    writer.add(event.doc, event.sentences, event.windows, event.vectors)
                    continue
                n_sources += 1
                failed.extend((e.where, e.reason) for e in event.problems)
                if sync_roots is not None and not event.problems:
                    read_cleanly.update(_variants(event.name))
                for doc_id, content_hash in event.documents:
                    seen.add(doc_id)
                    if known.get(doc_id) == content_hash:
                        unchanged += 1
                        if stored is not None and (old := stored.get(doc_id)) is not None:
                            moved += _move(writer, old, event.name)
                    elif doc_id in known:
                        updated += 1
                    else:
                        added += 1
                n_sent += event.sentences
                n_win += event.windows
                if progress:
                    progress(IndexProgress(n_sources, max(total, n_sources), n_sent, n_win,
                                           time.perf_counter() - start, event.name))
            removed = 0
            if sync_roots is not None and (unseen := set(known) - seen):
                paths = {d.doc_id: d.path for d in self.memory.documents()}
                for doc_id in owned_and_gone(unseen, paths, sync_roots, read_cleanly):
                    writer.remove(doc_id)
                    removed += 1
        return IndexStats(n_sources, added, updated, unchanged, removed, n_sent, n_win,
                          time.perf_counter() - start, tuple(failed), moved)

    def _check_chunking(self) -> None:
        """An index keeps the chunking it was built with: windows of one index must be
        comparable, so a request for another is refused, not half applied."""
        built = self.memory.manifest.chunking
        asked = asdict(self.chunking)
        differ = {k: (built[k], v) for k, v in asked.items() if k in built and built[k] != v}
        if differ:
            what = ", ".join(f"{k} {b} (asked for {a})" for k, (b, a) in differ.items())
            raise IndexMismatchError(
                f"index {self.memory.directory} was built with chunking {what}; leave the "
                "chunking at the index's own settings, or index into a new index")
