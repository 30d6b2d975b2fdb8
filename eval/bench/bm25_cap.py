"""The BM25 term cap (``RetrievalConfig.lexical_terms``) with and without, on the longest
real questions: ranking and FTS5 time on the lexical side, where the cap acts.

    python -m eval.bench.bm25_cap                         # SciFact test + QuALITY
    python -m eval.bench.bm25_cap --caps none,32,64 --longest 100

- **SciFact**: the whole corpus (title + text), the test claims, and the ``--longest`` of
  them by query terms; nDCG@10 against the qrels.
- **QuALITY** (L-Eval's 15 articles): every question with its four options as the query
  (the longest questions we have); the relevant document is the question's article;
  nDCG@10 and article@1.

Each index is built with the default chunking (MiniLM's token counts) and a stand-in
embedder that writes zero vectors: lexical retrieval never reads them, so the BM25 side
is measured exactly, without the hours of embedding the full corpora would take on 2
cores. Hybrid fusion adds the dense list to this one; what the cap changes is this list.
Writes OUT.json and OUT.md (default eval/reports/bm25-cap).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DATASETS = ROOT.parent / "shared" / "datasets"
FETCH = 300  # windows per question, collapsed to documents


class ZeroEmbedder:
    """An ``Embedder`` whose vectors are zeros: the index's lexical side is built as
    always (windows from MiniLM's own token counts), its dense side is unused."""

    model_id = "zero-vectors"
    precision = "fp32"
    dim = 8
    max_tokens = 256

    def __init__(self) -> None:
        from ragmem.config import EmbedderConfig
        from ragmem.embedding import token_counter

        self.token_counter = token_counter(EmbedderConfig())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.zeros((len(texts), self.dim), dtype=np.float32)

    def count_tokens(self, text: str) -> int:
        return self.token_counter(text)


def scifact(folder: Path) -> tuple[list[Any], dict[str, str], dict[str, dict[str, int]]]:
    from ragmem.evaluation.datasets import load_beir
    from ragmem.evaluation.indexes import beir_documents

    data = load_beir(folder, "test")
    return beir_documents("scifact", data.corpus), \
        {q: data.queries[q] for q in data.qrels}, dict(data.qrels)


def quality(path: Path) -> tuple[list[Any], dict[str, str], dict[str, dict[str, int]]]:
    from ragmem.types import Document

    documents, queries, qrels = [], {}, {}
    for i, line in enumerate(path.read_text("utf-8").splitlines()):
        record = json.loads(line)
        doc_id = f"article-{i}"
        documents.append(Document(doc_id=doc_id, path=f"quality:{doc_id}",
                                  text=record["input"], title=doc_id))
        for j, question in enumerate(record["instructions"]):
            queries[f"{doc_id}-q{j}"] = " ".join(question.split())
            qrels[f"{doc_id}-q{j}"] = {doc_id: 1}
    return documents, queries, qrels


def measure(name: str, documents: list[Any], queries: dict[str, str],
            qrels: dict[str, dict[str, int]], caps: list[int | None],
            subsets: dict[str, int | None], tmp: Path) -> dict[str, dict[str, Any]]:
    """One lexical index of ``documents``; per subset (label -> the N questions with the
    most query terms, None: all), each cap's ranking and time."""
    from ragmem.assistant import Assistant
    from ragmem.config import Config
    from ragmem.evaluation.metrics import doc_run_from_windows, retrieval_metrics
    from ragmem.memory.lexical import query_terms

    config = Config().with_overrides({"retrieval": {"mode": "lexical"}})
    assistant = Assistant.create(tmp / name.replace(" ", "-"), config,
                                 embedder=ZeroEmbedder())  # type: ignore[arg-type]
    t = time.perf_counter()
    assistant.add_documents(documents, total=len(documents))
    build_s = time.perf_counter() - t
    terms = {q: len(query_terms(text)) for q, text in queries.items()}
    base = assistant.retriever.config
    results = {}
    for label, longest in subsets.items():
        chosen = sorted(queries, key=lambda q: -terms[q])[:longest] if longest else list(queries)
        out: dict[str, Any] = {"documents": len(documents), "questions": len(chosen),
                               "build_s": round(build_s, 1),
                               "terms_median": statistics.median(terms[q] for q in chosen),
                               "terms_max": max(terms[q] for q in chosen), "caps": {}}
        for cap in caps:
            if cap:
                out[f"over_{cap}"] = sum(terms[q] > cap for q in chosen)
        runs: dict[Any, dict[str, Any]] = {}
        times: dict[Any, list[float]] = {cap: [] for cap in caps}
        for q in chosen:  # caps interleaved question by question: load hits them alike
            for cap in caps:
                assistant.retriever.config = replace(base, lexical_terms=cap)
                t = time.perf_counter()
                hits = assistant.retrieve(queries[q], top_k=FETCH)
                times[cap].append(time.perf_counter() - t)
                runs.setdefault(cap, {})[q] = hits
        judged = {q: qrels[q] for q in chosen}
        for cap in caps:
            run = doc_run_from_windows(runs[cap])
            ndcg = retrieval_metrics(run, judged, (10,))["ndcg@10"]
            first = [max(run[q], key=run[q].__getitem__) if run.get(q) else None
                     for q in chosen]
            ms = sorted(1000 * x for x in times[cap])
            out["caps"][str(cap or "none")] = {
                "ndcg@10": round(ndcg, 4),
                "at1": round(sum(f in qrels[q] for f, q in zip(first, chosen, strict=True))
                             / len(chosen), 4),
                "p50_ms": round(ms[len(ms) // 2], 1),
                "p95_ms": round(ms[min(len(ms) - 1, math.ceil(0.95 * len(ms)) - 1)], 1)}
        results[f"{name} ({label})"] = out
    assistant.close()
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scifact", type=Path, default=DATASETS / "scifact")
    p.add_argument("--quality", type=Path, default=DATASETS / "quality_leval/quality.jsonl")
    p.add_argument("--caps", default="none,32,64")
    p.add_argument("--longest", type=int, default=100,
                   help="SciFact: the N test claims with the most query terms (0: all)")
    p.add_argument("--skip-scifact", action="store_true", help="QuALITY only (a smoke run)")
    p.add_argument("--out", type=Path, default=ROOT / "eval/reports/bm25-cap")
    args = p.parse_args()
    caps = [None if c == "none" else int(c) for c in args.caps.split(",")]
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    report: dict[str, Any] = {
        "command": "python -m eval.bench.bm25_cap " + " ".join(map(shlex.quote, sys.argv[1:])),
        "machine": f"{platform.platform()}; {uptime}", "sets": {}}
    print(json.dumps(report), file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="ragmem-bm25cap-") as tmp:
        sets = {"SciFact test": (scifact(args.scifact),
                                 {"all claims": None, f"longest {args.longest}": args.longest}),
                "QuALITY": (quality(args.quality), {"question + options": None})}
        for name, ((documents, queries, qrels), subsets) in sets.items():
            if name.startswith("SciFact") and args.skip_scifact:
                continue
            found = measure(name, documents, queries, qrels, caps, subsets, Path(tmp))
            report["sets"] |= found
            print(json.dumps(found), file=sys.stderr, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


def markdown(report: dict[str, Any]) -> str:
    lines = ["# The BM25 term cap on long questions (lexical side)", "",
             f"Command: `{report['command']}`", "", f"Machine: {report['machine']}", "",
             "| questions | n | query terms median / max | terms cap | over cap | nDCG@10 "
             "| right document at 1 | lexical retrieve p50 / p95 ms |",
             "|---|---:|---:|---|---:|---:|---:|---:|"]
    for name, s in report["sets"].items():
        for cap, row in s["caps"].items():
            over = s.get(f"over_{cap}", 0) if cap != "none" else "-"
            lines.append(f"| {name} | {s['questions']} | {s['terms_median']} / "
                         f"{s['terms_max']} | {cap} | {over} | {row['ndcg@10']} | "
                         f"{row['at1']} | {row['p50_ms']} / {row['p95_ms']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
