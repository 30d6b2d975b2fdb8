"""A local Ray started by ragmem dies with its driver, even one killed with SIGKILL; and
what a run killed together with its watchdog left, the next run kills. Real Ray, real
processes (Linux: read from /proc)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the ray engine needs Ray: pip install 'ragmem[scale]'")
if not Path("/proc/self/stat").exists():
    pytest.skip("processes are read from /proc (Linux)", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
DRIVER = textwrap.dedent("""
    import os, subprocess, time
    import ray
    from ragmem.distributed import ray_session
    bystander = subprocess.Popen(["sleep", "600"])  # the driver's own, not Ray's
    with ray_session(None):
        @ray.remote
        def pid():
            return os.getpid()
        ray.get([pid.remote() for _ in range(4)])  # workers started
        print("ready", bystander.pid, flush=True)
        time.sleep(600)
""")
GONE_WITHIN_S = 15.0  # Ray's own fate sharing leaves its agents a minute or more


def processes_under(pid: int) -> dict[tuple[int, int], str]:
    """Every live process under ``pid`` -> its command line, by (pid, start time)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))):
            children.setdefault(stat[0], []).append(int(entry.name))
    out, todo = {}, list(children.get(pid, []))
    while todo:
        child = todo.pop()
        if (stat := _stat(child)) is not None:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
            out[(child, stat[1])] = cmdline.decode(errors="replace").strip()
        todo += children.get(child, [])
    return out


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent, start time) of a live process; None when gone (or a zombie: dead, only
    not yet waited for)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = text[text.rindex(b")") + 2:].split()
    return None if fields[0] == b"Z" else (int(fields[1]), int(fields[19]))


def survivors(started: dict[tuple[int, int], str], within_s: float) -> list[str]:
    """Of ``started``, what still runs after up to ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while True:
        alive = [cmd for (pid, start), cmd in started.items()
                 if (stat := _stat(pid)) is not None and stat[1] == start]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """A driver with a local Ray, and the pid of a process of its own it started first."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    with open(tmp_path / "driver.err", "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", DRIVER], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=err, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    if line[:1] != ["ready"]:
        proc.kill()
        proc.wait()
        pytest.fail("the driver did not start a local Ray: "
                    + (tmp_path / "driver.err").read_text()[-1500:])
    yield proc, int(line[1])
    bystander = line[1]
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    try:
        os.kill(int(bystander), signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_a_local_ray_dies_with_a_driver_killed_with_sigkill(
        driver: tuple[subprocess.Popen[str], int]) -> None:
    proc, bystander = driver
    started = processes_under(proc.pid)
    names = " ".join(started.values())
    assert "raylet" in names and "ray::" in names, names
    proc.kill()  # SIGKILL: no finally, no atexit
    proc.wait()
    ray = {key: cmd for key, cmd in started.items() if key[0] != bystander}
    assert survivors(ray, GONE_WITHIN_S) == []
    # Only what Ray started: a process the driver had started itself is left alone.
    assert [cmd for key, cmd in started.items() if key[0] == bystander] == ["sleep 600"]
    assert survivors({k: v for k, v in started.items() if k[0] == bystander}, 0) \
        == ["sleep 600"]


def test_the_next_run_kills_what_a_run_killed_with_its_watchdog_left(
        driver: tuple[subprocess.Popen[str], int]) -> None:
    from ragmem.distributed.reaper import reap_leftovers, state_dir

    proc, bystander = driver
    started = {k: v for k, v in processes_under(proc.pid).items() if k[0] != bystander}
    watchdogs = [pid for (pid, _), cmd in started.items() if "reaper.py" in cmd]
    assert len(watchdogs) == 1, started
    os.kill(watchdogs[0], signal.SIGKILL)  # both at once: nothing sweeps after them
    proc.kill()
    proc.wait()
    time.sleep(1.0)
    left = survivors(started, 0)
    assert any(cmd.startswith("ray::") for cmd in left), left  # Ray's agents linger
    folder = state_dir()
    assert folder is not None
    reap_leftovers(folder)  # what the next local Ray does before it starts
    assert survivors(started, 2.0) == []
