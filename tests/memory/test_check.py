from __future__ import annotations

from pathlib import Path

import pytest

from ragmem.errors import IndexCorruptError
from ragmem.memory import LongTermMemory
from ragmem.memory.check import check, repair
from tests.memory.test_store import build


def test_healthy_index_checks_ok(tmp_path: Path) -> None:
    build(tmp_path / "i", {"a": (4, 1), "b": (3, 2)}).close()
    report = check(tmp_path / "i")
    assert report.ok, report.problems
    assert "faiss ids == docstore ids" in report.checked


def test_damaged_faiss_file_is_found_and_repaired(tmp_path: Path) -> None:
    memory = build(tmp_path / "i", {"a": (4, 1), "b": (3, 2)})
    q = memory.docstore.vectors([1], 16)
    before = memory.search(q, 5)[0]
    memory.close()
    (snapshot,) = (tmp_path / "i").glob("vectors-*.faiss")
    snapshot.write_bytes(snapshot.read_bytes()[:-40])
    with pytest.raises(IndexCorruptError, match="--repair"):
        LongTermMemory.open(tmp_path / "i")
    report = check(tmp_path / "i")
    assert not report.ok and report.repairable
    assert repair(tmp_path / "i").ok
    assert LongTermMemory.open(tmp_path / "i").search(q, 5)[0] == before


def test_stale_manifest_counts_are_reported(tmp_path: Path) -> None:
    memory = build(tmp_path / "i", {"a": (4, 1)})
    with memory.docstore.transaction():
        memory.docstore.delete_document("a")  # behind the writer's back: no manifest update
    report = check(tmp_path / "i")
    assert any("manifest counts" in p for p in report.problems)
    assert repair(tmp_path / "i").ok
