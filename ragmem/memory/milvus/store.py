"""MilvusMemory: long-term memory in two Milvus collections, chosen per index.

Where the truth lives: **in Milvus, all of it.** ``<base>_windows`` holds each window's
vector, its text (the BM25 function's input), its offsets and its document's id, path
and metadata (for filters inside the search); ``<base>_documents`` holds one header row
per document (path, title, content hash, counts) and the document's text, sentence
offsets and headings in ordered pieces (a VARCHAR holds at most 65,535 bytes), so
``document_text(doc_id)[start:end]`` is exact. The index folder keeps only the manifest
(which names the URI and the collections) and, for a milvus-lite URI inside it, the
lite folder. Why not keep the SQLite docstore as the truth beside Milvus: a Milvus
server exists to be shared, and a second store of record on one machine would make
every other machine's copy of the index stale; with no transaction spanning SQLite and
Milvus, the two could also disagree after a crash, with no way to say which is right.
With everything in Milvus, another machine needs only the manifest (or the collection
name: ``milvus.collection``) to use the same memory.

Milvus has no transactions, so a write is made safe to cut short and to retry instead,
per document (``ragmem.memory.milvus.writing``). Writers on one machine take the index
folder's lock; writers on several machines sharing a server are not serialised.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ragmem import __version__
from ragmem.config import MilvusConfig
from ragmem.errors import Fix, IndexCorruptError, IndexMismatchError
from ragmem.memory.base import MemoryInfo, StoredDocument
from ragmem.memory.lexical import query_terms
from ragmem.memory.manifest import (
    MANIFEST,
    Manifest,
    manifest_from_json,
    read_manifest,
    refuse_mismatch,
    write_manifest,
)
from ragmem.memory.milvus.client import Client, Collections
from ragmem.memory.milvus.connection import connect_client, create_memory
from ragmem.memory.milvus.expressions import (
    NOTHING,
    doc_ids_expression,
    expression,
    matches,
    quote,
)
from ragmem.memory.milvus.rows import EMPTY, IS_HEADER, META_PK, SENTENCES_PER_PART, Prepared, pk
from ragmem.memory.milvus.schema import HEADER_FIELDS, WINDOW_FIELDS, search_params
from ragmem.memory.milvus.writing import (
    MilvusWriter,
    delete_documents,
    move_document,
    write_documents,
)
from ragmem.types import Filter, Hit, Sentence, Window

PARTS_PER_READ = 64  # pieces read per request (~4 MB)


class MilvusMemory:
    def __init__(self, directory: Path, manifest: Manifest, client: Client,
                 settings: MilvusConfig) -> None:
        self.directory = directory
        self.manifest = manifest
        self.dim = manifest.dim
        self.settings = settings
        self.names = Collections(str(manifest.milvus["collection"]))
        self.full_text = bool(manifest.milvus.get("full_text", False))
        self.index_type = manifest.index_factory
        self._client = client
        self._text_cache: dict[str, tuple[str, str]] = {}
        self._warned = False
        self._warned_compact = False

    # -- opening ------------------------------------------------------------
    @classmethod
    def create(cls, directory: Path, *, embedder: str, dim: int, chunking: dict[str, object],
               config: MilvusConfig | None = None, precision: str = "fp32") -> MilvusMemory:
        """A new index at ``directory`` whose memory lives in Milvus at ``config.uri``
        (default: milvus-lite in ``directory/milvus.db``). A ``config.collection`` that
        exists already is attached to, if the same embedder made it."""
        config = config or MilvusConfig()
        if (directory / MANIFEST).exists():
            return cls.open(directory, embedder=embedder, config=config, precision=precision)
        manifest, client = create_memory(directory, embedder=embedder, dim=dim,
                                         chunking=chunking, config=config, precision=precision)
        return cls(directory, manifest, client, config)

    @classmethod
    def open(cls, directory: Path, *, embedder: str | None = None,
             config: MilvusConfig | None = None, precision: str | None = None,
             allow_precision_mismatch: bool = False) -> MilvusMemory:
        """Open an existing index; its URI and collections come from its manifest (a
        ``config.uri`` overrides the URI: the server moved)."""
        config = config or MilvusConfig()
        manifest = read_manifest(directory)
        refuse_mismatch(manifest, directory, embedder, precision, allow_precision_mismatch)
        if manifest.store != "milvus":
            raise IndexMismatchError(f"index {directory} is stored in {manifest.store}, not "
                                     "Milvus; open it with ragmem.memory.open_memory")
        return cls.connect(directory, manifest, config)

    @classmethod
    def connect(cls, directory: Path, manifest: Manifest,
                config: MilvusConfig | None = None) -> MilvusMemory:
        """The memory ``manifest`` describes (``open`` without reading the manifest:
        ``check --repair`` has one rebuilt from Milvus)."""
        config = config or MilvusConfig()
        return cls(directory, manifest, connect_client(directory, manifest, config), config)

    def close(self) -> None:
        self._client.close()

    def drop(self) -> None:
        """Delete both collections: the whole memory (the folder is the caller's)."""
        for name in (self.names.windows, self.names.documents):
            if self._client.has_collection(name):
                self._client.drop(name)

    # -- writing ------------------------------------------------------------
    @contextmanager
    def writer(self) -> Iterator[MilvusWriter]:
        """Hold the folder's write lock; what the batch adds is written as it goes, each
        document whole or not at all (see the module docstring). On an error, what was
        still buffered is dropped."""
        from ragmem.memory.folder import write_lock

        with write_lock(self.directory):
            writer = MilvusWriter(self.write, self.delete, self.dim, self.settings.write_batch,
                                  partial(move_document, self._client, self.names))
            yield writer
            writer.flush()
            if self._client.lite:
                # milvus-lite searches rows still in its memtable row by row in Python
                # (~75 us a row, eval/reports/scale-out-milvus.md); a flush moves them
                # into an indexed segment. A server seals segments itself.
                if writer.added_windows or writer.removed_windows or writer.moved:
                    self._client.flush(self.names.windows)
                    self._client.flush(self.names.documents)
                # Every time, not only after changes: a run killed earlier can have left
                # rows that count in BM25's statistics (ragmem.memory.milvus.lite).
                self.compact()
                self._client.make_private()
            self._text_cache.clear()
            self.manifest = replace(self.manifest, counts=self.counts(),
                                    updated_at=time.time(), ragmem_version=__version__)
            write_manifest(self.directory, self.manifest)

    def write(self, docs: Sequence[Prepared]) -> int:
        """Store ``docs`` (each replacing its older version); returns the windows the
        older versions had (``writing.write_documents``)."""
        self._forget([d.doc_id for d in docs])
        return write_documents(self._client, self.names, docs)

    def delete(self, doc_ids: Sequence[str]) -> int:
        """Delete documents, header first; returns the windows their headers counted
        (``writing.delete_documents``)."""
        self._forget(doc_ids)
        return delete_documents(self._client, self.names, doc_ids)

    def compact(self) -> None:
        """Keyword scores from the live windows alone: on milvus-lite, the windows are
        rewritten into one segment when replaced or deleted rows would count in BM25's
        statistics (``ragmem.memory.milvus.lite``); a server is asked to compact."""
        why = self._client.compact(self.names.windows)
        if why is not None and not self._warned_compact:
            warnings.warn(f"keyword scores of index {self.directory} may differ from a clean "
                          f"build's: {why}", stacklevel=2)
            self._warned_compact = True

    def _forget(self, doc_ids: Sequence[str]) -> None:
        for doc_id in doc_ids:
            self._text_cache.pop(doc_id, None)

    # -- searching ----------------------------------------------------------
    def search(self, queries: np.ndarray, top_k: int,
               where: Filter | None = None) -> list[list[Hit]]:
        """Top-k windows per query vector by inner product; ``where`` runs inside Milvus."""
        expr = self._expression(where)
        if expr == NOTHING or top_k <= 0:
            return [[] for _ in range(len(queries))]
        q = np.ascontiguousarray(queries, dtype=np.float32)
        rows = self._client.search(
            self.names.windows, [v.tolist() for v in q], "vector", min(top_k, 16_384), expr,
            WINDOW_FIELDS, search_params(self.index_type, self.settings, top_k))
        return self._hits(rows, [[float(r["distance"]) for r in row] for row in rows])

    def lexical_search(self, question: str, top_k: int, where: Filter | None = None,
                       max_terms: int | None = None) -> list[Hit]:
        """BM25 (Milvus full-text search) over the windows' text, best first.

        Milvus scores all of a question's terms in one pass over its sparse index and
        does not say how many windows hold a term, so ``max_terms`` (which keeps FTS5's
        OR-queries fast in the FAISS store) keeps a long question's *first* terms here."""
        if not self.full_text:
            if not self._warned:
                warnings.warn(f"index {self.directory} has no full-text search in Milvus "
                              "(milvus.full_text off, or a Milvus before 2.5): lexical "
                              "search finds nothing", stacklevel=2)
                self._warned = True
            return []
        terms = query_terms(question)
        if max_terms is not None:
            terms = terms[:max_terms]
        expr = self._expression(where)
        if not terms or expr == NOTHING or top_k <= 0:
            return []
        # Equal scores (the same words in windows of the same length) come back in the
        # order Milvus holds the rows, which edits change: a few more than asked for, put
        # in window id order, make the top k the same whatever the index went through.
        rows = self._client.search(self.names.windows, [" ".join(terms)], "sparse",
                                   min(2 * top_k + 8, 16_384), expr, WINDOW_FIELDS,
                                   {"metric_type": "BM25"})
        # BM25 is never negative; milvus-lite reports it negated (best first either way).
        hits = self._hits(rows, [[abs(float(r["distance"])) for r in row] for row in rows])[0]
        return sorted(hits, key=lambda h: (-h.score, h.window_id))[:top_k]

    def _expression(self, where: Filter | None) -> str:
        if where is None:
            return ""
        expr = expression(where)
        if expr is not None:
            return expr
        # Not exactly expressible: the documents it matches, found here, by id.
        found = [r["doc_id"] for r in self._client.scan(
            self.names.documents, IS_HEADER, ["doc_id", "path", "metadata"])
            if matches(where, r["doc_id"], r["path"], r["metadata"] or {})]
        return doc_ids_expression(found)

    def _hits(self, rows: list[list[dict[str, Any]]],
              scores: list[list[float]]) -> list[list[Hit]]:
        """Search results as ``Hit``s; windows whose document has no header (a write cut
        short, or one under way) are left out."""
        found = {r["entity"]["doc_id"] for row in rows for r in row}
        live = self._live(found)
        out = []
        for row, row_scores in zip(rows, scores, strict=True):
            out.append([self._window_hit(r, s) for r, s in zip(row, row_scores, strict=True)
                        if r["entity"]["doc_id"] in live])
        return out

    def _live(self, doc_ids: set[str]) -> set[str]:
        if not doc_ids:
            return set()
        return {r["doc_id"] for r in self._client.query(
            self.names.documents, f"pk in [{', '.join(quote(pk(d, 'doc')) for d in doc_ids)}]",
            ["doc_id"])}

    def _window_hit(self, row: dict[str, Any], score: float) -> Hit:
        e = row["entity"]
        return Hit(int(row["window_id"]), e["doc_id"], score, int(e["sent_first"]),
                   int(e["sent_last"]), int(e["char_start"]), int(e["char_end"]),
                   self._window_text(e))

    def _window_text(self, e: dict[str, Any]) -> str:
        if e["cut"]:
            return self.document_text(e["doc_id"])[int(e["char_start"]):int(e["char_end"])]
        return str(e["text"] or e["lexical"])

    # -- reading ------------------------------------------------------------
    def _header(self, doc_id: str, fields: Sequence[str]) -> dict[str, Any] | None:
        rows = self._client.query(self.names.documents, f"pk == {quote(pk(doc_id, 'doc'))}",
                                  fields)
        return rows[0] if rows else None

    def _headers(self, fields: Sequence[str]) -> Iterator[dict[str, Any]]:
        return self._client.scan(self.names.documents, IS_HEADER, fields)

    def _parts(self, doc_id: str, kind: str, first: int, last: int) -> list[str]:
        """Pieces ``first..last`` of one kind of a document, in order."""
        out: list[dict[str, Any]] = []
        for a in range(first, last + 1, PARTS_PER_READ):
            b = min(last, a + PARTS_PER_READ - 1)
            out += self._client.query(
                self.names.documents, f'doc_id == {quote(doc_id)} and kind == "{kind}" and '
                f"part >= {a} and part <= {b}", ["part", "body"])
        out.sort(key=lambda r: int(r["part"]))
        if [int(r["part"]) for r in out] != list(range(first, last + 1)):
            raise IndexCorruptError(
                f"document {doc_id!r} is missing pieces of its {kind} in Milvus (a write cut "
                "short by another writer?)", Fix("repair", str(self.directory)))
        return [str(r["body"]) for r in out]

    def _text(self, doc_id: str, head: dict[str, Any]) -> str:
        cached = self._text_cache.get(doc_id)
        if cached is not None and cached[0] == head["content_hash"]:
            return cached[1]
        n = int(head["n_text"])
        text = "".join(self._parts(doc_id, "text", 0, n - 1)) if n else ""
        self._text_cache[doc_id] = (str(head["content_hash"]), text)
        if len(self._text_cache) > 256:
            self._text_cache.pop(next(iter(self._text_cache)))
        return text

    def document_text(self, doc_id: str) -> str:
        """A document's text ("" if it is not stored); cached by its content hash, which
        is read on every call (another process may have updated the document)."""
        head = self._header(doc_id, ["content_hash", "n_text"])
        return "" if head is None else self._text(doc_id, head)

    def document_path(self, doc_id: str) -> str:
        head = self._header(doc_id, ["path"])
        return "" if head is None else str(head["path"])

    def document_sections(self, doc_id: str) -> list[list[Any]]:
        head = self._header(doc_id, ["n_sect"])
        if head is None or not int(head["n_sect"]):
            return []
        sections: list[list[Any]] = json.loads(
            "".join(self._parts(doc_id, "sect", 0, int(head["n_sect"]) - 1)))
        return sections

    def sentences(self, doc_id: str, first: int, last: int) -> list[Sentence]:
        """Sentences ``first..last`` (inclusive, clipped to the document), in order."""
        head = self._header(doc_id, ["content_hash", "n_text", "n_sentences"])
        if head is None:
            return []
        first, last = max(first, 0), min(last, int(head["n_sentences"]) - 1)
        if first > last:
            return []
        a, b = first // SENTENCES_PER_PART, last // SENTENCES_PER_PART
        offsets = [pair for body in self._parts(doc_id, "sent", a, b) for pair in json.loads(body)]
        text = self._text(doc_id, head)
        base = a * SENTENCES_PER_PART
        return [Sentence(doc_id, i, s, e, text[s:e])
                for i in range(first, last + 1) for s, e in [offsets[i - base]]]

    def windows(self, doc_id: str) -> list[Window]:
        if self._header(doc_id, ["doc_id"]) is None:
            return []
        rows = self._client.query(self.names.windows, f"doc_id == {quote(doc_id)}",
                                  WINDOW_FIELDS)
        rows.sort(key=lambda r: int(r["idx"]))
        return [Window(doc_id, int(r["idx"]), int(r["sent_first"]), int(r["sent_last"]),
                       int(r["char_start"]), int(r["char_end"]), self._window_text(r),
                       int(r["n_tokens"])) for r in rows]

    def documents(self) -> list[StoredDocument]:
        docs = [StoredDocument(str(r["doc_id"]), str(r["path"]), str(r["title"]),
                               float(r["mtime"]), str(r["content_hash"]), int(r["n_windows"]))
                for r in self._headers(["doc_id", "path", "title", "mtime", "content_hash",
                                        "n_windows"])]
        return sorted(docs, key=lambda d: d.doc_id)

    def content_hashes(self) -> dict[str, str]:
        return {str(r["doc_id"]): str(r["content_hash"])
                for r in self._headers(["doc_id", "content_hash"])}

    def counts(self) -> dict[str, int]:
        """Documents, and the sentences and windows their headers count (one pass over
        the headers: Milvus sums nothing itself)."""
        n = {"documents": 0, "sentences": 0, "windows": 0}
        for r in self._headers(["n_sentences", "n_windows"]):
            n["documents"] += 1
            n["sentences"] += int(r["n_sentences"])
            n["windows"] += int(r["n_windows"])
        return n

    def info(self) -> MemoryInfo:
        counts = self.counts()
        files = [p for p in self.directory.rglob("*") if p.is_file()]
        kind = "milvus-lite" if self._client.lite else "milvus"
        return MemoryInfo(
            path=str(self.directory), embedder=self.manifest.embedder, dim=self.dim,
            documents=counts["documents"], sentences=counts["sentences"],
            windows=counts["windows"], index_type=f"{kind} {self.index_type}",
            vectors_in_index=self._client.count(self.names.windows),
            # A server's own disk use is not reported to clients: local files only.
            size_bytes=sum(p.stat().st_size for p in files),
            updated_at=self.manifest.updated_at, chunking=dict(self.manifest.chunking))

    # -- for ``ragmem check`` (ragmem.memory.milvus.check) --------------------
    @property
    def client(self) -> Client:
        return self._client

    def meta(self) -> Manifest | None:
        """The manifest's fixed part as stored in Milvus at creation (None if lost)."""
        rows = self._client.query(self.names.documents, f"pk == {quote(META_PK)}", ["body"])
        return manifest_from_json(rows[0]["body"]) if rows else None

    def write_meta(self) -> None:
        self._client.upsert(self.names.documents, [{
            **EMPTY, "pk": META_PK, "doc_id": "", "kind": "meta", "part": 0,
            "body": self.manifest.fixed_json()}])

    def headers(self) -> Iterator[dict[str, Any]]:
        return self._headers(HEADER_FIELDS)
