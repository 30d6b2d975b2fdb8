"""Ray ingestion against the local path, side by side: the same files, the same embedder.

    python -m eval.bench.ray_ingest                          # SciFact first 200, fp32
    python -m eval.bench.ray_ingest --limit 1000 --actors 1,2
    python -m eval.bench.ray_ingest --precision fp16 --num-gpus 1   # a GPU machine

The first ``--limit`` SciFact documents (BEIR folder; SciFact by default) are written as
``--shards`` .jsonl files into a temp folder (never into the repo), and each path indexes
them into a new index in a fresh process, so start-up is its own:

- ``local``: ``Assistant.create`` + ``index(files)``: this process reads, chunks, embeds;
- ``ray-aN``: the same with ``engine="ray"`` and N embedding actors on a local Ray of
  every core; ``ray.init`` timed apart. After the run, one more run of a single small
  file measures what every run pays before its first window: Ray Data's start, the
  actors' processes and their model load ("per-run start-up"). The steady rate is the
  windows over the run less that.

Every path reports the time inside ``writer.add`` and the commit (the driver's one
writer: the ceiling of any engine on one index), and the vectors of each Ray index are
compared with the local index's (max abs difference). Writes ``OUT.json`` and ``OUT.md`` (default
eval/reports/scale-out-ray).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from eval.bench.index_throughput import DEFAULT_CORPUS, ROOT, T0, load_corpus, machine, say

WINDOWS_PLAN = 100_000_000  # the scale-out plan's corpus, in windows


# -- one path, in its own process -------------------------------------------------------

def run_one(args: argparse.Namespace) -> dict[str, Any]:
    from ragmem.assistant import Assistant
    from ragmem.config import Config

    config = Config().with_overrides({
        "embedder": {"precision": args.precision, "backend": "torch"},
        "ingest": {"actors": args.actors or None, "num_gpus": args.num_gpus}})
    out: dict[str, Any] = {}
    assistant = Assistant.create(args.index, config)
    _ = assistant.embedder.dim  # the driver's model: both paths load it to create an index
    write_s = _time_writes(assistant)
    if args.run_one == "ray":
        import ray

        t = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        out["ray_init_s"] = time.perf_counter() - t
    t = time.perf_counter()
    stats = assistant.index([args.files], engine=args.run_one)
    out |= {"index_s": time.perf_counter() - t, "total_s": time.perf_counter() - T0,
            "documents": stats.added, "windows": stats.windows, "failed": len(stats.failed),
            "write_s": write_s[0]}
    if args.run_one == "ray":
        import ray

        probe = Assistant.create(Path(args.index).with_name("probe"), config)
        t = time.perf_counter()
        probe.index([args.probe], engine="ray")
        out["per_run_startup_s"] = time.perf_counter() - t
        out["resources"] = {k: v for k, v in ray.cluster_resources().items()
                            if k in ("CPU", "GPU")}
        ray.shutdown()
    return out


def _time_writes(assistant: Any) -> list[float]:
    """Seconds inside ``writer.add`` and the commit, summed: what the driver's one writer
    costs (FAISS + SQLite)."""
    spent = [0.0]
    memory, opened = assistant.memory, assistant.memory.writer

    @contextmanager
    def writer() -> Any:
        with opened() as inner:
            add = inner.add

            def timed_add(*a: Any) -> Any:
                t = time.perf_counter()
                try:
                    return add(*a)
                finally:
                    spent[0] += time.perf_counter() - t

            inner.add = timed_add
            yield inner
            committing = time.perf_counter()
        spent[0] += time.perf_counter() - committing

    memory.writer = writer
    return spent


# -- the comparison -----------------------------------------------------------------------

def write_shards(corpus: dict[str, tuple[str, str]], folder: Path, shards: int) -> Path:
    files = folder / "files"
    files.mkdir()
    ids = list(corpus)
    for s in range(shards):
        part = ids[s::shards]
        if part:
            lines = [json.dumps({"id": d, "title": corpus[d][0], "text": corpus[d][1]})
                     for d in part]
            (files / f"part-{s:03d}.jsonl").write_text("\n".join(lines) + "\n")
    probe = folder / "probe.txt"
    probe.write_text("One small file. It measures what a run costs before its first window.")
    return files


def max_vector_difference(index_a: Path, index_b: Path) -> tuple[float, int]:
    """Max abs difference of the vectors of the same windows in two indexes."""
    import numpy as np

    from ragmem.memory import LongTermMemory

    def vectors(path: Path) -> dict[tuple[str, int, int], Any]:
        memory = LongTermMemory.open(path)
        ids, vecs = (np.concatenate(x) for x in zip(*memory.docstore.iter_vectors(),
                                                   strict=True))
        hits = memory.docstore.hits(ids.tolist(), [0.0] * len(ids))
        out = {(h.doc_id, h.start, h.end): v for h, v in zip(hits, vecs, strict=True)}
        memory.close()
        return out

    a, b = vectors(index_a), vectors(index_b)
    if a.keys() != b.keys():
        return float("inf"), len(a.keys() ^ b.keys())
    return max(float(np.abs(a[k] - b[k]).max()) for k in a), 0


def run_path(args: argparse.Namespace, path: str, actors: int, work: Path) -> dict[str, Any]:
    index = work / f"{path}-a{actors}" / "index"
    cmd = [sys.executable, "-m", "eval.bench.ray_ingest", "--run-one", path,
           "--files", str(work / "files"),
           "--probe", str(work / "probe.txt"), "--index", str(index), "--actors", str(actors),
           "--precision", args.precision] + \
        (["--num-gpus", str(args.num_gpus)] if args.num_gpus is not None else [])
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:], "index": str(index)}
    return json.loads(done.stdout.strip().splitlines()[-1]) | {"index": str(index)}


def summarise(rows: dict[str, dict[str, Any]]) -> None:
    local = rows.get("local", {})
    for row in rows.values():
        if "index_s" not in row:
            continue
        row["docs_per_s"] = round(row["documents"] / row["index_s"], 2)
        row["windows_per_s"] = round(row["windows"] / row["index_s"], 2)
        row["write_windows_per_s"] = round(row["windows"] / max(row["write_s"], 1e-9), 1)
        if local.get("index_s"):
            row["x_local"] = round(local["index_s"] / row["index_s"], 3)
            row["x_local_total"] = round(local["total_s"] / row["total_s"], 3)
        if "per_run_startup_s" in row:
            steady_s = max(row["index_s"] - row["per_run_startup_s"], 1e-9)
            row["steady_windows_per_s"] = round(row["windows"] / steady_s, 2)
            row["windows_per_s_per_actor"] = round(row["steady_windows_per_s"]
                                                   / row["actors"], 2)
            row["startup_s"] = round(row["ray_init_s"] + row["per_run_startup_s"], 2)


def plan(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What 100M windows take at the measured per-actor rate and driver write rate."""
    per_actor = [r["windows_per_s_per_actor"] for r in rows.values()
                 if r.get("actors") == 1 and "windows_per_s_per_actor" in r]
    writes = [r["write_windows_per_s"] for r in rows.values() if "write_windows_per_s" in r]
    if not per_actor:
        return {}
    rate = per_actor[0]
    return {"windows": WINDOWS_PLAN, "windows_per_s_per_cpu_actor": rate,
            "cpu_actor_hours": round(WINDOWS_PLAN / rate / 3600),
            "cpu_actors_for_24h": round(WINDOWS_PLAN / rate / 86400),
            "driver_write_windows_per_s": min(writes),
            "one_writer_hours": round(WINDOWS_PLAN / min(writes) / 3600, 1)}


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [f"# Ray ingestion vs the local path: {report['corpus']} "
             f"(first {report['documents']} documents)", "",
             f"Command: `{report['command']}`", "",
             f"Machine: {m['cpu']}, {m['cores']} cores ({', '.join(m['isa'])}), load average "
             f"at start {m['load_average_at_start'][0]:.1f}; torch {m['torch']}, ray "
             f"{report['ray_version']}.", "",
             f"Config: embedder all-MiniLM-L6-v2 {report['config']['precision']}, "
             f"{report['config']['shards']} .jsonl files, Ray actors "
             f"{report['config']['actors']}, GPUs per actor "
             f"{report['config']['num_gpus']}; every path a fresh process.", "",
             "| path | index s | docs/s | windows/s | x local | total s (process) | "
             "x local (total) | start-up s (init + per run) | steady windows/s | "
             "windows/s per actor | writer windows/s | max abs diff to local |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in report["paths"].items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error']} |")
            continue
        startup = (f"{r['startup_s']} ({r['ray_init_s']:.1f} + {r['per_run_startup_s']:.1f})"
                   if "startup_s" in r else "-")
        lines.append(
            f"| {name} | {r['index_s']:.1f} | {r['docs_per_s']} | {r['windows_per_s']} "
            f"| {r.get('x_local', '')} | {r['total_s']:.1f} | {r.get('x_local_total', '')} "
            f"| {startup} | {r.get('steady_windows_per_s', '-')} "
            f"| {r.get('windows_per_s_per_actor', '-')} | {r['write_windows_per_s']} "
            f"| {r.get('max_abs_diff', '-')} |")
    p = report.get("plan")
    if p:
        lines += ["", f"## For a {p['windows'] / 1e6:.0f}M-window plan (from this run)", "",
                  f"- one CPU actor (1 core, torch fp32): {p['windows_per_s_per_cpu_actor']} "
                  f"windows/s steady -> {p['cpu_actor_hours']:,} actor-hours, or "
                  f"{p['cpu_actors_for_24h']:,} such actors for 24 h;",
                  f"- the driver's one writer (FAISS + SQLite, `writer.add` + commit): "
                  f"{p['driver_write_windows_per_s']} windows/s at its slowest here -> "
                  f"{p['one_writer_hours']} h for all of them through one index."]
    lines += ["", f"GPU actors: {report['gpu_note']}", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS)
    p.add_argument("--limit", type=int, default=200, help="first N documents")
    p.add_argument("--shards", type=int, default=8, help=".jsonl files the documents go to")
    p.add_argument("--actors", default="1", help="Ray runs: embedding actors, comma-separated")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"])
    p.add_argument("--num-gpus", type=float, help="GPUs per actor (a GPU machine: 1)")
    p.add_argument("--no-local", action="store_true", help="skip the local path")
    p.add_argument("--out", type=Path, default=ROOT / "eval/reports/scale-out-ray")
    for hidden in ("--run-one", "--files", "--probe", "--index"):
        p.add_argument(hidden, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.run_one:
        args.actors = int(args.actors)
        print(json.dumps(run_one(args) | {"actors": args.actors}))
        return
    import ray

    actors = [int(a) for a in args.actors.split(",") if a]
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    corpus, _, _ = load_corpus(args.corpus, "test", args.limit)
    report: dict[str, Any] = {
        "corpus": args.corpus.name, "documents": len(corpus), "command": command,
        "machine": machine(), "ray_version": ray.__version__,
        "config": {"precision": args.precision, "shards": args.shards, "actors": actors,
                   "num_gpus": args.num_gpus},
        "gpu_note": ("run with --num-gpus on this machine" if args.num_gpus else
                     "not measured: no GPU was lent to this session; on a GPU machine run "
                     "`python -m eval.bench.ray_ingest --precision fp16 --num-gpus 1`")}
    print(json.dumps({k: report[k] for k in ("command", "config", "machine")}, indent=1),
          file=sys.stderr)
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="ragmem-ray-ingest-") as tmp:
        work = Path(tmp)
        write_shards(corpus, work, args.shards)
        paths = ([] if args.no_local else [("local", 0)]) + [("ray", a) for a in actors]
        for path, n in paths:
            name = path if path == "local" else f"ray-{n}-actor{'s' if n > 1 else ''}"
            say(f"{name} ...")
            rows[name] = run_path(args, path, n, work)
            say(f"{name}: {rows[name].get('index_s', rows[name].get('error'))}")
        if "local" in rows and "index_s" in rows["local"]:
            for name, row in rows.items():
                if name != "local" and "index_s" in row:
                    diff, missing = max_vector_difference(Path(rows["local"]["index"]),
                                                          Path(row["index"]))
                    row["max_abs_diff"] = f"{diff:.1e}" if not missing else \
                        f"{missing} windows differ"
    for row in rows.values():
        row.pop("index", None)
    summarise(rows)
    report["paths"] = rows
    report["plan"] = plan(rows)
    report["seconds"] = round(time.perf_counter() - T0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
