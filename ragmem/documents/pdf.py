"""PDF: the text layer, page by page (pypdf), with the offset where each page starts.

Anything pypdf raises on a file is about that file (a damaged, hostile or unusual PDF):
it becomes one ``DocumentError``. What pypdf logs as it reads ("invalid pdf header") is
kept off the terminal: the file is read, or refused in one line that says why.
``RAGMEM_DEBUG=1`` lets pypdf's own lines through.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ragmem.documents.files import Deadline, too_large
from ragmem.documents.text import TITLE_CHARS, normalise
from ragmem.errors import DocumentError, debugging


def read_pdf(path: Path, data: bytes, deadline: Deadline,
             max_chars: int) -> tuple[str, str, dict[str, Any]]:
    """``(text, title, {"pages": n, "page_starts": [...]})``; pages joined by a blank
    line."""
    from pypdf import PasswordType, PdfReader
    from pypdf.errors import DependencyError

    encrypted = DocumentError(
        path, "is encrypted: decrypt it first, e.g. qpdf --decrypt --password=PW in.pdf out.pdf"
    )
    pages: list[str] = []
    try:
        with _pypdf_quiet():
            reader = PdfReader(io.BytesIO(data))
            # Owner-password-only PDFs open with the empty user password.
            if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
                raise encrypted
            chars = 0
            for page in reader.pages:
                deadline.check()
                pages.append(normalise(page.extract_text() or "").strip())
                if (chars := chars + len(pages[-1])) > max_chars:  # before the rest is read
                    raise DocumentError(path, too_large(
                        f"has over {chars / 1e6:.1f} M characters of text", max_chars))
            info = reader.metadata
            title = str(info.title or "").strip() if info else ""
    except DocumentError:
        raise
    except DependencyError as e:  # AES needs the optional `cryptography` package
        raise encrypted from e
    except RecursionError as e:  # pypdf's object parser recurses: [[[[... 10,000 deep
        raise DocumentError(path, "is not a readable PDF (its objects nest too deeply); "
                            "re-export or repair it, e.g. qpdf in.pdf out.pdf") from e
    except Exception as e:  # what pypdf raises on a file is about the file
        why = " ".join(str(e).split())[:200] or type(e).__name__
        raise DocumentError(
            path, f"is not a readable PDF ({why}); re-export or repair it, e.g. qpdf in.pdf "
            "out.pdf") from e
    # Pages are joined by a blank line; page_starts maps offsets back to page numbers.
    starts: list[int] = []
    offset = 0
    for text in pages:
        starts.append(offset)
        offset += len(text) + 2 if text else 0
    text = "\n\n".join(t for t in pages if t)
    starts = [min(start, len(text)) for start in starts]  # blank last pages: at the end
    if not text.strip():
        raise DocumentError(
            path, "has no text layer (scanned?); OCR it first, e.g. ocrmypdf in.pdf out.pdf"
        )
    title = " ".join(title.split())[:TITLE_CHARS]
    return text, title, {"pages": len(pages), "page_starts": starts}


_QUIET = threading.Lock()
_quiet_readers = 0  # reads in progress, across threads: the last one puts pypdf back
_quiet_saved = True


@contextmanager
def _pypdf_quiet() -> Iterator[None]:
    """pypdf's log lines go nowhere while it reads (outside ``RAGMEM_DEBUG``): its logger
    stops passing them on to the root logger's handlers (and a NullHandler of its own
    keeps Python's last-resort handler from printing them)."""
    global _quiet_readers, _quiet_saved
    if debugging():
        yield
        return
    logger = logging.getLogger("pypdf")
    with _QUIET:
        if _quiet_readers == 0:
            _quiet_saved, logger.propagate = logger.propagate, False
            logger.addHandler(_DROP)
        _quiet_readers += 1
    try:
        yield
    finally:
        with _QUIET:
            _quiet_readers -= 1
            if _quiet_readers == 0:
                logger.removeHandler(_DROP)
                logger.propagate = _quiet_saved


_DROP = logging.NullHandler()
