"""Per-run sections of a report, aggregated from per-question records.

``mean([{"x": True}, {"x": False}], "x") -> 0.5``; every section is a flat
``{metric: number}`` dict, as :mod:`ragmem.evaluation.report` reads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ragmem.evaluation.datasets import QAExample
from ragmem.evaluation.indexes import IndexInfo, Progress
from ragmem.evaluation.metrics import latency_metrics
from ragmem.evaluation.provenance import peak_memory_mb
from ragmem.types import Timings


def mean(records: Sequence[dict[str, Any]], key: str) -> float:
    return sum(float(r[key]) for r in records) / len(records) if records else 0.0


def working_memory_section(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    out = {"tokens_used_mean": mean(records, "tokens_used"),
           "token_budget": float(max((r["token_budget"] for r in records), default=0)),
           "passages_dropped_mean": mean(records, "dropped"),
           "questions_with_drops": mean([{"x": r["dropped"] > 0} for r in records], "x")}
    if records and "answer_in_context" in records[0]:
        out = {"answer_in_context": mean(records, "answer_in_context"), **out}
    return out


def answers_section(records: Sequence[dict[str, Any]], examples: Sequence[QAExample]
             ) -> dict[str, float]:
    answerable = [r for r, e in zip(records, examples, strict=True) if not e.is_impossible]
    impossible = [r for r, e in zip(records, examples, strict=True) if e.is_impossible]
    out = {"exact_match": mean(records, "em"), "f1": mean(records, "f1"),
           "gold_in_answer": mean(answerable, "gold_in_answer"),
           "citation_accuracy": mean(answerable, "citation_correct"),
           "citation_span_accuracy": mean(answerable, "citation_span_correct"),
           "abstained_answerable": mean(answerable, "abstained")}
    if records and "cuts_word" in records[0]:
        out["answers_cutting_a_word"] = float(sum(bool(r["cuts_word"]) for r in records))
    if impossible:
        out["abstained_impossible"] = mean(impossible, "abstained")
    return out


def latency_section(timings: Sequence[Timings], stages: Sequence[str]) -> dict[str, float]:
    if not timings:
        return {}
    all_stages = latency_metrics(timings)
    return {k: v for k, v in all_stages.items()
            if k.split("_p")[0] in (*stages, "total")}


def cost_section(index: IndexInfo | None, n: int, timings: Sequence[Timings]) -> dict[str, float]:
    out: dict[str, float] = {}
    if index is not None and index.built:
        out |= {"index_build_s": index.build_s,
                "index_windows_per_s": index.windows_added / index.build_s
                if index.build_s > 0 else 0.0}
    elif index is not None and index.earlier_build:  # reused: the build that made it
        out |= {"index_build_s": float(index.earlier_build["build_s"]),
                "index_windows_per_s": float(index.earlier_build["windows_per_s"])}
    total = sum(t.retrieve_s + t.fill_s + t.generate_s for t in timings)
    out |= {"questions": float(n), "questions_per_s": n / total if total > 0 else 0.0,
            "peak_memory_mb": peak_memory_mb()}
    return out


def dataset_info(name: str, sha256: str, n: int, limit: int | None, sample: int | None,
                  seed: int, documents: int) -> dict[str, Any]:
    if limit is not None:
        chosen = f"first {limit} in file order"
    elif sample is not None:
        chosen = f"seeded sample of {sample} (seed {seed}), kept in file order"
    else:
        chosen = "all"
    return {"name": name, "sha256": sha256, "n_questions": n, "documents": documents,
            "selection": chosen}


def short_note(short: int, fetch: int, depth: int) -> list[str]:
    if not short:
        return []
    return [f"{short} queries had fewer than {depth} distinct documents in their top "
            f"{fetch} windows; their recall@100 / map@100 count only those"]


def tick(progress: Progress | None, stage: str, done: int, total: int) -> None:
    if progress is not None:
        progress(stage, done, total)
