"""SQLite docstore: documents, sentences, windows (with their vectors) and a change log.

Window ids are ``INTEGER PRIMARY KEY AUTOINCREMENT``: never reused, so a FAISS id
always means the same window, across updates and deletes.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ragmem.memory.base import StoredDocument
from ragmem.memory.lexical import (
    FTS_SCHEMA,
    TERM_STATS_QUERY,
    TERM_STATS_SCHEMA,
    fts_query,
    lexical_form,
    most_informative,
    query_terms,
)
from ragmem.types import Document, Filter, Hit, Sentence, Window

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY, path TEXT NOT NULL, title TEXT NOT NULL, mtime REAL NOT NULL,
    content_hash TEXT NOT NULL, metadata TEXT NOT NULL, text TEXT NOT NULL,
    indexed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sentences (
    doc_id TEXT NOT NULL, idx INTEGER NOT NULL, start INTEGER NOT NULL, "end" INTEGER NOT NULL,
    PRIMARY KEY (doc_id, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS windows (
    window_id INTEGER PRIMARY KEY AUTOINCREMENT, doc_id TEXT NOT NULL, idx INTEGER NOT NULL,
    first INTEGER NOT NULL, last INTEGER NOT NULL, start INTEGER NOT NULL,
    "end" INTEGER NOT NULL, n_tokens INTEGER NOT NULL, vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS windows_by_doc ON windows (doc_id);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, window_id INTEGER NOT NULL, op TEXT NOT NULL
);
"""


COUNTED = ("documents", "sentences", "windows")


