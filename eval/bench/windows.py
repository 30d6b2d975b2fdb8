"""Window size and overlap: tokens embedded against retrieval quality, side by side.

    RAGMEM_HOME=/tmp/winidx python -m eval.bench.windows \\
        --settings 256:1,256:0,128:0,128:1 --out eval/reports/windows

For each ``window_tokens:overlap_sentences`` setting, on the default embedder and the
default hybrid retriever:

- **tokens embedded**: the embedder tokens of every window the chunker makes of the
  corpus (SciFact and the SQuAD dev articles), the work indexing pays for;
- **SciFact train** nDCG@10 / recall@100 (the test split is kept for reports);
- **SQuAD v1.1 dev answer-in-context** on a seeded sample of the questions after the
  first 1,000 (the first 1,000 are the reported part).

Each setting gets its own index (``indexes/eval-...`` named by the chunking), built once
and reused. Writes OUT/report.json and OUT/summary.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "datasets"
FIRST_UNSEEN = 1000


def tokens_embedded(documents: list[Any], embedder: Any, window_tokens: int,
                    overlap: int) -> tuple[int, int]:
    """(windows, tokens) the chunker gives ``documents`` at this setting."""
    from ragmem.chunking import chunk_document

    windows = tokens = 0
    for doc in documents:
        _, ws = chunk_document(doc, embedder.count_tokens, window_tokens, overlap, 2048)
        windows += len(ws)
        tokens += sum(embedder.count_tokens(w.text) for w in ws)
    return windows, tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--settings", default="256:1,256:0,128:0,128:1")
    ap.add_argument("--scifact", default=str(DATA / "scifact"))
    ap.add_argument("--squad", default=str(DATA / "squad_v1.1_dev" / "dev-v1.1.json"))
    ap.add_argument("--squad-questions", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="eval/reports/windows")
    args = ap.parse_args()

    from ragmem.config import Config
    from ragmem.embedding import from_config as embedder_from_config
    from ragmem.evaluation import load_beir, load_squad
    from ragmem.evaluation.datasets import select
    from ragmem.evaluation.harness import evaluate_qa, evaluate_retrieval
    from ragmem.evaluation.indexes import beir_documents

    beir = load_beir(args.scifact, "train")
    squad = load_squad(args.squad)
    unseen = select(squad.examples[FIRST_UNSEEN:], sample=args.squad_questions, seed=args.seed)
    squad_part = replace(squad, examples=unseen)
    base = Config().with_env()
    embedder = embedder_from_config(base.embedder)
    scifact_docs = beir_documents(beir.name, beir.corpus)
    results: list[dict[str, Any]] = []
    t_all = time.time()
    for setting in args.settings.split(","):
        size, overlap = (int(x) for x in setting.split(":"))
        config = base.with_overrides({"chunking": {"window_tokens": size,
                                                   "overlap_sentences": overlap}})
        row: dict[str, Any] = {"window_tokens": size, "overlap_sentences": overlap}
        t0 = time.time()
        row["scifact_windows"], row["scifact_tokens"] = tokens_embedded(
            scifact_docs, embedder, size, overlap)
        row["squad_windows"], row["squad_tokens"] = tokens_embedded(
            squad.documents, embedder, size, overlap)
        r = evaluate_retrieval(beir, config, embedder=embedder)
        row["scifact_train_ndcg@10"] = r["metrics"]["ndcg@10"] if "ndcg@10" in r["metrics"] \
            else r["metrics"]["retrieval"]["ndcg@10"]
        row["scifact_train_recall@100"] = _find(r["metrics"], "recall@100")
        row["scifact_index_s"] = _find(r["metrics"], "index_build_s")
        q = evaluate_qa(squad_part, config, generate=False, embedder=embedder,
                        budgets=(config.working_memory.token_budget,))
        row["squad_answer_in_context"] = _find(q["metrics"], "answer_in_context")
        row["squad_evidence_recall@5"] = _find(q["metrics"], "evidence_recall@5")
        row["squad_index_s"] = _find(q["metrics"], "index_build_s")
        row["seconds"] = round(time.time() - t0, 1)
        results.append(row)
        print(json.dumps(row), flush=True)
    base_row = next((r for r in results if (r["window_tokens"], r["overlap_sentences"])
                     == (Config().chunking.window_tokens, Config().chunking.overlap_sentences)),
                    results[0])
    for r in results:
        r["scifact_tokens_vs_default"] = round(r["scifact_tokens"] / base_row["scifact_tokens"], 3)
    report = {
        "command": " ".join(["python", *sys.argv]),
        "machine": _machine(),
        "embedder": base.embedder.model, "precision": base.embedder.precision,
        "retrieval": vars(base.retrieval),
        "squad_questions": f"{len(unseen)} sampled (seed {args.seed}) from questions after "
                           f"the first {FIRST_UNSEEN}",
        "results": results, "seconds": round(time.time() - t_all, 1),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n", "utf-8")
    (out / "summary.md").write_text(summary(report), "utf-8")
    print(summary(report))


def _find(metrics: dict[str, Any], key: str) -> Any:
    if key in metrics:
        return metrics[key]
    for v in metrics.values():
        if isinstance(v, dict) and key in v:
            return v[key]
    return None


def _machine() -> str:
    """The CPU, its cores and vector ISA, and the load, as index_throughput.py says them."""
    from eval.bench.index_throughput import machine

    m = machine()
    return (f"{m['cpu'] or platform.machine()}, {m['cores']} cores "
            f"({', '.join(m['isa']) or 'no AVX2'}), load average at start "
            f"{m['load_average_at_start'][0]:.1f}; Python {m['python']}, torch {m['torch']}")


def summary(report: dict[str, Any]) -> str:
    lines = ["# Window size and overlap: tokens embedded against quality", "",
             f"`{report['command']}`", "", f"Machine: {report['machine']}.",
             f"Embedder {report['embedder']} ({report['precision']}), hybrid retrieval; "
             f"SQuAD: {report['squad_questions']}; SciFact: train split queries.", "",
             "| window tokens | overlap (sentences) | SciFact tokens embedded | vs default "
             "| SciFact train nDCG@10 | recall@100 | SQuAD answer-in-context "
             "| SQuAD evidence@5 | SQuAD tokens |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        lines.append(
            f"| {r['window_tokens']} | {r['overlap_sentences']} | {r['scifact_tokens']:,} "
            f"| {r['scifact_tokens_vs_default']:.2f}x | {r['scifact_train_ndcg@10']:.4f} "
            f"| {r['scifact_train_recall@100']:.4f} | {r['squad_answer_in_context']:.4f} "
            f"| {r['squad_evidence_recall@5']:.4f} | {r['squad_tokens']:,} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
