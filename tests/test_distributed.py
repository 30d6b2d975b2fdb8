"""RayEngine on a local Ray (2 CPUs, one for the module): the local path's windows and
vectors, incremental runs and --sync (FAISS and Milvus stores), bad files, errors in one
line, the CLI end to end."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

import ragmem.assistant
from ragmem.cli import cli
from ragmem.config import (
    ChunkingConfig,
    DocumentsConfig,
    EmbedderConfig,
    IndexConfig,
    IngestConfig,
)
from ragmem.distributed import RayEngine, _reachable
from ragmem.embedding import from_config
from ragmem.errors import ConfigError, EngineError, ModelError
from ragmem.indexing import Indexer
from ragmem.memory import LongTermMemory, create_memory
from tests.conftest import CORPUS, EchoGenerator, KeywordEmbedder

ray = pytest.importorskip("ray", reason="the ray engine needs Ray: pip install 'ragmem[scale]'")
pytestmark = pytest.mark.slow  # a local Ray cluster for the module, and the packaged MiniLM

ROOT = Path(__file__).resolve().parents[1]
STORY = ROOT / "ragmem" / "demo" / "corpus" / "doyle-a-scandal-in-bohemia.txt"
MAX_BYTES = DocumentsConfig.max_file_bytes


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    # The workers import ragmem and tests.conftest (the fake embedder) from this checkout.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield
    ray.shutdown()


def keyword_engine(**settings: Any) -> RayEngine:
    return RayEngine(IngestConfig(engine="ray", **settings),
                     EmbedderConfig(model="keyword-test", precision="fp32"), ChunkingConfig(),
                     MAX_BYTES, KeywordEmbedder.dim, embedder_factory=KeywordEmbedder)


def write_mixed_corpus(root: Path) -> Path:
    """The tiny corpus plus a story's first pages (many windows), a .jsonl of three
    records and a bad line, and an empty file."""
    for name, text in CORPUS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    (root / "story.txt").write_text(STORY.read_text(encoding="utf-8")[:9000], encoding="utf-8")
    records = [{"id": f"r{i}", "title": f"Record {i}", "text": f"Record {i} is about "
                f"{topic}. It has a second sentence."} for i, topic in
               enumerate(["volcanoes", "tides", "owls"])]
    lines = [json.dumps(r) for r in records] + ['{"id": "broken"']
    (root / "records.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "empty.txt").write_text("", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def built_by_cli(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    """``ragmem index CORPUS --engine ray`` with the packaged MiniLM, in small batches
    (5 windows an actor call, 2 files a task: not the local path's one call)."""
    folder = tmp_path_factory.mktemp("ray-cli")
    corpus = write_mixed_corpus(folder / "corpus")
    index = folder / "ray"
    env = {"RAGMEM_INGEST_BATCH_SIZE": "5", "RAGMEM_INGEST_FILES_PER_TASK": "2",
           "HF_HUB_OFFLINE": "1"}
    r = CliRunner(env=env)\
        .invoke(cli, ["index", str(corpus), "--index", str(index), "--engine", "ray", "--json"])
    assert r.exit_code == 0, r.output
    return corpus, index, json.loads(r.stdout)


def contents(memory: LongTermMemory) -> dict[str, Any]:
    """Everything an index holds of its documents, vectors by (doc_id, window offsets)."""
    ids, vectors = (np.concatenate(x) for x in zip(*memory.docstore.iter_vectors(),
                                                      strict=True))
    hits = memory.docstore.hits(ids.tolist(), [0.0] * len(ids))
    return {
        "documents": memory.documents(),
        "windows": {d.doc_id: memory.windows(d.doc_id) for d in memory.documents()},
        "sentences": {d.doc_id: memory.sentences(d.doc_id, 0, 10**6)
                      for d in memory.documents()},
        "vectors": {(h.doc_id, h.start, h.end): v for h, v in zip(hits, vectors, strict=True)},
    }


def test_windows_and_vectors_equal_the_local_path(
        built_by_cli: tuple[Path, Path, dict[str, Any]], tmp_path: Path) -> None:
    corpus, index, summary = built_by_cli
    # The packaged MiniLM at the default precision the actors used (int8 on a CPU).
    precision = json.loads((index / "manifest.json").read_text())["embedder_precision"]
    embedder = from_config(EmbedderConfig(precision=precision))
    local = LongTermMemory.create(tmp_path / "local", embedder=embedder.model_id,
                                  dim=embedder.dim, chunking=vars(ChunkingConfig()),
                                  precision=precision)
    expected = Indexer(local, embedder).index([corpus])
    assert {k: v for k, v in summary.items() if k in vars(expected) and k != "seconds"} == \
        json.loads(json.dumps({k: v for k, v in vars(expected).items() if k != "seconds"}))
    assert (expected.added, expected.windows > 12) == (7, True)
    assert sorted(where for where, _ in expected.failed) == [
        str(corpus / "empty.txt"), f"{corpus / 'records.jsonl'}:4"]

    want, got = contents(local), contents(LongTermMemory.open(index))
    assert got["documents"] == want["documents"]  # ids, paths, titles, hashes, counts
    assert got["windows"] == want["windows"] and got["sentences"] == want["sentences"]
    assert got["vectors"].keys() == want["vectors"].keys()
    worst = max(float(1 - got["vectors"][k] @ v) for k, v in want["vectors"].items())
    print(f"\nlargest 1 - cosine of {len(want['vectors'])} vectors ({precision}): {worst:.2e}")
    # fp32 gives a text the same vector in any batch; int8 on OpenVINO moves it up to
    # ~3e-4 in cosine with the batch it is embedded in (eval/reports/precision.md).
    assert worst < (1e-6 if precision == "fp32" else 1e-3)


def milvus_lite() -> bool:
    return all(importlib.util.find_spec(m) for m in ("pymilvus", "milvus_lite"))


@pytest.mark.parametrize("store", ["faiss", pytest.param("milvus", marks=pytest.mark.skipif(
    not milvus_lite(), reason="the Milvus store needs pip install 'ragmem[scale]'"))])
def test_incremental_runs_and_sync(corpus_dir: Path, tmp_path: Path, store: str) -> None:
    memory = create_memory(tmp_path / "i", embedder="keyword-test", dim=256,
                           chunking=vars(ChunkingConfig()), config=IndexConfig(store=store))
    indexer = Indexer(memory, KeywordEmbedder())
    engine = keyword_engine()
    first = indexer.index([corpus_dir], engine=engine)
    assert (first.added, first.unchanged, first.failed) == (3, 0, ())

    again = indexer.index([corpus_dir], engine=engine)
    assert (again.added, again.updated, again.unchanged, again.windows) == (0, 0, 3, 0)

    (corpus_dir / "cats.txt").write_text("Cats purr. Cats hunt mice at night.")
    (corpus_dir / "space" / "moon.txt").unlink()
    last = indexer.index([corpus_dir], engine=engine, sync=True)
    assert (last.added, last.updated, last.unchanged, last.removed) == (0, 1, 1, 1)
    assert sorted(memory.content_hashes()) == ["cats.txt", "space/mars.md"]
    hit = memory.search(KeywordEmbedder().embed(["mice at night"]), 1)[0][0]
    assert hit.doc_id == "cats.txt" and hit.text.startswith("Cats purr.")
    memory.close()


def test_an_error_in_an_actor_is_one_line(corpus_dir: Path, tmp_path: Path) -> None:
    memory = LongTermMemory.create(tmp_path / "i", embedder="keyword-test", dim=256,
                                   chunking=vars(ChunkingConfig()), precision="int8")
    engine = RayEngine(IngestConfig(engine="ray"),
                       EmbedderConfig(model="keyword-test", precision="int8"), ChunkingConfig(),
                       MAX_BYTES, 256, embedder_factory=KeywordEmbedder)  # makes fp32
    with pytest.raises(ModelError) as caught:
        Indexer(memory, KeywordEmbedder()).index([corpus_dir], engine=engine)
    assert str(caught.value) == ("an embedding actor makes fp32 vectors and the index holds "
                                 "int8 ones; give the actors the device that makes them "
                                 "(RAGMEM_INGEST_NUM_GPUS)")
    assert memory.counts()["documents"] == 0  # the write rolled back


def test_where_the_actors_run() -> None:
    engine = keyword_engine()
    assert engine._placement({"CPU": 8.0}) == (0.0, 7)  # a CPU left to the readers
    assert engine._placement({"CPU": 2.0, "GPU": 4.0}) == (0.0, 1)  # fp32: not on GPUs
    with pytest.raises(ConfigError, match="leave no CPU for the reading tasks"):
        keyword_engine(actors=2)._placement({"CPU": 2.0})  # would wait for ever
    with pytest.raises(ConfigError, match="has none for the reading tasks"):
        engine._placement({"CPU": 1.0})
    with pytest.raises(ConfigError, match="GPU actors embed in fp16"):
        keyword_engine(num_gpus=1.0)._placement({"CPU": 2.0, "GPU": 1.0})
    fp16 = RayEngine(IngestConfig(engine="ray"), EmbedderConfig(precision="fp16"),
                     ChunkingConfig(), MAX_BYTES, 384)
    assert fp16._placement({"CPU": 16.0, "GPU": 2.0}) == (1.0, 2)
    assert fp16._placement({"CPU": 4.0, "GPU": 8.0}) == (1.0, 3)  # each actor takes a CPU
    with pytest.raises(ConfigError, match="has none for the actors"):
        fp16._placement({"CPU": 16.0})


def test_ray_is_imported_only_when_the_ray_engine_runs() -> None:
    code = "import sys, ragmem.assistant, ragmem.cli; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    assert out.strip() == "False"


def test_an_unreachable_cluster_fails_in_seconds() -> None:
    start = time.perf_counter()
    with pytest.raises(EngineError, match=r"cannot reach the Ray cluster at 127\.0\.0\.1:9 "):
        _reachable("127.0.0.1:9")
    assert time.perf_counter() - start < 6


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setattr(ragmem.assistant, "generator_from_config", lambda cfg: EchoGenerator())
    return CliRunner()


def test_cli_ask_answers_from_the_ray_index(
        runner: CliRunner, built_by_cli: tuple[Path, Path, dict[str, Any]]) -> None:
    _, index, _ = built_by_cli
    assert ray.is_initialized()  # the CLI used the module's Ray and left it running
    r = runner.invoke(cli, ["ask", str(index), "When did Neil Armstrong walk on the Moon?",
                            "--json"])
    assert r.exit_code == 0, r.output
    answer = json.loads(r.stdout)
    top = answer["citations"][0]
    assert top["doc_id"] == "space/moon.txt" and "1969" in answer["answer"]
    assert Path(top["path"]).read_text()[top["start"]:top["end"]] == top["quote"]


def test_cli_without_ray_says_what_to_install(runner: CliRunner, corpus_dir: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray: ImportError
    r = runner.invoke(cli, ["index", str(corpus_dir), "--index", "t", "--engine", "ray"])
    assert r.exit_code == 1
    assert r.output.strip().splitlines()[-1] == (
        "Error: --engine ray needs Ray, which is not installed; pip install 'ragmem[scale]'")
