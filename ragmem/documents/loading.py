"""A file -> its Documents, by format; and every document under some paths.

A reader raises nothing but ``DocumentError`` (the tests fuzz each one). Should one
raise anything else all the same, the callers that read many files (``iter_documents``
here, ``indexing.read_source``) report that file in one line and go on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ragmem.documents.discovery import (
    SUFFIXES,
    Names,
    discover_one,
    identity,
    relative_id,
    unsupported,
)
from ragmem.documents.files import (
    MAX_FILE_BYTES,
    MAX_READ_SECONDS,
    Deadline,
    read_file,
    too_large,
)
from ragmem.documents.html import read_html
from ragmem.documents.jsonl import load_jsonl
from ragmem.documents.markdown import markdown_sections, markdown_title
from ragmem.documents.pdf import read_pdf
from ragmem.documents.text import decode, document, first_line, valid_unicode
from ragmem.errors import DocumentError, debugging
from ragmem.types import Document


def load_file(
    path: Path,
    root: Path,
    *,
    max_bytes: int = MAX_FILE_BYTES,
    max_seconds: float = MAX_READ_SECONDS,
    on_problem: Callable[[DocumentError], None] | None = None,
) -> list[Document]:
    """Read one file into Documents: one per file, or one per line of a .jsonl.

    A file over ``max_bytes``, or that takes over ``max_seconds`` to read, is refused.
    A bad .jsonl line goes to ``on_problem`` (its ``where`` is ``path:line``) and the
    other lines are kept; with ``on_problem=None`` it raises, as a bad file does.
    """
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DocumentError(path, unsupported(suffix))
    deadline = Deadline.start(path, max_seconds)
    data, mtime = read_file(path, max_bytes)
    if not data or data.isspace():  # isspace(), not strip(): no copy of a large file
        raise DocumentError(path, "is empty; add text or leave it out")
    if suffix != ".pdf" and b"\x00" in data[:8192]:
        raise DocumentError(
            path, "contains NUL bytes (binary, or UTF-16 text); ragmem reads UTF-8 "
            "text: convert it to UTF-8 or leave it out"
        )
    meta: dict[str, Any] = {"suffix": suffix}
    if suffix == ".jsonl":
        return load_jsonl(path, decode(path, data), mtime, on_problem, deadline)
    if suffix == ".pdf":
        text, title, pdf_meta = read_pdf(path, data, deadline, max_bytes)
        meta.update(pdf_meta)
    elif suffix in (".html", ".htm"):
        text, title, sections = read_html(path, data, deadline)
        if sections:
            meta["sections"] = sections
    else:
        text = decode(path, data)
        title = ""
        if suffix in (".md", ".markdown"):
            title = markdown_title(text)
            if sections := markdown_sections(text, deadline):
                meta["sections"] = sections
        title = title or first_line(text)
    del data  # the bytes go before chunking starts: the text alone is held from here
    if not text or text.isspace():
        raise DocumentError(path, "is empty (no text after reading it); leave it out")
    if len(text) > max_bytes:  # a PDF's text layer can outgrow its file
        raise DocumentError(path, too_large(f"has {len(text) / 1e6:.1f} M characters of text",
                                            max_bytes))
    return [document(relative_id(root, path), path, valid_unicode(text),
                     valid_unicode(title) or path.stem, mtime, meta)]


def iter_documents(
    paths: Sequence[str | Path],
    on_error: Callable[[Path, DocumentError], None] | None = None,
    *,
    max_bytes: int = MAX_FILE_BYTES,
    max_seconds: float = MAX_READ_SECONDS,
) -> Iterator[Document]:
    """Load every document under ``paths``; hand bad files (and bad .jsonl lines) to
    ``on_error`` and go on.

    With ``on_error=None`` the first bad file or line raises its ``DocumentError``.
    The same relative name under two of ``paths`` is two ids (``discovery``'s id rule).
    """
    seen: set[str] = set()
    names = Names({})
    for path in paths:
        try:
            pairs = discover_one(Path(path))
        except DocumentError as e:
            if on_error is None:
                raise
            on_error(Path(path), e)
            continue
        for root, file in pairs:
            if (key := identity(file)) in seen:
                continue
            seen.add(key)
            problems: list[DocumentError] = []
            try:
                docs = load_file(file, names.root(root, file), max_bytes=max_bytes,
                                 max_seconds=max_seconds,
                                 on_problem=problems.append if on_error else None)
            except DocumentError as e:
                if on_error is None:
                    raise
                on_error(file, e)
                continue
            except Exception as e:  # a reader's bug: this file is skipped, not the rest
                error = unexpected(file, "read", e)
                if on_error is None:
                    raise error from e
                on_error(file, error)
                continue
            for problem in problems:  # bad lines of a .jsonl whose other lines are kept
                assert on_error is not None
                on_error(file, problem)
            yield from docs


def unexpected(where: object, doing: str, error: Exception) -> DocumentError:
    """A file that failed in a way no reader foresaw (a bug, or a file that defeats a
    library), as its one line; under ``RAGMEM_DEBUG`` the error itself goes on, with its
    traceback."""
    if debugging():
        raise error
    why = " ".join(str(error).split())[:200]
    return DocumentError(
        where, f"could not be {doing} ({type(error).__name__}{': ' + why if why else ''}); "
        "leave it out, or rerun with RAGMEM_DEBUG=1 for the traceback and report it")
