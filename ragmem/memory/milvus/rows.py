"""The rows that store one document in the Milvus memory, and how writes are batched.

A document becomes a header row, its text, sentence offsets and headings in ordered
pieces (a VARCHAR holds at most 65,535 bytes), and one row per window under a key that
the document and position decide (``window_id``), so a retried write replaces rows,
never duplicates them. ``ragmem.memory.milvus.store`` writes and reads them.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ragmem.errors import StoreError
from ragmem.memory.lexical import lexical_form
from ragmem.memory.milvus.client import (
    HASH_BYTES,
    ID_BYTES,
    PIECE_BYTES,
    TITLE_BYTES,
    VARCHAR_MAX,
)
from ragmem.memory.milvus.expressions import metadata_json
from ragmem.types import Document, Sentence, Window

SENTENCES_PER_PART = 2_000  # [[start, end], ...] per piece: ~40 KB of JSON at most
ROWS_PER_WRITE = 500  # rows per upsert request, and at most
BYTES_PER_WRITE = 8_000_000  # (roughly) per request: a server takes 64 MB at most


def window_id(doc_id: str, index: int) -> int:
    """A window's key: the same document and position always give the same one, so a
    retried write replaces the window. 63 bits of BLAKE2b: a clash is ~1 in 10^7 at a
    million windows.

    >>> window_id("a.txt", 0) == window_id("a.txt", 0) != window_id("a.txt", 1)
    True
    """
    digest = hashlib.blake2b(f"{doc_id}\x00{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def pieces(text: str, limit: int = PIECE_BYTES) -> list[str]:
    """``text`` cut into consecutive pieces of at most ``limit`` UTF-8 bytes, never
    inside a character; ``"".join(pieces(t)) == t``.

    >>> pieces("aé€b", 3)
    ['aé', '€', 'b']
    """
    data = text.encode("utf-8")
    out, start = [], 0
    while start < len(data):
        end = min(start + limit, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # a continuation byte
            end -= 1
        out.append(data[start:end].decode("utf-8"))
        start = end
    return out


def fits(text: str, limit: int) -> str:
    return pieces(text, limit)[0] if len(text.encode("utf-8")) > limit else text


# A non-header row of the documents collection carries the header's fields empty.
EMPTY = {"path": "", "title": "", "mtime": 0.0, "content_hash": "", "n_windows": 0,
          "n_sentences": 0, "n_chars": 0, "n_text": 0, "n_sent": 0, "n_sect": 0,
          "metadata": {}, "indexed_at": 0.0, "unused": [1.0, 0.0], "body": ""}
IS_HEADER = 'kind == "doc"'
META_PK = "#meta#0"


def pk(doc_id: str, kind: str, part: int = 0) -> str:
    # Unique: the last two fields never hold '#', so the key splits back one way only.
    return f"{doc_id}#{kind}#{part}"


class Prepared:
    """One document's rows, ready to write."""

    def __init__(self, doc_id: str, header: dict[str, Any], pieces: list[dict[str, Any]],
                 windows: list[dict[str, Any]]) -> None:
        self.doc_id = doc_id
        self.header = header
        self.pieces = pieces
        self.windows = windows



def prepare(doc: Document, sentences: Sequence[Sentence], windows: Sequence[Window],
            vectors: np.ndarray) -> Prepared:
    """The rows that store one document."""
    doc_id = doc.doc_id
    for what, value in (("document id", doc_id), ("path", doc.path)):
        if len(value.encode("utf-8")) > ID_BYTES:
            raise StoreError(f"{what} {value[:60]!r}... is longer than the {ID_BYTES} "
                             "bytes the Milvus store holds; shorten it")
    for i, s in enumerate(sentences):
        if s.index != i:
            raise ValueError(f"sentence {i} of {doc_id!r} has index {s.index}; "
                             "sentences must be numbered 0, 1, ... in order")
    metadata = metadata_json(doc.metadata)
    sections = doc.metadata.get("sections") or []
    text = pieces(doc.text)
    sect = pieces(json.dumps(sections, ensure_ascii=False)) if sections else []
    sent = [json.dumps([[s.start, s.end] for s in sentences[i:i + SENTENCES_PER_PART]])
            for i in range(0, len(sentences), SENTENCES_PER_PART)]
    rows = [{**EMPTY, "pk": pk(doc_id, kind, i), "doc_id": doc_id, "kind": kind,
             "part": i, "body": body}
            for kind, bodies in (("text", text), ("sent", sent), ("sect", sect))
            for i, body in enumerate(bodies)]
    header = {**EMPTY, "pk": pk(doc_id, "doc"), "doc_id": doc_id, "kind": "doc",
              "part": 0, "path": doc.path, "title": fits(doc.title, TITLE_BYTES),
              "mtime": float(doc.mtime), "content_hash": fits(doc.content_hash, HASH_BYTES),
              "n_windows": len(windows), "n_sentences": len(sentences),
              "n_chars": len(doc.text), "n_text": len(text), "n_sent": len(sent),
              "n_sect": len(sect), "metadata": metadata, "indexed_at": time.time()}
    vecs = np.ascontiguousarray(vectors, dtype=np.float32)
    window_rows = []
    for w, v in zip(windows, vecs, strict=True):
        lexical = lexical_form(w.text)
        exact, cut = ("" if lexical == w.text else w.text), False
        if max(len(lexical.encode("utf-8")), len(exact.encode("utf-8"))) > VARCHAR_MAX:
            # Longer than a VARCHAR: BM25 reads its start; its text comes from the
            # document's (ragmem's chunking never makes one; a caller's might).
            lexical, exact, cut = fits(lexical, VARCHAR_MAX), "", True
        window_rows.append({
            "window_id": window_id(doc_id, w.index), "doc_id": doc_id, "path": doc.path,
            "idx": w.index, "sent_first": w.first, "sent_last": w.last,
            "char_start": w.start, "char_end": w.end, "n_tokens": w.n_tokens,
            "metadata": metadata, "text": exact, "cut": cut, "lexical": lexical,
            "vector": v.tolist()})
    return Prepared(doc_id, header, rows, window_rows)



def batches(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """``rows`` in requests of at most ``ROWS_PER_WRITE`` rows and ~``BYTES_PER_WRITE``."""
    batch: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        n = 256 + sum(len(row.get(k) or "") * 4 for k in ("body", "text", "lexical")) \
            + 8 * len(row.get("vector") or ())
        if batch and (len(batch) >= ROWS_PER_WRITE or size + n > BYTES_PER_WRITE):
            yield batch
            batch, size = [], 0
        batch.append(row)
        size += n
    if batch:
        yield batch
