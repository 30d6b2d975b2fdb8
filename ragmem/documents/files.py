"""Reading one file safely: a regular file only (a named pipe, a device, a socket or a
symlink loop is refused at once, without blocking), at most ``max_bytes`` of it, and a
``Deadline`` that the readers check as they go, so that no file can hold a run for
longer than ``max_seconds``.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from ragmem.config import DocumentsConfig
from ragmem.errors import DocumentError

MAX_FILE_BYTES = DocumentsConfig.max_file_bytes
MAX_READ_SECONDS = DocumentsConfig.max_read_seconds

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
        raise DocumentError(path, too_large("grew while it was read", max_bytes))
    return data, info.st_mtime


def too_large(what: str, max_bytes: int) -> str:
    return (f"{what}, over the {max_bytes / 1e6:.1f} MB limit; split it, or raise the "
            f"limit: RAGMEM_DOCUMENTS_MAX_FILE_BYTES={max_bytes * 4}")


@dataclass(frozen=True)
class Deadline:
    """When reading ``path`` must be done by (``time.monotonic()``).

    The readers call ``check()`` between steps (parser events, PDF pages, lines), so a
    file that is slow to read for any reason is refused in one line instead of holding
    the run; one step that never returned would not be cut short.
    """

    path: Path
    seconds: float
    ends: float

    @classmethod
    def start(cls, path: Path, seconds: float = MAX_READ_SECONDS) -> Deadline:
        return cls(path, seconds, time.monotonic() + seconds)

    def check(self) -> None:
        if time.monotonic() > self.ends:
            raise DocumentError(
                self.path, f"took over {self.seconds:g} s to read, the limit for one file; "
                f"leave it out, or raise the limit: RAGMEM_DOCUMENTS_MAX_READ_SECONDS="
                f"{self.seconds * 4:g}")


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
        raise DocumentError(path, too_large(f"is {info.st_size / 1e6:.1f} MB", max_bytes))


def _stat_problem(path: Path, error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return "is a symlink loop (it points back to itself); fix or remove the link"
    if error.errno == errno.ENOENT and os.path.islink(path):
        return f"is a broken symlink (to {os.readlink(path)}); fix or remove the link"
    return f"cannot read ({error.strerror}); check it exists"
