"""Writing documents into the Milvus memory.

Milvus has no transactions, so a write is made safe to cut short and to retry instead,
per document (``Memory.writer()``'s batch is not atomic here; each document is):

1. the document's header row is deleted first: from here on it looks absent;
2. every other row of it is deleted (windows, text, sentences: an older, longer
   version leaves nothing behind);
3. its windows and pieces are written under deterministic keys (``window_id`` is a
   hash of doc id and position), so writing them twice replaces, never duplicates;
4. the header, with the content hash, is written last.

A crash anywhere leaves the document absent (no header), and the next ``ragmem index``
writes it again. A document whose file moved, its text unchanged, is rewritten with its
new path and the same vectors (``move_document``): windows first, header last, so a move
cut short leaves the header's old path, and the next run moves it again. Rows without a
header are never returned by a search, and ``ragmem check`` reports them (``--repair``
deletes them). Removing deletes the header first, then the rest. Writers on one machine
take the index folder's lock; writers on several machines sharing a server are not
serialised (a document two of them write at once can end torn; ``check`` finds it, and
``--repair`` removes it for re-indexing).

``MilvusWriter`` buffers what ``MilvusMemory.writer()`` is given and writes it
``write_batch`` windows at a time; ``write_documents``, ``move_document`` and
``delete_documents`` are the requests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ragmem.memory.base import check_vectors
from ragmem.memory.milvus.client import Client, Collections
from ragmem.memory.milvus.expressions import doc_ids_expression, quote
from ragmem.memory.milvus.rows import EMPTY, IS_HEADER, Prepared, batches, pk, prepare
from ragmem.types import Document, Sentence, Window


class MilvusWriter:
    """Changes made inside ``MilvusMemory.writer()``: buffered, and written document by
    document, ``write_batch`` windows at a time, by ``write`` and ``delete`` (the
    memory's own, which also forget what it cached of those documents)."""

    def __init__(self, write: Callable[[Sequence[Prepared]], int],
                 delete: Callable[[Sequence[str]], int], dim: int, write_batch: int,
                 move: Callable[[str, str, float], int]) -> None:
        self._write, self._delete, self._move = write, delete, move
        self._dim, self._write_batch = dim, write_batch
        self._pending: list[Prepared] = []
        self._pending_windows = 0
        self.added_windows = 0
        self.removed_windows = 0
        self.moved = 0

    def add(self, doc: Document, sentences: Sequence[Sentence], windows: Sequence[Window],
            vectors: np.ndarray) -> None:
        check_vectors(vectors, len(windows), self._dim)
        self._pending = [p for p in self._pending if p.doc_id != doc.doc_id]  # the later wins
        self._pending.append(prepare(doc, sentences, windows, vectors))
        self._pending_windows += len(windows)
        if self._pending_windows >= self._write_batch:
            self.flush()

    def move(self, doc_id: str, path: str, mtime: float) -> bool:
        stored = self._move(doc_id, path, mtime) >= 0
        self.moved += stored
        return stored

    def remove(self, doc_id: str) -> int:
        self.flush()
        n = self._delete([doc_id])
        self.removed_windows += n
        return n

    def flush(self) -> None:
        if self._pending:
            self.removed_windows += self._write(self._pending)
            self.added_windows += sum(len(p.windows) for p in self._pending)
        self._pending, self._pending_windows = [], 0


def write_documents(client: Client, names: Collections, docs: Sequence[Prepared]) -> int:
    """Store ``docs`` (each replacing its older version): header deleted, then the rest,
    new rows, header last. Returns the windows the older versions had."""
    replaced = delete_documents(client, names, [d.doc_id for d in docs])
    for rows in batches([r for d in docs for r in d.pieces]):
        client.upsert(names.documents, rows)
    for rows in batches([r for d in docs for r in d.windows]):
        client.upsert(names.windows, rows)
    for rows in batches([d.header for d in docs]):
        client.upsert(names.documents, rows)
    return replaced


def delete_documents(client: Client, names: Collections, doc_ids: Sequence[str]) -> int:
    """Delete documents: headers first, then everything else of theirs. Returns the
    windows their headers counted (0 for one that was not stored)."""
    if not doc_ids:
        return 0
    docs = doc_ids_expression(doc_ids)
    n = sum(int(r["n_windows"]) for r in client.query(
        names.documents, f"{IS_HEADER} and {docs}", ["n_windows"]))
    client.delete(names.documents, f"{IS_HEADER} and {docs}")
    client.delete(names.windows, docs)
    client.delete(names.documents, f'kind != "meta" and {docs}')
    return n


# Every field a row stores (an upsert gives them all again), less BM25's sparse vector,
# which Milvus makes from ``lexical``.
WINDOW_ROW = ("window_id", "doc_id", "path", "idx", "sent_first", "sent_last", "char_start",
              "char_end", "n_tokens", "metadata", "text", "cut", "lexical", "vector")
HEADER_ROW = ("pk", "doc_id", "kind", "part", *EMPTY)


def move_document(client: Client, names: Collections, doc_id: str, path: str,
                  mtime: float) -> int:
    """A stored document's file moved, its text unchanged: its windows and header are
    written again with ``path`` (and the header with ``mtime``), vectors as stored,
    header last. Returns the windows moved (-1: the document is not stored)."""
    header = client.query(names.documents, f"pk == {quote(pk(doc_id, 'doc'))}", HEADER_ROW)
    if not header:
        return -1
    windows = client.query(names.windows, doc_ids_expression([doc_id]), WINDOW_ROW)
    for rows in batches([{**w, "path": path} for w in windows]):
        client.upsert(names.windows, rows)
    client.upsert(names.documents, [{**header[0], "path": path, "mtime": float(mtime)}])
    return len(windows)
