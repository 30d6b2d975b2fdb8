"""What every request passes before a route sees it (``check``), and the headers every
response gets (``HEADERS``).

- **Host.** Bound to a loopback address, only ``127.0.0.1``, ``localhost`` or ``[::1]``
  (with the port) are answered: a page on another site cannot rebind its own name to
  this server and read it (DNS rebinding).
- **Token.** When one is set (it must be, to bind another address), every request
  carries it: ``Authorization: Bearer TOKEN`` (API clients), or the ``ragmem_token``
  cookie that opening ``/?token=TOKEN`` once sets (the page). Compared in constant time.
- **State changes** (POST, PUT, PATCH, DELETE) are refused when their ``Origin`` names
  another site, and otherwise need what a page on another site cannot send without a
  CORS preflight (which this server never grants): a JSON content type, an
  ``Authorization`` header, the same origin (``Origin`` or ``Sec-Fetch-Site``), or a
  method other than POST. A form or multipart POST from elsewhere is refused; the
  page's own upload passes.
- **Size.** A body over the limit is refused from its ``Content-Length`` before it is
  read; a body without one is refused (411) where a size limit applies.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from ragmem.errors import ConfigError
from ragmem.serve.errors import HttpError

COOKIE = "ragmem_token"
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Methods a page elsewhere can only send after a CORS preflight, which is never granted.
SAFE_FROM_FORMS = frozenset({"PUT", "PATCH", "DELETE"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
JSON_BODY_BYTES = 1_000_000  # a question and its filters; uploads have their own limit

# No framing, no sniffing, nothing loaded from elsewhere, no referrer sent away.
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
}


@dataclass(frozen=True)
class Guard:
    """The checks for a server bound to ``host``, with ``token`` (None: none needed)
    and ``max_upload_bytes`` for the upload route."""

    host: str
    token: str | None
    max_upload_bytes: int

    def __post_init__(self) -> None:
        if not is_loopback(self.host) and not self.token:
            raise ConfigError(f"serving on {self.host} needs a token: pass --token or set "
                              "RAGMEM_SERVE_TOKEN (or serve on 127.0.0.1)")

    def check(self, method: str, path: str, headers: Mapping[str, str],
              cookies: Mapping[str, str], query_token: str | None = None) -> None:
        """Raise ``HttpError`` when the request may not go on. ``headers``: lower-case
        names. ``query_token``: the page's ``?token=`` (only ``GET /`` reads it)."""
        self._check_host(headers.get("host", ""))
        self._check_token(headers, cookies, query_token)
        if method in STATE_CHANGING:
            self._check_origin(method, headers)
            self._check_size(path, headers)

    def _check_host(self, host_header: str) -> None:
        if not is_loopback(self.host):
            return  # bound to a public address: the token is the guard
        name = urlsplit(f"//{host_header}").hostname or ""
        if name not in LOOPBACK_NAMES:
            raise HttpError(421, f"this server answers only as 127.0.0.1 or localhost, "
                                 f"not {host_header or 'an empty Host'}")

    def _check_token(self, headers: Mapping[str, str], cookies: Mapping[str, str],
                     query_token: str | None) -> None:
        if not self.token:
            return
        auth = headers.get("authorization", "")
        given = (auth[7:].strip() if auth.lower().startswith("bearer ") else None) \
            or cookies.get(COOKIE) or query_token
        if not given:
            raise HttpError(401, "this server needs its token: send 'Authorization: Bearer "
                                 "TOKEN', or open the page once as /?token=TOKEN",
                            {"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            raise HttpError(401, "wrong token; use the one the server was started with "
                                 "(--token or RAGMEM_SERVE_TOKEN)",
                            {"WWW-Authenticate": "Bearer"})

    def _check_origin(self, method: str, headers: Mapping[str, str]) -> None:
        origin = headers.get("origin")
        same = origin is not None and origin == same_origin(headers)
        if origin is not None and origin != "null" and not same:
            raise HttpError(403, f"requests from {origin} are refused: this server allows "
                                 "no other origin (no CORS)")
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if same or headers.get("sec-fetch-site") == "same-origin" or method in SAFE_FROM_FORMS \
                or content_type == "application/json" or "authorization" in headers:
            return
        raise HttpError(403, "a state-changing request needs 'Content-Type: "
                             "application/json', an Authorization header, or the page's "
                             "own origin")

    def _check_size(self, path: str, headers: Mapping[str, str]) -> None:
        limit = self.max_upload_bytes if path.endswith("/documents") else JSON_BODY_BYTES
        length = headers.get("content-length")
        if length is None:
            if headers.get("transfer-encoding"):
                raise HttpError(411, "send a Content-Length: a body without one is refused")
            return
        if not length.isdigit():
            raise HttpError(400, f"Content-Length {length!r} is not a number")
        if int(length) > limit:
            raise HttpError(413, f"the request body is {int(length):,} bytes, over the "
                                 f"{limit:,}-byte limit (RAGMEM_SERVE_MAX_UPLOAD_BYTES for "
                                 "uploads)")


def same_origin(headers: Mapping[str, str]) -> str:
    """``http://127.0.0.1:8765``: this server's origin as the request names it."""
    return f"http://{headers.get('host', '')}"


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
