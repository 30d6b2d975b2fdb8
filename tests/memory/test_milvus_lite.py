"""What ragmem does for milvus-lite (ragmem.memory.milvus.lite): an index that went
through updates, removals and a write cut short ranks and scores every question exactly
as a clean build of the same files, keyword and dense; its files are private like the
rest of an index; gRPC's own stderr lines are off outside RAGMEM_DEBUG. Real files (the
demo corpus), real chunking, the keyword embedder."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("milvus_lite", reason="Milvus tests run on milvus-lite: "
                    "pip install 'ragmem[scale]'")

from ragmem.config import ChunkingConfig, DocumentsConfig, MilvusConfig  # noqa: E402
from ragmem.errors import StoreError  # noqa: E402
from ragmem.indexing import Indexer  # noqa: E402
from ragmem.ingest import chunk, read_source  # noqa: E402
from ragmem.memory.milvus import MilvusMemory  # noqa: E402
from tests.conftest import KeywordEmbedder  # noqa: E402
from tests.memory.test_milvus import fail_on_headers  # noqa: E402

DEMO = Path(__file__).resolve().parents[2] / "ragmem" / "demo"
QUESTIONS = [json.loads(line)["question"]
             for line in (DEMO / "questions.jsonl").read_text().splitlines()]
STORY = "doyle-a-scandal-in-bohemia.txt"


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, under which milvus-lite's own files come out 0644."""
    before = os.umask(0o022)
    yield
    os.umask(before)


def create(path: Path) -> MilvusMemory:
    embedder = KeywordEmbedder()
    return MilvusMemory.create(path, embedder=embedder.model_id, dim=embedder.dim,
                               chunking={}, config=MilvusConfig())


def rankings(memory: MilvusMemory) -> dict[str, object]:
    """Top 10 of every demo question: keyword (window, score) and dense (window, score)."""
    embedder = KeywordEmbedder()
    vectors = embedder.embed(QUESTIONS)
    dense = memory.search(vectors, 10)
    return {q: {"keyword": [(h.window_id, h.score) for h in memory.lexical_search(q, 10)],
                "dense": [(h.window_id, round(h.score, 5)) for h in dense[i]]}
            for i, q in enumerate(QUESTIONS)}


def test_an_edited_index_ranks_and_scores_as_a_clean_build(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = tmp_path / "corpus"
    shutil.copytree(DEMO / "corpus", files)
    embedder = KeywordEmbedder()
    clean = create(tmp_path / "clean")
    Indexer(clean, embedder).index([files])

    edited = create(tmp_path / "edited")
    story = (files / STORY).read_text(encoding="utf-8")
    (files / STORY).write_text(story[: len(story) // 2], encoding="utf-8")
    (files / "extra.txt").write_text("Irene Adler, the woman, at Briony Lodge. " * 40,
                                     encoding="utf-8")
    Indexer(edited, embedder).index([files])  # an older story, and a document to remove
    with monkeypatch.context() as m:  # a run cut short: rows written, no header
        fail_on_headers(edited, m)
        (files / STORY).write_text(story, encoding="utf-8")
        with pytest.raises(StoreError), edited.writer() as w:
            w.add(*chunked(files, STORY, embedder))
    (files / "extra.txt").unlink()
    stats = Indexer(edited, embedder).index([files], sync=True)  # the resumed run
    assert (stats.added, stats.removed) == (1, 1)  # the story looked absent: cut short

    assert edited.counts() == clean.counts()
    assert rankings(edited) == rankings(clean)
    clean.close()
    edited.close()


def chunked(root: Path, name: str, embedder: KeywordEmbedder) -> tuple[Any, ...]:
    """A file's document, sentences, windows and vectors, as the indexer makes them."""
    _, (doc,), _ = read_source(root, root / name, DocumentsConfig.max_file_bytes)
    sentences, windows = chunk(doc, embedder.count_tokens, ChunkingConfig())
    return doc, sentences, windows, embedder.embed([w.text for w in windows])


def test_lite_files_and_folders_are_private(tmp_path: Path, umask_022: None) -> None:
    memory = create(tmp_path / "i")
    Indexer(memory, KeywordEmbedder()).index([DEMO / "corpus"])
    with memory.writer() as w:  # an edit: deletes, new segment files, a compaction
        w.remove(STORY)
    memory.close()
    lite = tmp_path / "i" / "milvus.db"
    modes = {str(p.relative_to(lite)): stat.S_IMODE(p.stat().st_mode)
             for p in [lite, *lite.rglob("*")]}
    loose = {name: oct(mode) for name, mode in modes.items() if mode & 0o077}
    assert len(modes) > 10 and loose == {}


@pytest.mark.parametrize(("env", "verbosity"), [({}, "NONE"), ({"RAGMEM_DEBUG": "1"}, None),
                                                ({"GRPC_VERBOSITY": "ERROR"}, "ERROR")])
def test_grpc_is_quiet_unless_debugging(env: dict[str, str], verbosity: str | None) -> None:
    """gRPC reads GRPC_VERBOSITY when first imported: by then (pymilvus imports it) it
    must be set, in a fresh interpreter as the CLI is one."""
    code = ("import os\nfrom ragmem.memory.milvus.client import pymilvus\npymilvus()\n"
            "print(os.environ.get('GRPC_VERBOSITY'))")
    clean = {k: v for k, v in os.environ.items()
             if k not in ("GRPC_VERBOSITY", "RAGMEM_DEBUG")}
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, text=True,
                         capture_output=True, cwd=DEMO.parents[1], check=True).stdout
    assert out.strip() == str(verbosity)
