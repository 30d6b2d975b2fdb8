"""The schemas of a memory's two collections, and the index and search parameters of
its vectors.

Every request names the fields it reads (``WINDOW_FIELDS``, ``HEADER_FIELDS``): the
columns of each collection.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

from ragmem.config import MilvusConfig
from ragmem.errors import StoreError
from ragmem.memory.milvus.client import (
    HASH_BYTES,
    ID_BYTES,
    TITLE_BYTES,
    VARCHAR_MAX,
    Client,
    Collections,
    pymilvus,
)

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
