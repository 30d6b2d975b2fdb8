"""Talking to Milvus: the lazy import, the connection, errors as one line, the schemas.

``pymilvus`` is imported here and nowhere else, on first use: ``import ragmem`` and the
FAISS store never load it, and without it the Milvus store says how to install it.

A URI ending in ``.db`` is milvus-lite: pymilvus starts it inside this process, in
threads, on the folder the URI names; milvus-lite lets one process at a time open a
folder. Anything else (``http://host:19530``) is a Milvus server or cluster.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragmem.config import MilvusConfig
from ragmem.errors import ConfigError, StoreError
from ragmem.memory.milvus.lite import GRPC_OPTIONS, compact_lite, locked, make_private

INSTALL = "pip install 'ragmem[scale]'"
LITE_FILE = "milvus.db"  # a new index's milvus-lite folder, inside the index folder

# Milvus caps a VARCHAR at 65,535 bytes; longer text is stored in pieces.
VARCHAR_MAX = 65_535
PIECE_BYTES = 60_000
ID_BYTES = 2_048  # doc_id and path; a longer one is refused with its name
TITLE_BYTES = 2_048
HASH_BYTES = 256


def pymilvus() -> Any:
    """The pymilvus module, imported on first use (it is an optional extra)."""
    quiet_grpc()
    try:
        import pymilvus as module
    except ImportError as exc:
        raise StoreError(f"the Milvus store needs pymilvus and milvus-lite; {INSTALL}") \
            from exc
    # pymilvus and milvus-lite log each failed request (with tracebacks) before raising
    # it; ragmem turns what they raise into one line of its own, so their logs would
    # only repeat it. RAGMEM_DEBUG=1 keeps them.
    if not _debug():
        for name in ("pymilvus", "milvus_lite"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    return module


def _debug() -> bool:
    return os.environ.get("RAGMEM_DEBUG", "").lower() in {"1", "true", "yes", "on"}


def quiet_grpc() -> None:
    """gRPC's C core writes its own lines to stderr ("GOAWAY ... too_many_pings"), past
    Python's logging; it reads GRPC_VERBOSITY once, when grpc is first imported, so this
    runs before pymilvus imports it. A value the user set, and RAGMEM_DEBUG, win."""
    if not _debug() and "grpc" not in sys.modules:
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")


def is_lite(uri: str) -> bool:
    """pymilvus's own rule: a URI ending in ``.db`` is a milvus-lite folder."""
    return uri.endswith(".db")


def stored_uri(uri: str, directory: Path) -> str:
    """The URI as the manifest keeps it: a lite folder inside the index folder relative
    to it (the index can move), any other lite folder absolute, a server URI as given."""
    if not is_lite(uri):
        return uri
    path = Path(uri).expanduser().absolute()
    try:
        return str(path.relative_to(directory.absolute()))
    except ValueError:
        return str(path)


def resolve_uri(stored: str, directory: Path) -> str:
    """The manifest's URI as pymilvus takes it (see ``stored_uri``)."""
    if not is_lite(stored):
        return stored
    return str(directory / stored) if not Path(stored).is_absolute() else stored


def check_uri(uri: str) -> None:
    if is_lite(uri) or re.match(r"^(https?|tcp|unix)://", uri) or uri.startswith("unix:"):
        return
    raise ConfigError(f"Milvus URI {uri!r} is neither a milvus-lite path ending in .db nor "
                      "a server URI (http://HOST:19530); e.g. --uri ./indexes/NAME/milvus.db")


@dataclass(frozen=True)
class Collections:
    """The two collections of one index: ``<base>_documents`` and ``<base>_windows``."""

    base: str

    @property
    def documents(self) -> str:
        return f"{self.base}_documents"

    @property
    def windows(self) -> str:
        return f"{self.base}_windows"

    @staticmethod
    def new_base(prefix: str, index_name: str) -> str:
        """``ragmem_demo_1f2e3d4c``: unique, so two machines creating "demo" on one
        server do not share a collection by accident."""
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", prefix):
            raise ConfigError(f"milvus.collection_prefix {prefix!r} must be letters, digits "
                              "and underscores, not starting with a digit")
        slug = re.sub(r"[^A-Za-z0-9_]", "_", index_name)[:80]
        return f"{prefix}_{slug}_{os.urandom(4).hex()}"


# milvus-lite folders this process has open, and how many memories use each: the last
# close releases the folder (its lock) so that another process can open it.
_lite_users: dict[str, int] = {}
_lite_lock = threading.Lock()


def open_here(uri: str) -> bool:
    """Whether this process has the milvus-lite folder ``uri`` open."""
    with _lite_lock:
        return str(Path(uri).expanduser().absolute()) in _lite_users


