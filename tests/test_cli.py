"""The command line in-process (click's CliRunner): real MiniLM and real FAISS/SQLite;
the generator is the echo fake, put in where the assistant builds its generator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import ragmem.assistant
from ragmem.cli import cli
from tests.conftest import EchoGenerator


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setattr(ragmem.assistant, "generator_from_config", lambda cfg: EchoGenerator())
    return CliRunner()


def test_help_is_instant_and_imports_no_model_code() -> None:
    code = ("import sys; from ragmem.cli import cli\n"
            "try: cli(['--help'])\nexcept SystemExit: pass\n"
            "print(sorted(m for m in ('torch', 'faiss', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().endswith("[]")
    assert "Examples" in out and "ragmem ask" in out


@pytest.mark.slow
def test_index_info_ask_rm_check(runner: CliRunner, corpus_dir: Path) -> None:
    r = runner.invoke(cli, ["index", str(corpus_dir), "--index", "t", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["added"] == 3 and summary["windows"] >= 3

    r = runner.invoke(cli, ["index", str(corpus_dir), "--index", "t", "--json"])
    assert json.loads(r.stdout)["unchanged"] == 3  # nothing re-embedded

    r = runner.invoke(cli, ["info", "t", "--json"])
    info = json.loads(r.stdout)
    assert (info["documents"], info["embedder"]) == (3, "all-MiniLM-L6-v2")

    r = runner.invoke(cli, ["ask", "t", "When did Neil Armstrong walk on the Moon?", "--json",
                            "--show-context"])
    assert r.exit_code == 0, r.output
    answer = json.loads(r.stdout)
    top = answer["citations"][0]
    assert top["doc_id"] == "space/moon.txt" and "1969" in answer["answer"]
    assert Path(top["path"]).read_text()[top["start"]:top["end"]] == top["quote"]
    assert answer["passages"] and answer["tokens_used"] <= answer["token_budget"]

    r = runner.invoke(cli, ["ask", "t", "Moon", "--path", "cats*", "--json"])
    assert {c["doc_id"] for c in json.loads(r.stdout)["citations"]} == {"cats.txt"}

    r = runner.invoke(cli, ["rm", "t", "space/*", "--yes"])
    assert r.exit_code == 0 and "removed 2 documents" in r.output
    r = runner.invoke(cli, ["check", "t"])
    assert r.exit_code == 0 and ": ok" in r.output


@pytest.mark.parametrize("args, message", [
    (["ask", "nope", "hi"], "no ragmem index at"),
    (["info", "nope"], "ragmem index PATH --index nope"),
    pytest.param(["index", "/no/such/path", "--index", "t"], "no such file or folder",
                 marks=pytest.mark.slow),  # a new index loads the real embedder first
    (["rm", "nope", "x"], "no ragmem index at"),
])
def test_bad_input_is_one_line_and_exit_1(runner: CliRunner, args: list[str],
                                          message: str) -> None:
    r = runner.invoke(cli, args)
    assert r.exit_code == 1
    assert message in r.output and "Traceback" not in r.output


@pytest.mark.slow
def test_empty_question_and_wrong_embedder(runner: CliRunner, corpus_dir: Path) -> None:
    assert runner.invoke(cli, ["index", str(corpus_dir), "--index", "t"]).exit_code == 0
    r = runner.invoke(cli, ["ask", "t", "   "])
    assert r.exit_code == 1 and "question is empty" in r.output
    r = runner.invoke(cli, ["index", str(corpus_dir), "--index", "t", "--embedder", "other/model"])
    assert r.exit_code == 1 and "built with embedder 'all-MiniLM-L6-v2'" in r.output


def test_library_errors_name_python_fixes_and_the_cli_names_commands() -> None:
    """A library error carries its fix as data: str() words it for Python callers, the
    CLI's one line as the command to run."""
    from ragmem.cli import one_line
    from ragmem.errors import Fix, IndexCorruptError

    error = IndexCorruptError("idx/vectors-1.faiss is damaged", Fix("repair", "idx"))
    assert "ragmem check" not in str(error) and "--" not in str(error)
    assert "ragmem.memory.check.repair(Path('idx'))" in str(error)
    assert one_line(error) == ("idx/vectors-1.faiss is damaged; run: ragmem check idx "
                               "--repair", 1)


@pytest.mark.slow
def test_sync_keeps_the_documents_of_other_folders(runner: CliRunner, tmp_path: Path) -> None:
    for folder, name in (("a", "moon.txt"), ("b", "mars.txt"), ("b", "venus.txt")):
        (tmp_path / folder).mkdir(exist_ok=True)
        (tmp_path / folder / name).write_text(f"{name} is about a place in the sky.")
    for folder in ("a", "b"):
        r = runner.invoke(cli, ["index", str(tmp_path / folder), "--index", "t"])
        assert r.exit_code == 0, r.output
    (tmp_path / "b" / "venus.txt").unlink()
    r = runner.invoke(cli, ["index", str(tmp_path / "b"), "--index", "t", "--sync", "--json"])
    assert json.loads(r.stdout)["removed"] == 1
    r = runner.invoke(cli, ["info", "t", "--json", "--documents"])
    assert [d["doc_id"] for d in json.loads(r.stdout)["documents_list"]] == ["mars.txt",
                                                                             "moon.txt"]


@pytest.mark.slow
def test_a_moved_folder_is_reported_moved_not_reembedded(runner: CliRunner,
                                                          tmp_path: Path) -> None:
    (tmp_path / "docs" / "notes").mkdir(parents=True)
    (tmp_path / "docs" / "notes" / "moon.txt").write_text("The moon is a place in the sky.")
    r = runner.invoke(cli, ["index", str(tmp_path / "docs"), "--index", "t"])
    assert r.exit_code == 0, r.output
    (tmp_path / "archive").mkdir()
    (tmp_path / "docs" / "notes").rename(tmp_path / "archive" / "notes")
    r = runner.invoke(cli, ["index", str(tmp_path / "archive"), "--index", "t"])
    assert r.exit_code == 0 and "0 added, 0 updated, 1 unchanged (1 moved)" in r.output, r.output


@pytest.mark.slow
@pytest.mark.parametrize("existing", [False, True])
def test_a_second_writer_is_refused_before_it_loads_anything(
        runner: CliRunner, corpus_dir: Path, tmp_path: Path, existing: bool) -> None:
    from ragmem.memory.folder import write_lock

    index = tmp_path / "idx"
    if existing:
        assert runner.invoke(cli, ["index", str(corpus_dir), "--index", str(index)]
                             ).exit_code == 0
    else:  # another process is creating it
        index.mkdir(mode=0o700)
    code = ("import sys\nfrom ragmem.cli import cli\ntry:\n    cli(sys.argv[1:])\n"
            "except SystemExit as e:\n    print(e.code)\nprint(sorted(m for m in ('torch', "
            "'faiss', 'sentence_transformers', 'pymilvus') if m in sys.modules))")
    with write_lock(index):
        out = subprocess.run([sys.executable, "-c", code, "index", str(corpus_dir),
                              "--index", str(index)], capture_output=True, text=True)
    assert "another ragmem process is writing to" in out.stderr
    assert out.stdout.split("\n")[:2] == ["1", "[]"]  # no model, no FAISS index loaded
