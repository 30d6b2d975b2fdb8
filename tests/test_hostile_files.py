"""One pathological file never ends a run: it is read, or skipped in one line that names
it and says why, and every other file is indexed. Real files in a folder, through the
command line (packaged MiniLM) or the indexer with the keyword fake, local and on Ray.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import ragmem.assistant
from ragmem.cli import cli
from ragmem.config import ChunkingConfig, EmbedderConfig, IngestConfig
from ragmem.indexing import Indexer
from ragmem.memory import LongTermMemory
from tests.conftest import CORPUS, EchoGenerator, KeywordEmbedder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from transformers.utils import logging

    monkeypatch.setattr(ragmem.assistant, "generator_from_config", lambda cfg: EchoGenerator())
    monkeypatch.delenv("RAGMEM_DEBUG", raising=False)
    bars = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    yield
    if bars:
        logging.enable_progress_bar()


def folder_with(root: Path, files: dict[str, bytes]) -> Path:
    """The tiny corpus and ``files``, side by side."""
    for name, text in {**{k: v.encode() for k, v in CORPUS.items()}, **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(text)
    return root


def index(folder: Path, into: Path, env: dict[str, str] | None = None) -> Result:
    result = CliRunner(env=env).invoke(cli, ["index", str(folder), "--index", str(into),
                                             "--json"])
    assert "Traceback" not in result.output, result.output
    return result


def skipped(result: Result) -> dict[str, str]:
    """``{file name (or name:line): reason}`` from the one line each skipped file gets."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert all(line.startswith("skipped ") for line in lines), lines
    found = {}
    for line in lines:
        where, _, why = line[len("skipped "):].partition(": ")
        found[Path(where).name] = why
    return found


def stored(into: Path) -> dict[str, str]:
    r = CliRunner().invoke(cli, ["info", str(into), "--json", "--documents"])
    return {d["doc_id"]: d["title"] for d in json.loads(r.stdout)["documents_list"]}


@pytest.mark.slow
def test_100k_nested_tags_are_read_and_the_run_goes_on(tmp_path: Path) -> None:
    # The file: RecursionError after 49 s at 0.9-1.2 GB, and nothing indexed.
    folder = folder_with(tmp_path / "c", {
        "nested.html": b"<html><body>" + b"<div>" * 100_000 + b"Deep text." + b"</div>"
                       * 100_000 + b"</body></html>",
        "headings.html": b"<h2>x" * 5_000,
    })
    t0 = time.perf_counter()
    r = index(folder, tmp_path / "i")
    assert r.exit_code == 0, r.output
    assert time.perf_counter() - t0 < 60
    assert skipped(r) == {}
    assert json.loads(r.stdout)["added"] == 5
    assert sorted(stored(tmp_path / "i")) == sorted([*CORPUS, "nested.html", "headings.html"])


@pytest.mark.slow
def test_files_that_defeat_a_reader_are_skipped_in_one_line(tmp_path: Path) -> None:
    # Each of these ended the whole run before: html.parser's AssertionError, json's
    # RecursionError and its ValueError on a 5,000-digit number, a lone surrogate that
    # could not be hashed (now U+FFFD, one character for one).
    folder = folder_with(tmp_path / "c", {
        "marked.html": b"<p>fine</p><![<![<![",
        "numbers.jsonl": b'{"id": ' + b"9" * 5000 + b', "text": "x"}\n'
                         b'{"id": "n2", "text": "Venus is hot."}\n',
        "surrogate.jsonl": b'{"id": "s1", "text": "Mercury \\ud800 is small."}\n',
        "deep.jsonl": b'{"id": "d1", "text": "x", "m": ' + b"[" * 5000 + b"]" * 5000 + b"}\n"
                      b'{"id": "d2", "text": "Mars is red."}\n',
    })
    r = index(folder, tmp_path / "i")
    assert r.exit_code == 0, r.output
    reasons = skipped(r)
    assert sorted(reasons) == ["deep.jsonl:1", "marked.html", "numbers.jsonl:1"]
    assert reasons["marked.html"].startswith("is not HTML that can be parsed")
    assert reasons["numbers.jsonl:1"].startswith("not JSON ragmem can read (Exceeds the limit")
    assert reasons["deep.jsonl:1"].startswith("not JSON ragmem can read (nested too deeply)")
    assert sorted(stored(tmp_path / "i")) == sorted([*CORPUS, "n2", "s1", "d2"])


@pytest.mark.slow
def test_a_slow_file_is_skipped_at_the_time_limit(tmp_path: Path) -> None:
    # html.parser is quadratic on unterminated start tags (CVE-2025-6069, Pythons before
    # 3.11.13, 3.12.11, 3.13.4): 60 KB of them read for 43 s, holding the run.
    folder = folder_with(tmp_path / "c", {"slow.html": b"<p>ok</p>" + b"<a " * 20_000})
    t0 = time.perf_counter()
    r = index(folder, tmp_path / "i", env={"RAGMEM_DOCUMENTS_MAX_READ_SECONDS": "1"})
    assert r.exit_code == 0, r.output
    assert time.perf_counter() - t0 < 40
    assert skipped(r) == {"slow.html": "took over 1 s to read, the limit for one file; leave "
                          "it out, or raise the limit: RAGMEM_DOCUMENTS_MAX_READ_SECONDS=4"}
    assert sorted(stored(tmp_path / "i")) == sorted(CORPUS)