class Client:
    """A pymilvus ``MilvusClient`` whose failures are ``StoreError``s naming the URI."""

    def __init__(self, uri: str, config: MilvusConfig) -> None:
        check_uri(uri)
        self.uri = uri
        self.lite = is_lite(uri)
        self.timeout = config.timeout_s
        module = pymilvus()
        self._exception = module.MilvusException
        if self.lite:
            folder = Path(uri).expanduser().absolute()
            if not folder.parent.is_dir():
                raise StoreError(f"cannot create milvus-lite at {uri}: {folder.parent} is "
                                 "not a folder; create it, or pick another --uri")
            self._lite_path = str(folder)
            uri = self._lite_path
        try:
            # A lite server runs in this process: keepalive pings have nothing to find.
            options = GRPC_OPTIONS if self.lite else {}
            self.raw = module.MilvusClient(uri=uri, token=config.token or "",
                                           timeout=config.timeout_s, grpc_options=options)
        except Exception as exc:
            raise self._cannot_connect(exc) from exc
        if self.lite:
            with _lite_lock:
                _lite_users[self._lite_path] = _lite_users.get(self._lite_path, 0) + 1

    def _cannot_connect(self, exc: Exception) -> StoreError:
        why = _reason(exc)
        if self.lite:
            if locked(Path(self._lite_path)):
                return StoreError(
                    f"milvus-lite at {self.uri} is open in another process (milvus-lite "
                    "lets one process at a time open it); wait for that one to finish, or "
                    "serve the index from a Milvus server (--uri http://HOST:19530)")
            return StoreError(f"cannot open milvus-lite at {self.uri} ({why})")
        return StoreError(f"cannot reach Milvus at {self.uri} ({why}); start the server, or "
                          "point RAGMEM_MILVUS_URI at the one that holds the index")

    @contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """Milvus's exceptions, and a connection lost midway, as one ``StoreError``."""
        try:
            yield
        except StoreError:
            raise
        except self._exception as exc:
            raise StoreError(f"Milvus at {self.uri} failed to {what} ({_reason(exc)})") \
                from exc

    # -- requests -------------------------------------------------------------
    def has_collection(self, name: str) -> bool:
        with self.errors(f"look up collection {name}"):
            return bool(self.raw.has_collection(name, timeout=self.timeout))

    def describe(self, name: str) -> dict[str, Any]:
        with self.errors(f"describe collection {name}"):
            return dict(self.raw.describe_collection(name, timeout=self.timeout))

    def load(self, name: str) -> None:
        with self.errors(f"load collection {name}"):
            self.raw.load_collection(name, timeout=self.timeout)

    def drop(self, name: str) -> None:
        with self.errors(f"drop collection {name}"):
            self.raw.drop_collection(name, timeout=self.timeout)

    def flush(self, name: str) -> None:
        with self.errors(f"flush collection {name}"):
            self.raw.flush(name, timeout=self.timeout)

    def list_collections(self) -> list[str]:
        with self.errors("list collections"):
            return list(self.raw.list_collections())

    def upsert(self, name: str, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            with self.errors(f"write to {name}"):
                self.raw.upsert(name, list(rows), timeout=self.timeout)

    def delete(self, name: str, expr: str) -> None:
        with self.errors(f"delete from {name}"):
            self.raw.delete(name, filter=expr, timeout=self.timeout)

    def query(self, name: str, expr: str, fields: Sequence[str]) -> list[dict[str, Any]]:
        """Rows matching ``expr`` (which must bound them: one document's, a list of ids')."""
        with self.errors(f"read from {name}"):
            return list(self.raw.query(name, filter=expr, output_fields=list(fields),
                                       timeout=self.timeout))

    def count(self, name: str, expr: str = "") -> int:
        with self.errors(f"count rows of {name}"):
            rows = self.raw.query(name, filter=expr, output_fields=["count(*)"],
                                  timeout=self.timeout)
        return int(rows[0]["count(*)"]) if rows else 0

    def scan(self, name: str, expr: str, fields: Sequence[str],
             batch: int = 4_000) -> Iterator[dict[str, Any]]:
        """Every row matching ``expr``, a batch at a time (no result-size cap)."""
        with self.errors(f"read from {name}"):
            it = self.raw.query_iterator(name, batch_size=batch, filter=expr,
                                         output_fields=list(fields), timeout=self.timeout)
            try:
                while rows := it.next():
                    yield from rows
            finally:
                it.close()

    def search(self, name: str, data: list[Any], field: str, limit: int, expr: str,
               fields: Sequence[str], params: dict[str, Any]) -> list[list[dict[str, Any]]]:
        with self.errors(f"search {name}"):
            result = self.raw.search(name, data=data, anns_field=field, limit=limit,
                                     filter=expr, output_fields=list(fields),
                                     search_params=params, timeout=self.timeout)
        return [[dict(hit) for hit in row] for row in result]

    def close(self) -> None:
        self.raw.close()
        if not self.lite:
            return
        with _lite_lock:
            left = _lite_users.get(self._lite_path, 1) - 1
            if left > 0:
                _lite_users[self._lite_path] = left
                return
            _lite_users.pop(self._lite_path, None)
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(self._lite_path)  # its last files written
        make_private(Path(self._lite_path))

    def compact(self, name: str) -> str | None:
        """Make ``name``'s keyword statistics those of its live rows (see
        ``ragmem.memory.milvus.lite``). A server compacts when it sees fit: it is asked
        to, no more. Returns why it could not, or None."""
        if self.lite:
            return compact_lite(self._lite_path, name)
        with self.errors(f"compact collection {name}"):
            self.raw.compact(name, timeout=self.timeout)
        return None

    def make_private(self) -> None:
        """A lite folder's files 0600, its folders 0700 (a server's disk is its own)."""
        if self.lite:
            make_private(Path(self._lite_path))


def _reason(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return " ".join(str(message).split())[:300]
