"""kill -9 a real writer process at random moments: the index must open with the old or
the new contents of a write, never a mix, and never vectors without their text."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ragmem.memory import LongTermMemory
from ragmem.memory.check import check
from ragmem.memory.faiss.docstore import Docstore
from tests.memory.test_check import TEST

WRITER = textwrap.dedent("""
    import sys, numpy as np
    from pathlib import Path
    from ragmem.memory import LongTermMemory
    from tests.memory.test_crash import ROUNDS, round_docs
    from tests.memory.test_store import make_doc
    import faiss  # noqa: F401 - loaded lazily by the first write otherwise
    path = Path(sys.argv[1])
    print("ready", flush=True)  # imports done: the kill clock starts now
    memory = LongTermMemory.create(path, embedder="test", dim=16, chunking={})
    done = {d.doc_id for d in memory.docstore.documents()}
    start = int(memory.docstore.get_meta("round", "0"))
    for r in range(start, ROUNDS):
        with memory.writer() as w:
            for doc_id in sorted(done):
                if hash_round(doc_id) == r % 3:
                    w.remove(doc_id)
            for doc_id, n, seed in round_docs(r):
                w.add(*make_doc(doc_id, n, seed))
            memory.docstore.set_meta("round", str(r + 1))
        done = {d.doc_id for d in memory.docstore.documents()}
""").replace("hash_round(doc_id)", "int(doc_id.split('-')[1]) % 3")


ROUNDS = 400


def round_docs(r: int) -> list[tuple[str, int, int]]:
    # Round r (re)writes documents r-0..r-2 and updates one older document in place.
    docs = [(f"d-{r}-{i}", 900 + 37 * i, 1000 * r + i) for i in range(3)]
    if r:
        docs.append((f"d-{r - 1}-0", 50, 7 + r))
    return docs


def expected_states() -> list[dict[str, str]]:
    """The committed states a reader may see: after round 0, 1, 2, ..."""
    states: list[dict[str, str]] = [{}]
    docs: dict[str, str] = {}
    for r in range(ROUNDS):
        for doc_id in sorted(docs):
            if int(doc_id.split("-")[1]) % 3 == r % 3:
                del docs[doc_id]
        for doc_id, _, seed in round_docs(r):
            docs[doc_id] = f"h{seed}"
        states.append(dict(docs))
    return states


def start_writer(path: Path, root: Path) -> subprocess.Popen[str]:
    """The writer, once its imports are done: on a loaded machine they alone can take
    seconds, and a kill before them tests nothing."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=root,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def committed_round(path: Path) -> int:
    if not (path / "manifest.json").exists():
        return -1
    store = Docstore(path / "docstore.sqlite", readonly=True)
    try:
        return int(store.get_meta("round", "0") or 0)
    finally:
        store.close()


def wait_for_round(path: Path, proc: subprocess.Popen[str], target: int) -> None:
    """Until the writer has committed round ``target``: kills then land at rounds the
    test chooses, however fast or slow the machine is."""
    deadline = time.time() + 300
    while committed_round(path) < target:
        assert proc.poll() is None and time.time() < deadline, "the writer made no progress"
        time.sleep(0.02)


@pytest.mark.slow  # a kill -9 loop over real writes: ~15 s
def test_kill_9_at_random_points_leaves_old_or_new(tmp_path: Path) -> None:
    rng = random.Random(1234)
    path = tmp_path / "idx"
    states = expected_states()
    root = Path(__file__).resolve().parents[2]
    seen_rounds = set()
    for attempt in range(10):
        proc = start_writer(path, root)
        if attempt == 0:
            time.sleep(rng.uniform(0.0, 0.05))  # likely while the index is first created
        else:
            wait_for_round(path, proc, committed_round(path) + rng.randint(0, 2))
            time.sleep(rng.uniform(0.0, 0.3))  # then somewhere inside the next write
        proc.kill()
        proc.wait()
        if not (path / "manifest.json").exists():
            continue  # killed before the index existed at all: the next create clears it
        report = check(path, TEST)
        memory = LongTermMemory.open(path)
        got = {d.doc_id: d.content_hash for d in memory.docstore.documents()}
        rounds = int(memory.docstore.get_meta("round", "0") or 0)
        seen_rounds.add(rounds)
        assert got == states[rounds], f"mixed state after round {rounds}"
        ids = sorted(memory.vectors.ids().tolist())
        assert ids == memory.docstore.window_ids().tolist()  # no vector without its text
        # Manifest counts may lag one write behind a kill: check brings them up to date.
        assert report.ok, report.problems
        memory.close()
    assert len(seen_rounds) > 3, "the kills should land at several different rounds"


def test_reader_keeps_answering_while_a_writer_runs(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    LongTermMemory.create(path, embedder="test", dim=16, chunking={}).close()
    root = Path(__file__).resolve().parents[2]
    proc = start_writer(path, root)
    reader = LongTermMemory.open(path)
    answered, sizes = 0, []
    import numpy as np

    q = np.ones((1, 16), dtype=np.float32) / 4
    deadline = time.time() + 300  # until the writer has committed twice, on any machine
    while committed_round(path) < 2 and time.time() < deadline:
        hits = reader.search(q, 5)[0]
        for h in hits:  # every hit comes with its text
            assert h.text.startswith("Sentence")
        sizes.append(reader.vectors.ntotal)
        answered += 1
    proc.kill()
    proc.wait()
    assert answered > 20 and max(sizes) > 0
    json.dumps(sizes)
