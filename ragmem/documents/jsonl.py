"""JSON Lines: one Document per line ``{"id": ..., "text": ..., "title": ...}`` (BEIR's
``"_id"`` too, so a BEIR corpus.jsonl indexes as it is). A bad line is reported with its
line number and the other lines are kept."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

from ragmem.documents.files import Deadline
from ragmem.documents.text import document, normalise, valid_unicode
from ragmem.errors import DocumentError
from ragmem.types import Document


def load_jsonl(path: Path, text: str, mtime: float,
               on_problem: Callable[[DocumentError], None] | None,
               deadline: Deadline) -> list[Document]:
    docs: list[Document] = []
    ids: set[str] = set()
    bad = 0
    for lineno, line in _lines(text):
        deadline.check()
        if not line or line.isspace():
            continue
        try:
            docs.append(_record(path, lineno, line, mtime, ids))
        except DocumentError as e:
            if on_problem is None:
                raise
            on_problem(e)
            bad += 1
    if not docs:
        raise DocumentError(path, f"has no usable records ({bad} bad lines); fix them or "
                            "leave it out" if bad else "is empty (no records); add lines or "
                            "leave it out")
    return docs


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` one at a time: a big file is never split whole."""
    start = 0
    lineno = 1
    while start <= len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        yield lineno, text[start:end]
        start, lineno = end + 1, lineno + 1


def _record(path: Path, lineno: int, line: str, mtime: float, ids: set[str]) -> Document:
    where = f"{path}:{lineno}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise DocumentError(
            where, f"not valid JSON ({e.msg}); each line must be one object "
            f'like {{"id": "a1", "text": "..."}}'
        ) from e
    except (RecursionError, ValueError) as e:  # [[[[... 1,000 deep; a 5,000-digit number
        why = "nested too deeply" if isinstance(e, RecursionError) else str(e).split(";")[0]
        raise DocumentError(where, f"not JSON ragmem can read ({why}); each line must be "
                            'one object like {"id": "a1", "text": "..."}') from e
    key = "id" if isinstance(record, dict) and "id" in record else "_id"
    if not isinstance(record, dict) or key not in record or "text" not in record:
        raise DocumentError(
            where, 'needs an object with "id" (or BEIR\'s "_id") and "text", like '
            '{"id": "a1", "text": "..."}'
        )
    raw_id, body = record.pop(key), record.pop("text")
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int) or raw_id == "":
        raise DocumentError(where, '"id" must be a non-empty string or an integer')
    doc_id = str(raw_id)
    if not isinstance(body, str) or not body.strip():
        raise DocumentError(where, '"text" is empty or not a string; give it text')
    if doc_id in ids:
        raise DocumentError(where, f"duplicate id {doc_id!r}; ids must be unique")
    ids.add(doc_id)
    title = record.pop("title", None)
    meta = {**record, "suffix": ".jsonl", "line": lineno}
    return document(valid_unicode(doc_id), path, valid_unicode(normalise(body)),
                    valid_unicode(str(title)) if title else valid_unicode(doc_id), mtime, meta)

