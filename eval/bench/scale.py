"""Long-term memory at scale: build, open, search, recall, delete, update, reopen.

    python -m eval.bench.scale --windows 1000000 --out eval/reports/scale-1m.json

Builds an index of N windows through the real API (``LongTermMemory.create``,
``memory.writer()``, ``Writer.add``) with real docstore rows and synthetic clustered
vectors (see synthetic.py), then measures it from a fresh process. Writes the JSON
given by --out and a Markdown report next to it (same name, .md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from eval.bench.synthetic import Clusters, Corpus
from ragmem.config import IndexConfig
from ragmem.memory import LongTermMemory
from ragmem.memory.faiss.vectors import VectorIndex
from ragmem.types import Filter

DIM = 384
K = 10
T0 = time.perf_counter()


ROOT = Path(__file__).resolve().parents[2]


def say(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:8.1f}s] {msg}", flush=True)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class Timed:
    """Wraps a method on one object (or class) and adds up the seconds spent in it."""

    def __init__(self, owner: object, name: str) -> None:
        self.seconds, self.calls = 0.0, 0
        inner = getattr(owner, name)

        def wrapper(*args: object, **kw: object) -> object:
            t = time.perf_counter()
            try:
                return inner(*args, **kw)
            finally:
                self.seconds += time.perf_counter() - t
                self.calls += 1

        setattr(owner, name, wrapper)


# -- phase 1: build (this process) ------------------------------------------
def build(args: argparse.Namespace, index_dir: Path, work: Path) -> dict:
    clusters = Clusters.make(args.clusters, DIM, seed=args.seed)
    corpus = Corpus(clusters, seed=args.seed)
    memory = LongTermMemory.create(index_dir, embedder="synthetic-clusters", dim=DIM,
                                   chunking={"window_tokens": 256, "overlap_sentences": 1},
                                   config=IndexConfig(use_gpu=False))
    train = Timed(VectorIndex, "train")
    rebuild = Timed(memory, "_build")
    snapshot = Timed(memory, "_write_snapshot")
    docs = corpus.documents()
    n_docs = n_windows = n_txn = 0
    gen_s = add_s = commit_s = 0.0
    while n_windows < args.windows:
        t = time.perf_counter()
        batch = []
        while n_windows < args.windows and (not batch or
                                            sum(len(b[2]) for b in batch) < args.txn_windows):
            doc = next(docs)
            batch.append(doc)
            n_windows += len(doc[2])
        n_docs += len(batch)
        gen_s += time.perf_counter() - t
        t = time.perf_counter()
        with memory.writer() as writer:
            for doc in batch:
                writer.add(*doc)
            t_added = time.perf_counter()
        t_done = time.perf_counter()
        add_s += t_added - t
        commit_s += t_done - t_added
        n_txn += 1
        say(f"build: {n_windows:,} windows in {n_docs:,} docs, {n_txn} transactions, "
            f"index {memory.manifest.index_factory}, store {add_s + commit_s:.1f}s")
    total = add_s + commit_s
    memory.close()
    return {"documents": n_docs, "windows": n_windows, "transactions": n_txn,
            "data_generation_s": gen_s, "rows_and_vectors_s": add_s,
            "after_commit_s": commit_s, "faiss_train_s": train.seconds,
            "faiss_rebuilds": rebuild.calls, "faiss_rebuild_s": rebuild.seconds,
            "snapshots": snapshot.calls, "snapshot_s": snapshot.seconds,
            "total_s": total, "peak_rss_mb": peak_rss_mb()}


def ground_truth(index_dir: Path, queries: np.ndarray) -> np.ndarray:
    """Exact top-k by inner product over every vector in the docstore (numpy, in blocks)."""
    memory = LongTermMemory.open(index_dir, config=IndexConfig(use_gpu=False))
    best_s = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 0), dtype=np.int64)
    for ids, vecs in memory.docstore.iter_vectors(batch=100_000):
        s = np.concatenate([best_s, queries @ vecs.T], axis=1)
        i = np.concatenate([best_i, np.broadcast_to(ids, (len(queries), len(ids)))], axis=1)
        top = np.argsort(-s, axis=1, kind="stable")[:, :K]
        best_s, best_i = np.take_along_axis(s, top, 1), np.take_along_axis(i, top, 1)
    memory.close()
    return best_i


# -- phase 2: measure (a fresh process) -------------------------------------
def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.array(xs) * 1000, q))


def measure(args: argparse.Namespace, index_dir: Path, work: Path) -> dict:
    queries = np.load(work / "queries.npy")
    truth = np.load(work / "truth.npy")
    out: dict = {}
    t = time.perf_counter()
    memory = LongTermMemory.open(index_dir, config=IndexConfig(use_gpu=False))
    out["open_s"] = time.perf_counter() - t
    out["index_type"] = memory.manifest.index_factory
    out["vectors_in_index"] = memory.vectors.ntotal
    say(f"open: {out['open_s']:.2f}s, {out['index_type']}, {out['vectors_in_index']:,} vectors")

    search = {}
    is_ivf = "IVF" in memory.manifest.index_factory
    for nprobe in (args.nprobe if is_ivf else [0]):
        memory.vectors.nprobe = nprobe
        for q in queries[:10]:  # warm up
            memory.search(q[None], K)
        full, faiss_only = [], []
        for q in queries:
            t = time.perf_counter()
            memory.vectors.search(q[None], K)
            faiss_only.append(time.perf_counter() - t)
            t = time.perf_counter()
            memory.search(q[None], K)
            full.append(time.perf_counter() - t)
        _, ids = memory.vectors.search(queries, K)
        recall = float(np.mean([len(set(a) & set(b)) / K
                                for a, b in zip(ids.tolist(), truth.tolist(), strict=True)]))
        search[str(nprobe)] = {"p50_ms": pct(full, 50), "p95_ms": pct(full, 95),
                               "faiss_p50_ms": pct(faiss_only, 50),
                               "faiss_p95_ms": pct(faiss_only, 95), "recall_at_10": recall}
        say(f"search nprobe={nprobe}: p50 {search[str(nprobe)]['p50_ms']:.2f} ms, "
            f"p95 {search[str(nprobe)]['p95_ms']:.2f} ms, recall@10 {recall:.3f}")
    out["search"] = search
    memory.vectors.nprobe = memory.config.nprobe

    t = time.perf_counter()
    memory.docstore.counts()
    out["docstore_counts_s"] = time.perf_counter() - t

    # Delete: a few documents, one writer() each; then their windows must be gone.
    corpus = Corpus(Clusters.make(args.clusters, DIM, seed=args.seed), seed=args.seed)
    n_docs = memory.docstore.counts()["documents"]
    rng = np.random.default_rng(args.seed + 1)
    picks = rng.choice(n_docs, size=2 * args.repeats, replace=False)
    deletes, gone_ok = [], True
    for number in picks[:args.repeats]:
        doc_id = f"doc-{number:07d}.txt"
        ids = memory.docstore.window_ids_matching(Filter(doc_ids=(doc_id,))).tolist()
        own = memory.docstore.vectors(ids[:5], DIM)
        t = time.perf_counter()
        with memory.writer() as writer:
            writer.remove(doc_id)
        deletes.append(time.perf_counter() - t)
        hits = memory.search(own, K)
        gone_ok &= all(h.doc_id != doc_id for row in hits for h in row)
        gone_ok &= not np.isin(ids, memory.vectors.ids()).any()
    out["delete"] = {"median_s": float(np.median(deletes)), "all_s": deletes,
                     "windows_gone": bool(gone_ok)}
    say(f"delete: median {out['delete']['median_s']:.3f}s, windows gone: {gone_ok}")

    # Update: a changed version of a document (Writer.add deletes the old rows first).
    updates, found_ok = [], True
    for number in picks[args.repeats:]:
        doc, sentences, windows, vectors = corpus.document(int(number), version=1)
        t = time.perf_counter()
        with memory.writer() as writer:
            writer.add(doc, sentences, windows, vectors)
        updates.append(time.perf_counter() - t)
        hits = memory.search(vectors[:3], 1)
        found_ok &= all(row and row[0].doc_id == doc.doc_id for row in hits)
    out["update"] = {"median_s": float(np.median(updates)), "all_s": updates,
                     "new_windows_found": bool(found_ok)}
    say(f"update: median {out['update']['median_s']:.3f}s, new windows found: {found_ok}")
    pending = memory.docstore.last_change() - int(memory.docstore.get_meta("snapshot_seq") or 0)
    memory.close()

    t = time.perf_counter()
    memory = LongTermMemory.open(index_dir, config=IndexConfig(use_gpu=False))
    out["reopen_s"] = time.perf_counter() - t
    out["reopen_log_entries"] = pending
    out["reopen_vectors"] = memory.vectors.ntotal
    say(f"reopen after updates: {out['reopen_s']:.2f}s, replayed {pending} log entries")
    memory.close()
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def run_fresh(args: argparse.Namespace, index_dir: Path) -> dict:
    """Run ``measure`` in a new Python process, passing its progress lines through."""
    cmd = [sys.executable, "-m", "eval.bench.scale", "--phase", "measure", "--dir", str(index_dir),
           "--out", str(args.out), "--clusters", str(args.clusters),
           "--nprobe", ",".join(map(str, args.nprobe)), "--repeats", str(args.repeats),
           "--seed", str(args.seed)]
    result = None
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT) as child:
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith("RESULT "):
                result = json.loads(line[7:])
            else:
                print("  (fresh process) " + line, end="", flush=True)
    if child.returncode != 0 or result is None:
        raise SystemExit(f"measure phase failed with exit code {child.returncode}")
    return result


# -- report -----------------------------------------------------------------
def disk_use(index_dir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(index_dir.iterdir()) if p.is_file()}


def machine() -> dict:
    import faiss
    import psutil

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "faiss_threads": faiss.omp_get_max_threads(),
            "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "faiss": faiss.__version__,
            "numpy": np.__version__, "os": platform.platform()}


def markdown(r: dict) -> str:
    b, m = r["build"], r["measure"]
    mb = 2**20
    lines = [
        f"# Long-term memory at {r['config']['windows']:,} windows",
        "",
        f"`{r['command']}`",
        "",
        f"Machine: {r['machine']['cpu']}, {r['machine']['cores']} cores, "
        f"{r['machine']['ram_gb']} GiB RAM, no GPU; faiss {r['machine']['faiss']}.",
        "",
        "Data: synthetic documents of 50-200 windows with real docstore rows (documents, "
        "sentences, windows, text); vectors dim 384, L2-normalised, drawn from a mixture of "
        f"{r['config']['clusters']:,} clusters, each with its own 24-d subspace, plus "
        "isotropic noise, and 5% pure-noise windows. Uniform random vectors would be the "
        "worst case for IVF (no true neighbourhoods) and would understate its recall; real "
        "embeddings are clustered like this, but recall on real data should still be "
        "checked with the real embedder. Queries: "
        f"{r['config']['queries']} points near cluster centres. Exact top-10 by numpy over "
        "every vector in the docstore.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| windows / documents | {b['windows']:,} / {b['documents']:,} |",
        f"| index type (chosen automatically) | `{m['index_type']}` |",
        f"| build total (rows + vectors, FAISS, snapshots) | {b['total_s']:.1f} s |",
        f"| - rows + vectors into SQLite ({b['transactions']} transactions) "
        f"| {b['rows_and_vectors_s']:.1f} s |",
        f"| - after commit: FAISS add, {b['faiss_rebuilds']} rebuild(s), "
        f"{b['snapshots']} snapshot(s) | {b['after_commit_s']:.1f} s |",
        f"| - of which FAISS rebuild (incl. training {b['faiss_train_s']:.1f} s) "
        f"| {b['faiss_rebuild_s']:.1f} s |",
        f"| - of which snapshot writes | {b['snapshot_s']:.1f} s |",
        f"| open (fresh process) | {m['open_s']:.2f} s |",
    ]
    for nprobe, s in m["search"].items():
        label = f"nprobe {nprobe}" if nprobe != "0" else "exact"
        lines.append(f"| search k=10, {label}: p50 / p95 (FAISS only p50) | "
                     f"{s['p50_ms']:.2f} / {s['p95_ms']:.2f} ms ({s['faiss_p50_ms']:.2f} ms) |")
    for nprobe, s in m["search"].items():
        label = f"nprobe {nprobe}" if nprobe != "0" else "exact"
        lines.append(f"| recall@10 vs exact, {label} | {s['recall_at_10']:.3f} |")
    lines += [
        f"| **delete one document** (median of {len(m['delete']['all_s'])}) "
        f"| **{m['delete']['median_s'] * 1000:.0f} ms** "
        f"(windows gone: {m['delete']['windows_gone']}) |",
        f"| **update one document** (delete + add, median of {len(m['update']['all_s'])}) "
        f"| **{m['update']['median_s'] * 1000:.0f} ms** "
        f"(new windows found: {m['update']['new_windows_found']}) |",
        f"| - of which `docstore.counts()` (run on every write) "
        f"| {m['docstore_counts_s'] * 1000:.0f} ms |",
        f"| open after updates ({m['reopen_log_entries']} log entries replayed) "
        f"| {m['reopen_s']:.2f} s |",
        f"| disk total | {sum(r['disk'].values()) / mb:,.0f} MiB |",
    ]
    lines += [f"| - {name} | {size / mb:,.1f} MiB |" for name, size in r["disk"].items()]
    lines += [
        f"| peak RSS, build process | {b['peak_rss_mb']:,.0f} MiB |",
        f"| peak RSS, open + search + writes process | {m['peak_rss_mb']:,.0f} MiB |",
        "",
        "Latencies are single queries (one vector per call), medians/percentiles over the "
        "query set after a 10-query warm-up; `search` includes fetching window rows and "
        "text from SQLite. Delete and update each run in their own `memory.writer()`: "
        "lock, SQLite transaction (fsync), FAISS update from the change log, manifest.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="example: python -m eval.bench.scale --windows 100000 "
                                       "--out /tmp/scale-100k.json")
    p.add_argument("--windows", type=int, default=1_000_000)
    p.add_argument("--out", type=Path, required=True, help="JSON report; .md written beside")
    p.add_argument("--dir", type=Path, help="index folder (default: a temp dir, removed)")
    p.add_argument("--keep", action="store_true", help="keep the index folder")
    p.add_argument("--txn-windows", type=int, default=100_000,
                   help="windows per writer() transaction while building")
    p.add_argument("--clusters", type=int, default=2000)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--nprobe", type=lambda s: [int(x) for x in s.split(",")],
                   default=[8, 16, 32, 64])
    p.add_argument("--repeats", type=int, default=5, help="deletes and updates each")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--phase", choices=["all", "measure"], default="all", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.phase == "measure":  # the fresh process: results as JSON on the last line
        result = measure(args, args.dir, args.dir.parent / "bench")
        print("RESULT " + json.dumps(result), flush=True)
        return

    command = "python " + shlex.join(sys.argv)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    print(f"command: {command}\nconfig: {json.dumps(config)}", flush=True)
    root = Path(tempfile.mkdtemp(prefix="ragmem-scale-")) if args.dir is None else args.dir
    index_dir, work = root / "index", root / "bench"
    if index_dir.exists():
        raise SystemExit(f"{index_dir} exists; pick another --dir or remove it")
    work.mkdir(parents=True, exist_ok=True)
    try:
        say(f"build: {args.windows:,} windows into {index_dir}")
        built = build(args, index_dir, work)
        say(f"build done: {built['total_s']:.1f}s")
        queries = Clusters.make(args.clusters, DIM, seed=args.seed).queries(
            args.queries, seed=args.seed + 7)
        np.save(work / "queries.npy", queries)
        t = time.perf_counter()
        np.save(work / "truth.npy", ground_truth(index_dir, queries))
        say(f"exact top-{K} for {args.queries} queries: {time.perf_counter() - t:.1f}s")
        disk = disk_use(index_dir)
        say("measure: fresh process")
        measured = run_fresh(args, index_dir)
        result = {"command": command, "config": config, "machine": machine(),
                  "build": built, "measure": measured, "disk": disk,
                  "disk_after_updates": disk_use(index_dir)}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        md = markdown(result)
        args.out.with_suffix(".md").write_text(md)
        print("\n" + md, flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
