"""A local Ray that dies with the process that started it (Linux).

``ray.init()`` with no cluster to join starts one here: gcs_server, the raylet, the
dashboard, the monitor and log monitor, and under the raylet two agents (dashboard and
runtime env) and the workers. Ray binds gcs_server and the raylet to the driver (the
kernel kills them with it), and the workers leave with their raylet; but after a
``kill -9`` of the driver the two agents, seeing the raylet gone, wait on the dead GCS
to report it, and outlive the driver by a minute or more (60-80 s measured with Ray
2.60; 13 s and counting in issue 21).

So a local Ray that ragmem starts is watched (``LocalRay``):

- before ``ray.init``, a watchdog: this file run as a script (the standard library
  alone, so it starts in a blink), in a session of its own (a signal to the driver's
  process group leaves it standing). It holds the read end of a pipe the driver never
  writes to, and the pipe ends when the driver does, however it ends;
- what Ray starts is marked: a token in the environment while ``ray.init`` runs (every
  process Ray starts inherits it, the workers started later included), and the
  processes that appeared under the driver while it ran, by pid and start time (the
  agents overwrite their environment when they set their titles). A process the
  driver's other threads start during ``ray.init`` would be marked too;
- when the pipe ends, the watchdog kills what is marked (SIGKILL: what a dead driver's
  Ray holds is of no use to anyone) and removes the record.

The record (``<tmp>/ragmem-<uid>/ray/<token>.json``, in a 0700 folder) outlives a
watchdog that was killed too (a kill of its session, the OOM killer): the next local Ray
ragmem starts kills what the records of dead drivers name (``reap_leftovers``). Only
processes started by a ragmem driver are named: a cluster of the user's (``ray start``,
``RAY_ADDRESS``) is joined, never started, and carries no token.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType

TOKEN = "RAGMEM_RAY_OWNER"  # the environment variable that marks a local Ray's processes
PROC = Path("/proc")
KILL_FOR_S = 5.0  # how long a sweep keeps killing what is marked (a worker mid-spawn)
WATCHDOG_EXIT_S = 5.0  # how long a driver that ends well waits for its watchdog's sweep

Process = tuple[int, int]  # pid, start time (clock ticks after boot): reused pids differ


@dataclass(frozen=True)
class Record:
    """What a watchdog, or the next run, needs to kill a local Ray: the token its
    processes carry, the driver (while it lives, the Ray is its own), and the processes
    Ray had started when ``ray.init`` returned."""

    token: str
    driver: Process
    processes: tuple[Process, ...] = ()


def supported() -> bool:
    return sys.platform.startswith("linux") and PROC.is_dir()


def state_dir() -> Path | None:
    """Where records live: a folder of this user's alone, or None (another user owns
    it: records there could not be trusted, and leftovers are then not swept)."""
    folder = Path(tempfile.gettempdir()) / f"ragmem-{os.getuid()}" / "ray"
    try:
        folder.parent.mkdir(mode=0o700, exist_ok=True)
        folder.mkdir(mode=0o700, exist_ok=True)
        for part in (folder.parent, folder):
            info = part.lstat()
            if info.st_uid != os.getuid() or info.st_mode & 0o077:
                return None
    except OSError:
        return None
    return folder


class LocalRay:
    """The watch over one local Ray: enter before ``ray.init``, call ``started()`` when
    it returns, leave after ``ray.shutdown()``. Does nothing where ``supported()`` is
    false."""

    def __init__(self) -> None:
        self.record: Path | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._before: set[Process] = set()  # the driver's own children: never Ray's

    def __enter__(self) -> LocalRay:
        folder = state_dir() if supported() else None
        if folder is None:
            return self
        reap_leftovers(folder)
        token = f"{os.getpid()}-{secrets.token_hex(8)}"
        self.record = folder / f"{token}.json"
        _write(self.record, Record(token, _identity(os.getpid())))
        self._watchdog = subprocess.Popen(
            [sys.executable, "-S", __file__, str(self.record)], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            env={k: v for k, v in os.environ.items() if k != TOKEN})
        self._before = set(descendants(os.getpid()))
        os.environ[TOKEN] = token
        return self

    def started(self) -> None:
        """``ray.init`` returned: no later child of the driver is Ray's; the processes it
        started are written down (see the module docstring)."""
        os.environ.pop(TOKEN, None)
        if self.record is None or self._watchdog is None:
            return
        mine = tuple(p for p in descendants(os.getpid()) if p not in self._before)
        record = _read(self.record)
        if record is not None:
            _write(self.record, replace(record, processes=mine))

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        os.environ.pop(TOKEN, None)
        if self._watchdog is None:
            return
        assert self._watchdog.stdin is not None
        self._watchdog.stdin.close()  # what a dead driver's pipe does: the watchdog sweeps
        try:
            self._watchdog.wait(timeout=WATCHDOG_EXIT_S)
        except subprocess.TimeoutExpired:
            pass  # it goes on alone; its record stays for the next run until it is done


def reap_leftovers(folder: Path) -> None:
    """Kill what the records of dead drivers name (their watchdogs died with them)."""
    for path in folder.glob("*.json"):
        record = _read(path)
        if record is None or not alive(record.driver):
            sweep(path)


def sweep(path: Path) -> None:
    """Kill every process the record at ``path`` marks, until none is left (or for
    ``KILL_FOR_S``), then remove the record."""
    record = _read(path)
    if record is not None:
        deadline = time.monotonic() + KILL_FOR_S
        while (marked := _marked(record)) and time.monotonic() < deadline:
            for pid in marked:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.05)
    path.unlink(missing_ok=True)


def _marked(record: Record) -> list[int]:
    """Live processes carrying the record's token, or written down in it; never this
    process, nor the driver."""
    token = f"{TOKEN}={record.token}\0".encode()
    listed = set(record.processes)
    spared = {os.getpid(), record.driver[0]}
    out = []
    for pid in _pids():
        if pid in spared:
            continue
        if _identity(pid) in listed or token in _environ(pid):
            out.append(pid)
    return out


def descendants(pid: int) -> list[Process]:
    """Every live process under ``pid``, children of children included."""
    children: dict[int, list[int]] = {}
    for child in _pids():
        parent = _stat(child)
        if parent is not None:
            children.setdefault(parent[0], []).append(child)
    out, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        identity = _identity(child)
        if identity[1]:
            out.append(identity)
        todo += children.get(child, [])
    return out


def _pids() -> Iterator[int]:
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            yield int(entry.name)


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) from /proc/PID/stat, or None if it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    fields = text[text.rindex(b")") + 2:].split()  # after "pid (comm) "
    if fields[0] == b"Z":
        return None  # a zombie is dead already: only its parent's wait is missing
    return int(fields[1]), int(fields[19])


def _identity(pid: int) -> Process:
    stat = _stat(pid)
    return (pid, stat[1] if stat else 0)


def alive(process: Process) -> bool:
    """Whether this very process (pid and start time: not a reused pid) still runs."""
    return process[1] != 0 and _identity(process[0]) == process


def command_line(pid: int) -> str:
    """The process's command line, its arguments joined by spaces ("" if it is gone)."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _environ(pid: int) -> bytes:
    try:
        return (PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return b""


def _read(path: Path) -> Record | None:
    """The record at ``path``; None if it is gone or not one (never written whole)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Record(str(data["token"]), _process(data["driver"]),
                      tuple(_process(p) for p in data["processes"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _process(value: object) -> Process:
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError(f"not a [pid, start time]: {value!r}")
    return int(value[0]), int(value[1])


def _write(path: Path, record: Record) -> None:
    """Whole or not at all (a temporary file renamed), 0600."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"token": record.token, "driver": record.driver,
                   "processes": record.processes}, f)
    os.replace(tmp, path)


def _watch(path: Path) -> None:
    """The watchdog: wait for the driver's pipe to end, then sweep its record."""
    while sys.stdin.buffer.read(4096):
        pass
    sweep(path)


if __name__ == "__main__":
    _watch(Path(sys.argv[1]))
