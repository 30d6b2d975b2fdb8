"""What an upload may be and where it is kept: a file of a format ragmem reads, under a
sanitised name, in the index's ``uploads/`` folder (created 0700, files 0600), written
whole before the indexer sees it. Its document id is that name, unless another file
already holds that id: then a longer one (``uploads/x.txt``), which the upload's reply
gives in ``doc_ids``.

    >>> safe_name("../../etc/Report (final).PDF")
    'Report _final_.PDF'
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import unicodedata
from pathlib import Path
from typing import BinaryIO

from ragmem.documents import SUFFIXES
from ragmem.serve.errors import HttpError

UPLOADS = "uploads"
MAX_NAME = 120


def safe_name(filename: str) -> str:
    """The last part of ``filename`` (either slash), only letters, digits, ``. _ -`` and
    spaces (others become ``_``), no leading dot; refused unless its suffix is a format
    ragmem reads."""
    name = unicodedata.normalize("NFKC", filename or "").replace("\\", "/").split("/")[-1]
    name = re.sub(r"[^\w. -]", "_", name, flags=re.UNICODE)
    name = re.sub(r"\.{2,}", ".", name).strip(" .")
    if not name:
        raise HttpError(400, f"the file name {filename!r} has nothing usable in it; "
                             "rename the file")
    stem, dot, suffix = name.rpartition(".")
    if not dot or f".{suffix.lower()}" not in SUFFIXES:
        raise HttpError(415, f"{name}: unsupported format; ragmem reads "
                             f"{' '.join(SUFFIXES)}")
    return f"{stem[:MAX_NAME]}.{suffix}"


def save(folder: Path, name: str, data: BinaryIO) -> Path:
    """Write ``data`` to ``folder/name`` whole (a temp file renamed over it), 0600."""
    folder.mkdir(mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".upload-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(data, out)
        os.chmod(tmp, 0o600)
        target = folder / name
        os.replace(tmp, target)
        return target
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def uploaded_file(folder: Path, path: str) -> Path | None:
    """The upload ``path`` names if it is a file in ``folder`` (what a delete removes
    besides the document); None for a document indexed from anywhere else."""
    try:
        candidate = Path(path).resolve()
        return candidate if candidate.parent == folder.resolve() and candidate.is_file() \
            else None
    except OSError:
        return None
