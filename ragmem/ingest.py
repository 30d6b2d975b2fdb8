"""What an ingest engine does for the ``Indexer`` (``ragmem.indexing``): read a file
(``read_source``), skip its unchanged documents (``is_unchanged``), chunk the rest
(``chunk``) and embed them, yielding ``SourceRead`` and ``Embedded`` events. This
process is one engine (``Indexer`` runs these steps itself); ``ragmem.distributed.
RayEngine`` runs the same steps on a Ray cluster. Both import them from here, so they
chunk alike, and neither engine imports the ``Indexer`` that picks it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ragmem.chunking import chunk_document
from ragmem.config import ChunkingConfig, DocumentsConfig
from ragmem.documents import load_file, unexpected
from ragmem.errors import DocumentError, RagmemError
from ragmem.types import Document, Sentence, Window

# What ingestion reads: a name for progress, the documents, and what was wrong (a bad
# file, or bad lines of a .jsonl whose other lines are kept).
Source = tuple[str, list[Document], list[DocumentError]]
# A new or changed document, chunked: its sentences and windows.
Chunked = tuple[Document, list[Sentence], list[Window]]


@dataclass(frozen=True)
class SourceRead:
    """One source, read: every document in it as ``(doc_id, content_hash)`` (for the
    counts and ``sync``), what was wrong with it, and the sentences and windows of its
    new and changed documents."""

    name: str
    documents: tuple[tuple[str, str], ...]
    problems: tuple[DocumentError, ...]
    sentences: int
    windows: int


@dataclass(frozen=True)
class Embedded:
    """A new or changed document, chunked and embedded: what the writer stores."""

    doc: Document
    sentences: list[Sentence]
    windows: list[Window]
    vectors: np.ndarray


# What an engine yields, in any order: a document's ``Embedded`` may come before or
# after its source's ``SourceRead``.
Event = SourceRead | Embedded


class Engine(Protocol):
    """Files -> events: reads the files, chunks and embeds their new and changed
    documents (those whose hash is not in ``known``). The ``Indexer`` writes what it
    yields, in this process, in one batch. ``ragmem.distributed.RayEngine`` is one;
    without an engine the ``Indexer`` does the work itself."""

    def run(self, files: Sequence[tuple[Path, Path]],
            known: Mapping[str, str]) -> Iterator[Event]: ...


def read_source(root: Path, file: Path, max_bytes: int,
                max_seconds: float = DocumentsConfig.max_read_seconds) -> Source:
    """One file as a ``Source``: a bad file is reported, never raised; so is one that
    fails in a way no reader foresaw (``RAGMEM_DEBUG=1`` raises that): the run goes on.
    ``root`` is the folder ``documents.discover`` paired ``file`` with: the document's id
    is its path from there (kept apart from every other file's id)."""
    problems: list[DocumentError] = []
    try:
        docs = load_file(file, root, max_bytes=max_bytes, max_seconds=max_seconds,
                         on_problem=problems.append)
    except DocumentError as exc:
        return str(file), [], [exc]
    except Exception as exc:  # one file's bug, MemoryError or RecursionError: not the run's
        return str(file), [], [unexpected(file, "read", exc)]
    return str(file), docs, problems


def chunk_source(source: Source, known: Mapping[str, str],
                 count_tokens: Callable[[str], int],
                 chunking: ChunkingConfig) -> tuple[Source, tuple[Chunked, ...]]:
    """``source`` and its new and changed documents (hash not in ``known``), chunked as
    every engine chunks them. Should chunking fail in a way nobody foresaw, the file is
    skipped whole, reported as a file that fails to read is; an error of ragmem's own (a
    tokenizer that will not load) is the run's, and is raised."""
    name, docs, problems = source
    try:
        return source, tuple((d, *chunk(d, count_tokens, chunking)) for d in docs
                             if not is_unchanged(d, known))
    except RagmemError:
        raise
    except Exception as exc:
        return (name, [], [*problems, unexpected(name, "chunked", exc)]), ()


def is_unchanged(doc: Document, known: Mapping[str, str]) -> bool:
    return known.get(doc.doc_id) == doc.content_hash


def chunk(doc: Document, count_tokens: Callable[[str], int],
          chunking: ChunkingConfig) -> tuple[list[Sentence], list[Window]]:
    """``doc``'s sentences and windows as every engine makes them."""
    return chunk_document(doc, count_tokens, chunking.window_tokens,
                          chunking.overlap_sentences, chunking.max_sentence_chars)
