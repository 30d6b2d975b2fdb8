"""The command line over hostile input and damaged index folders, all made here.

Real MiniLM, FAISS and SQLite (the generator is the echo fake: it adds nothing here).
Whatever goes wrong, a command prints one line (no traceback), exits non-zero when it
failed, and nothing stored is lost: the index answers as before, or after
``check --repair`` when only derived files (FAISS, manifest) were damaged.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import ragmem.assistant
import ragmem.indexing
from ragmem.cli import cli, one_line
from ragmem.errors import IndexCorruptError
from tests.conftest import CORPUS, EchoGenerator

QUESTION = "When did Neil Armstrong walk on the Moon?"


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """What ``ragmem.cli.main`` sets before transformers is imported (here it already is)."""
    from transformers.utils import logging

    monkeypatch.setattr(ragmem.assistant, "generator_from_config", lambda cfg: EchoGenerator())
    monkeypatch.delenv("RAGMEM_DEBUG", raising=False)
    bars = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    yield
    if bars:
        logging.enable_progress_bar()


def run(*args: str, input: str | None = None) -> Result:
    result = CliRunner().invoke(cli, list(args), input=input)
    assert "Traceback" not in result.output, result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{args} let out {result.exception!r}")
    return result


def failed_in_one_line(result: Result, *expected: str) -> str:
    """The command failed: exit code not 0, and stderr is one line holding ``expected``."""
    assert result.exit_code != 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def moon_answers(index: str) -> list[tuple[str, int, int]]:
    r = run("ask", index, QUESTION, "--no-generate", "--json")
    assert r.exit_code == 0, r.output
    return [(p["doc_id"], p["start"], p["end"]) for p in json.loads(r.stdout)["passages"]]


@pytest.fixture(scope="module")
def good_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A healthy index of the tiny corpus, built once; each test damages a copy."""
    root = tmp_path_factory.mktemp("hostile")
    corpus = root / "corpus"
    for name, text in CORPUS.items():
        (corpus / name).parent.mkdir(parents=True, exist_ok=True)
        (corpus / name).write_text(text, encoding="utf-8")
    mp = pytest.MonkeyPatch()
    mp.setattr(ragmem.assistant, "generator_from_config", lambda cfg: EchoGenerator())
    r = CliRunner().invoke(cli, ["index", str(corpus), "--index", str(root / "good")])
    assert r.exit_code == 0, r.output
    mp.undo()
    yield root / "good"


@pytest.fixture
def index(good_index: Path, tmp_path: Path) -> str:
    shutil.copytree(good_index, tmp_path / "idx")
    return str(tmp_path / "idx")


def stored(index: str) -> dict[str, str]:
    r = run("info", index, "--json", "--documents")
    return {d["doc_id"]: d["content_hash"] for d in json.loads(r.stdout)["documents_list"]}


@pytest.mark.slow
def test_hostile_files_are_skipped_one_line_each(tmp_path: Path, index: str) -> None:
    before = stored(index)
    src = tmp_path / "hostile"
    src.mkdir()
    with (src / "huge-line.txt").open("wb") as f:  # 50 MB, one line: over the 20 MB limit
        for _ in range(50):
            f.write(b"word " * 200_000)
    long_line = " ".join(f"token{i}" for i in range(6_000))  # under the limit: cut, kept
    (src / "long-line.txt").write_text(long_line)
    os.mkfifo(src / "x.txt")  # reading it would block forever, holding the write lock
    (src / "zero.txt").symlink_to("/dev/zero")  # reading it would never end
    (src / "loop.txt").symlink_to(src / "loop.txt")
    (src / "mixed.jsonl").write_text(
        '{"id": "j1", "text": "Jupiter is the largest planet."}\n{"id": "j2", "text": \n'
        '{"id": "j3", "text": "Saturn has rings."}\n', encoding="utf-8")
    unblock = threading.Timer(120, lambda: os.close(os.open(src / "x.txt", os.O_WRONLY)))
    unblock.daemon = True  # should a read block after all, fail instead of hanging
    unblock.start()
    t0 = time.perf_counter()
    r = run("index", str(src), "--index", index, "--json")
    unblock.cancel()
    assert r.exit_code == 0, r.output
    assert time.perf_counter() - t0 < 110
    summary = json.loads(r.stdout)
    assert summary["added"] == 3  # long-line.txt, j1, j3
    skipped = [line for line in r.stderr.splitlines() if line.startswith("skipped ")]
    reasons = {
        "huge-line.txt": "is 50.0 MB, over the 20.0 MB limit",
        "x.txt": "is a named pipe",
        "zero.txt": "is a character device (/dev/zero)",
        "loop.txt": "is a symlink loop",
        "mixed.jsonl:2": "not valid JSON",
    }
    assert len(skipped) == len(reasons), r.stderr
    for line in skipped:
        where = line.split()[1].rstrip(":")
        assert line.count(str(src)) == 1, line  # the path once, not twice
        assert reasons[Path(where).name] in line, line
    after = stored(index)
    assert sorted(after) == sorted([*before, "long-line.txt", "j1", "j3"])
    assert {k: after[k] for k in before} == before  # nothing stored was lost or changed
    assert run("check", index).exit_code == 0
    assert moon_answers(index)[0][0] == "space/moon.txt"


