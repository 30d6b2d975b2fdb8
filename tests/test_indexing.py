"""Indexer: documents -> long-term memory, incremental by content hash, batched, reported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ragmem.config import ChunkingConfig
from ragmem.errors import IndexMismatchError
from ragmem.indexing import Indexer, IndexProgress
from ragmem.memory import LongTermMemory
from ragmem.types import Document, Filter
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


def milvus_lite() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) for m in ("pymilvus", "milvus_lite"))


STORES = ["faiss", pytest.param("milvus", marks=pytest.mark.skipif(
    not milvus_lite(), reason="the Milvus store needs pip install 'ragmem[scale]'"))]


def folders(root: Path, **files: str) -> dict[str, Path]:
    """``a="x.txt y.txt"`` -> the folder ``root/a`` holding x.txt and y.txt (real files)."""
    out = {}
    for folder, names in files.items():
        (root / folder).mkdir(parents=True)
        for name in names.split():
            (root / folder / name).write_text(f"{name} is a file of {folder}. It says so.")
        out[folder] = root / folder
    return out


@pytest.mark.parametrize("store", STORES)
def test_sync_removes_only_gone_files_under_the_roots_of_its_run(tmp_path: Path,
                                                                 store: str) -> None:
    from ragmem.config import IndexConfig
    from ragmem.memory import create_memory, open_memory

    src = folders(tmp_path / "src", a="a1.txt a2.txt", b="b1.txt b2.txt b3.txt")

    def run(paths: list[Path], sync: bool = False) -> tuple[int, list[str]]:
        # A fresh open each run: what sync may remove must come from what is stored.
        memory = open_memory(tmp_path / "i")
        try:
            stats = Indexer(memory, KeywordEmbedder()).index(paths, sync=sync)
            return stats.removed, sorted(memory.content_hashes())
        finally:
            memory.close()

    create_memory(tmp_path / "i", embedder="keyword-test", dim=256,
                  chunking=vars(ChunkingConfig()), config=IndexConfig(store=store)).close()
    run([src["a"]])
    run([src["b"]])
    (src["a"] / "a2.txt").unlink()
    (src["b"] / "b2.txt").unlink()
    everything = ["a1.txt", "a2.txt", "b1.txt", "b2.txt", "b3.txt"]
    # One file given: its folder's other documents are not this run's to remove.
    assert run([src["b"] / "b1.txt"], sync=True) == (0, everything)
    # b is synced: a's documents stay, a2.txt too (a is not a root of this run).
    assert run([src["b"]], sync=True) == (1, ["a1.txt", "a2.txt", "b1.txt", "b3.txt"])
    assert run([src["a"]], sync=True) == (1, ["a1.txt", "b1.txt", "b3.txt"])


def test_sync_keeps_a_document_whose_file_is_there_but_unreadable(tmp_path: Path) -> None:
    src = folders(tmp_path / "src", a="a1.txt a2.txt")
    indexer = Indexer(memory_at(tmp_path / "i"), KeywordEmbedder())
    indexer.index([src["a"]])
    (src["a"] / "a2.txt").write_bytes(b"\x00\x01\x02" * 100)  # not text any more
    stats = indexer.index([src["a"]], sync=True)
    assert stats.removed == 0 and [Path(w).name for w, _ in stats.failed] == ["a2.txt"]
    assert sorted(indexer.memory.content_hashes()) == ["a1.txt", "a2.txt"]


@pytest.mark.parametrize("sync", [False, True])
@pytest.mark.parametrize("store", STORES)
def test_a_moved_folder_updates_the_stored_paths_without_embedding(
        tmp_path: Path, store: str, sync: bool) -> None:
    """``notes/`` moved to ``archive/notes/``: its documents keep their ids (the id rule
    lets a gone file's id be taken) and now name the files where they are."""
    import os
    import shutil

    from ragmem.config import IndexConfig
    from ragmem.memory import create_memory, open_memory

    folders(tmp_path / "docs", notes="a.txt b.md")
    (tmp_path / "docs" / "notes" / "c.jsonl").write_text(
        '{"id": "r1", "text": "A record of the notes. It stays."}\n')
    create_memory(tmp_path / "i", embedder="keyword-test", dim=256,
                  chunking=vars(ChunkingConfig()), config=IndexConfig(store=store)).close()
    memory = open_memory(tmp_path / "i")
    embedder = CountingEmbedder()
    try:
        Indexer(memory, embedder).index([tmp_path / "docs"])
        ids = ["notes/a.txt", "notes/b.md", "r1"]
        assert sorted(memory.content_hashes()) == ids
        question = embedder.embed(["a.txt is a file of notes."])
        before = [(h.window_id, h.doc_id, h.score) for h in memory.search(question, 3)[0]]
        (tmp_path / "archive").mkdir()
        shutil.move(tmp_path / "docs" / "notes", tmp_path / "archive" / "notes")
        moved = tmp_path / "archive" / "notes"
        os.utime(moved / "a.txt", (1_700_000_000, 1_700_000_000))
        embedder.calls.clear()
        stats = Indexer(memory, embedder).index([tmp_path / "archive"], sync=sync)
    finally:
        memory.close()
    assert (stats.added, stats.updated, stats.unchanged, stats.removed) == (0, 0, 3, 0)
    assert stats.moved == 3 and embedder.calls == []  # nothing re-embedded
    memory = open_memory(tmp_path / "i")  # what a reader opening it now sees
    try:
        stored = {d.doc_id: (d.path, d.mtime) for d in memory.documents()}
        assert {d: p for d, (p, _) in stored.items()} == {
            "notes/a.txt": str(moved / "a.txt"), "notes/b.md": str(moved / "b.md"),
            "r1": str(moved / "c.jsonl")}
        assert stored["notes/a.txt"][1] == 1_700_000_000
        assert all(os.path.exists(memory.document_path(d)) for d in ids)
        after = [(h.window_id, h.doc_id, h.score) for h in memory.search(question, 3)[0]]
        assert after == before  # the same windows, the same vectors
        found = memory.search(question, 9, Filter(path_glob=f"{moved}/*"))[0]
        assert {h.doc_id for h in found} == set(ids)  # filters see the new paths
        assert memory.counts()["documents"] == 3
        again = Indexer(memory, embedder).index([tmp_path / "archive"], sync=sync)
        assert (again.unchanged, again.moved) == (3, 0)  # moved once, then in place
    finally:
        memory.close()
