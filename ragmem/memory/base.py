"""What the rest of ragmem may use of a long-term memory: a small read and write surface.

``LongTermMemory`` (FAISS + SQLite, ``ragmem.memory.faiss.store``) is one backend;
``MilvusMemory`` (``ragmem.memory.milvus``) implements the same surface, and the
retriever, the indexing stage and the CLI work unchanged on either
(``ragmem.memory.open_memory`` picks the one an index was built with). Nothing outside
``ragmem/memory/`` touches a backend's storage (SQL, files, collections) directly.

A backend must provide:

- ``manifest``: what built the index (embedder id and dimension, chunking settings);
  ``directory``: where its local files (the manifest at least) live.
- writing: ``writer()``, a context manager giving a ``MemoryWriter``. Its ``add``,
  ``move`` and ``remove`` calls land together or not at all in the FAISS store (one SQLite
  transaction); Milvus has no transactions, so there each document lands whole or not
  at all, and a batch cut short is finished by running it again.
- searching: ``search`` (query vectors -> windows by inner product) and
  ``lexical_search`` (a question -> windows by BM25), both best first, both honouring a
  ``Filter`` inside the search rather than by over-fetching.
- reading: ``documents``, ``content_hashes``, ``counts``, ``document_path``,
  ``document_text``, ``document_sections``, ``sentences`` and ``windows``; offsets are
  character offsets into the document's text, as everywhere in ragmem.
- ``info`` and ``close``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ragmem.types import Document, Filter, Hit, Sentence, Window

if TYPE_CHECKING:
    from ragmem.memory.manifest import Manifest


@dataclass(frozen=True)
class StoredDocument:
    """A document as the memory holds it, without its text."""

    doc_id: str
    path: str
    title: str
    mtime: float
    content_hash: str
    n_windows: int


@dataclass(frozen=True)
class MemoryInfo:
    path: str
    embedder: str
    dim: int
    documents: int
    sentences: int
    windows: int
    index_type: str
    vectors_in_index: int
    size_bytes: int
    updated_at: float
    chunking: dict[str, object]


def check_vectors(vectors: np.ndarray, n_windows: int, dim: int) -> None:
    """Every backend's writer refuses vectors that don't fit: one row per window."""
    if vectors.shape != (n_windows, dim):
        raise ValueError(f"expected vectors of shape ({n_windows}, {dim}), got {vectors.shape}")


class MemoryWriter(Protocol):
    """The changes of one ``Memory.writer()`` batch."""

    def add(self, doc: Document, sentences: Sequence[Sentence], windows: Sequence[Window],
            vectors: np.ndarray) -> None:
        """Store ``doc`` (replacing an earlier version) with one vector per window."""

    def move(self, doc_id: str, path: str, mtime: float) -> bool:
        """Record that a stored document's file is now ``path`` (modified at ``mtime``),
        its text unchanged: nothing is re-embedded. Returns whether it was stored."""

    def remove(self, doc_id: str) -> int:
        """Delete a document and all under it; returns the windows removed (0: unknown)."""


class Memory(Protocol):
    """A long-term memory: documents, their sentences and windows, and window vectors."""

    @property
    def manifest(self) -> Manifest: ...

    @property
    def directory(self) -> Path: ...

    def writer(self) -> AbstractContextManager[MemoryWriter]: ...

    def search(self, queries: np.ndarray, top_k: int,
               where: Filter | None = None) -> list[list[Hit]]:
        """The ``top_k`` windows per query vector (rows of ``queries``), best first."""

    def lexical_search(self, question: str, top_k: int, where: Filter | None = None,
                       max_terms: int | None = None) -> list[Hit]:
        """The ``top_k`` windows by BM25 over their text, best first; a question of more
        than ``max_terms`` terms is searched by its most informative ones."""

    def documents(self) -> list[StoredDocument]:
        """Every document, by ``doc_id``."""

    def content_hashes(self) -> dict[str, str]:
        """``doc_id -> content_hash``: what incremental indexing compares against."""

    def counts(self) -> dict[str, int]:
        """``{"documents": n, "sentences": n, "windows": n}``."""

    def document_path(self, doc_id: str) -> str:
        """The source path of a document ("" if it is not stored)."""

    def document_text(self, doc_id: str) -> str:
        """The whole text of a document ("" if it is not stored)."""

    def document_sections(self, doc_id: str) -> list[list[Any]]:
        """``[[offset, "Chapter II › The Bank"], ...]``: where the document's headings
        start, by offset ([] for a document without headings, or not stored)."""

    def sentences(self, doc_id: str, first: int, last: int) -> list[Sentence]:
        """Sentences ``first..last`` (inclusive, clipped to the document), in order."""

    def windows(self, doc_id: str) -> list[Window]:
        """The windows of a document, in order."""

    def info(self) -> MemoryInfo: ...

    def close(self) -> None: ...
