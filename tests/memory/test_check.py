"""``check`` and ``repair`` on damage made here: what check finds, what repair rebuilds
from the docstore alone, and that the index then answers as before."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from ragmem.errors import IndexCorruptError, IndexNotFoundError
from ragmem.memory import LongTermMemory
from ragmem.memory.check import check, repair
from ragmem.memory.faiss.docstore import SCHEMA, Docstore
from tests.memory.test_store import DIM, build, make_doc


class StoredEmbedder:
    """Stands for the model that built a test index: only its id and dimension matter."""

    def __init__(self, model_id: str = "test", dim: int = DIM) -> None:
        self.model_id, self.dim, self.max_tokens = model_id, dim, 256

    def embed(self, texts: list[str]) -> np.ndarray:
        raise AssertionError("check never embeds")

    def count_tokens(self, text: str) -> int:
        return len(text.split())


TEST = StoredEmbedder()


def answers(path: Path) -> list[list[int]]:
    """What the index answers for a few stored vectors: the same before and after."""
    memory = LongTermMemory.open(path)
    try:
        q = memory.docstore.vectors([1, 3, 5], DIM)
        return [[h.window_id for h in hits] for hits in memory.search(q, 5)]
    finally:
        memory.close()


def test_healthy_index_checks_ok(tmp_path: Path) -> None:
    build(tmp_path / "i", {"a": (4, 1), "b": (3, 2)}).close()
    report = check(tmp_path / "i", TEST)
    assert report.ok, report.problems
    assert "faiss ids == docstore ids" in report.checked
    assert "embedder test (16 dims)" in report.checked


def test_damaged_faiss_file_is_found_and_repaired(tmp_path: Path) -> None:
    memory = build(tmp_path / "i", {"a": (4, 1), "b": (3, 2)})
    q = memory.docstore.vectors([1], 16)
    before = memory.search(q, 5)[0]
    memory.close()
    (snapshot,) = (tmp_path / "i").glob("vectors-*.faiss")
    snapshot.write_bytes(snapshot.read_bytes()[:-40])
    with pytest.raises(IndexCorruptError, match=r"repair it: ragmem.memory.check.repair"):
        LongTermMemory.open(tmp_path / "i")
    report = check(tmp_path / "i", TEST)
    assert not report.ok and report.repairable
    assert repair(tmp_path / "i", TEST).ok
    assert LongTermMemory.open(tmp_path / "i").search(q, 5)[0] == before


def test_faiss_file_of_the_same_size_but_garbage(tmp_path: Path) -> None:
    build(tmp_path / "i", {"a": (4, 1), "b": (3, 2)}).close()
    before = answers(tmp_path / "i")
    (snapshot,) = (tmp_path / "i").glob("vectors-*.faiss")
    data = bytearray(snapshot.read_bytes())
    data[:64] = b"\xff" * 64  # the header: FAISS would read "invalid ntotal -1"
    snapshot.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptError, match=r"fails its checksum.*; repair it"):
        LongTermMemory.open(tmp_path / "i")
    assert any("sha256" in p for p in check(tmp_path / "i", TEST).problems)
    assert repair(tmp_path / "i", TEST).ok
    assert answers(tmp_path / "i") == before


@pytest.mark.parametrize("damage", ["truncated", "missing", "not an object"])
def test_lost_or_truncated_manifest_is_rebuilt_from_the_docstore(tmp_path: Path,
                                                                 damage: str) -> None:
    build(tmp_path / "i", {"a": (4, 1), "b": (3, 2)}).close()
    before = answers(tmp_path / "i")
    manifest = tmp_path / "i" / "manifest.json"
    original = json.loads(manifest.read_text())
    if damage == "truncated":
        manifest.write_text(manifest.read_text()[:37])
    elif damage == "missing":
        manifest.unlink()
    else:
        manifest.write_text("[1, 2]")
    with pytest.raises(IndexCorruptError, match=r"repair it: ragmem.memory.check.repair"):
        LongTermMemory.open(tmp_path / "i")
    report = check(tmp_path / "i", TEST)
    assert not report.ok and report.repairable, report.problems
    assert repair(tmp_path / "i", TEST).ok
    rebuilt = json.loads(manifest.read_text())
    for key in ("embedder", "dim", "chunking", "index_factory", "counts", "created_at"):
        assert rebuilt[key] == original[key], key
    assert answers(tmp_path / "i") == before


def test_manifest_of_an_older_index_needs_the_embedder_named(tmp_path: Path) -> None:
    memory = build(tmp_path / "i", {"a": (4, 1)})
    with memory.docstore.transaction():  # as made before the docstore kept a copy
        memory.docstore.conn.execute("DELETE FROM meta WHERE key = 'manifest'")
    memory.close()
    (tmp_path / "i" / "manifest.json").unlink()
    with pytest.raises(IndexCorruptError, match="repair it with the embedder that built it"):
        repair(tmp_path / "i", TEST)
    assert repair(tmp_path / "i", TEST, embedder_name="test").ok


def test_counts_lagging_one_write_are_a_note_and_repair_catches_them_up(
        tmp_path: Path) -> None:
    # A kill between a write's commit and its manifest: the data is whole, the
    # manifest's counts are one write behind. check passes, says so, and writes nothing.
    memory = build(tmp_path / "i", {"a": (4, 1)})
    manifest = tmp_path / "i" / "manifest.json"
    stale = manifest.read_bytes()
    with memory.docstore.transaction():
        memory.docstore.add_document(*make_doc("b", 3, 2))
    memory.close()
    report = check(tmp_path / "i", TEST)
    assert report.ok, report.problems
    assert any("lag the docstore's" in n and "--repair" in n for n in report.notes)
    assert manifest.read_bytes() == stale
    assert len(LongTermMemory.open(tmp_path / "i").vectors.ids()) == 7  # replayed from the log
    assert repair(tmp_path / "i", TEST).ok
    assert json.loads(manifest.read_text())["counts"]["documents"] == 2


def files_of(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def test_check_writes_nothing(tmp_path: Path) -> None:
    memory = build(tmp_path / "i", {"a": (4, 1)})
    with memory.docstore.transaction():  # counts that lag (see above), and a pending log
        memory.docstore.add_document(*make_doc("b", 3, 2))
    memory.close()
    before = files_of(tmp_path / "i")
    assert check(tmp_path / "i", TEST).ok
    after = files_of(tmp_path / "i")
    # SQLite's own -wal and -shm may appear for a reader; no file of the index changes.
    assert {k: v for k, v in after.items() if not k.endswith(("-wal", "-shm"))} == before


def test_a_deleted_docstore_is_damage_and_nothing_creates_a_new_one(tmp_path: Path) -> None:
    build(tmp_path / "i", {"a": (4, 1)}).close()
    store = tmp_path / "i" / "docstore.sqlite"
    for name in ("", "-wal", "-shm"):
        Path(f"{store}{name}").unlink(missing_ok=True)
    before = files_of(tmp_path / "i")
    report = check(tmp_path / "i", TEST)
    assert not report.ok and not report.repairable
    (problem,) = report.problems
    assert str(store) in problem and "is missing" in problem
    assert "restore it from a backup, or index the sources again" in problem
    for attempt in (lambda: LongTermMemory.open(tmp_path / "i"),
                    lambda: LongTermMemory.create(tmp_path / "i", embedder="test", dim=DIM,
                                                  chunking={"w": 1}),
                    lambda: repair(tmp_path / "i", TEST)):
        with pytest.raises(IndexCorruptError, match="docstore.sqlite is missing.*restore it"):
            attempt()
    assert files_of(tmp_path / "i") == before  # no docstore made, manifest untouched


def test_problems_name_no_python_call(tmp_path: Path) -> None:
    # The CLI adds its own fix ("run: ragmem check NAME --repair") to check's problems.
    build(tmp_path / "i", {"a": (4, 1)}).close()
    (tmp_path / "i" / "manifest.json").write_text("{")
    report = check(tmp_path / "i", TEST)
    assert report.problems and report.repairable
    assert not any("ragmem.memory" in p or "repair(" in p for p in report.problems)


def test_stored_counts_that_disagree_with_the_rows_are_repaired(tmp_path: Path) -> None:
    memory = build(tmp_path / "i", {"a": (4, 1)})
    memory.docstore.set_meta("counts", json.dumps({"documents": 5, "sentences": 0,
                                                   "windows": 0}))
    memory.close()
    report = check(tmp_path / "i", TEST)
    assert any("stored counts" in p for p in report.problems)
    assert repair(tmp_path / "i", TEST).ok


def test_garbage_docstore_is_reported_not_raised(tmp_path: Path) -> None:
    build(tmp_path / "i", {"a": (4, 1)}).close()
    store = tmp_path / "i" / "docstore.sqlite"
    for extra in ("-wal", "-shm"):
        Path(f"{store}{extra}").unlink(missing_ok=True)
    store.write_bytes(os.urandom(store.stat().st_size))
    report = check(tmp_path / "i", TEST)
    assert not report.ok and not report.repairable
    assert "is not a readable SQLite database" in report.problems[0]
    with pytest.raises(IndexCorruptError, match="restore it from a backup"):
        LongTermMemory.open(tmp_path / "i")
    with pytest.raises(IndexCorruptError, match="not a readable SQLite database"):
        repair(tmp_path / "i", TEST)


def test_the_embedder_is_verified(tmp_path: Path) -> None:
    build(tmp_path / "i", {"a": (4, 1)}).close()
    report = check(tmp_path / "i", StoredEmbedder(dim=8))
    assert any("gives 8-dimensional vectors" in p for p in report.problems)
    assert not report.repairable
    report = check(tmp_path / "i")  # the model the manifest names: "test" is nowhere
    assert any(p.startswith("embedder: model test is not installed") for p in report.problems)


@pytest.mark.parametrize("cut", ["empty file", "part of the schema", "docstore made"])
def test_half_created_index_is_cleared_by_the_next_create(tmp_path: Path, cut: str) -> None:
    # What a kill during the first create leaves behind: a docstore, no manifest.
    path = tmp_path / "i"
    path.mkdir()
    (path / "write.lock").touch()
    store = path / "docstore.sqlite"
    if cut == "empty file":
        store.touch()
    elif cut == "part of the schema":
        conn = sqlite3.connect(store)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(SCHEMA.split(";")[0])  # the first table; killed before the rest
        conn.close()
    else:
        Docstore(store, create=True).close()
    with pytest.raises(IndexCorruptError, match=r"no manifest.json.*repair\("):
        LongTermMemory.open(path)
    memory = LongTermMemory.create(path, embedder="test", dim=DIM, chunking={})
    with memory.writer() as w:
        w.add(*make_doc("a", 2, 1))
    memory.close()
    assert check(path, TEST).ok


def test_a_docstore_with_documents_is_never_cleared(tmp_path: Path) -> None:
    build(tmp_path / "i", {"a": (4, 1)}).close()
    (tmp_path / "i" / "manifest.json").unlink()
    with pytest.raises(IndexCorruptError, match="has 1 documents but no manifest.json"):
        LongTermMemory.create(tmp_path / "i", embedder="test", dim=DIM, chunking={})
    assert repair(tmp_path / "i", TEST).ok


def test_a_folder_with_other_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "i").mkdir()
    (tmp_path / "i" / "notes.txt").write_text("mine")
    with pytest.raises(IndexCorruptError, match="is not a ragmem index .*'notes.txt'"):
        LongTermMemory.create(tmp_path / "i", embedder="test", dim=DIM, chunking={})
    assert (tmp_path / "i" / "notes.txt").read_text() == "mine"
    with pytest.raises(IndexNotFoundError):
        check(tmp_path / "i", TEST)


def test_index_files_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        build(tmp_path / "i", {"a": (4, 1)}).close()
    finally:
        os.umask(old)
    path = tmp_path / "i"
    assert oct(path.stat().st_mode & 0o777) == oct(0o700)
    names = sorted(p.name for p in path.iterdir())
    assert {"docstore.sqlite", "manifest.json", "write.lock"} <= set(names)
    assert any(n.startswith("vectors-") for n in names)
    for p in path.iterdir():
        assert oct(p.stat().st_mode & 0o777) == oct(0o600), p.name


def test_a_stricter_umask_is_kept(tmp_path: Path) -> None:
    old = os.umask(0o277)
    try:
        LongTermMemory.create(tmp_path / "i", embedder="test", dim=DIM, chunking={}).close()
    finally:
        os.umask(old)
    assert oct((tmp_path / "i").stat().st_mode & 0o777) == oct(0o500)
    assert oct((tmp_path / "i" / "manifest.json").stat().st_mode & 0o777) == oct(0o400)
    os.chmod(tmp_path / "i", 0o700)  # let pytest clean up
