"""Gather committed reports into one Markdown table of configurations.

    python -m eval.config_table > eval/reports/retrieval-configs.md

Reads eval/reports/<name>/report.json for the SciFact and SQuAD runs named below and
prints the table (missing reports print as "-").
"""

from __future__ import annotations

import json
from pathlib import Path

REPORTS = Path(__file__).resolve().parent / "reports"

# (configuration, SciFact test report, SQuAD first-500 context report, environment)
ROWS = [
    ("dense (MiniLM, FAISS)", "scifact-test-dense", "squad-dev-first500-context-dense",
     "RAGMEM_RETRIEVAL_MODE=dense"),
    ("BM25 (SQLite FTS5)", "scifact-test-lexical", "squad-dev-first500-context-lexical",
     "RAGMEM_RETRIEVAL_MODE=lexical"),
    ("BM25 (bm25s baseline)", "scifact-test-bm25", None, "--system bm25"),
    ("hybrid, RRF k=60", "scifact-test-hybrid-rrf", "squad-dev-first500-context-rrf",
     "RAGMEM_RETRIEVAL_FUSION=rrf"),
    ("hybrid, min-max fusion (default)", "scifact-test-default",
     "squad-dev-first500-context", ""),
    ("+ sentence-level small-to-big", None, "squad-dev-first500-context-sentence",
     "RAGMEM_RETRIEVAL_SENTENCE_LEVEL=true"),
]


def load(name: str | None) -> dict | None:  # type: ignore[type-arg]
    if name is None or not (REPORTS / name / "report.json").exists():
        return None
    return json.loads((REPORTS / name / "report.json").read_text())  # type: ignore[no-any-return]


def fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main() -> None:
    print("| configuration | SciFact nDCG@10 | SciFact recall@10 | SQuAD evidence@5 | "
          "SQuAD answer-in-context | prompt tokens | retrieve+fill p50 (ms) | env |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for label, scifact, squad, env in ROWS:
        s, q = load(scifact), load(squad)
        ndcg = s["metrics"]["retrieval"]["ndcg@10"] if s else None
        r10 = s["metrics"]["retrieval"]["recall@10"] if s else None
        ev5 = q["metrics"]["evidence"]["evidence_recall@5"] if q else None
        aic = q["metrics"]["working_memory"]["answer_in_context"] if q else None
        tok = q["metrics"]["working_memory"]["tokens_used_mean"] if q else None
        lat = q["metrics"]["latency"]["total_p50_s"] * 1000 if q else None
        shown = f"`{env}`" if env else "(none)"
        print(f"| {label} | {fmt(ndcg)} | {fmt(r10)} | {fmt(ev5, 3)} | {fmt(aic, 3)} | "
              f"{fmt(tok, 0)} | {fmt(lat, 0)} | {shown} |")


if __name__ == "__main__":
    main()
