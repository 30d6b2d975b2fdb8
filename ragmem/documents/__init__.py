"""Files -> ``Document``: .txt, .md, .html, .pdf and .jsonl.

    >>> for doc in iter_documents(["notes/"]):                 # doctest: +SKIP
    ...     print(doc.doc_id, doc.title)
    guide/intro.md Getting started

Text is kept as read except that ``\\r\\n`` and ``\\r`` become ``\\n`` (and a lone
surrogate U+FFFD), so offsets into ``Document.text`` are exact.

One module per job: ``discovery`` (which files), ``files`` (one file read safely: a
regular file only, refused at once otherwise, without blocking; at most
``DocumentsConfig.max_file_bytes`` of it; within ``max_read_seconds``), ``loading`` (a
file -> Documents), and a reader per format: ``text``, ``markdown``, ``html``, ``pdf``,
``jsonl``. A bad, hostile or too slow file is refused with a ``DocumentError``: one line
that names it and says what to do.
"""

from ragmem.documents.discovery import SUFFIXES, discover
from ragmem.documents.files import MAX_FILE_BYTES, MAX_READ_SECONDS, read_file
from ragmem.documents.loading import iter_documents, load_file, unexpected
from ragmem.documents.markdown import markdown_sections
from ragmem.documents.sections import SECTION_SEPARATOR, section_at
from ragmem.documents.text import content_hash

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_READ_SECONDS",
    "SECTION_SEPARATOR",
    "SUFFIXES",
    "content_hash",
    "discover",
    "iter_documents",
    "load_file",
    "markdown_sections",
    "read_file",
    "section_at",
    "unexpected",
]