@pytest.mark.slow
def test_an_unforeseen_error_in_a_reader_skips_its_file_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> object:
        raise RuntimeError("a reader's bug\non two lines")

    monkeypatch.setattr("ragmem.documents.loading.read_pdf", broken)
    folder = folder_with(tmp_path / "c", {"paper.pdf": b"%PDF-1.4 whatever"})
    r = index(folder, tmp_path / "i")
    assert r.exit_code == 0, r.output
    assert skipped(r) == {"paper.pdf": "could not be read (RuntimeError: a reader's bug on two "
                          "lines); leave it out, or rerun with RAGMEM_DEBUG=1 for the "
                          "traceback and report it"}
    assert sorted(stored(tmp_path / "i")) == sorted(CORPUS)
    monkeypatch.setenv("RAGMEM_DEBUG", "1")
    r = CliRunner().invoke(cli, ["index", str(folder), "--index", str(tmp_path / "i")])
    assert isinstance(r.exception, RuntimeError)  # the traceback, for whoever debugs it


@pytest.mark.slow
def test_no_stray_lines_from_pdf_and_html_libraries(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, recwarn: pytest.WarningsRecorder,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_documents import write_pdf

    pdf = write_pdf(tmp_path / "p.pdf", ["Jupiter has many moons."]).read_bytes()
    folder = folder_with(tmp_path / "c", {
        "garbage.pdf": b"this is not a pdf at all",  # pypdf: "invalid pdf header"
        "shifted.pdf": b"  " + pdf,  # read all the same, after pypdf's warning
        "page.html": b"<?xml version='1.0'?><html><body><p>XHTML page.</p></body></html>",
    })
    r = index(folder, tmp_path / "i")
    assert r.exit_code == 0, r.output
    assert list(skipped(r)) == ["garbage.pdf"]
    assert sorted(stored(tmp_path / "i")) == sorted([*CORPUS, "shifted.pdf", "page.html"])
    assert [r.getMessage() for r in caplog.records if r.name.startswith("pypdf")] == []
    assert [str(w.message) for w in recwarn if "ragmem" not in str(w.filename)] == []
    monkeypatch.setenv("RAGMEM_DEBUG", "1")  # then pypdf's own lines are let through
    index(folder, tmp_path / "j")
    assert any(r.name.startswith("pypdf") for r in caplog.records)


class PoisonEmbedder(KeywordEmbedder):
    """The keyword fake, whose tokenizer fails on one word: a chunking bug, in one file."""

    def count_tokens(self, text: str) -> int:
        if "POISON" in text:
            raise ValueError("the tokenizer choked")
        return super().count_tokens(text)


HOSTILE = {
    "poison.txt": b"Text with POISON in it.",
    "nested.html": b"<div>" * 100_000 + b"Deep text." + b"</div>" * 100_000,
    "marked.html": b"<p>fine</p><![<![<![",
}
EXPECTED_SKIPS = {
    "poison.txt": "could not be chunked (ValueError: the tokenizer choked); leave it out, or "
                  "rerun with RAGMEM_DEBUG=1 for the traceback and report it",
    "marked.html": "is not HTML that can be parsed",
}


def check_run(failed: Sequence[tuple[str, str]], memory: LongTermMemory) -> None:
    reasons = {Path(where).name: why for where, why in failed}
    assert sorted(reasons) == sorted(EXPECTED_SKIPS)
    for name, start in EXPECTED_SKIPS.items():
        assert reasons[name].startswith(start), reasons[name]
    assert sorted(d.doc_id for d in memory.documents()) == sorted([*CORPUS, "nested.html"])


def test_a_file_that_fails_to_chunk_is_skipped_locally(tmp_path: Path) -> None:
    folder = folder_with(tmp_path / "c", HOSTILE)
    memory = LongTermMemory.create(tmp_path / "i", embedder="keyword-test", dim=256,
                                   chunking=vars(ChunkingConfig()))
    stats = Indexer(memory, PoisonEmbedder()).index([folder])
    check_run(stats.failed, memory)


@pytest.mark.slow  # starts a local Ray cluster
def test_every_file_skipped_in_one_line_on_ray_too(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="the ray engine needs pip install 'ragmem[scale]'")
    from ragmem.distributed import RayEngine

    folder = folder_with(tmp_path / "c", HOSTILE)
    memory = LongTermMemory.create(tmp_path / "i", embedder="keyword-test", dim=256,
                                   chunking=vars(ChunkingConfig()))
    engine = RayEngine(IngestConfig(engine="ray"),
                       EmbedderConfig(model="keyword-test", precision="fp32"), ChunkingConfig(),
                       20_000_000, KeywordEmbedder.dim, embedder_factory=PoisonEmbedder)
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    try:
        stats = Indexer(memory, KeywordEmbedder()).index([folder], engine=engine)
    finally:
        ray.shutdown()
    check_run(stats.failed, memory)
