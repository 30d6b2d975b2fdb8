"""Which store an index opens in, and what the default install never loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ragmem.config import IndexConfig
from ragmem.errors import IndexMismatchError, StoreError
from ragmem.memory import LongTermMemory, create_memory, open_memory
from tests.conftest import KeywordEmbedder
from tests.memory.test_store import DIM, build


def test_a_faiss_manifest_is_unchanged_and_opens_as_faiss(tmp_path: Path) -> None:
    build(tmp_path / "i", {"a": (3, 1)}).close()
    manifest = json.loads((tmp_path / "i" / "manifest.json").read_text())
    assert "store" not in manifest and "milvus" not in manifest
    assert manifest["format_version"] == 1
    memory = open_memory(tmp_path / "i", embedder="test")
    assert isinstance(memory, LongTermMemory)
    memory.close()


def test_an_index_keeps_its_store(tmp_path: Path) -> None:
    build(tmp_path / "i", {"a": (3, 1)}).close()
    with pytest.raises(IndexMismatchError, match="stored in faiss, not milvus"):
        create_memory(tmp_path / "i", embedder="test", dim=DIM, chunking={},
                      config=IndexConfig(store="milvus"))
    same = create_memory(tmp_path / "i", embedder="test", dim=DIM, chunking={})
    assert isinstance(same, LongTermMemory)  # the default store: whatever the index has
    same.close()


def test_an_unknown_store_or_a_newer_format_says_upgrade(tmp_path: Path) -> None:
    build(tmp_path / "i", {"a": (3, 1)}).close()
    path = tmp_path / "i" / "manifest.json"
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, "store": "qdrant"}))
    with pytest.raises(IndexMismatchError, match="'qdrant', which this ragmem does not know"):
        open_memory(tmp_path / "i")
    path.write_text(json.dumps({**manifest, "format_version": 3}))
    with pytest.raises(IndexMismatchError, match="upgrade ragmem"):
        open_memory(tmp_path / "i")


def test_ragmem_never_imports_pymilvus_until_a_milvus_memory_opens() -> None:
    code = ("import sys, ragmem, ragmem.cli, ragmem.memory, ragmem.memory.milvus, "
            "ragmem.memory.milvus.check\nprint('pymilvus' in sys.modules, "
            "'milvus_lite' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "False"]


def test_without_pymilvus_one_line_says_how_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        keyword_embedder: KeywordEmbedder) -> None:
    from ragmem import Assistant
    from ragmem.cli import one_line

    monkeypatch.setitem(sys.modules, "pymilvus", None)  # import pymilvus fails
    with pytest.raises(StoreError) as caught:
        Assistant.create(tmp_path / "m", store="milvus", embedder=keyword_embedder)
    message, code = one_line(caught.value)
    assert message == ("the Milvus store needs pymilvus and milvus-lite; "
                       "pip install 'ragmem[scale]'") and code == 1
    assert not (tmp_path / "m").exists()  # nothing made before it said so


def test_uri_without_the_milvus_store_is_a_usage_error() -> None:
    from click.testing import CliRunner

    from ragmem.cli import cli

    r = CliRunner().invoke(cli, ["index", "x", "--index", "t", "--uri", "http://h:19530"])
    assert r.exit_code == 2 and "add --store milvus" in r.output
