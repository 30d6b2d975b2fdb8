"""Retrieve latency for short and long questions, and what bounding BM25's terms buys.

    python -m eval.bench.query_latency INDEX                  # e.g. an eval-scifact-* index
    python -m eval.bench.query_latency INDEX --queries 50 --terms none,32,16
    python -m eval.bench.query_latency FP32_INDEX INT8_INDEX --terms 64   # precisions

INDEX is any ragmem index (the SciFact one that `ragmem eval retrieval` or
`eval.bench.index_throughput --keep-indexes` builds, for the committed report); several
are timed side by side, each with the query embedder of its own precision. Questions:

- **10 words**: the first 10 words of each SciFact claim (queries.jsonl beside the corpus
  given by ``--beir``);
- **200 words**: 200 consecutive words of SQuAD dev paragraphs (held out from SciFact).

For each index and ``--terms`` setting (``RetrievalConfig.lexical_terms``: BM25 searched by the N
most informative terms; ``none`` = every term) and each question length it times
``Retriever.retrieve`` in hybrid mode (default config otherwise), and inside it: query
embedding, FAISS search, FTS5 search. Settings run interleaved, query by query, so the
machine's load hits them alike. Writes OUT.json and OUT.md (default
eval/reports/query-latency).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DATASETS = ROOT.parent / "shared" / "datasets"


def questions(n: int, beir: Path, squad: Path) -> dict[str, list[str]]:
    claims = [json.loads(line)["text"] for line in (beir / "queries.jsonl").open()]
    short = [" ".join(c.split()[:10]) for c in claims if len(c.split()) >= 10][:n]
    words: list[str] = []
    for article in json.loads(squad.read_text())["data"]:
        for paragraph in article["paragraphs"]:
            words += paragraph["context"].split()
    long = [" ".join(words[i * 200:(i + 1) * 200]) for i in range(n)]
    return {"10 words": short, "200 words": long}


class Clock:
    """Adds up the seconds spent in one method of one object."""

    def __init__(self, owner: Any, name: str) -> None:
        self.s = 0.0
        inner = getattr(owner, name)

        def timed(*args: Any, **kw: Any) -> Any:
            t = time.perf_counter()
            try:
                return inner(*args, **kw)
            finally:
                self.s += time.perf_counter() - t

        setattr(owner, name, timed)


def pct(values: list[float], q: float) -> float:
    from ragmem.evaluation.metrics import percentile

    return round(1000 * percentile(values, q), 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("index", nargs="+")
    p.add_argument("--beir", type=Path, default=DATASETS / "scifact")
    p.add_argument("--squad", type=Path, default=DATASETS / "squad_v1.1_dev/dev-v1.1.json")
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--terms", default="none,32,16")
    p.add_argument("--out", type=Path, default=ROOT / "eval/reports/query-latency")
    args = p.parse_args()
    from ragmem.assistant import Assistant
    from ragmem.config import Config

    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    terms_settings = [None if t == "none" else int(t) for t in args.terms.split(",")]
    qs = questions(args.queries, args.beir, args.squad)
    opened = []
    names = [Path(i).name for i in args.index]
    if len(set(names)) < len(names):  # same folder names: tell them apart by their parents
        names = [f"{Path(i).resolve().parent.name}/{Path(i).name}" for i in args.index]
    label = dict(zip(args.index, names, strict=True))
    for index in args.index:
        assistant = Assistant.open(index, Config())
        clocks = (Clock(assistant.embedder, "embed"), Clock(assistant.memory, "search"),
                  Clock(assistant.memory, "lexical_search"))
        for q in qs["10 words"][:5]:  # load the model and warm the caches, off the clock
            assistant.retriever.retrieve(q)
        opened.append((index, assistant, clocks, assistant.retriever.config))
    settings = [(o, s) for o in opened for s in terms_settings]
    rows: dict[str, Any] = {}
    for kind, items in qs.items():
        times: list[dict[str, list[float]]] = [
            {"retrieve": [], "embed": [], "dense": [], "lexical": []} for _ in settings]
        terms = [len(re.findall(r"\w+", q)) for q in items]
        for q in items:
            for row, ((_, assistant, clocks, base), s) in zip(times, settings, strict=True):
                retriever = assistant.retriever
                retriever.config = replace(base, lexical_terms=s)
                retriever._last_query = None  # embed every time, as a new question would
                for clock in clocks:
                    clock.s = 0.0
                t = time.perf_counter()
                retriever.retrieve(q)
                row["retrieve"].append(time.perf_counter() - t)
                for part, clock in zip(("embed", "dense", "lexical"), clocks, strict=True):
                    row[part].append(clock.s)
        for i, ((index, assistant, _, _), s) in enumerate(settings):
            rows[f"{kind}, {label[index]}, terms={s or 'all'}"] = {
                "questions": len(items), "mean_words": round(sum(terms) / len(terms), 1),
                "index": label[index], "precision": assistant.embedder.precision,
                "lexical_terms": s,
                **{f"{part} p50 ms": pct(v, 50) for part, v in times[i].items()},
                "retrieve p95 ms": pct(times[i]["retrieve"], 95)}
        print(json.dumps({kind: {k: v for k, v in rows.items() if k.startswith(kind)}}),
              file=sys.stderr, flush=True)
    indexes = []
    for index, assistant, _, _ in opened:
        info = assistant.memory.info()
        indexes.append({"path": index, "windows": info.windows, "documents": info.documents,
                        "embedder": info.embedder, "precision": assistant.embedder.precision})
    report = {"command": command, "indexes": indexes, "mode": opened[0][3].mode,
              "machine": {"platform": platform.platform(), "cores": os.cpu_count(),
                          "load_average_at_start": os.getloadavg()},
              "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


def markdown(report: dict[str, Any]) -> str:
    first = report["indexes"][0]
    lines = [f"# Retrieve latency ({report['mode']})", "",
             f"Command: `{report['command']}`", "",
             f"Index: {first['documents']} documents, {first['windows']} windows; "
             + "; ".join(f"`{i['path']}` {i['precision']}" for i in report["indexes"])
             + f". Machine: {report['machine']['platform']}, {report['machine']['cores']} "
             f"cores, load average at start {report['machine']['load_average_at_start'][0]:.1f}"
             " (compare rows measured together, not absolute figures).", "",
             "| questions | index (query precision) | BM25 terms | retrieve p50 ms "
             "| retrieve p95 ms | embed p50 | FAISS p50 | FTS5 p50 |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for name, r in report["rows"].items():
        lines.append(f"| {name.split(',')[0]} | {r['index']} ({r['precision']}) "
                     f"| {r['lexical_terms'] or 'all'} | "
                     f"{r['retrieve p50 ms']} | {r['retrieve p95 ms']} | {r['embed p50 ms']} | "
                     f"{r['dense p50 ms']} | {r['lexical p50 ms']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
