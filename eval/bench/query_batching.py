"""Batched query embedding in ``ragmem eval retrieval``: same rankings, less time?

Runs ``evaluate_retrieval`` on a BEIR split twice over the same index: questions
embedded one at a time (``QUERY_BATCH = 1``, what the harness did before) and in
batches (the harness default), and compares every query's top 10, the metrics and the
wall time of the retrieval loop. The index is built once (cached under indexes/).

    python -m eval.bench.query_batching ../shared/datasets/scifact --split test \
        --out eval/reports/query-batching-scifact-test.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from ragmem.config import Config
from ragmem.evaluation import harness, load_beir


def run(data: object, batch: int, config: Config) -> tuple[dict, float]:
    harness.QUERY_BATCH = batch
    t0 = time.perf_counter()
    report = harness.evaluate_retrieval(data, config)  # type: ignore[arg-type]
    return report, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("beir_dir")
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", required=True)
    parser.add_argument("--batch", type=int, default=harness.QUERY_BATCH)
    args = parser.parse_args()
    data = load_beir(args.beir_dir, args.split)
    config = Config().with_env()
    run(data, args.batch, config)  # builds the index if needed, loads the model: not timed
    rounds = []
    for _ in range(3):  # alternate, so load on the machine hits both alike
        one, one_s = run(data, 1, config)
        many, many_s = run(data, args.batch, config)
        rounds.append({"one_at_a_time_s": one_s, "batched_s": many_s})
    same_top10 = sum(a == b for a, b in zip(one["questions"], many["questions"], strict=True))
    out = {
        "command": " ".join(["python", *sys.argv]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "config": config.to_dict(),
        "dataset": one["dataset"],
        "query_batch": args.batch,
        "queries_with_identical_top10": same_top10,
        "queries": len(one["questions"]),
        "metrics_identical": one["metrics"]["retrieval"] == many["metrics"]["retrieval"],
        "metrics_one_at_a_time": one["metrics"]["retrieval"],
        "metrics_batched": many["metrics"]["retrieval"],
        "rounds": rounds,
        "median_one_at_a_time_s": sorted(r["one_at_a_time_s"] for r in rounds)[1],
        "median_batched_s": sorted(r["batched_s"] for r in rounds)[1],
        "note": "times are whole evaluate_retrieval calls on a built index (model loaded)",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k not in ("config",)}, indent=2))


if __name__ == "__main__":
    main()
