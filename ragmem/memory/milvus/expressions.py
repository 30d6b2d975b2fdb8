"""A ``Filter`` as a Milvus boolean expression, run inside the search (``filter=``).

    >>> print(expression(Filter(path_glob="notes/*.md", metadata={"lang": "en"})))
    (doc_id like "notes/%.md" or path like "notes/%.md") and (metadata["lang"] == "en")

The FAISS store matches ``path_glob`` with SQLite's GLOB (``*``, ``?``, ``[...]``, case
sensitive) on the doc id or the path. Milvus's ``like`` has ``%`` and ``_`` and no escape
that every Milvus version takes, so a glob becomes ``like`` only where that is exact:
no ``[...]`` class, and no literal ``%``, ``_`` or ``\\`` in it. Otherwise, and for a
metadata key ``like`` cannot name (one with a quote or backslash), ``expression``
returns None and the store resolves the filter to the matching doc ids itself
(``doc_id in [...]``, still inside the search).
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from ragmem.errors import QuestionError
from ragmem.types import Filter

NOTHING = 'doc_id in []'  # an expression no row matches


_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"})


def quote(text: str) -> str:
    """A Milvus string literal (Milvus takes no raw line break in one, nor ``\\u``).

    >>> print(quote('say "hi" \\\\ bye\\n'))
    "say \\"hi\\" \\\\ bye\\n"
    """
    return '"' + text.translate(_ESCAPES) + '"'


def glob_to_like(glob: str) -> str | None:
    """The ``like`` pattern matching exactly what ``glob`` matches, or None.

    >>> glob_to_like("reports/*.pdf"), glob_to_like("a?c"), glob_to_like("x_*")
    ('reports/%.pdf', 'a_c', None)
    """
    if any(c in glob for c in "[%_\\"):
        return None
    return glob.replace("*", "%").replace("?", "_")


def literal(value: Any) -> str | None:
    """A metadata value as a Milvus literal (None: no literal says it)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return quote(value)
    return None


def check_values(metadata: Mapping[str, Any]) -> None:
    for key, value in metadata.items():
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise QuestionError(f"metadata filter {key}={value!r}: only a string, a number "
                                "or true/false can be matched")


def expression(where: Filter) -> str | None:
    """``where`` as one Milvus expression over the windows' fields (None: not exactly
    expressible; see the module docstring)."""
    check_values(where.metadata)
    clauses: list[str] = []
    if where.doc_ids is not None:
        if not where.doc_ids:
            return NOTHING
        clauses.append(f"doc_id in [{', '.join(quote(d) for d in where.doc_ids)}]")
    if where.path_glob is not None:
        like = glob_to_like(where.path_glob)
        if like is None:
            return None
        clauses.append(f"doc_id like {quote(like)} or path like {quote(like)}")
    for key, value in where.metadata.items():
        if value is None:  # SQL's `= NULL`: never true
            return NOTHING
        text = literal(value)
        if text is None or '"' in key or "\\" in key:
            return None
        clauses.append(f"metadata[{quote(key)}] == {text}")
    return " and ".join(f"({c})" for c in clauses)


def doc_ids_expression(doc_ids: Iterable[str]) -> str:
    ids = list(doc_ids)
    return f"doc_id in [{', '.join(quote(d) for d in ids)}]" if ids else NOTHING


def matches(where: Filter, doc_id: str, path: str, metadata: Mapping[str, Any]) -> bool:
    """``where`` applied to one document by hand: what ``expression`` cannot say."""
    if where.doc_ids is not None and doc_id not in where.doc_ids:
        return False
    if where.path_glob is not None and not (fnmatch.fnmatchcase(doc_id, where.path_glob)
                                            or fnmatch.fnmatchcase(path, where.path_glob)):
        return False
    return all(v is not None and k in metadata and metadata[k] == v
               for k, v in where.metadata.items())


def metadata_json(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A document's metadata as Milvus stores it in a JSON field (what the FAISS store
    writes: values JSON cannot hold become strings); its headings go elsewhere."""
    plain = {k: v for k, v in metadata.items() if k != "sections"}
    loaded: dict[str, Any] = json.loads(json.dumps(plain, sort_keys=True, default=str))
    return loaded