@pytest.mark.slow  # opening the index for a run loads its embedder
def test_only_bad_input_fails_the_command(tmp_path: Path, index: str) -> None:
    os.mkfifo(tmp_path / "pipe.txt")
    r = run("index", str(tmp_path / "pipe.txt"), "--index", index)
    failed_in_one_line(r, "pipe.txt: is a named pipe")
    r = run("index", str(tmp_path / "absent"), "--index", index)
    failed_in_one_line(r, "absent: no such file or folder")


def test_garbage_docstore(index: str) -> None:
    store = Path(index) / "docstore.sqlite"
    for extra in ("-wal", "-shm"):
        Path(f"{store}{extra}").unlink(missing_ok=True)
    garbage = os.urandom(store.stat().st_size)
    store.write_bytes(garbage)
    for args in (["info", index], ["check", index], ["ask", index, QUESTION],
                 ["rm", index, "cats.txt"], ["check", index, "--repair"]):
        failed_in_one_line(run(*args), "is not a readable SQLite database")
    failed_in_one_line(run("index", str(Path(index).parent), "--index", index),
                       "is not a readable SQLite database")
    assert store.read_bytes() == garbage  # never deleted nor "fixed" by guessing


@pytest.mark.slow
def test_faiss_file_of_the_same_size_but_corrupted(index: str) -> None:
    before = moon_answers(index)
    (snapshot,) = Path(index).glob("vectors-*.faiss")
    data = bytearray(snapshot.read_bytes())
    data[:64] = b"\xff" * 64
    snapshot.write_bytes(bytes(data))
    failed_in_one_line(run("info", index), "fails its checksum",
                       f"ragmem check {index} --repair")
    failed_in_one_line(run("check", index), "sha256", "--repair")
    r = run("check", index, "--repair")
    assert r.exit_code == 0, r.output
    assert moon_answers(index) == before


@pytest.mark.slow
def test_truncated_manifest(index: str) -> None:
    before = moon_answers(index)
    manifest = Path(index) / "manifest.json"
    manifest.write_text(manifest.read_text()[:50])
    failed_in_one_line(run("info", index), "manifest.json is unreadable", "--repair")
    failed_in_one_line(run("ask", index, QUESTION), "--repair")
    line = failed_in_one_line(run("check", index), f"; run: ragmem check {index} --repair")
    assert "ragmem.memory" not in line and "repair(" not in line  # the command, not Python
    assert run("check", index, "--repair").exit_code == 0
    assert moon_answers(index) == before


@pytest.mark.slow
def test_half_created_index_is_finished_by_the_next_index(tmp_path: Path) -> None:
    # A kill during the first create left a docstore (part of its schema) and a lock.
    half = tmp_path / "half"
    half.mkdir()
    conn = sqlite3.connect(half / "docstore.sqlite")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.close()
    (half / "write.lock").touch()
    failed_in_one_line(run("info", str(half)), "no manifest.json", "--repair")
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "moon.txt").write_text(CORPUS["space/moon.txt"])
    r = run("index", str(corpus), "--index", str(half), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["added"] == 1
    assert run("check", str(half)).exit_code == 0
    assert moon_answers(str(half))[0][0] == "moon.txt"


@pytest.mark.slow
def test_kill_between_data_commit_and_manifest_write(tmp_path: Path, index: str) -> None:
    # The state such a kill leaves: the docstore has the new write, the manifest is the
    # one from before it. check passes and says so, writing nothing; --repair catches up.
    manifest = Path(index) / "manifest.json"
    old = manifest.read_bytes()
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "venus.txt").write_text("Venus is the hottest planet.")
    assert run("index", str(tmp_path / "new"), "--index", index).exit_code == 0
    manifest.write_bytes(old)
    r = run("check", index)
    assert r.exit_code == 0, r.output
    assert "lag the docstore's" in r.stderr
    assert manifest.read_bytes() == old  # check never writes
    assert run("check", index, "--repair").exit_code == 0
    assert json.loads(manifest.read_text())["counts"]["documents"] == 4
    assert run("check", index).stderr == ""  # nothing left to catch up


def test_a_deleted_docstore_is_damage_and_no_command_makes_a_new_one(
        tmp_path: Path, index: str) -> None:
    store = Path(index) / "docstore.sqlite"
    for extra in ("", "-wal", "-shm"):
        Path(f"{store}{extra}").unlink(missing_ok=True)
    manifest = (Path(index) / "manifest.json").read_bytes()
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "venus.txt").write_text("Venus is the hottest planet.")
    for args in (["check", index], ["info", index], ["ask", index, QUESTION],
                 ["rm", index, "cats.txt", "--yes"], ["check", index, "--repair"],
                 ["index", str(tmp_path / "more"), "--index", index]):
        failed_in_one_line(run(*args), f"{store} is missing",
                           "restore it from a backup, or index the sources again")
        assert not store.exists(), args
    assert (Path(index) / "manifest.json").read_bytes() == manifest


