"""The Milvus store (milvus-lite) against the FAISS store on the same synthetic windows.

    python -m eval.bench.milvus_vs_faiss --windows 100000 --out eval/reports/scale-out-milvus.json

Data: the clustered synthetic corpus of ``scale.py`` (``synthetic.py``: documents of
50-200 windows with real text and offsets, dim-384 clustered vectors), written through
the real API of each store (``create_memory``, ``memory.writer()``, ``add``). Stores:

- ``faiss-default``: what ragmem picks at this size (exact ``IDMap2,Flat`` below 200,000
  windows);
- ``faiss-ivf``: the approximate index ragmem moves to from 200,000 windows
  (``IVF<4 sqrt n>,SQ8``, nprobe 16), forced here at this size;
- ``milvus-lite``: the Milvus store on milvus-lite, ``FLAT`` (its default there).

For each: insert time, open time (close, then open again in this process), search
latency for k=10 (one query vector per call, through ``memory.search``, which returns
hits with their text), recall@10 against exact numpy top-10, BM25 latency
(``lexical_search``, 3-word questions from the corpus vocabulary), delete and update of
one document (each its own ``writer()``), and disk use. Writes the JSON given by --out
and a Markdown report beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from eval.bench.scale import machine, pct
from eval.bench.synthetic import Clusters, Corpus
from ragmem.config import IndexConfig, MilvusConfig
from ragmem.memory import create_memory, open_memory
from ragmem.memory.faiss.vectors import default_factory
from ragmem.memory.milvus import MilvusMemory

DIM = 384
K = 10
T0 = time.perf_counter()
Doc = tuple[Any, Any, Any, np.ndarray]


def say(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:8.1f}s] {msg}", flush=True)


def corpus_docs(corpus: Corpus, windows: int) -> list[Doc]:
    docs: list[Doc] = []
    n = 0
    for doc in corpus.documents():
        if n >= windows:
            return docs
        docs.append(doc)
        n += len(doc[2])
    return docs


def exact_top_k(docs: list[Doc], queries: np.ndarray) -> list[list[tuple[str, int]]]:
    """Exact top-10 by inner product over every window, as (doc_id, window index)."""
    keys = [(d[0].doc_id, w.index) for d in docs for w in d[2]]
    vectors = np.concatenate([d[3] for d in docs])
    scores = queries @ vectors.T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :K]
    return [[keys[i] for i in row] for row in top]


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_store(name: str, root: Path, docs: list[Doc], queries: np.ndarray,
              truth: list[list[tuple[str, int]]], questions: list[str],
              args: argparse.Namespace, corpus: Corpus) -> dict[str, Any]:
    index_dir = root / name
    n_windows = sum(len(d[2]) for d in docs)
    config = IndexConfig(use_gpu=False)
    if name == "faiss-ivf":
        config = IndexConfig(use_gpu=False, factory=default_factory(n_windows, 0))
    elif name == "milvus-lite":
        config = IndexConfig(use_gpu=False, store="milvus")
    milvus = MilvusConfig()
    out: dict[str, Any] = {}

    # Insert: writers of --txn-windows windows each, as scale.py builds.
    t = time.perf_counter()
    memory = create_memory(index_dir, embedder="synthetic-clusters", dim=DIM,
                           chunking={"window_tokens": 256, "overlap_sentences": 1},
                           config=config, milvus=milvus)
    i = 0
    while i < len(docs):
        batch, n = [], 0
        while i < len(docs) and n < args.txn_windows:
            batch.append(docs[i])
            n += len(docs[i][2])
            i += 1
        with memory.writer() as writer:
            for doc in batch:
                writer.add(*doc)
    out["insert_s"] = time.perf_counter() - t
    out["index_type"] = memory.info().index_type
    say(f"{name}: inserted {n_windows:,} windows in {out['insert_s']:.1f}s "
        f"({out['index_type']})")
    memory.close()

    t = time.perf_counter()
    memory = open_memory(index_dir, config=config, milvus=milvus)
    out["open_s"] = time.perf_counter() - t

    for q in queries[:3]:  # warm up
        memory.search(q[None], K)
    latencies, found = [], []
    for q in queries:
        t = time.perf_counter()
        hits = memory.search(q[None], K)[0]
        latencies.append(time.perf_counter() - t)
        found.append([(h.doc_id, h.first) for h in hits])
    out["search"] = {"p50_ms": pct(latencies, 50), "p95_ms": pct(latencies, 95),
                     "queries": len(queries)}
    # The vector index alone: FAISS's search, or one Milvus search request (ids only).
    alone = []
    for q in queries:
        t = time.perf_counter()
        if isinstance(memory, MilvusMemory):
            memory.client.search(memory.names.windows, [q.tolist()], "vector", K, "", ["idx"],
                                 {"metric_type": "IP", "params": {}})
        else:
            memory.vectors.search(q[None], K)  # type: ignore[attr-defined]
        alone.append(time.perf_counter() - t)
    out["search_index_only"] = {"p50_ms": pct(alone, 50), "p95_ms": pct(alone, 95)}
    out["recall_at_10"] = float(np.mean([len(set(a) & set(b)) / K
                                         for a, b in zip(found, truth, strict=True)]))
    say(f"{name}: search p50 {out['search']['p50_ms']:.1f} ms, p95 "
        f"{out['search']['p95_ms']:.1f} ms, recall@10 {out['recall_at_10']:.3f}")

    memory.lexical_search(questions[0], K)  # warm up
    lexical = []
    for question in questions:
        t = time.perf_counter()
        memory.lexical_search(question, K)
        lexical.append(time.perf_counter() - t)
    out["lexical"] = {"p50_ms": pct(lexical, 50), "p95_ms": pct(lexical, 95),
                      "questions": len(questions)}
    say(f"{name}: BM25 p50 {out['lexical']['p50_ms']:.1f} ms")

    t = time.perf_counter()
    memory.counts()
    out["counts_s"] = time.perf_counter() - t

    rng = np.random.default_rng(args.seed + 1)
    picks = rng.choice(len(docs), size=2 * args.repeats, replace=False)
    deletes, updates, ok = [], [], True
    for number in picks[:args.repeats]:
        doc_id = docs[number][0].doc_id
        t = time.perf_counter()
        with memory.writer() as writer:
            writer.remove(doc_id)
        deletes.append(time.perf_counter() - t)
        ok &= all(h.doc_id != doc_id for h in memory.search(docs[number][3][:1], K)[0])
    for number in picks[args.repeats:]:
        doc, sentences, windows, vectors = corpus.document(int(number), version=1)
        t = time.perf_counter()
        with memory.writer() as writer:
            writer.add(doc, sentences, windows, vectors)
        updates.append(time.perf_counter() - t)
        ok &= memory.search(vectors[:1], 1)[0][0].doc_id == doc.doc_id
    out["delete_s"] = {"median": float(np.median(deletes)), "all": deletes}
    out["update_s"] = {"median": float(np.median(updates)), "all": updates}
    out["writes_visible_to_next_search"] = bool(ok)
    say(f"{name}: delete {out['delete_s']['median'] * 1000:.0f} ms, update "
        f"{out['update_s']['median'] * 1000:.0f} ms (median of {args.repeats}), "
        f"visible at once: {ok}")
    memory.close()
    out["disk_bytes"] = folder_bytes(index_dir)
    return out


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in ("pymilvus", "milvus-lite", "faiss-cpu")}


def markdown(r: dict[str, Any]) -> str:
    c, m, s = r["config"], r["machine"], r["stores"]
    names = list(s)
    mib = 2**20

    def row(label: str, fmt: Any) -> str:
        return f"| {label} | " + " | ".join(fmt(s[n]) for n in names) + " |"

    lines = [
        f"# Milvus store vs FAISS store at {r['windows']:,} windows",
        "",
        f"`{r['command']}`",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores (shared with other work), {m['ram_gb']} "
        f"GiB RAM, no GPU, load average {r['load_average']:.1f} when it started; Python "
        f"{m['python']}; faiss {r['versions']['faiss-cpu']} ({c['threads']} OpenMP "
        f"thread(s)), pymilvus {r['versions']['pymilvus']}, milvus-lite "
        f"{r['versions']['milvus-lite']}.",
        "",
        f"Config: {json.dumps(c)}",
        "",
        "Data: the synthetic corpus of `eval/bench/scale.py` (`synthetic.py`, reused as is): "
        f"{r['documents']:,} documents of 50-200 windows with real text and offsets; vectors "
        f"dim {DIM}, L2-normalised, from {c['clusters']:,} clusters with their own 24-d "
        f"subspaces plus noise. {c['queries']} query vectors near cluster centres; exact "
        "top-10 by numpy over every window. BM25: "
        f"{c['questions']} 3-word questions from the corpus vocabulary.",
        "",
        "| measure | " + " | ".join(f"`{n}`" for n in names) + " |",
        "|---|" + "---|" * len(names),
        row("index type", lambda x: f"`{x['index_type']}`"),
        row(f"insert {r['windows']:,} windows (writers of {c['txn_windows']:,})",
            lambda x: f"{x['insert_s']:.1f} s"),
        row("open (close, then open again)", lambda x: f"{x['open_s']:.2f} s"),
        row("**search k=10: p50 / p95**",
            lambda x: f"**{x['search']['p50_ms']:.1f} / {x['search']['p95_ms']:.1f} ms**"),
        row("- of which the vector index alone: p50 / p95",
            lambda x: f"{x['search_index_only']['p50_ms']:.1f} / "
                      f"{x['search_index_only']['p95_ms']:.1f} ms"),
        row("**recall@10 vs exact**", lambda x: f"**{x['recall_at_10']:.3f}**"),
        row("BM25 (`lexical_search`) k=10: p50 / p95",
            lambda x: f"{x['lexical']['p50_ms']:.1f} / {x['lexical']['p95_ms']:.1f} ms"),
        row(f"delete one document (median of {c['repeats']})",
            lambda x: f"{x['delete_s']['median'] * 1000:.0f} ms"),
        row(f"update one document (median of {c['repeats']})",
            lambda x: f"{x['update_s']['median'] * 1000:.0f} ms"),
        row("a write visible to the next search",
            lambda x: str(x["writes_visible_to_next_search"])),
        row("`counts()` (run by every write)", lambda x: f"{x['counts_s'] * 1000:.0f} ms"),
        row("disk", lambda x: f"{x['disk_bytes'] / mib:,.0f} MiB"),
        "",
        "Search latency is one query vector per call through `memory.search`, which "
        "returns hits with their text (the Milvus store also reads which documents are "
        "live: one more request), after a 3-query warm-up. Delete and update each run in "
        "their own `memory.writer()`; on milvus-lite that includes a flush (see below).",
        "",
        "## Findings (written by hand after the run)",
        "",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--windows", type=int, default=100_000)
    p.add_argument("--out", type=Path, required=True, help="JSON report; .md written beside")
    p.add_argument("--stores", default="faiss-default,faiss-ivf,milvus-lite")
    p.add_argument("--txn-windows", type=int, default=20_000)
    p.add_argument("--clusters", type=int, default=2000)
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--questions", type=int, default=30)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="FAISS OpenMP threads (on a busy 2-core machine 2 threads spin: "
                        "~12 ms for a flat search of 8,000 vectors against ~1 ms with 1)")
    p.add_argument("--dir", type=Path, help="work folder (default: a temp dir, removed)")
    args = p.parse_args()
    command = "python " + shlex.join(sys.argv)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    print(f"command: {command}\nconfig: {json.dumps(config)}", flush=True)

    import faiss

    faiss.omp_set_num_threads(args.threads)
    load = os.getloadavg()[0]
    clusters = Clusters.make(args.clusters, DIM, seed=args.seed)
    corpus = Corpus(clusters, seed=args.seed)
    docs = corpus_docs(corpus, args.windows)
    n_windows = sum(len(d[2]) for d in docs)
    queries = clusters.queries(args.queries, seed=args.seed + 7)
    truth = exact_top_k(docs, queries)
    rng = np.random.default_rng(args.seed + 3)
    words = sorted({w.lower().strip(".") for s in corpus.sentences[:2000] for w in s.split()})
    questions = [" ".join(rng.choice(words, size=3)) for _ in range(args.questions)]
    say(f"data: {n_windows:,} windows in {len(docs):,} documents; exact top-{K} done")

    root = args.dir or Path(tempfile.mkdtemp(prefix="ragmem-milvus-bench-"))
    stores: dict[str, Any] = {}
    try:
        for name in args.stores.split(","):
            stores[name] = run_store(name, root, docs, queries, truth, questions, args,
                                     corpus)
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    result = {"command": command, "config": config, "machine": machine(),
              "versions": versions(), "windows": n_windows, "documents": len(docs),
              "os": platform.platform(), "load_average": load, "stores": stores}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    md = args.out.with_suffix(".md")
    if md.exists():  # keep the hand-written findings of an earlier run
        old = md.read_text()
        keep = old.split("## Findings (written by hand after the run)\n", 1)
        md.write_text(markdown(result) + (keep[1].lstrip("\n") if len(keep) == 2 else ""))
    else:
        md.write_text(markdown(result))
    print("\n" + md.read_text(), flush=True)


if __name__ == "__main__":
    main()
