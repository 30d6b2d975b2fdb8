"""Every failure a client sees is one JSON line, ``{"error": "..."}``, with a status code
that fits; never a traceback (the server's own log keeps that, with RAGMEM_DEBUG=1)."""

from __future__ import annotations

from collections.abc import Mapping

from ragmem.errors import (
    ConfigError,
    DocumentError,
    IndexCorruptError,
    IndexLockedError,
    IndexMismatchError,
    IndexNotFoundError,
    QuestionError,
    RagmemError,
)


class HttpError(RagmemError):
    """A request refused with ``status``: its message is the JSON ``error`` line."""

    def __init__(self, status: int, message: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})


def not_found(what: str) -> HttpError:
    return HttpError(404, what)


# The library's errors and the status each means to a client.
STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (HttpError, 0),  # its own
    (QuestionError, 400), (ConfigError, 400), (DocumentError, 422),
    (IndexNotFoundError, 404), (IndexLockedError, 409), (IndexMismatchError, 409),
    (IndexCorruptError, 500), (RagmemError, 500),
)


def status_and_message(exc: BaseException) -> tuple[int, str, dict[str, str]]:
    """What the client is told about ``exc``: status, one line, extra headers."""
    from ragmem.cli.failures import one_line

    if isinstance(exc, HttpError):
        return exc.status, " ".join(str(exc).split()), exc.headers
    status = next((s for cls, s in STATUS if isinstance(exc, cls)), 500)
    return status, one_line(exc)[0], {}
