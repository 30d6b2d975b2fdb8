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
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragmem.config import MilvusConfig
from ragmem.errors import ConfigError, StoreError

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
    try:
        import pymilvus as module
    except ImportError as exc:
        raise StoreError(f"the Milvus store needs pymilvus and milvus-lite; {INSTALL}") \
            from exc
    # pymilvus and milvus-lite log each failed request (with tracebacks) before raising
    # it; ragmem turns what they raise into one line of its own, so their logs would
    # only repeat it. RAGMEM_DEBUG=1 keeps them.
    if os.environ.get("RAGMEM_DEBUG", "").lower() not in {"1", "true", "yes", "on"}:
        for name in ("pymilvus", "milvus_lite"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    return module


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
            self.raw = module.MilvusClient(uri=uri, token=config.token or "",
                                           timeout=config.timeout_s)
        except Exception as exc:
            raise self._cannot_connect(exc) from exc
        if self.lite:
            with _lite_lock:
                _lite_users[self._lite_path] = _lite_users.get(self._lite_path, 0) + 1

    def _cannot_connect(self, exc: Exception) -> StoreError:
        why = _reason(exc)
        if self.lite:
            if _lite_locked(Path(self._lite_path)):
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

        server_manager_instance.release_server(self._lite_path)


def _reason(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return " ".join(str(message).split())[:300]


def _lite_locked(folder: Path) -> bool:
    """Whether another process holds milvus-lite's lock on ``folder`` (its LOCK file)."""
    import fcntl  # milvus-lite's own lock is an flock (Unix)

    lock = folder / "LOCK"
    if not lock.exists():
        return False
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


# -- schemas ------------------------------------------------------------------------
# Every request names the fields it reads; these are the columns of each collection.
WINDOW_FIELDS = ("doc_id", "idx", "sent_first", "sent_last", "char_start", "char_end",
                 "n_tokens", "text", "lexical", "cut")
HEADER_FIELDS = ("doc_id", "path", "title", "mtime", "content_hash", "n_windows",
                 "n_sentences", "n_chars", "n_text", "n_sent", "n_sect")


def create_collections(client: Client, names: Collections, dim: int, index_type: str,
                       config: MilvusConfig) -> bool:
    """Create both collections, empty; returns whether full-text search (a BM25 function)
    is on: asked for, and supported by this Milvus (a server before 2.5 has none)."""
    full_text = config.full_text
    if full_text:
        try:
            _create_windows(client, names, dim, index_type, config, full_text=True)
        except StoreError as exc:
            if not re.search(r"bm25|function|analyzer|sparse", str(exc), re.I):
                raise
            warnings.warn(f"Milvus at {client.uri} has no full-text search ({exc}); the "
                          "lexical side of retrieval is off for this index", stacklevel=2)
            if client.has_collection(names.windows):
                client.drop(names.windows)
            full_text = False
    if not full_text:
        _create_windows(client, names, dim, index_type, config, full_text=False)
    _create_documents(client, names, config)
    return full_text


def _create_windows(client: Client, names: Collections, dim: int, index_type: str,
                    config: MilvusConfig, *, full_text: bool) -> None:
    m = pymilvus()
    dt = m.DataType
    schema = m.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    # A window's id is a hash of (doc_id, position): the same window always gets the same
    # key, so writing it again (a retry) replaces it instead of adding a copy.
    schema.add_field("window_id", dt.INT64, is_primary=True)
    schema.add_field("doc_id", dt.VARCHAR, max_length=ID_BYTES)
    schema.add_field("path", dt.VARCHAR, max_length=ID_BYTES)
    for name in ("idx", "sent_first", "sent_last", "char_start", "char_end", "n_tokens"):
        schema.add_field(name, dt.INT64)
    schema.add_field("metadata", dt.JSON)  # the document's, for filters inside the search
    # `lexical` is what BM25 reads (ragmem.memory.lexical.lexical_form: CJK as bigrams);
    # `text` holds the window's own text only where it differs (CJK), so Latin text is
    # stored once. `cut`: the window was too long for a VARCHAR; read it from the document.
    schema.add_field("text", dt.VARCHAR, max_length=VARCHAR_MAX)
    schema.add_field("cut", dt.BOOL)
    lexical: dict[str, Any] = {"max_length": VARCHAR_MAX}
    if full_text:
        lexical.update(enable_analyzer=True, analyzer_params={"type": config.analyzer})
    schema.add_field("lexical", dt.VARCHAR, **lexical)
    schema.add_field("vector", dt.FLOAT_VECTOR, dim=dim)
    index = client.raw.prepare_index_params()
    index.add_index("vector", index_type=index_type, metric_type="IP",
                    params=_build_params(index_type, config))
    index.add_index("doc_id", index_type="INVERTED")
    if full_text:
        schema.add_field("sparse", dt.SPARSE_FLOAT_VECTOR)
        schema.add_function(m.Function(name="bm25", function_type=m.FunctionType.BM25,
                                       input_field_names=["lexical"],
                                       output_field_names=["sparse"]))
        index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    _create(client, names.windows, schema, index, config)


def _create_documents(client: Client, names: Collections, config: MilvusConfig) -> None:
    """One row per document (its header, written last), plus its text, sentence offsets
    and section headings in ordered pieces (``kind`` "text", "sent", "sect"; ``part``
    0, 1, ...), and one "meta" row: the manifest's fixed part."""
    m = pymilvus()
    dt = m.DataType
    schema = m.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("pk", dt.VARCHAR, is_primary=True, max_length=ID_BYTES + 32)
    schema.add_field("doc_id", dt.VARCHAR, max_length=ID_BYTES)
    schema.add_field("kind", dt.VARCHAR, max_length=8)
    schema.add_field("part", dt.INT64)
    schema.add_field("body", dt.VARCHAR, max_length=VARCHAR_MAX)
    schema.add_field("path", dt.VARCHAR, max_length=ID_BYTES)
    schema.add_field("title", dt.VARCHAR, max_length=TITLE_BYTES)
    schema.add_field("mtime", dt.DOUBLE)
    schema.add_field("content_hash", dt.VARCHAR, max_length=HASH_BYTES)
    for name in ("n_windows", "n_sentences", "n_chars", "n_text", "n_sent", "n_sect"):
        schema.add_field(name, dt.INT64)
    schema.add_field("metadata", dt.JSON)
    schema.add_field("indexed_at", dt.DOUBLE)
    # Milvus wants a vector field in every collection; this one is never searched.
    schema.add_field("unused", dt.FLOAT_VECTOR, dim=2)
    index = client.raw.prepare_index_params()
    index.add_index("unused", index_type="FLAT", metric_type="IP")
    index.add_index("doc_id", index_type="INVERTED")
    _create(client, names.documents, schema, index, config)


def _create(client: Client, name: str, schema: Any, index: Any, config: MilvusConfig) -> None:
    """Create an empty collection, index it and load it. The indexes are made without
    waiting on them (``sync=False``): pymilvus polls each one with a 0.5 s sleep, and an
    empty collection's are ready at once."""
    with client.errors(f"create collection {name}"):
        client.raw.create_collection(name, schema=schema,
                                     consistency_level=config.consistency_level,
                                     timeout=client.timeout)
        client.raw.create_index(name, index, timeout=client.timeout, sync=False)
        client.raw.load_collection(name, timeout=client.timeout)


def default_index_type(lite: bool) -> str:
    """Exact search on milvus-lite (a local, small memory); HNSW on a server."""
    return "FLAT" if lite else "HNSW"


def _build_params(index_type: str, config: MilvusConfig) -> dict[str, Any]:
    if index_type.startswith("HNSW"):
        return {"M": config.hnsw_m, "efConstruction": config.hnsw_ef_construction}
    if index_type.startswith("IVF"):
        return {"nlist": config.nlist}
    return {}


def search_params(index_type: str, config: MilvusConfig, top_k: int) -> dict[str, Any]:
    """Inner product, as FAISS: vectors are L2-normalised, so scores are cosines."""
    params: dict[str, Any] = {}
    if index_type.startswith("HNSW"):
        params = {"ef": max(config.ef, top_k)}
    elif index_type.startswith("IVF"):
        params = {"nprobe": config.nprobe}
    return {"metric_type": "IP", "params": params}