class Docstore:
    """One SQLite connection in WAL mode, so readers keep reading while a writer writes."""

    def __init__(self, path: Path, *, readonly: bool = False, create: bool = False) -> None:
        """Open the database at ``path``; it must exist unless ``create`` (SQLite would
        otherwise make an empty one: an index that silently lost everything)."""
        self.path = path
        mode = "ro" if readonly else "rwc" if create else "rw"
        uri = f"file:{path}?mode={mode}"
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE in `transaction`).
        self.conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30.0,
                                    check_same_thread=False)
        self.conn.execute("PRAGMA busy_timeout = 30000")
        self._text_cache: dict[str, tuple[str, str]] = {}
        self._terms_lock = threading.Lock()
        self._term_stats_ready = False
        self._delta = dict.fromkeys(COUNTED, 0)
        if not readonly:
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = FULL")
            self.conn.executescript(SCHEMA + FTS_SCHEMA)
            self._backfill_fts()

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        self._delta = dict.fromkeys(COUNTED, 0)
        try:
            base = self.counts()  # from meta: no scan, except once for an older index
            yield
            if any(self._delta.values()) or self.get_meta("counts") is None:
                # Counts kept in step inside the same transaction: O(change), never a scan.
                self.set_meta("counts", json.dumps(
                    {k: base[k] + self._delta[k] for k in COUNTED}))
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        finally:
            self._text_cache.clear()
        self.conn.execute("COMMIT")

    # -- meta ---------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # -- writes (call inside `transaction`) ---------------------------------
    def add_document(
        self, doc: Document, sentences: Sequence[Sentence], windows: Sequence[Window],
        vectors: np.ndarray,
    ) -> list[int]:
        """Insert one document with its sentences and windows; return the new window ids."""
        self.conn.execute(
            "INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (doc.doc_id, doc.path, doc.title, doc.mtime, doc.content_hash,
             json.dumps(dict(doc.metadata), sort_keys=True, default=str), doc.text, time.time()),
        )
        self.conn.executemany(
            "INSERT INTO sentences VALUES (?, ?, ?, ?)",
            [(doc.doc_id, s.index, s.start, s.end) for s in sentences],
        )
        self._tally(1, len(sentences), len(windows))
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        ids: list[int] = []
        for w, v in zip(windows, vecs, strict=True):
            cur = self.conn.execute(
                "INSERT INTO windows (doc_id, idx, first, last, start, \"end\", n_tokens, vector)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (doc.doc_id, w.index, w.first, w.last, w.start, w.end, w.n_tokens, v.tobytes()),
            )
            assert cur.lastrowid is not None
            ids.append(cur.lastrowid)
        self.conn.executemany("INSERT INTO changes (window_id, op) VALUES (?, 'add')",
                              [(i,) for i in ids])
        self.conn.executemany("INSERT INTO windows_fts (rowid, body) VALUES (?, ?)",
                              [(i, lexical_form(w.text)) for i, w in zip(ids, windows,
                                                                          strict=True)])
        return ids

    def move_document(self, doc_id: str, path: str, mtime: float) -> bool:
        """A document's file moved, its text unchanged: windows and vectors stay."""
        return self.conn.execute("UPDATE documents SET path = ?, mtime = ? WHERE doc_id = ?",
                                 (path, mtime, doc_id)).rowcount > 0

    def delete_document(self, doc_id: str) -> list[int]:
        """Delete a document and everything under it; return the removed window ids."""
        ids = [r[0] for r in self.conn.execute(
            "SELECT window_id FROM windows WHERE doc_id = ?", (doc_id,))]
        if self.conn.execute("SELECT 1 FROM documents WHERE doc_id = ?", (doc_id,)).fetchone():
            n_sentences = self.conn.execute(
                "SELECT COUNT(*) FROM sentences WHERE doc_id = ?", (doc_id,)).fetchone()[0]
            self._tally(-1, -n_sentences, -len(ids))
        self.conn.execute("DELETE FROM windows WHERE doc_id = ?", (doc_id,))
        self.conn.executemany("DELETE FROM windows_fts WHERE rowid = ?", [(i,) for i in ids])
        self.conn.execute("DELETE FROM sentences WHERE doc_id = ?", (doc_id,))
        self.conn.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,))
        self.conn.executemany("INSERT INTO changes (window_id, op) VALUES (?, 'del')",
                              [(i,) for i in ids])
        return ids

    def drop_changes(self, through: int) -> None:
        """Forget the change log up to entry ``through``: a snapshot now holds it."""
        self.conn.execute("DELETE FROM changes WHERE seq <= ?", (through,))

    def recount(self) -> dict[str, int]:
        """Store counts taken from the rows (call inside ``transaction``); returns them."""
        self.conn.execute("DELETE FROM meta WHERE key = 'counts'")
        exact = self.counts(exact=True)
        self.set_meta("counts", json.dumps(exact))
        return exact

    def _backfill_fts(self) -> None:
        """Indexes made before the lexical index existed get it on first open for writing."""
        if self.get_meta("fts") == "1":
            return
        with self.transaction():
            self.conn.execute("DELETE FROM windows_fts")
            for wid, doc_id, start, end in self.conn.execute(
                    'SELECT window_id, doc_id, start, "end" FROM windows').fetchall():
                self.conn.execute("INSERT INTO windows_fts (rowid, body) VALUES (?, ?)",
                                  (wid, lexical_form(self.document_text(doc_id)[start:end])))
            self.set_meta("fts", "1")

    # -- reads --------------------------------------------------------------
    def lexical_search(self, question: str, top_k: int, allowed: np.ndarray | None = None,
                       max_terms: int | None = None) -> list[tuple[int, float]]:
        """BM25 (FTS5) over windows: (window_id, score), best first; higher is better.
        A question of more than ``max_terms`` terms keeps its most informative ones."""
        terms = query_terms(question)
        if max_terms is not None and len(terms) > max_terms:
            terms = most_informative(terms, self.windows_with_terms(terms), max_terms)
        query = fts_query(terms)
        if query is None:
            return []
        sql = "SELECT rowid, -bm25(windows_fts) FROM windows_fts WHERE windows_fts MATCH ?"
        args: list[object] = [query]
        if allowed is not None:
            sql += " AND rowid IN (SELECT value FROM json_each(?))"
            args.append(json.dumps(allowed.tolist()))
        # rowid breaks ties, so a shorter list is always the start of a longer one.
        sql += " ORDER BY bm25(windows_fts), rowid LIMIT ?"
        args.append(top_k)
        return [(int(r[0]), float(r[1])) for r in self.conn.execute(sql, args)]

    def windows_with_terms(self, terms: Sequence[str]) -> dict[str, int]:
        """How many windows hold each term (after FTS5's stemming): its document
        frequency, for IDF. A term that is several tokens counts its rarest one."""
        with self._terms_lock:
            if not self._term_stats_ready:
                self.conn.executescript(TERM_STATS_SCHEMA)
                self._term_stats_ready = True
            self.conn.execute("DELETE FROM temp.query_terms")
            self.conn.executemany("INSERT INTO temp.query_terms (rowid, t) VALUES (?, ?)",
                                  list(enumerate(terms)))
            rows = self.conn.execute(TERM_STATS_QUERY).fetchall()
        counts: dict[str, int] = {}
        for i, n in rows:
            counts[terms[i]] = min(counts.get(terms[i], n), n)
        return counts

    def last_change(self) -> int:
        row = self.conn.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()
        return int(row[0])

    def changes_since(self, seq: int) -> tuple[list[int], list[int], int]:
        """Net effect of the log after ``seq``: (added ids still alive, deleted ids, last seq)."""
        added: dict[int, None] = {}
        deleted: list[int] = []
        last = seq
        for s, wid, op in self.conn.execute(
            "SELECT seq, window_id, op FROM changes WHERE seq > ? ORDER BY seq", (seq,)
        ):
            last = s
            if op == "add":
                added[wid] = None
            else:
                added.pop(wid, None)
                deleted.append(wid)
        return list(added), deleted, last

    def vectors(self, window_ids: Sequence[int], dim: int) -> np.ndarray:
        out = np.empty((len(window_ids), dim), dtype=np.float32)
        for i, chunk in enumerate(_chunks(list(window_ids), 900)):
            rows = dict(self.conn.execute(
                f"SELECT window_id, vector FROM windows WHERE window_id IN ({_qs(chunk)})", chunk))
            for j, wid in enumerate(chunk):
                out[i * 900 + j] = np.frombuffer(rows[wid], dtype=np.float32)
        return out

    def iter_vectors(self, batch: int = 50_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All (ids, vectors) in id order, a batch at a time: rebuilds need no re-embedding."""
        last = -1
        while True:
            rows = self.conn.execute(
                "SELECT window_id, vector FROM windows WHERE window_id > ? ORDER BY window_id "
                "LIMIT ?", (last, batch)).fetchall()
            if not rows:
                return
            ids = np.array([r[0] for r in rows], dtype=np.int64)
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
            yield ids, vecs.reshape(len(rows), -1)
            last = int(ids[-1])

    def window_ids(self) -> np.ndarray:
        return np.array([r[0] for r in self.conn.execute(
            "SELECT window_id FROM windows ORDER BY window_id")], dtype=np.int64)

    def window_ids_matching(self, where: Filter) -> np.ndarray:
        """Ids of the windows of every document that passes ``where``."""
        clauses: list[str] = []
        args: list[object] = []
        if where.path_glob is not None:
            clauses.append("(d.doc_id GLOB ? OR d.path GLOB ?)")
            args += [where.path_glob, where.path_glob]
        for key, value in where.metadata.items():
            clauses.append("json_extract(d.metadata, ?) = ?")
            args += [f'$."{key}"', value]
        base = "SELECT w.window_id FROM windows w JOIN documents d USING (doc_id)"
        if where.doc_ids is None:
            sql = base + (" WHERE " + " AND ".join(clauses) if clauses else "")
            return np.array([r[0] for r in self.conn.execute(sql, args)], dtype=np.int64)
        ids: list[int] = []
        for chunk in _chunks(list(where.doc_ids), 900):
            sql = base + " WHERE " + " AND ".join([f"d.doc_id IN ({_qs(chunk)})", *clauses])
            ids += [r[0] for r in self.conn.execute(sql, [*chunk, *args])]
        return np.array(ids, dtype=np.int64)

    def hits(self, window_ids: Sequence[int], scores: Sequence[float]) -> list[Hit]:
        """Window rows for search results, in the given order; ids gone meanwhile are skipped.

        The text is cut out by SQLite in the same statement that reads the row, so a
        reader racing a writer never pairs a window with another version of its document.
        """
        rows = {}
        for chunk in _chunks(list(window_ids), 900):
            for r in self.conn.execute(
                'SELECT w.window_id, w.doc_id, w.first, w.last, w.start, w."end", '
                'substr(d.text, w.start + 1, w."end" - w.start) '
                "FROM windows w JOIN documents d USING (doc_id) "
                f"WHERE w.window_id IN ({_qs(chunk)})", chunk):
                rows[r[0]] = r
        hits = []
        for wid, score in zip(window_ids, scores, strict=True):
            if wid not in rows:
                continue
            _, doc_id, first, last, start, end, text = rows[wid]
            hits.append(Hit(int(wid), doc_id, float(score), first, last, start, end, text))
        return hits

    def document_text(self, doc_id: str) -> str:
        """A document's text ("" if it is gone). Cached, but checked against the content
        hash on every call: another process may have updated the document meanwhile."""
        row = self.conn.execute("SELECT content_hash FROM documents WHERE doc_id = ?",
                                (doc_id,)).fetchone()
        if row is None:
            return ""
        cached = self._text_cache.get(doc_id)
        if cached is not None and cached[0] == row[0]:
            return cached[1]
        text_row = self.conn.execute("SELECT content_hash, text FROM documents WHERE doc_id = ?",
                                     (doc_id,)).fetchone()
        if text_row is None:
            return ""
        self._text_cache[doc_id] = (text_row[0], text_row[1])
        if len(self._text_cache) > 256:
            self._text_cache.pop(next(iter(self._text_cache)))
        return str(text_row[1])

    def document_sections(self, doc_id: str) -> list[list[Any]]:
        """``[[offset, "Chapter II › The Bank"], ...]`` from the document's metadata."""
        row = self.conn.execute(
            "SELECT json_extract(metadata, '$.sections') FROM documents WHERE doc_id = ?",
            (doc_id,)).fetchone()
        return json.loads(row[0]) if row and row[0] else []

    def document_path(self, doc_id: str) -> str:
        row = self.conn.execute("SELECT path FROM documents WHERE doc_id = ?",
                                (doc_id,)).fetchone()
        return row[0] if row else ""

    def sentences(self, doc_id: str, first: int, last: int) -> list[Sentence]:
        """Sentences ``first..last`` (inclusive, clipped to the document) with their text."""
        # One statement: rows and text from the same version of the document.
        return [Sentence(doc_id, idx, start, end, text)
                for idx, start, end, text in self.conn.execute(
                    'SELECT s.idx, s.start, s."end", '
                    'substr(d.text, s.start + 1, s."end" - s.start) '
                    "FROM sentences s JOIN documents d USING (doc_id) "
                    "WHERE s.doc_id = ? AND s.idx BETWEEN ? AND ? ORDER BY s.idx",
                    (doc_id, first, last))]

    def windows(self, doc_id: str) -> list[Window]:
        """The windows of a document, in order, with their text."""
        return [Window(doc_id, idx, first, last, start, end, text, n_tokens)
                for idx, first, last, start, end, n_tokens, text in self.conn.execute(
                    'SELECT w.idx, w.first, w.last, w.start, w."end", w.n_tokens, '
                    'substr(d.text, w.start + 1, w."end" - w.start) '
                    "FROM windows w JOIN documents d USING (doc_id) "
                    "WHERE w.doc_id = ? ORDER BY w.idx", (doc_id,))]

    def content_hashes(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT doc_id, content_hash FROM documents"))

    def documents(self) -> list[StoredDocument]:
        return [StoredDocument(*r) for r in self.conn.execute(
            "SELECT d.doc_id, d.path, d.title, d.mtime, d.content_hash, "
            "(SELECT COUNT(*) FROM windows w WHERE w.doc_id = d.doc_id) "
            "FROM documents d ORDER BY d.doc_id")]

    def _tally(self, documents: int, sentences: int, windows: int) -> None:
        for key, n in zip(COUNTED, (documents, sentences, windows), strict=True):
            self._delta[key] += n

    def counts(self, exact: bool = False) -> dict[str, int]:
        """Documents, sentences and windows: kept in meta by each write; ``exact`` scans."""
        stored = None if exact else self.get_meta("counts")
        if stored is not None:
            return {k: int(v) for k, v in json.loads(stored).items()}
        q = self.conn.execute
        return {
            "documents": q("SELECT COUNT(*) FROM documents").fetchone()[0],
            "sentences": q("SELECT COUNT(*) FROM sentences").fetchone()[0],
            "windows": q("SELECT COUNT(*) FROM windows").fetchone()[0],
        }


def _qs(items: Sequence[object]) -> str:
    return ",".join("?" * len(items))


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
