"""Files -> ``Document``: .txt, .md, .html, .pdf and .jsonl.

    >>> for doc in iter_documents(["notes/"]):                 # doctest: +SKIP
    ...     print(doc.doc_id, doc.title)
    guide/intro.md Getting started

Text is kept as read except that ``\\r\\n`` and ``\\r`` become ``\\n``, so offsets into
``Document.text`` are exact.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ragmem.errors import DocumentError
from ragmem.types import Document

SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".jsonl")
_TITLE_CHARS = 120
_MD_TITLE = re.compile(r"^#[ \t]+(.+?)[ \t#]*$", re.M)
_HTML_DROP = frozenset({"script", "style", "noscript", "template", "head", "title"})
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
    seen: set[Path] = set()
    for path in paths:
        for root, file in _discover_one(Path(path)):
            if (key := file.resolve()) not in seen:
                seen.add(key)
                found.append((root, file))
    return found


def _discover_one(path: Path) -> list[tuple[Path, Path]]:
    if path.is_file():
        if path.suffix.lower() not in SUFFIXES:
            raise DocumentError(
                f"{path}: unsupported file type {path.suffix!r}; supported: "
                f"{' '.join(SUFFIXES)}; convert it to one of these first"
            )
        return [(path.parent, path)]
    if not path.is_dir():
        raise DocumentError(f"{path}: no such file or folder; check the path and try again")
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
) -> Iterator[Document]:
    """Load every document under ``paths``; hand bad files to ``on_error`` and go on.

    With ``on_error=None`` the first bad file raises its ``DocumentError``.
    """
    seen: set[Path] = set()
    for path in paths:
        try:
            pairs = _discover_one(Path(path))
        except DocumentError as e:
            if on_error is None:
                raise
            on_error(Path(path), e)
            continue
        for root, file in pairs:
            if (key := file.resolve()) in seen:
                continue
            seen.add(key)
            try:
                docs = load_file(file, root)
            except DocumentError as e:
                if on_error is None:
                    raise
                on_error(file, e)
                continue
            yield from docs


def load_file(path: Path, root: Path) -> list[Document]:
    """Read one file into Documents: one per file, or one per line of a .jsonl."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DocumentError(
            f"{path}: unsupported file type {suffix!r}; supported: {' '.join(SUFFIXES)}"
        )
    try:
        data = path.read_bytes()
        mtime = path.stat().st_mtime
    except OSError as e:
        raise DocumentError(f"{path}: cannot read ({e.strerror}); check it exists") from e
    if not data.strip():
        raise DocumentError(f"{path}: is empty; add text or leave it out")
    if suffix != ".pdf" and b"\x00" in data[:8192]:
        raise DocumentError(
            f"{path}: contains NUL bytes (binary, or UTF-16 text); ragmem reads UTF-8 "
            f"text: convert it to UTF-8 or leave it out"
        )
    meta: dict[str, Any] = {"suffix": suffix}
    if suffix == ".jsonl":
        return _load_jsonl(path, _decode(path, data), mtime)
    if suffix == ".pdf":
        text, title, pdf_meta = _read_pdf(path, data)
        meta.update(pdf_meta)
    elif suffix in (".html", ".htm"):
        text, title = _read_html(data)
    else:
        text = _decode(path, data)
        title = _markdown_title(text) if suffix in (".md", ".markdown") else ""
        title = title or _first_line(text)
    if not text.strip():
        raise DocumentError(f"{path}: is empty (no text after reading it); leave it out")
    return [_document(path.relative_to(root).as_posix(), path, text, title or path.stem,
                      mtime, meta)]


def _document(
    doc_id: str, path: Path, text: str, title: str, mtime: float, meta: dict[str, Any]
) -> Document:
    return Document(
        doc_id=doc_id,
        path=os.path.abspath(path),
        text=text,
        title=title,
        mtime=mtime,
        content_hash=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        metadata=meta,
    )


def _normalise(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _decode(path: Path, data: bytes) -> str:
    try:
        return _normalise(data.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise DocumentError(
            f"{path}: is not UTF-8 text (byte {data[e.start]:#04x} at offset {e.start}); "
            f"re-save it as UTF-8, e.g. iconv -f latin1 -t utf-8"
        ) from e


def _first_line(text: str) -> str:
    line = next((s.strip() for s in text.split("\n") if s.strip()), "")
    return line[:_TITLE_CHARS].rstrip()


def _markdown_title(text: str) -> str:
    m = _MD_TITLE.search(text)
    return m.group(1).strip()[:_TITLE_CHARS] if m else ""


def _load_jsonl(path: Path, text: str, mtime: float) -> list[Document]:
    docs: list[Document] = []
    ids: set[str] = set()
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DocumentError(
                f"{where}: not valid JSON ({e.msg}); each line must be one object "
                f'like {{"id": "a1", "text": "..."}}'
            ) from e
        if not isinstance(record, dict) or "id" not in record or "text" not in record:
            raise DocumentError(
                f'{where}: needs an object with "id" and "text", like '
                f'{{"id": "a1", "text": "..."}}'
            )
        raw_id, body = record.pop("id"), record.pop("text")
        if isinstance(raw_id, bool) or not isinstance(raw_id, str | int) or raw_id == "":
            raise DocumentError(f'{where}: "id" must be a non-empty string or an integer')
        doc_id = str(raw_id)
        if not isinstance(body, str) or not body.strip():
            raise DocumentError(f'{where}: "text" is empty or not a string; give it text')
        if doc_id in ids:
            raise DocumentError(f"{where}: duplicate id {doc_id!r}; ids must be unique")
        ids.add(doc_id)
        title = record.pop("title", None)
        meta = {**record, "suffix": ".jsonl", "line": lineno}
        docs.append(_document(doc_id, path, _normalise(body),
                              str(title) if title else doc_id, mtime, meta))
    if not docs:
        raise DocumentError(f"{path}: is empty (no records); add lines or leave it out")
    return docs


def _read_html(data: bytes) -> tuple[str, str]:
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
                    walk(child, in_pre or child.name == "pre")
                    close()
                else:
                    walk(child, in_pre)

    walk(soup, False)
    close()
    text = _normalise("\n\n".join(paragraphs))
    if not title and (h1 := soup.find("h1")):
        title = h1.get_text(" ", strip=True)
    return text, " ".join(title.split())[:_TITLE_CHARS]


def _read_pdf(path: Path, data: bytes) -> tuple[str, str, dict[str, Any]]:
    from pypdf import PasswordType, PdfReader
    from pypdf.errors import DependencyError, PyPdfError

    encrypted = DocumentError(
        f"{path}: is encrypted: decrypt it first, e.g. qpdf --decrypt --password=PW "
        f"in.pdf out.pdf"
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
            f"{path}: is not a readable PDF ({e}); re-export or repair it, "
            f"e.g. qpdf in.pdf out.pdf"
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
            f"{path}: has no text layer (scanned?); OCR it first, e.g. ocrmypdf in.pdf out.pdf"
        )
    title = " ".join(title.split())[:_TITLE_CHARS]
    return text, title, {"pages": len(pages), "page_starts": starts}
