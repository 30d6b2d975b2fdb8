"""One write queue per index: uploads and deletes run one after another on a worker
thread, through the normal indexer under the index's write lock, while asks go on
reading the last committed state (SQLite WAL; the FAISS snapshot is brought up to date
on the next search). Two uploads to one index queue; neither fails.

    >>> job = queue.submit("index", ["uploads/a.txt"])                  # doctest: +SKIP
    >>> [e.kind for e in job.follow()]                                  # doctest: +SKIP
    ['queued', 'started', 'progress', 'done']
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ragmem.errors import IndexLockedError
from ragmem.serve.errors import status_and_message

if TYPE_CHECKING:
    from ragmem.assistant import Assistant
    from ragmem.indexing import IndexProgress
    from ragmem.memory.base import Memory

# Another process (a `ragmem index` in a shell) holding the lock: wait this long for it.
LOCK_WAIT_S = 60.0
_ids = itertools.count(1)


@dataclass(frozen=True)
class JobEvent:
    """``queued`` (``ahead``: jobs before it), ``started``, ``waiting`` (another process
    writes), ``progress`` (files done of total), then ``done`` or ``error``."""

    kind: str
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.kind, **self.data}


@dataclass
class Job:
    """A write waiting, running or finished; its events so far, for anyone following."""

    kind: Literal["index", "remove"]
    targets: tuple[str, ...]
    id: int = field(default_factory=lambda: next(_ids))
    events: list[JobEvent] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def push(self, kind: str, **data: Any) -> None:
        with self._changed:
            self.events.append(JobEvent(kind, data))
            self._changed.notify_all()

    @property
    def finished(self) -> bool:
        return bool(self.events) and self.events[-1].kind in ("done", "error")

    def follow(self, timeout_s: float | None = None) -> Iterator[JobEvent]:
        """Every event, those to come included, until ``done`` or ``error``."""
        seen = 0
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            with self._changed:
                while seen == len(self.events):
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return
                    self._changed.wait(left)
                new = self.events[seen:]
            seen += len(new)
            yield from new
            if new[-1].kind in ("done", "error"):
                return

    def result(self) -> JobEvent:
        """Wait for the job; its last event (``done`` or ``error``)."""
        events = list(self.follow())
        return events[-1]


class WriteQueue:
    """Runs one index's writes in order on its own thread; ``open_writer`` gives the
    assistant that writes (opened on first use, in that thread)."""

    def __init__(self, open_writer: Callable[[], Assistant]) -> None:
        self._open_writer = open_writer
        self._writer: Assistant | None = None
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()
        self.running: Job | None = None

    def submit(self, kind: Literal["index", "remove"], targets: Sequence[str | Path]) -> Job:
        job = Job(kind, tuple(str(t) for t in targets))
        job.push("queued", ahead=self._jobs.qsize() + (self.running is not None))
        with self._start:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ragmem-writes",
                                                daemon=True)
                self._thread.start()
        self._jobs.put(job)
        return job

    def close(self, timeout_s: float = 30.0) -> None:
        """Finish the running write (a write is one transaction), drop the waiting ones,
        and close the writer: its lock is released."""
        while True:
            try:
                waiting = self._jobs.get_nowait()
            except queue.Empty:
                break
            if waiting is not None:
                waiting.push("error", status=503, error="the server stopped before this "
                                                        "write started; send it again")
        self._jobs.put(None)
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            self.running = job
            try:
                job.push("started")
                job.push("done", **self._write(job))
            except BaseException as exc:  # a job's failure is its own, never the queue's
                status, message, _ = status_and_message(exc)
                job.push("error", status=status, error=message)
            finally:
                self.running = None
        if self._writer is not None:
            self._writer.close()

    def _write(self, job: Job) -> dict[str, Any]:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                return self._write_once(job)
            except IndexLockedError:
                if time.monotonic() > deadline:
                    raise
                job.push("waiting", reason="another process is writing to this index")
                time.sleep(1.0)

    def _write_once(self, job: Job) -> dict[str, Any]:
        if self._writer is None:
            self._writer = self._open_writer()
        if job.kind == "remove":
            return {"removed": self._writer.remove(list(job.targets))}

        def progress(p: IndexProgress) -> None:
            job.push("progress", files_done=p.files_done, files_total=p.files_total,
                     current=Path(p.current).name if p.current else "")

        stats = self._writer.index(list(job.targets), progress=progress)
        out = asdict(stats)
        out["failed"] = [{"where": Path(w).name, "reason": r} for w, r in stats.failed]
        out["doc_ids"] = stored_ids(self._writer.memory, job.targets)
        return out


def stored_ids(memory: Memory, files: Sequence[str]) -> list[str]:
    """The ids of the documents that ``files`` hold, in the files' order (a .jsonl's
    records by id): what the API names them by, which is the file's name unless another
    file held that id already (then ``uploads/x.txt``: ``ragmem.documents.discovery``)."""
    order = {os.path.abspath(f): i for i, f in enumerate(files)}
    return [doc_id for _, doc_id in sorted((order[d.path], d.doc_id)
                                           for d in memory.documents() if d.path in order)]
