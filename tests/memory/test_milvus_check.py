"""``ragmem check`` on a Milvus index (milvus-lite, under tmp_path) writes nothing: not
the manifest's counts, not milvus-lite's own recovery of a killed writer's log; a lost
manifest is one problem, with its fix, and ``repair`` rebuilds it."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("pymilvus", reason="the Milvus store needs pymilvus: "
                    "pip install 'ragmem[scale]'")
pytest.importorskip("milvus_lite", reason="Milvus tests run on milvus-lite: "
                    "pip install 'ragmem[scale]'")

from ragmem.errors import StoreError  # noqa: E402
from ragmem.memory.check import check, repair  # noqa: E402
from tests.memory.test_milvus import TEST, build  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def files_of(path: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``path``: its bytes and mtime; every folder: its mtime."""
    return {str(p.relative_to(path)): (b"" if p.is_dir() else p.read_bytes(),
                                       p.stat().st_mtime_ns)
            for p in sorted(path.rglob("*"))} | {".": (b"", path.stat().st_mtime_ns)}


def temp_copies() -> set[str]:
    return {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("ragmem-check-")}


def killed_writer(path: Path) -> None:
    """An index whose writer was killed after its rows were written, before milvus-lite
    wrote them out and before the manifest's counts: milvus-lite's log is left behind."""
    code = ("import os, sys\nfrom pathlib import Path\n"
            "from tests.memory.test_milvus import build, make_doc\n"
            "m = build(Path(sys.argv[1]), {'a': (3, 1), 'b': (4, 2)})\n"
            "with m.writer() as w:\n    w.add(*make_doc('c', 5, 3))\n    w.flush()\n"
            "    os._exit(0)\n")
    subprocess.run([sys.executable, "-c", code, str(path)], cwd=REPO, check=True)
    assert any((path / "milvus.db").rglob("wal/*.arrow"))  # what opening would write out


def test_check_after_a_killed_writer_changes_no_file(tmp_path: Path) -> None:
    killed_writer(tmp_path / "i")
    before, copies = files_of(tmp_path / "i"), temp_copies()
    report = check(tmp_path / "i", TEST)
    assert report.ok, report.problems
    [note] = report.notes
    assert "counts" in note and "lag" in note and "check --repair" in note
    assert files_of(tmp_path / "i") == before
    assert temp_copies() == copies  # the copy it read is gone
    report = repair(tmp_path / "i", TEST)
    assert report.ok and not report.notes
    manifest = json.loads((tmp_path / "i" / "manifest.json").read_text())
    assert manifest["counts"] == {"documents": 3, "sentences": 12, "windows": 12}


@pytest.mark.parametrize("lost", ["unreadable", "missing"])
def test_a_lost_manifest_is_one_problem_and_repair_rebuilds_it(tmp_path: Path,
                                                              lost: str) -> None:
    build(tmp_path / "i", {"a": (3, 1)}).close()
    manifest = tmp_path / "i" / "manifest.json"
    good = json.loads(manifest.read_text())
    if lost == "missing":
        manifest.unlink()
    else:
        manifest.write_text("{")
    before = files_of(tmp_path / "i")
    report = check(tmp_path / "i", TEST)
    [problem] = report.problems
    assert report.repairable and f"{manifest} is {lost}" in problem
    assert "Milvus holds a copy of it, which repair writes back" in problem
    # The CLI adds its own fix ("run: ragmem check NAME --repair"): no Python call here.
    assert "ragmem.memory" not in problem and "repair(" not in problem
    assert files_of(tmp_path / "i") == before
    assert repair(tmp_path / "i", TEST).ok
    rebuilt = json.loads(manifest.read_text())
    assert (rebuilt["embedder"], rebuilt["milvus"]["collection"]) == (
        good["embedder"], good["milvus"]["collection"])


def test_a_lost_manifest_without_milvus_copy_says_restore_or_reindex(tmp_path: Path) -> None:
    memory = build(tmp_path / "i", {"a": (3, 1)})
    memory.client.delete(memory.names.documents, 'pk == "#meta#0"')
    memory.close()
    (tmp_path / "i" / "manifest.json").unlink()
    before = files_of(tmp_path / "i")
    report = check(tmp_path / "i", TEST)
    [problem] = report.problems
    assert not report.repairable and "manifest.json is missing" in problem
    assert "restore it from a backup, or index the sources again" in problem
    assert files_of(tmp_path / "i") == before


def test_a_lost_milvus_lite_folder_is_damage_and_is_not_made_again(tmp_path: Path) -> None:
    build(tmp_path / "i", {"a": (3, 1)}).close()
    import shutil

    shutil.rmtree(tmp_path / "i" / "milvus.db")
    report = check(tmp_path / "i", TEST)
    [problem] = report.problems
    assert not report.repairable and "milvus.db of this index is missing" in problem
    assert not (tmp_path / "i" / "milvus.db").exists()


def test_check_while_another_process_holds_the_folder_says_so(tmp_path: Path) -> None:
    build(tmp_path / "i", {"a": (3, 1)}).close()
    fd = os.open(tmp_path / "i" / "milvus.db" / "LOCK", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as milvus-lite in another process holds it
        with pytest.raises(StoreError, match="open in another process.*check again"):
            check(tmp_path / "i", TEST)
    finally:
        os.close(fd)
    assert check(tmp_path / "i", TEST).ok


@pytest.mark.slow
def test_ragmem_check_on_a_lost_manifest_is_one_line_and_exit_1(corpus_dir: Path,
                                                               tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ragmem.cli import cli

    index = tmp_path / "t"
    runner = CliRunner()
    r = runner.invoke(cli, ["index", str(corpus_dir), "--index", str(index), "--store",
                            "milvus"])
    assert r.exit_code == 0, r.output
    (index / "manifest.json").write_text("{")
    before = files_of(index)
    r = runner.invoke(cli, ["check", str(index)])
    assert r.exit_code == 1 and r.stdout == ""
    # One line of ragmem's (the embedder's loading may print its progress bar too).
    [line] = [x for x in r.stderr.splitlines() if x and "Loading weights" not in x]
    assert line.startswith(f"{index}: {index / 'manifest.json'} is unreadable")
    assert line.endswith(f"Milvus holds a copy of it, which repair writes back; run: "
                         f"ragmem check {index} --repair")
    assert files_of(index) == before
    r = runner.invoke(cli, ["check", str(index), "--repair"])
    assert r.exit_code == 0 and ": ok" in r.stdout, r.output
