"""Making and finding a Milvus memory's collections: the part of ``MilvusMemory`` that
runs before it exists.

``create_memory`` makes a new index folder: its collections (or attaches to existing
ones of the same embedder, another machine's index), the meta row, and the manifest,
written last so that the index exists only once all of it does. ``connect_client``
checks that the collections a manifest names are there and hold vectors of its size.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from ragmem import __version__
from ragmem.config import MilvusConfig
from ragmem.errors import Fix, IndexCorruptError, IndexMismatchError
from ragmem.memory.manifest import (
    DIR_MODE,
    MILVUS_FORMAT_VERSION,
    Manifest,
    manifest_from_json,
    write_manifest,
)
from ragmem.memory.milvus.client import (
    LITE_FILE,
    Client,
    Collections,
    pymilvus,
    resolve_uri,
    stored_uri,
)
from ragmem.memory.milvus.expressions import quote
from ragmem.memory.milvus.rows import EMPTY, META_PK
from ragmem.memory.milvus.schema import create_collections, default_index_type


def create_memory(directory: Path, *, embedder: str, dim: int, chunking: dict[str, object],
                  config: MilvusConfig, precision: str) -> tuple[Manifest, Client]:
    """A new index at ``directory`` (which holds no manifest): its manifest, and a client
    of the Milvus at ``config.uri`` (default: milvus-lite in ``directory/milvus.db``)."""
    from ragmem.memory.folder import refuse_foreign, write_lock

    pymilvus()  # not installed: say so before the folder is made
    refuse_foreign(directory, extra=(LITE_FILE,))
    directory.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    with write_lock(directory):
        uri = config.uri or str(directory / LITE_FILE)
        if config.uri is None:  # private like the folder: it holds the documents' text
            (directory / LITE_FILE).mkdir(mode=DIR_MODE, exist_ok=True)
        client = Client(uri, config)
        try:
            base = config.collection or Collections.new_base(config.collection_prefix,
                                                             directory.name)
            names = Collections(base)
            index_type = config.index_type or default_index_type(client.lite)
            now = time.time()
            manifest = Manifest(
                embedder=embedder, dim=dim, chunking=dict(chunking),
                index_factory=index_type, format_version=MILVUS_FORMAT_VERSION,
                created_at=now, updated_at=now,
                counts={"documents": 0, "sentences": 0, "windows": 0},
                ragmem_version=__version__, embedder_precision=precision, store="milvus",
                milvus={"uri": stored_uri(uri, directory), "collection": base})
            if client.has_collection(names.documents):
                manifest = _attach(client, names, manifest, directory)
            else:
                full_text = create_collections(client, names, dim, index_type, config)
                manifest = replace(manifest, milvus={**manifest.milvus,
                                                     "full_text": full_text})
                client.upsert(names.documents, [{
                    **EMPTY, "pk": META_PK, "doc_id": "", "kind": "meta", "part": 0,
                    "body": manifest.fixed_json()}])
            write_manifest(directory, manifest)  # last: the index exists from here on
        except BaseException:
            client.close()
            raise
    return manifest, client


def connect_client(directory: Path, manifest: Manifest, config: MilvusConfig) -> Client:
    """A client of the Milvus holding the memory ``manifest`` describes, its collections
    checked and loaded (a ``config.uri`` overrides the manifest's: the server moved)."""
    uri = config.uri or resolve_uri(str(manifest.milvus.get("uri", "")), directory)
    client = Client(uri, config)
    try:
        names = Collections(str(manifest.milvus["collection"]))
        for name in (names.documents, names.windows):
            if not client.has_collection(name):
                raise IndexCorruptError(
                    f"Milvus at {uri} has no collection {name}, which holds index "
                    f"{directory} (dropped, or another server?); point RAGMEM_MILVUS_URI "
                    "at the server that holds it, or index the sources again into a new "
                    "index")
        dim = vector_dim(client, names.windows)
        if dim != manifest.dim:
            raise IndexCorruptError(
                f"collection {names.windows} holds {dim}-dimensional vectors and the "
                f"manifest of {directory} says {manifest.dim}; the manifest belongs to "
                "another index: index the sources again into a new index")
        client.load(names.documents)
        client.load(names.windows)
    except BaseException:
        client.close()
        raise
    return client


def vector_dim(client: Client, collection: str) -> int:
    for f in client.describe(collection).get("fields", []):
        if f.get("name") == "vector":
            return int(f.get("params", {}).get("dim", 0))
    return 0


def _attach(client: Client, names: Collections, manifest: Manifest,
            directory: Path) -> Manifest:
    """A new index folder for collections that exist (another machine's index): they
    must hold vectors of the same embedder."""
    if not client.has_collection(names.windows):
        raise IndexCorruptError(f"collection {names.documents} at {client.uri} has no "
                                f"{names.windows} beside it; name another collection")
    client.load(names.documents)
    client.load(names.windows)
    rows = client.query(names.documents, f"pk == {quote(META_PK)}", ["body"])
    if not rows:
        raise IndexCorruptError(f"collection {names.documents} at {client.uri} is not a "
                                "ragmem memory (no manifest row); name another collection")
    theirs = manifest_from_json(rows[0]["body"])
    if (theirs.embedder, theirs.dim) != (manifest.embedder, manifest.dim):
        raise IndexMismatchError(
            f"collection {names.base} at {client.uri} was built with embedder "
            f"{theirs.embedder!r} ({theirs.dim} dims), not {manifest.embedder!r}; use "
            f"--embedder {theirs.embedder}, or another collection", Fix(
                "embedder", str(directory), theirs.embedder))
    return replace(manifest, chunking=theirs.chunking, index_factory=theirs.index_factory,
                   embedder_precision=theirs.embedder_precision,
                   milvus={**manifest.milvus, "full_text": theirs.milvus.get("full_text")})
