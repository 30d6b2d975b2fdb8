"""Config: typed, checked on every way in, and layered CLI flag > env > manifest > default."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from ragmem.assistant import Assistant
from ragmem.cli import cli
from ragmem.config import ChunkingConfig, Config, RetrievalConfig, WorkingMemoryConfig
from ragmem.errors import ConfigError, IndexMismatchError
from tests.conftest import KeywordEmbedder


def small_chunks() -> Config:
    return replace(Config(), chunking=ChunkingConfig(window_tokens=64))


# -- checked on every way in: constructor, dict, environment ----------------------------

@pytest.mark.parametrize("make, message", [
    (lambda: RetrievalConfig(mode="sparse"),  # type: ignore[arg-type]
     "retrieval.mode must be one of 'dense', 'lexical', 'hybrid'; got 'sparse'"),
    (lambda: RetrievalConfig(fusion="max"),  # type: ignore[arg-type]
     "retrieval.fusion must be one of 'minmax', 'zscore', 'rrf'"),
    (lambda: RetrievalConfig(rewrite="llm"),  # type: ignore[arg-type]
     "retrieval.rewrite must be one of 'heuristic', 'generator'"),
    (lambda: WorkingMemoryConfig(order="random"),  # type: ignore[arg-type]
     "working_memory.order must be one of 'score', 'edges', 'document'"),
    (lambda: RetrievalConfig(top_k="8"),  # type: ignore[arg-type]
     "retrieval.top_k must be an int; got '8'"),
    (lambda: WorkingMemoryConfig(token_budget=1.5),  # type: ignore[arg-type]
     "working_memory.token_budget must be an int or None"),
])
def test_a_wrong_value_fails_when_the_section_is_made(make, message) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        make()


def test_from_dict_reads_what_to_dict_writes_and_checks_it() -> None:
    config = Config.from_dict({"retrieval": {"mode": "dense", "top_k": 8},
                               "working_memory": {"token_budget": None}})
    assert config.retrieval.mode == "dense" and config.working_memory.token_budget is None
    assert Config.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="retrieval.mode must be one of"):
        Config.from_dict({"retrieval": {"mode": "bm25"}})


def test_from_dict_refuses_unknown_keys_listing_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown config key retrieval\.topk; valid keys "
                                          r"of retrieval: top_k, neighbour_sentences, mode"):
        Config.from_dict({"retrieval": {"topk": 8}})
    with pytest.raises(ConfigError, match="unknown config section 'retreival'; valid "
                                          "sections: embedder, documents, chunking"):
        Config.from_dict({"retreival": {"top_k": 8}})


def test_environment_values_are_coerced_to_the_fields_type_and_checked() -> None:
    config = Config().with_env({"RAGMEM_RETRIEVAL_TOP_K": "8", "RAGMEM_INDEX_MMAP": "yes",
                                "RAGMEM_WORKING_MEMORY_TOKEN_BUDGET": "none",
                                "RAGMEM_RETRIEVAL_DENSE_WEIGHT": "2",
                                "RAGMEM_HOME": "elsewhere"})  # not a config section
    assert (config.retrieval.top_k, config.index.mmap) == (8, True)
    assert config.working_memory.token_budget is None
    assert config.retrieval.dense_weight == 2.0
    for env, message in [({"RAGMEM_RETRIEVAL_MODE": "sparse"}, "RAGMEM_RETRIEVAL_MODE must "
                          "be one of 'dense', 'lexical', 'hybrid'"),
                         ({"RAGMEM_RETRIEVAL_TOP_K": "many"}, "is not an int"),
                         ({"RAGMEM_RETRIEVAL_TOPK": "8"}, "unknown environment variable "
                          "RAGMEM_RETRIEVAL_TOPK; valid ones for retrieval: "
                          "RAGMEM_RETRIEVAL_TOP_K")]:
        with pytest.raises(ConfigError, match=message):
            Config().with_env(env)


def test_the_cli_refuses_a_bad_environment_value_in_one_line(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RAGMEM_RETRIEVAL_FUSION", "max")
    r = CliRunner().invoke(cli, ["index", str(tmp_path), "--index", "t"])
    assert r.exit_code != 0
    assert "RAGMEM_RETRIEVAL_FUSION must be one of 'minmax', 'zscore', 'rrf'" in r.output
    assert "Traceback" not in r.output


# -- precedence: one test per rule --------------------------------------------------------

def test_environment_beats_default() -> None:
    assert Config().with_env({"RAGMEM_RETRIEVAL_TOP_K": "9"}).retrieval.top_k == 9
    assert Config().with_env({}).retrieval.top_k == RetrievalConfig().top_k


def test_manifest_beats_default(tmp_path: Path) -> None:
    Assistant.create(tmp_path / "idx", small_chunks(), embedder=KeywordEmbedder()).close()
    a = Assistant.open(tmp_path / "idx", Config(), embedder=KeywordEmbedder())
    assert a.config.chunking.window_tokens == 64  # the index's, not the default 256
    assert a.config.embedder.model == "keyword-test"
    a.add_documents([])  # and indexing into it is fine


def test_environment_beats_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    corpus_dir: Path) -> None:
    """The environment is not ignored for what an index fixes: it is refused, loudly."""
    Assistant.create(tmp_path / "idx", small_chunks(), embedder=KeywordEmbedder()).close()
    monkeypatch.setenv("RAGMEM_CHUNKING_WINDOW_TOKENS", "128")
    a = Assistant.open(tmp_path / "idx", embedder=KeywordEmbedder())  # None: the environment
    assert a.config.chunking.window_tokens == 128
    with pytest.raises(IndexMismatchError, match=r"window_tokens 64 \(asked for 128\)"):
        a.index([corpus_dir])
    monkeypatch.delenv("RAGMEM_CHUNKING_WINDOW_TOKENS")
    monkeypatch.setenv("RAGMEM_EMBEDDER_MODEL", "other/model")
    with pytest.raises(IndexMismatchError, match="keyword-test"):
        Assistant.open(tmp_path / "idx")  # refused before any model would load


@pytest.mark.slow
def test_cli_flag_beats_environment(monkeypatch: pytest.MonkeyPatch, corpus_dir: Path,
                                    tmp_path: Path) -> None:
    monkeypatch.setenv("RAGMEM_CHUNKING_WINDOW_TOKENS", "64")
    r = CliRunner().invoke(cli, ["index", str(corpus_dir), "--index", "flagged",
                                 "--window-tokens", "128", "--json"])
    assert r.exit_code == 0, r.output
    manifest = json.loads((Path(json.loads(r.stdout)["index"]) / "manifest.json").read_text())
    assert manifest["chunking"]["window_tokens"] == 128
