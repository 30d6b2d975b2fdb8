"""``ragmem check``: verify an index, and repair what can be rebuilt without its sources.

Each store checks its own kind of index (``ragmem.memory.faiss.check``,
``ragmem.memory.milvus.check``); ``CHECKERS`` names them, and ``check`` and ``repair``
pick the one for the store an index's manifest names. The checkers share only what a
check found (``ragmem.memory.findings``), so neither imports the other, nor this.

    >>> report = check(Path("indexes/demo"))          # doctest: +SKIP
    >>> report.ok, report.checked[:2]                  # doctest: +SKIP
    (True, ('manifest', 'sqlite integrity'))
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ragmem.config import MilvusConfig
from ragmem.errors import IndexCorruptError, IndexNotFoundError
from ragmem.memory.findings import CheckReport
from ragmem.memory.manifest import DOCSTORE, read_manifest

if TYPE_CHECKING:
    from ragmem.embedding import Embedder

__all__ = ["CHECKERS", "CheckReport", "Checker", "check", "repair", "store_of"]


class Checker(Protocol):
    """What each store's check module provides."""

    def check(self, directory: Path, embedder: Embedder | None = None,
              milvus: MilvusConfig | None = None) -> CheckReport: ...

    def repair(self, directory: Path, embedder: Embedder | None = None, *,
               embedder_name: str | None = None,
               milvus: MilvusConfig | None = None) -> CheckReport: ...


def _faiss() -> Checker:
    from ragmem.memory.faiss import check as faiss_check

    return faiss_check


def _milvus() -> Checker:
    from ragmem.memory.milvus import check as milvus_check

    return milvus_check


# Store name (the manifest's ``store``) -> its checker, imported when asked for.
CHECKERS: dict[str, Callable[[], Checker]] = {"faiss": _faiss, "milvus": _milvus}


def store_of(directory: Path) -> str:
    """The store of the index at ``directory``: its manifest says; a lost manifest, the
    folder's files (a docstore: FAISS; a milvus-lite folder and no docstore: Milvus)."""
    if (directory / DOCSTORE).exists():
        return "faiss"
    try:
        return read_manifest(directory).store
    except (IndexCorruptError, IndexNotFoundError):
        from ragmem.memory.milvus.client import LITE_FILE

        return "milvus" if (directory / LITE_FILE).is_dir() else "faiss"


def check(directory: Path, embedder: Embedder | None = None,
          milvus: MilvusConfig | None = None) -> CheckReport:
    """Verify the index at ``directory``, never writing. ``embedder`` is the model to
    verify against the manifest (its id and dimension); by default the one the manifest
    names is loaded. ``milvus``: how to reach a Milvus index's server."""
    return CHECKERS[store_of(directory)]().check(directory, embedder, milvus)


def repair(directory: Path, embedder: Embedder | None = None, *,
           embedder_name: str | None = None, milvus: MilvusConfig | None = None) -> CheckReport:
    """Rebuild what the index's store can rebuild without the sources, then check again.
    ``embedder_name``: the embedder of a FAISS index made before its docstore kept a copy
    of the manifest, when that manifest is lost."""
    return CHECKERS[store_of(directory)]().repair(directory, embedder,
                                                  embedder_name=embedder_name, milvus=milvus)
