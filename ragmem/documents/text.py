"""Text as ragmem keeps it, whatever the format: UTF-8 decoded, ``\\r\\n`` and ``\\r``
made ``\\n`` (so offsets into ``Document.text`` are exact), a title, a content hash, and
the ``Document`` built from them. A .txt file needs nothing more."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from ragmem.errors import DocumentError
from ragmem.types import Document

TITLE_CHARS = 120
_SURROGATE = re.compile("[\ud800-\udfff]")
_FIRST_LINE = re.compile(rf"\S[^\n]{{0,{TITLE_CHARS - 1}}}")


def normalise(text: str) -> str:
    if "\r" not in text:  # the common case: no copy at all
        return text
    return text.replace("\r\n", "\n").replace("\r", "\n")


def decode(path: Path, data: bytes) -> str:
    try:
        return normalise(data.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise DocumentError(
            path, f"is not UTF-8 text (byte {data[e.start]:#04x} at offset {e.start}); "
            f"re-save it as UTF-8, e.g. iconv -f latin1 -t utf-8"
        ) from e


def valid_unicode(text: str) -> str:
    """``text`` with each lone surrogate (``"\\ud800"`` in JSON, a PDF's broken font
    map) made U+FFFD: one character for one, so offsets hold, and the text can be
    encoded, hashed and stored.

    >>> valid_unicode("a\\ud800b") == "a\\ufffdb"
    True
    """
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


def first_line(text: str) -> str:
    m = _FIRST_LINE.search(text)  # a search, not a split: a big text is not copied
    return m.group().rstrip() if m else ""


def content_hash(text: str, block: int = 1 << 20) -> str:
    """sha256 of the UTF-8 text, encoded a block at a time: no second copy of a big text.

    >>> content_hash("abc") == hashlib.sha256(b"abc").hexdigest()
    True
    """
    digest = hashlib.sha256()
    for i in range(0, len(text), block):
        digest.update(text[i:i + block].encode("utf-8"))
    return digest.hexdigest()


def document(doc_id: str, path: Path, text: str, title: str, mtime: float,
             meta: dict[str, Any]) -> Document:
    return Document(
        doc_id=doc_id,
        path=os.path.abspath(path),
        text=text,
        title=title,
        mtime=mtime,
        content_hash=content_hash(text),
        metadata=meta,
    )
