"""Which store an index lives in: the one place that picks a ``Memory`` backend.

A new index takes ``IndexConfig.store``; an existing one the store its manifest names
(a manifest without one is FAISS), so every command reopens an index as it was built,
without being told its store or URI again.

    >>> memory = open_memory(Path("indexes/demo"))         # doctest: +SKIP
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ragmem.config import IndexConfig, MilvusConfig
from ragmem.errors import IndexMismatchError
from ragmem.memory.base import Memory
from ragmem.memory.manifest import MANIFEST, read_manifest

STORES = ("faiss", "milvus")


def create_memory(directory: Path, *, embedder: str, dim: int, chunking: dict[str, object],
                  config: IndexConfig | None = None, milvus: MilvusConfig | None = None,
                  precision: str = "fp32") -> Memory:
    """Open the index at ``directory``, creating an empty one in ``config.store`` if
    there is none."""
    config = config or IndexConfig()
    if (directory / MANIFEST).exists():
        refuse_other_store(directory, config.store)
        return open_memory(directory, embedder=embedder, config=config, milvus=milvus,
                           precision=precision)
    if config.store == "milvus":
        from ragmem.memory.milvus import MilvusMemory

        return MilvusMemory.create(directory, embedder=embedder, dim=dim, chunking=chunking,
                                   config=milvus, precision=precision)
    from ragmem.memory.faiss.store import LongTermMemory

    return LongTermMemory.create(directory, embedder=embedder, dim=dim, chunking=chunking,
                                 config=config, precision=precision)


def open_memory(directory: Path, *, embedder: str | None = None,
                config: IndexConfig | None = None, milvus: MilvusConfig | None = None,
                precision: str | None = None, allow_precision_mismatch: bool = False) -> Memory:
    """Open the existing index at ``directory`` in the store its manifest names.
    ``embedder`` and ``precision``, when given, must be what made its vectors."""
    store = read_manifest(directory).store
    if store == "milvus":
        from ragmem.memory.milvus import MilvusMemory

        return MilvusMemory.open(directory, embedder=embedder, config=milvus,
                                 precision=precision,
                                 allow_precision_mismatch=allow_precision_mismatch)
    if store != "faiss":
        raise IndexMismatchError(f"index {directory} is stored in {store!r}, which this "
                                 "ragmem does not know; upgrade ragmem (pip install -U ragmem)")
    from ragmem.memory.faiss.store import LongTermMemory

    return LongTermMemory.open(directory, embedder=embedder, config=config,
                               precision=precision,
                               allow_precision_mismatch=allow_precision_mismatch)


def refuse_other_store(directory: Path, asked: str) -> None:
    """An index keeps its store: asking for another one (anything but the default) for
    an existing index is refused, not ignored."""
    built = read_manifest(directory).store
    if asked != IndexConfig.store and asked != built:
        raise IndexMismatchError(
            f"index {directory} is stored in {built}, not {asked}; leave the store out "
            "(it is fixed once the index exists), or index into a new index")


def drop_memory(directory: Path, milvus: MilvusConfig | None = None) -> list[str]:
    """Delete a whole index: its Milvus collections, if it has any, then its folder.
    Returns what was deleted."""
    gone = []
    if read_manifest(directory).store == "milvus":
        from ragmem.memory.milvus import MilvusMemory

        memory = MilvusMemory.open(directory, config=milvus)
        try:
            memory.drop()
            gone += [f"{memory.client.uri}: collection {name}"
                     for name in (memory.names.documents, memory.names.windows)]
        finally:
            memory.close()
    shutil.rmtree(directory)
    return [*gone, str(directory)]


def describe_drop(directory: Path) -> list[str]:
    """What ``drop_memory`` would delete, without connecting to anything."""
    manifest = read_manifest(directory)
    out = []
    if manifest.store == "milvus":
        base = manifest.milvus.get("collection", "")
        out = [f"{manifest.milvus.get('uri', '')}: collection {base}_documents",
               f"{manifest.milvus.get('uri', '')}: collection {base}_windows"]
    return [*out, str(directory)]
