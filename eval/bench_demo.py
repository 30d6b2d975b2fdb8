"""Indexing throughput and ask latency on the bundled demo corpus.

    python eval/bench_demo.py [--questions N] [--out eval/reports/demo-bench.json]

Indexes ragmem/demo/corpus into a fresh temporary index with the default models, then
asks the questions in ragmem/demo/questions.jsonl and reports medians of the retrieve /
fill / generate times (models are loaded before timing; load times are reported apart).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=11)
    parser.add_argument("--out", type=Path, default=ROOT / "eval/reports/demo-bench.json")
    args = parser.parse_args()

    import torch

    from ragmem import Assistant, __version__
    from ragmem.config import Config

    config = Config()
    print(f"command: python {' '.join(sys.argv)}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), ragmem {__version__}")
    print(f"config: {json.dumps(config.to_dict())}")

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        assistant = Assistant.create(Path(tmp) / "demo", config)  # loads the embedder
        assistant.embedder.embed(["load"])
        embedder_load = time.perf_counter() - t0
        stats = assistant.index([ROOT / "ragmem/demo/corpus"])
        print(f"indexed {stats.added} documents, {stats.sentences} sentences, {stats.windows} "
              f"windows in {stats.seconds:.1f} s: {stats.windows_per_s:.1f} windows/s")
        t0 = time.perf_counter()
        assistant.warm_up()
        generator_load = time.perf_counter() - t0
        lines = (ROOT / "ragmem/demo/questions.jsonl").read_text(encoding="utf-8").splitlines()
        questions = [json.loads(line) for line in lines if line.strip()][: args.questions]
        rows = []
        for q in questions:
            answer = assistant.ask(q["question"])
            t = answer.timings
            top = answer.citations[0].doc_id if answer.citations else None
            hit = any(a.lower() in answer.text.lower() for a in q["answers"])
            rows.append({"question": q["question"], "answer": answer.text,
                         "top_citation": top, "cites_right_doc": top == q["doc_id"],
                         "contains_gold": hit, "retrieve_s": t.retrieve_s, "fill_s": t.fill_s,
                         "generate_s": t.generate_s, "tokens_used": answer.tokens_used})
            print(f"  {t.retrieve_s * 1000:6.0f} ms retrieve {t.generate_s:5.1f} s generate "
                  f"| cites right doc: {top == q['doc_id']} | {q['question']}")

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rows)

    summary = {
        "windows": stats.windows, "index_seconds": stats.seconds,
        "windows_per_s": stats.windows_per_s, "embedder_load_s": embedder_load,
        "generator_load_s": generator_load, "retrieve_p50_s": med("retrieve_s"),
        "fill_p50_s": med("fill_s"), "generate_p50_s": med("generate_s"),
        "top_citation_right_doc": sum(r["cites_right_doc"] for r in rows) / len(rows),
        "answer_contains_gold": sum(r["contains_gold"] for r in rows) / len(rows),
    }
    print(json.dumps(summary, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "questions": rows,
                                    "config": config.to_dict(),
                                    "command": f"python {' '.join(sys.argv)}"}, indent=2))


if __name__ == "__main__":
    main()
