"""JSON + Markdown reports, plots, and the side-by-side comparison."""

from __future__ import annotations

import json

import pytest

from ragmem.evaluation.report import ReportError, compare, load_report, summary, write_report


def make_report(ndcg: float, p50: float, sha: str = "ab" * 32) -> dict:
    return {
        "name": f"run-{ndcg}",
        "dataset": {"name": "scifact/test", "sha256": sha, "n_questions": 300},
        "config": {"retrieval": {"top_k": 10}},
        "metrics": {
            "retrieval": {"recall@1": 0.5, "recall@10": 0.8, "recall@100": 0.95, "ndcg@10": ndcg},
            "latency": {
                "retrieve_p50_s": p50,
                "retrieve_p95_s": 2 * p50,
                "fill_p50_s": 0.001,
                "fill_p95_s": 0.002,
                "generate_p50_s": 0.5,
                "generate_p95_s": 0.9,
            },
            "cost": {"windows": 12345, "index_build_s": 1234.5},
        },
        "curves": {
            "answer_in_context_vs_budget": [
                {"token_budget": 1024, "answer_in_context": 0.6},
                {"token_budget": 256, "answer_in_context": 0.3},
            ]
        },
    }


def test_write_report_files(tmp_path):
    report = make_report(0.64, 0.01)
    paths = write_report(report, tmp_path / "out")
    names = sorted(p.name for p in paths)
    assert names == [
        "answer_in_context_vs_budget.png",
        "latency.png",
        "recall_at_k.png",
        "report.json",
        "summary.md",
    ]
    for p in paths:
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert load_report(tmp_path / "out/report.json") == report


def test_plots_are_only_drawn_for_data_present(tmp_path):
    report = {"dataset": {"name": "x"}, "metrics": {"answers": {"em": 0.5}}}
    assert [p.name for p in write_report(report, tmp_path)] == ["report.json", "summary.md"]


def test_summary_tables():
    md = summary(make_report(0.64, 0.01))
    assert md.startswith("# Evaluation: scifact/test\n")
    assert "| ndcg@10 | 0.6400 |" in md
    assert "| windows | 12,345 |" in md and "| index_build_s | 1,234.5 |" in md
    assert '"top_k": 10' in md


def test_compare_shows_deltas_and_warns_on_different_data():
    a, b = make_report(0.60, 0.010), make_report(0.65, 0.012)
    del b["metrics"]["cost"]["windows"]
    b["metrics"]["answers"] = {"f1": 0.4}
    table = compare(a, b)
    assert "A: run-0.6  B: run-0.65" in table
    assert "| retrieval.ndcg@10 | 0.6000 | 0.6500 | +0.0500 |" in table
    assert "| latency.retrieve_p50_s | 0.0100 | 0.0120 | +0.0020 |" in table
    assert "| cost.windows | 12,345 | - | - |" in table
    assert "| answers.f1 | - | 0.4000 | - |" in table
    assert "Warning" not in table
    assert "Warning: different sha256" in compare(a, make_report(0.6, 0.01, sha="cd" * 32))


def test_load_report_rejects_other_json(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ReportError, match="no 'metrics' section"):
        load_report(path)
    with pytest.raises(ReportError, match="cannot read"):
        load_report(tmp_path / "missing.json")
