"""Files -> ``Document``: .txt, .md, .html, .pdf and .jsonl.

    >>> for doc in iter_documents(["notes/"]):                 # doctest: +SKIP
    ...     print(doc.doc_id, doc.title)
    guide/intro.md Getting started

Text is kept as read except that ``\\r\\n`` and ``\\r`` become ``\\n``, so offsets into
``Document.text`` are exact.

Only regular files are read (a symlink to one is fine): a named pipe, a device, a
socket or a symlink loop is refused at once with a ``DocumentError``, without blocking,
and so is a file over ``max_bytes`` (``DocumentsConfig.max_file_bytes``).
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import stat
import warnings
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ragmem.config import DocumentsConfig
from ragmem.errors import DocumentError
from ragmem.types import Document

MAX_FILE_BYTES = DocumentsConfig.max_file_bytes

SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".jsonl")
_TITLE_CHARS = 120
_FIRST_LINE = re.compile(rf"\S[^\n]{{0,{_TITLE_CHARS - 1}}}")
_MD_TITLE = re.compile(r"^#[ \t]+(.+?)[ \t#]*$", re.M)
_HTML_DROP = frozenset({"script", "style", "noscript", "template", "head", "title"})
_HTML_HEADINGS = frozenset("h1 h2 h3 h4 h5 h6".split())
_HTML_BLOCKS = frozenset(
    "address article aside blockquote caption dd details div dl dt figcaption figure footer"
    " form h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section summary table tr ul"
    .split()
)


def discover(paths: Sequence[str | Path]) -> list[tuple[Path, Path]]:
    """``(root, file)`` pairs for the supported files under ``paths``, in a stable order.

    A folder is walked recursively, skipping hidden entries; a file is its own root's
    child, so ``discover(["a/b.md"]) == [(Path("a"), Path("a/b.md"))]``.
    """
    found: list[tuple[Path, Path]] = []
    seen: set[str] = set()
    for path in paths:
        for root, file in _discover_one(Path(path)):
            if (key := _identity(file)) not in seen:
                seen.add(key)
                found.append((root, file))
    return found


def _identity(file: Path) -> str:
    # realpath, not Path.resolve(): resolve() raises on a symlink loop, realpath does not
    # (the loop is reported when the file is read).
    return os.path.realpath(file)


def _discover_one(path: Path) -> list[tuple[Path, Path]]:
    if not path.is_dir():  # a file, or a pipe, device or broken link: read_file judges
        if not os.path.lexists(path):
            raise DocumentError(path, "no such file or folder; check the path and try again")
        if path.suffix.lower() not in SUFFIXES:
            raise DocumentError(
                path, f"unsupported file type {path.suffix!r}; supported: "
                f"{' '.join(SUFFIXES)}; convert it to one of these first"
            )
        return [(path.parent, path)]
    files: list[Path] = []
    for folder, dirs, names in os.walk(path):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        files.extend(
            Path(folder, n) for n in names
            if not n.startswith(".") and Path(n).suffix.lower() in SUFFIXES
        )
    return [(path, f) for f in sorted(files, key=lambda f: f.relative_to(path).parts)]


def iter_documents(
    paths: Sequence[str | Path],
    on_error: Callable[[Path, DocumentError], None] | None = None,
    *,
    max_bytes: int = MAX_FILE_BYTES,
) -> Iterator[Document]:
    """Load every document under ``paths``; hand bad files (and bad .jsonl lines) to
    ``on_error`` and go on.

    With ``on_error=None`` the first bad file or line raises its ``DocumentError``.
    """
    seen: set[str] = set()
    for path in paths:
        try:
            pairs = _discover_one(Path(path))
        except DocumentError as e:
            if on_error is None:
                raise
            on_error(Path(path), e)
            continue
        for root, file in pairs:
            if (key := _identity(file)) in seen:
                continue
            seen.add(key)
            problems: list[DocumentError] = []
            try:
                docs = load_file(file, root, max_bytes=max_bytes,
                                 on_problem=problems.append if on_error else None)
            except DocumentError as e:
                if on_error is None:
                    raise
                on_error(file, e)
                continue
            for problem in problems:  # bad lines of a .jsonl whose other lines are kept
                assert on_error is not None
                on_error(file, problem)
            yield from docs


def load_file(
    path: Path,
    root: Path,
    *,
    max_bytes: int = MAX_FILE_BYTES,
    on_problem: Callable[[DocumentError], None] | None = None,
) -> list[Document]:
    """Read one file into Documents: one per file, or one per line of a .jsonl.

    A bad .jsonl line goes to ``on_problem`` (its ``where`` is ``path:line``) and the
    other lines are kept; with ``on_problem=None`` it raises, as a bad file does.
    """
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DocumentError(
            path, f"unsupported file type {suffix!r}; supported: {' '.join(SUFFIXES)}"
        )
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
        return _load_jsonl(path, _decode(path, data), mtime, on_problem)
    if suffix == ".pdf":
        text, title, pdf_meta = _read_pdf(path, data)
        meta.update(pdf_meta)
    elif suffix in (".html", ".htm"):
        text, title, sections = _read_html(data)
        if sections:
            meta["sections"] = sections
    else:
        text = _decode(path, data)
        title = ""
        if suffix in (".md", ".markdown"):
            title = _markdown_title(text)
            if sections := markdown_sections(text):
                meta["sections"] = sections
        title = title or _first_line(text)
    del data  # the bytes go before chunking starts: the text alone is held from here
    if not text or text.isspace():
        raise DocumentError(path, "is empty (no text after reading it); leave it out")
    if len(text) > max_bytes:  # a PDF's text layer can outgrow its file
        raise DocumentError(path, _too_large(f"has {len(text) / 1e6:.1f} M characters of text",
                                             max_bytes))
    return [_document(path.relative_to(root).as_posix(), path, text, title or path.stem,
                      mtime, meta)]


_SPECIAL_FILES = (
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


def read_file(path: Path, max_bytes: int = MAX_FILE_BYTES) -> tuple[bytes, float]:
    """The bytes and mtime of a regular file of at most ``max_bytes``, else DocumentError.

    Never blocks on a special file: the kind is checked before opening, the file is
    opened non-blocking and checked again on the open descriptor (it may have been
    swapped meanwhile), and at most ``max_bytes + 1`` bytes are read.
    """
    try:
        info = os.stat(path)  # follows symlinks: a link to a regular file is fine
    except OSError as e:
        raise DocumentError(path, _stat_problem(path, e)) from e
    _check_regular(path, info, max_bytes)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) \
        | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise DocumentError(path, f"cannot read ({e.strerror}); check its permissions") from e
    with os.fdopen(fd, "rb", buffering=0) as f:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
            _check_regular(path, opened, max_bytes)
        try:
            data = f.read(min(opened.st_size, max_bytes) + 1) or b""
        except OSError as e:
            raise DocumentError(path, f"cannot read ({e.strerror})") from e
    if len(data) > max_bytes:  # it grew while we looked
        raise DocumentError(path, _too_large("grew while it was read", max_bytes))
    return data, info.st_mtime


def _check_regular(path: Path, info: os.stat_result, max_bytes: int) -> None:
    for test, kind in _SPECIAL_FILES:
        if test(info.st_mode):
            target = f" ({os.path.realpath(path)})" if os.path.islink(path) else ""
            raise DocumentError(
                path, f"is {kind}{target}, not a regular file; only regular files are read: "
                "leave it out")
    if not stat.S_ISREG(info.st_mode):
        raise DocumentError(path, "is not a regular file; only regular files are read")
    if info.st_size > max_bytes:
        raise DocumentError(path, _too_large(f"is {info.st_size / 1e6:.1f} MB", max_bytes))


def _stat_problem(path: Path, error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return "is a symlink loop (it points back to itself); fix or remove the link"
    if error.errno == errno.ENOENT and os.path.islink(path):
        return f"is a broken symlink (to {os.readlink(path)}); fix or remove the link"
    return f"cannot read ({error.strerror}); check it exists"


def _too_large(what: str, max_bytes: int) -> str:
    return (f"{what}, over the {max_bytes / 1e6:.1f} MB limit; split it, or raise the "
            f"limit: RAGMEM_DOCUMENTS_MAX_FILE_BYTES={max_bytes * 4}")


def _document(
    doc_id: str, path: Path, text: str, title: str, mtime: float, meta: dict[str, Any]
) -> Document:
    return Document(
        doc_id=doc_id,
        path=os.path.abspath(path),
        text=text,
        title=title,
        mtime=mtime,
        content_hash=content_hash(text),
        metadata=meta,
    )


def content_hash(text: str, block: int = 1 << 20) -> str:
    """sha256 of the UTF-8 text, encoded a block at a time: no second copy of a big text.

    >>> content_hash("abc") == hashlib.sha256(b"abc").hexdigest()
    True
    """
    digest = hashlib.sha256()
    for i in range(0, len(text), block):
        digest.update(text[i:i + block].encode("utf-8"))
    return digest.hexdigest()


def _normalise(text: str) -> str:
    if "\r" not in text:  # the common case: no copy at all
        return text
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _decode(path: Path, data: bytes) -> str:
    try:
        return _normalise(data.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise DocumentError(
            path, f"is not UTF-8 text (byte {data[e.start]:#04x} at offset {e.start}); "
            f"re-save it as UTF-8, e.g. iconv -f latin1 -t utf-8"
        ) from e


def _first_line(text: str) -> str:
    m = _FIRST_LINE.search(text)  # a search, not a split: a big text is not copied
    return m.group().rstrip() if m else ""


def _markdown_title(text: str) -> str:
    m = _MD_TITLE.search(text)
    return m.group(1).strip()[:_TITLE_CHARS] if m else ""


SECTION_SEPARATOR = " › "
_FENCE = re.compile(r"[ \t]{0,3}(`{3,}|~{3,})")
# An ATX heading, matched on one line: "## The Bank ##" -> "The Bank" (the closing #s
# go only after a space: "## C#" keeps its #).
_ATX = re.compile(r"[ \t]{0,3}(#{1,6})(?:[ \t]+(.*?))??(?:[ \t]+#+)?[ \t]*$")


def markdown_sections(text: str) -> list[list[Any]]:
    """Where each section of a Markdown text starts, with its heading path.

    >>> markdown_sections("# Chapter II\\n## The Bank\\nVault.\\n```\\n# code\\n```")
    [[0, 'Chapter II'], [13, 'Chapter II › The Bank']]

    ``[[offset, path], ...]``: from ``offset`` on (to the next entry), the text is under
    ``path``. Headings inside fenced code are not headings.
    """
    stack: list[tuple[int, str]] = []
    sections: list[list[Any]] = []
    fence = ""
    pos = 0
    while pos <= len(text):  # line by line, without copying the lines out
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end
        if m := _FENCE.match(text, pos, end):
            marker = m.group(1)
            if not fence:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence):
                fence = ""
        elif not fence and (h := _ATX.match(text, pos, end)):
            level, title = len(h.group(1)), " ".join((h.group(2) or "").split())
            while stack and stack[-1][0] >= level:
                stack.pop()
            if title:
                stack.append((level, title))
            sections.append([pos, SECTION_SEPARATOR.join(t for _, t in stack)])
        pos = end + 1
    return sections


def section_at(sections: Sequence[Sequence[Any]], offset: int) -> str:
    """The heading path that ``offset`` falls under ("" before the first heading).

    >>> section_at([[0, "A"], [10, "A › B"]], 12)
    'A › B'
    """
    i = bisect_right([s[0] for s in sections], offset) - 1
    return str(sections[i][1]) if i >= 0 else ""


def _load_jsonl(path: Path, text: str, mtime: float,
                on_problem: Callable[[DocumentError], None] | None) -> list[Document]:
    docs: list[Document] = []
    ids: set[str] = set()
    bad = 0
    for lineno, line in _lines(text):
        if not line or line.isspace():
            continue
        try:
            docs.append(_jsonl_record(path, lineno, line, mtime, ids))
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


def _jsonl_record(path: Path, lineno: int, line: str, mtime: float,
                  ids: set[str]) -> Document:
    where = f"{path}:{lineno}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise DocumentError(
            where, f"not valid JSON ({e.msg}); each line must be one object "
            f'like {{"id": "a1", "text": "..."}}'
        ) from e
    # "_id" is BEIR's name for it: a BEIR corpus.jsonl indexes as it is.
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
    return _document(doc_id, path, _normalise(body), str(title) if title else doc_id, mtime,
                     meta)


def _read_html(data: bytes) -> tuple[str, str, list[list[Any]]]:
    from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning, NavigableString, Tag
    from bs4.element import PreformattedString

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        soup = BeautifulSoup(data, "html.parser")  # bytes: bs4 honours <meta charset>
    title = soup.title.get_text(" ", strip=True) if soup.title else ""

    # Paragraphs are built from text runs; block elements close the current one, so
    # headings, list items and table rows end up separated by blank lines.
    paragraphs: list[str] = []
    run: list[str] = []
    in_pre_run = False
    # (paragraph index, level, title) of each h1-h6: the heading is its own paragraph.
    headings: list[tuple[int, int, str]] = []

    def close() -> None:
        nonlocal in_pre_run
        lines = "".join(run).split("\n")
        text = "\n".join(s.rstrip() if in_pre_run else s.strip() for s in lines)
        text = re.sub(r"\n{3,}", "\n\n", text).strip("\n")
        if text.strip():
            paragraphs.append(text)
        run.clear()
        in_pre_run = False

    def walk(node: Tag, in_pre: bool) -> None:
        nonlocal in_pre_run
        for child in node.children:
            if isinstance(child, PreformattedString):  # comments, doctype, CDATA
                continue
            if isinstance(child, NavigableString):
                run.append(str(child) if in_pre else re.sub(r"\s+", " ", child))
                in_pre_run |= in_pre
            elif isinstance(child, Tag) and child.name not in _HTML_DROP:
                if child.name == "br":
                    run.append("\n")
                elif child.name in ("td", "th"):
                    run.append(" ")
                    walk(child, in_pre)
                elif child.name in _HTML_BLOCKS:
                    close()
                    if child.name in _HTML_HEADINGS:
                        headings.append((len(paragraphs), int(child.name[1]),
                                         " ".join(child.get_text(" ").split())))
                    walk(child, in_pre or child.name == "pre")
                    close()
                else:
                    walk(child, in_pre)

    walk(soup, False)
    close()
    paragraphs = [_normalise(p) for p in paragraphs]
    text = "\n\n".join(paragraphs)
    if not title and (h1 := soup.find("h1")):
        title = h1.get_text(" ", strip=True)
    return text, " ".join(title.split())[:_TITLE_CHARS], _html_sections(paragraphs, headings)


def _html_sections(paragraphs: list[str],
                   headings: list[tuple[int, int, str]]) -> list[list[Any]]:
    starts = [0]
    for p in paragraphs:
        starts.append(starts[-1] + len(p) + 2)
    stack: list[tuple[int, str]] = []
    sections: list[list[Any]] = []
    for index, level, title in headings:
        while stack and stack[-1][0] >= level:
            stack.pop()
        if title:
            stack.append((level, title))
        at = starts[min(index, len(paragraphs))] if paragraphs else 0
        path = SECTION_SEPARATOR.join(t for _, t in stack)
        if sections and sections[-1][0] == at:
            sections[-1][1] = path  # an empty heading: no paragraph of its own
        elif not sections or sections[-1][1] != path:
            sections.append([at, path])
    return sections


def _read_pdf(path: Path, data: bytes) -> tuple[str, str, dict[str, Any]]:
    from pypdf import PasswordType, PdfReader
    from pypdf.errors import DependencyError, PyPdfError

    encrypted = DocumentError(
        path, "is encrypted: decrypt it first, e.g. qpdf --decrypt --password=PW in.pdf out.pdf"
    )
    try:
        reader = PdfReader(io.BytesIO(data))
        # Owner-password-only PDFs open with the empty user password.
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise encrypted
        pages = [_normalise(page.extract_text() or "").strip() for page in reader.pages]
        info = reader.metadata
        title = str(info.title or "").strip() if info else ""
    except DependencyError as e:  # AES needs the optional `cryptography` package
        raise encrypted from e
    except (PyPdfError, ValueError, KeyError, TypeError) as e:
        raise DocumentError(
            path, f"is not a readable PDF ({e}); re-export or repair it, e.g. qpdf in.pdf out.pdf"
        ) from e
    # Pages are joined by a blank line; page_starts maps offsets back to page numbers.
    starts: list[int] = []
    offset = 0
    for text in pages:
        starts.append(offset)
        offset += len(text) + 2 if text else 0
    text = "\n\n".join(t for t in pages if t)
    if not text.strip():
        raise DocumentError(
            path, "has no text layer (scanned?); OCR it first, e.g. ocrmypdf in.pdf out.pdf"
        )
    title = " ".join(title.split())[:_TITLE_CHARS]
    return text, title, {"pages": len(pages), "page_starts": starts}
