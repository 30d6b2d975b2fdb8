"""The assembled pipeline with fakes (keyword embedder, echo generator): fast and exact."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ragmem import Assistant
from ragmem.config import Config, EmbedderConfig, indexes_home
from ragmem.errors import IndexMismatchError, IndexNotFoundError
from tests.conftest import ECHO, EchoGenerator, KeywordEmbedder


def test_ask_cites_document_path_and_span(corpus_dir: Path, tmp_path: Path) -> None:
    a = Assistant.create(tmp_path / "idx", ECHO, embedder=KeywordEmbedder(),
                         generator=EchoGenerator())
    stats = a.index([corpus_dir])
    assert (stats.added, stats.failed) == (3, ())
    answer = a.ask("When did Neil Armstrong walk on the Moon?")
    top = answer.citations[0]
    assert top.doc_id == "space/moon.txt" and top.path.endswith("moon.txt")
    assert Path(top.path).read_text()[top.start:top.end] == top.quote
    assert "1969" in answer.text and answer.prompt.count("\n[1] ") == 1
    assert answer.timings.retrieve_s > 0


def test_reindex_embeds_only_changed_documents(corpus_dir: Path, tmp_path: Path) -> None:
    a = Assistant.create(tmp_path / "idx", embedder=KeywordEmbedder())
    a.index([corpus_dir])
    (corpus_dir / "cats.txt").write_text("Cats purr. Cats hunt mice at night.")
    (corpus_dir / "space" / "moon.txt").unlink()
    stats = a.index([corpus_dir], sync=True)
    assert (stats.added, stats.updated, stats.unchanged, stats.removed) == (0, 1, 1, 1)
    assert [d.doc_id for d in a.memory.documents()] == ["cats.txt", "space/mars.md"]
    assert a.retrieve("mice at night")[0].text.startswith("Cats purr.")


def test_bad_files_are_skipped_and_reported(corpus_dir: Path, tmp_path: Path) -> None:
    (corpus_dir / "empty.txt").write_text("")
    (corpus_dir / "binary.txt").write_bytes(b"\x00\x01\x02" * 100)
    a = Assistant.create(tmp_path / "idx", embedder=KeywordEmbedder())
    stats = a.index([corpus_dir])
    assert stats.added == 3
    assert sorted(Path(p).name for p, _ in stats.failed) == ["binary.txt", "empty.txt"]


def test_open_by_name_under_home_and_wrong_embedder(corpus_dir: Path) -> None:
    Assistant.create("notes", embedder=KeywordEmbedder()).index([corpus_dir])
    again = Assistant.open("notes", embedder=KeywordEmbedder())
    assert again.memory.info().documents == 3
    with pytest.raises(IndexNotFoundError):
        Assistant.open("no-such-index")

    class Other(KeywordEmbedder):
        model_id = "other"

    with pytest.raises(IndexMismatchError):
        Assistant.open("notes", embedder=Other())


def test_stream_yields_text_then_answer(corpus_dir: Path, tmp_path: Path) -> None:
    a = Assistant.create(tmp_path / "idx", ECHO, embedder=KeywordEmbedder(),
                         generator=EchoGenerator())
    a.index([corpus_dir])
    *pieces, answer = list(a.stream("What is a group of cats called?"))
    assert "".join(pieces).strip() == answer.text  # type: ignore[union-attr]


def test_failed_index_run_keeps_previous_index(corpus_dir: Path, tmp_path: Path) -> None:
    a = Assistant.create(tmp_path / "idx", embedder=KeywordEmbedder())
    a.index([corpus_dir])
    before = a.memory.info()

    class Exploding(KeywordEmbedder):
        def embed(self, texts):  # type: ignore[no-untyped-def]
            raise RuntimeError("killed mid-index")

    shutil.copy(corpus_dir / "cats.txt", corpus_dir / "cats2.txt")
    b = Assistant.open(tmp_path / "idx", embedder=Exploding())
    with pytest.raises(RuntimeError):
        b.index([corpus_dir])
    after = Assistant.open(tmp_path / "idx", embedder=KeywordEmbedder()).memory.info()
    assert (after.documents, after.windows) == (before.documents, before.windows)


class Int8KeywordEmbedder(KeywordEmbedder):
    precision = "int8"


def test_index_refuses_a_query_embedder_of_another_precision(corpus_dir: Path) -> None:
    Assistant.create("notes", embedder=KeywordEmbedder()).index([corpus_dir])
    assert Assistant.open("notes", embedder=KeywordEmbedder()).config.embedder.precision \
        == "fp32"  # "auto" became the index's own
    with pytest.raises(IndexMismatchError, match="holds fp32 vectors and the embedder runs "
                                                 "in int8"):
        Assistant.open("notes", embedder=Int8KeywordEmbedder())
    with pytest.raises(IndexMismatchError, match="ALLOW_PRECISION_MISMATCH"):
        # asked for by the config alone: refused before any model loads
        Assistant.open("notes", Config(embedder=EmbedderConfig(precision="int8")))
    told = Config(embedder=EmbedderConfig(allow_precision_mismatch=True))
    a = Assistant.open("notes", told, embedder=Int8KeywordEmbedder())
    assert a.retrieve("clowder")[0].doc_id == "cats.txt"


def test_an_index_records_the_precision_that_made_it(corpus_dir: Path) -> None:
    Assistant.create("eights", embedder=Int8KeywordEmbedder()).index([corpus_dir])
    manifest = json.loads((indexes_home() / "eights" / "manifest.json").read_text())
    assert manifest["embedder_precision"] == "int8"
    with pytest.raises(IndexMismatchError):
        Assistant.open("eights", embedder=KeywordEmbedder())


@pytest.mark.slow
def test_an_int8_index_opens_with_the_int8_embedder(corpus_dir: Path) -> None:
    """The real path: built in int8, reopened with the default config (precision auto)."""
    from ragmem.embedding import OnnxEmbedder

    Assistant.create("real", Config(embedder=EmbedderConfig(precision="int8"))).index(
        [corpus_dir])
    again = Assistant.open("real")
    assert isinstance(again.embedder, OnnxEmbedder) and again.embedder.precision == "int8"
    assert again.retrieve("Which volcano is the tallest?")[0].doc_id == "space/mars.md"


def test_creating_an_index_another_process_is_creating_is_refused_first(
        tmp_path: Path) -> None:
    from ragmem.errors import IndexLockedError
    from ragmem.memory.folder import write_lock

    (tmp_path / "idx").mkdir(mode=0o700)
    # An embedder that is not installed: today's order would fail on it (after seconds
    # of loading, for one that is); the lock is asked about first.
    config = Config().with_overrides({"embedder": {"model": "ragmem-tests/not-installed"}})
    with write_lock(tmp_path / "idx"), pytest.raises(IndexLockedError, match="another ragmem"):
        Assistant.create(tmp_path / "idx", config)
