"""Evaluation: datasets in standard formats, pure metrics, reports.

    >>> from ragmem.evaluation import load_beir, retrieval_metrics
    >>> data = load_beir("../shared/datasets/scifact", "test")     # doctest: +SKIP
    >>> retrieval_metrics(run, data.qrels)["ndcg@10"]              # doctest: +SKIP
    >>> report = evaluate_retrieval(data, limit=50)                 # doctest: +SKIP
    >>> write_report(report, "out/")                                # doctest: +SKIP
"""

from __future__ import annotations

from ragmem.evaluation.baselines import evaluate_bm25
from ragmem.evaluation.datasets import (
    DatasetError,
    MCDataset,
    MCExample,
    QADataset,
    QAExample,
    RetrievalDataset,
    load_beir,
    load_leval_mc,
    load_qa_jsonl,
    load_squad,
    select,
)
from ragmem.evaluation.harness import abstains, evaluate_mc, evaluate_qa, evaluate_retrieval
from ragmem.evaluation.indexes import IndexInfo, beir_documents, open_index
from ragmem.evaluation.metrics import (
    answer_in_text,
    contains_gold,
    doc_run_from_windows,
    evidence_recall_at_k,
    exact_match,
    latency_metrics,
    normalize_answer,
    percentile,
    ranking,
    retrieval_metrics,
    retrieval_metrics_per_query,
    span_hit,
    token_f1,
)
from ragmem.evaluation.report import ReportError, compare, load_report, summary, write_report

__all__ = [
    "DatasetError",
    "IndexInfo",
    "MCDataset",
    "MCExample",
    "QADataset",
    "QAExample",
    "ReportError",
    "RetrievalDataset",
    "abstains",
    "answer_in_text",
    "beir_documents",
    "compare",
    "contains_gold",
    "doc_run_from_windows",
    "evaluate_bm25",
    "evaluate_mc",
    "evaluate_qa",
    "evaluate_retrieval",
    "evidence_recall_at_k",
    "exact_match",
    "latency_metrics",
    "load_beir",
    "load_leval_mc",
    "load_qa_jsonl",
    "load_report",
    "load_squad",
    "normalize_answer",
    "open_index",
    "percentile",
    "ranking",
    "retrieval_metrics",
    "retrieval_metrics_per_query",
    "select",
    "span_hit",
    "summary",
    "token_f1",
    "write_report",
]
