"""What verifying the FAISS snapshot costs when an index opens, at 1M windows.

    python -m eval.bench.open_check --windows 1000000 --dir /tmp/ragmem-open-1m \\
        --out eval/reports/open-check-1m.md

Builds (once; kept in --dir and reused) an index of N windows through the real store
(``LongTermMemory.create``, ``memory.writer()``, ``Writer.add``) with the synthetic
corpus of ``synthetic.py`` (real docstore rows, clustered 384-d vectors), as
``scale.py`` does for eval/reports/scale-1m.md. Then, each in a fresh process, times
``LongTermMemory.open`` (until its FAISS index is loaded) in four ways, median of --runs:

- ``checked``: as shipped: the file's recorded state is compared (one stat);
- ``unchecked``: the snapshot check replaced by nothing (what open cost before);
- ``checked, file state changed``: as after a copy or restore of the folder, when the
  whole file is hashed (sha256) before FAISS reads it;
- the same three with ``mmap`` (readers of large indexes).

The page cache is warm (the index was just built or read); the check's stat does not
depend on it, the full hash and FAISS's read do.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import faiss

from eval.bench.synthetic import Clusters, Corpus
from ragmem.config import IndexConfig
from ragmem.memory import LongTermMemory

DIM = 384
MODES = {"checked": "", "unchecked": "unchecked", "state changed": "stale"}


def build(directory: Path, windows: int, txn_windows: int) -> float:
    """The index, written in transactions of ``txn_windows``, each ending in a snapshot
    (so opening replays no change log: what is timed is the snapshot alone)."""
    t0 = time.perf_counter()
    corpus = Corpus(Clusters.make(2000, DIM, seed=0), seed=0)
    memory = LongTermMemory.create(
        directory, embedder="synthetic-clusters", dim=DIM,
        chunking={"window_tokens": 256, "overlap_sentences": 1},
        config=IndexConfig(use_gpu=False, snapshot_min_changes=0, snapshot_share=0.0))
    docs, n = corpus.documents(), 0
    while n < windows:
        with memory.writer() as writer:
            added = 0
            while n < windows and added < txn_windows:
                doc = next(docs)
                writer.add(*doc)
                added += len(doc[2])
                n += len(doc[2])
        print(f"  {n:,} windows, {memory.manifest.index_factory}, "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
    memory.close()
    return time.perf_counter() - t0


def one_open(directory: Path, mode: str, mmap: bool) -> float:
    """One timed open in this process (called in a fresh one by ``main``)."""
    import ragmem.memory.faiss.snapshot
    import ragmem.memory.faiss.store

    if mode == "unchecked":
        ragmem.memory.faiss.store.verify_snapshot = lambda *args: True  # type: ignore[assignment]
    elif mode == "stale":  # as if the folder had been copied: the state never matches
        ragmem.memory.faiss.snapshot.file_state = lambda path: "copied"  # type: ignore[assignment]
    t0 = time.perf_counter()
    memory = LongTermMemory.open(directory, config=IndexConfig(use_gpu=False, mmap=mmap))
    n = memory.vectors.ntotal  # open has loaded it; this only reads the count
    seconds = time.perf_counter() - t0
    memory.close()
    assert n > 0
    return seconds


def check_alone(directory: Path, repeats: int) -> tuple[float, float]:
    """The check by itself: (state compared, median seconds; whole file hashed)."""
    from ragmem.memory.faiss.files import open_docstore
    from ragmem.memory.faiss.snapshot import NAME, file_sha256, verify_snapshot

    store = open_docstore(directory, readonly=True)
    name = store.get_meta(NAME)
    assert name is not None
    stat = []
    for _ in range(1000):
        t0 = time.perf_counter()
        assert verify_snapshot(store, directory, name)
        stat.append(time.perf_counter() - t0)
    full = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        file_sha256(directory / name)
        full.append(time.perf_counter() - t0)
    store.close()
    return statistics.median(stat), statistics.median(full)


def cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def fresh(directory: Path, mode: str, mmap: bool) -> float:
    code = ("import sys; from pathlib import Path; from eval.bench.open_check import one_open; "
            "print(one_open(Path(sys.argv[1]), sys.argv[2], sys.argv[3] == '1'))")
    out = subprocess.run([sys.executable, "-c", code, str(directory), mode, str(int(mmap))],
                         capture_output=True, text=True, check=True, cwd=Path.cwd())
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/ragmem-open-1m"))
    parser.add_argument("--txn-windows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    built = None
    if not (args.dir / "manifest.json").exists():
        print(f"building {args.windows:,} windows in {args.dir}", flush=True)
        built = build(args.dir, args.windows, args.txn_windows)
    manifest = json.loads((args.dir / "manifest.json").read_text())
    (snapshot,) = args.dir.glob("vectors-*.faiss")
    rows = []
    for mmap in (False, True):
        times: dict[str, list[float]] = {m: [] for m in MODES}
        for _ in range(args.runs):  # interleaved: drift affects every mode alike
            for name, mode in MODES.items():
                times[name].append(fresh(args.dir, mode, mmap))
        for name in MODES:
            rows.append((name + (", mmap" if mmap else ""), statistics.median(times[name]),
                         min(times[name]), max(times[name])))
            print(f"  {rows[-1][0]:28s} median {rows[-1][1]:.3f} s", flush=True)
    alone = check_alone(args.dir, args.runs)
    report = markdown(args, manifest, snapshot, rows, built, alone)
    print(report)
    if args.out:
        args.out.write_text(report)


def markdown(args: argparse.Namespace, manifest: dict, snapshot: Path,
             rows: list[tuple[str, float, float, float]], built: float | None,
             alone: tuple[float, float]) -> str:
    lines = [
        f"# Verifying the FAISS snapshot on open, at {manifest['counts']['windows']:,} windows",
        "",
        f"`python -m eval.bench.open_check --windows {args.windows} --dir {args.dir} "
        f"--runs {args.runs}`",
        "",
        f"Machine: {cpu()}, {os.cpu_count()} cores, "
        f"no GPU; Python {platform.python_version()}, faiss {faiss.__version__}. "
        f"Index: {manifest['index_factory']}, snapshot {snapshot.name} "
        f"{snapshot.stat().st_size / 2**20:.1f} MiB"
        + (f", built in {built:.0f} s." if built else "."),
        "",
        "| open | median | min | max |",
        "|---|---|---|---|",
        *[f"| {name} | {med:.3f} s | {lo:.3f} s | {hi:.3f} s |" for name, med, lo, hi in rows],
        "",
        f"The check alone (one process, warm): state compared {alone[0] * 1e6:.0f} us "
        f"(median of 1000); whole file hashed {alone[1]:.3f} s (median of {args.runs}).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