@pytest.mark.slow
def test_random_bytes_inside_the_faiss_file_are_never_served(index: str) -> None:
    before = moon_answers(index)
    (snapshot,) = Path(index).glob("vectors-*.faiss")
    size = snapshot.stat().st_size
    time.sleep(0.05)  # a later clock tick than the file's own write (ragmem.memory.faiss.snapshot)
    with snapshot.open("r+b") as f:  # 4 KB in place, the size unchanged
        f.seek(size // 2 - 2048)
        f.write(os.urandom(4096))
    for args in (["info", index], ["ask", index, QUESTION, "--no-generate"]):
        failed_in_one_line(run(*args), "fails its checksum", f"ragmem check {index} --repair")
    failed_in_one_line(run("check", index), "sha256", "--repair")
    assert run("check", index, "--repair").exit_code == 0
    assert moon_answers(index) == before


@pytest.mark.slow
def test_a_damaged_database_page_names_the_index_to_check(index: str) -> None:
    # The documents table's page overwritten: the index opens, a question fails on it.
    store = Path(index) / "docstore.sqlite"
    conn = sqlite3.connect(store)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page in the main file
    page = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'documents'"
                        ).fetchone()[0]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with store.open("r+b") as f:
        f.seek((page - 1) * page_size)
        f.write(b"\xff" * page_size)
    line = failed_in_one_line(run("ask", index, QUESTION, "--no-generate"), "malformed",
                              f"check it with: ragmem check {index}")
    assert "INDEX" not in line


def test_missing_embedder_fails_at_once_without_network(index: str) -> None:
    manifest = Path(index) / "manifest.json"
    data = json.loads(manifest.read_text())
    data["embedder"] = "ragmem-tests/no-such-embedder"
    manifest.write_text(json.dumps(data))
    t0 = time.perf_counter()
    failed_in_one_line(run("ask", index, QUESTION), "no-such-embedder is not installed")
    assert time.perf_counter() - t0 < 10  # no network retries
    failed_in_one_line(run("check", index), "embedder: model ragmem-tests/no-such-embedder")
    assert run("info", index).exit_code == 0  # what needs no embedder still works


@pytest.mark.slow
def test_rm_glob_asks_first_and_never_deletes_silently(index: str) -> None:
    r = run("rm", index, "*")  # no answer on stdin: like a script without --yes
    assert r.exit_code != 0
    assert "matches 3 of the 3 documents" in r.stderr
    assert json.loads(run("info", index, "--json").stdout)["documents"] == 3
    r = run("rm", index, "*", "--dry-run")
    assert r.exit_code == 0 and "would remove 3 documents" in r.stdout
    r = run("rm", index, "space/*", input="n\n")
    assert r.exit_code != 0
    assert json.loads(run("info", index, "--json").stdout)["documents"] == 3
    r = run("rm", index, "space/*", input="y\n")
    assert r.exit_code == 0 and "removed 2 documents" in r.stdout
    r = run("rm", index, "*", "--yes", "--json")
    assert json.loads(r.stdout) == {"removed": ["cats.txt"]}
    assert run("check", index).exit_code == 0


@pytest.mark.slow
def test_any_error_is_one_line_and_debug_shows_the_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.txt").write_text("Some text.")

    def no_memory(*args: object, **kwargs: object) -> object:
        raise MemoryError

    # Not while reading a file: that file alone is skipped (tests/test_hostile_files.py).
    monkeypatch.setattr(ragmem.indexing, "discover", no_memory)
    r = run("index", str(tmp_path / "a.txt"), "--index", str(tmp_path / "i"))
    failed_in_one_line(r, "out of memory")
    monkeypatch.setenv("RAGMEM_DEBUG", "1")
    r = CliRunner().invoke(cli, ["index", str(tmp_path / "a.txt"), "--index",
                                 str(tmp_path / "i")])
    assert isinstance(r.exception, MemoryError)


@pytest.mark.parametrize(("error", "expected", "code"), [
    (IndexCorruptError("x is damaged;\nrun: fix"), "x is damaged; run: fix", 1),
    (KeyboardInterrupt(), "interrupted; an index keeps every complete write", 130),
    (MemoryError(), "out of memory", 1),
    (sqlite3.DatabaseError("file is not a database"), "file is not a database", 1),
    (PermissionError(13, "Permission denied", "/srv/idx"), "/srv/idx: Permission denied", 1),
    (OSError(28, "No space left on device"), "No space left on device", 1),
    (RuntimeError("Error in faiss::read_index\ninvalid ntotal -1"),
     "unexpected RuntimeError: Error in faiss::read_index invalid ntotal -1; rerun with "
     "RAGMEM_DEBUG=1", 1),
])
def test_one_line(error: BaseException, expected: str, code: int) -> None:
    message, exit_code = one_line(error)
    assert expected in message and "\n" not in message
    assert exit_code == code
