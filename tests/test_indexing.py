"""Indexer: documents -> long-term memory, incremental by content hash, batched, reported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ragmem.config import ChunkingConfig
from ragmem.errors import IndexMismatchError
from ragmem.indexing import Indexer, IndexProgress
from ragmem.memory import LongTermMemory
from ragmem.types import Document
from tests.conftest import KeywordEmbedder


class CountingEmbedder(KeywordEmbedder):
    def __init__(self) -> None:
        self.calls: list[int] = []

    def embed(self, texts):  # type: ignore[no-untyped-def]
        self.calls.append(len(texts))
        return super().embed(texts)


def memory_at(path: Path, chunking: ChunkingConfig | None = None) -> LongTermMemory:
    return LongTermMemory.create(path, embedder="keyword-test", dim=256,
                                 chunking=vars(chunking or ChunkingConfig()))


def docs(n: int, version: int = 0) -> list[Document]:
    return [Document(f"d{i}", f"d{i}.txt", f"Document {i} says {version}. It ends here.",
                     content_hash=f"{i}-{version}") for i in range(n)]


def test_windows_of_many_documents_share_embedder_calls(tmp_path: Path) -> None:
    embedder = CountingEmbedder()
    indexer = Indexer(memory_at(tmp_path / "i"), embedder, embed_batch=4)
    seen: list[IndexProgress] = []
    stats = indexer.add_documents(docs(10), total=10, progress=seen.append)
    assert (stats.added, stats.windows) == (10, 10)
    assert embedder.calls == [4, 4, 2]  # pooled across documents, not one call each
    assert [p.files_done for p in seen] == list(range(1, 11))
    assert seen[-1].windows == 10 and seen[-1].files_total == 10


def test_only_new_and_changed_documents_are_embedded(tmp_path: Path) -> None:
    embedder = CountingEmbedder()
    memory = memory_at(tmp_path / "i")
    indexer = Indexer(memory, embedder)
    indexer.add_documents(docs(3))
    embedder.calls.clear()
    stats = indexer.add_documents([*docs(2), docs(3, version=1)[2], *docs(4)[3:]])
    assert (stats.added, stats.updated, stats.unchanged) == (1, 1, 2)
    assert embedder.calls == [2]
    assert indexer.remove(["d0", "nope"]) == 1
    assert sorted(memory.content_hashes()) == ["d1", "d2", "d3"]
    hits = memory.search(embedder.embed(["Document 2 says 1."]), 1)[0]
    assert hits[0].doc_id == "d2" and "says 1" in hits[0].text


def test_a_request_for_other_chunking_is_refused(tmp_path: Path) -> None:
    memory = memory_at(tmp_path / "i", ChunkingConfig(window_tokens=64))
    indexer = Indexer(memory, KeywordEmbedder(), ChunkingConfig(window_tokens=128))
    with pytest.raises(IndexMismatchError, match=r"window_tokens 64 \(asked for 128\)"):
        indexer.add_documents(docs(1))
    assert memory.counts()["documents"] == 0
    assert np.array_equal(memory.vectors.ids(), [])
