"""Tune hybrid fusion on a BEIR *train* split; the chosen setting is then reported on test.

    python -m eval.tune_fusion ../shared/datasets/scifact --split train \\
        --out eval/reports/fusion-tuning-scifact-train.json

Each query's dense (FAISS) and lexical (FTS5 BM25) window lists are fetched once
(``--depth`` windows each); every fusion variant is then computed from those lists
exactly as ``ragmem.retrieval`` does at query time, and scored at document level
(best window per document) with the same metrics code as ``ragmem eval``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from ragmem import Assistant
from ragmem.config import Config
from ragmem.evaluation.datasets import load_beir
from ragmem.evaluation.indexes import beir_documents, open_index
from ragmem.evaluation.metrics import doc_run_from_windows, retrieval_metrics
from ragmem.retrieval import fuse, fuse_scores
from ragmem.types import Hit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--split", default="train")
    parser.add_argument("--depth", type=int, default=300,
                        help="windows fetched per list (ragmem eval fetches 300)")
    parser.add_argument("--candidates", type=int, default=100,
                        help="the top of each list that score normalisation looks at")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    print(f"command: python {' '.join(sys.argv)}", flush=True)

    data = load_beir(args.dataset, args.split)
    config = Config()
    docs = beir_documents(args.dataset.name, data.corpus)
    assistant, info = open_index(args.dataset.name, docs, config)
    assert isinstance(assistant, Assistant)
    print(f"index: {info.path} ({info.documents} documents); {len(data.queries)} "
          f"{args.split} queries", flush=True)

    dense: dict[str, list[Hit]] = {}
    lexical: dict[str, list[Hit]] = {}
    t0 = time.perf_counter()
    for qid, question in data.queries.items():
        vec = assistant.embedder.embed([question])
        dense[qid] = assistant.memory.search(vec, args.depth)[0]
        lexical[qid] = assistant.memory.lexical_search(question, args.depth)
    print(f"fetched both lists in {time.perf_counter() - t0:.1f} s", flush=True)

    def score(runs: dict[str, list[Hit]]) -> dict[str, float]:
        return retrieval_metrics(doc_run_from_windows(runs), data.qrels)

    rows = [("dense", score(dense)), ("lexical (FTS5 BM25)", score(lexical))]
    for k in (10, 30, 60, 100):
        for wd, wl in ((1.0, 1.0), (1.0, 1.5), (1.0, 2.0), (1.5, 1.0)):
            fused = {q: fuse([dense[q], lexical[q]], [wd, wl], k) for q in data.queries}
            rows.append((f"rrf k={k} dense={wd} lexical={wl}", score(fused)))
    for alpha in (0.3, 0.4, 0.5, 0.6, 0.7):
        for norm in ("minmax", "zscore"):
            fused = {q: fuse_scores([dense[q], lexical[q]], [alpha, 1 - alpha], norm,
                                    args.candidates) for q in data.queries}
            rows.append((f"{norm} alpha(dense)={alpha}", score(fused)))

    rows.sort(key=lambda r: -r[1]["ndcg@10"])
    print(f"\n| variant ({args.split}) | nDCG@10 | recall@10 | recall@100 |\n|---|---|---|---|")
    for name, m in rows:
        print(f"| {name} | {m['ndcg@10']:.4f} | {m['recall@10']:.4f} | {m['recall@100']:.4f} |")
    if args.out:
        args.out.write_text(json.dumps({
            "command": f"python {' '.join(sys.argv)}", "split": args.split,
            "config": replace(config).to_dict(), "depth": args.depth,
            "candidates": args.candidates,
            "results": [{"variant": n, **m} for n, m in rows]}, indent=2))


if __name__ == "__main__":
    main()
