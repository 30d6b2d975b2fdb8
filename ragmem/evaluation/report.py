"""Evaluation reports: one JSON file people can diff, a Markdown summary, PNG plots.

A report is a plain dict; the parts read here are::

    {
      "dataset": {"name": "scifact/test", "sha256": "...", "n_questions": 300, ...},
      "config": {...},                       # free-form, shown as JSON
      "metrics": {                           # section -> metric -> number
        "retrieval": {"recall@1": 0.5, ..., "ndcg@10": 0.64},
        "latency": {"retrieve_p50_s": 0.01, "retrieve_p95_s": 0.02, ...},
        ...
      },
      "curves": {"answer_in_context_vs_budget": [{"token_budget": 512,
                                                  "answer_in_context": 0.41}, ...]},
    }

Every other key is kept in the JSON and left out of the summary.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ragmem.errors import RagmemError
from ragmem.evaluation.metrics import STAGES

_RECALL = re.compile(r"^recall@(\d+)$")


class ReportError(RagmemError):
    """A report file is missing, unreadable, or plotting needs an extra."""


def write_report(report: Mapping[str, Any], out_dir: str | Path, plots: bool = True) -> list[Path]:
    """Write ``report.json``, ``summary.md`` and (when ``plots``) the PNGs; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "report.json", out / "summary.md"
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", "utf-8")
    md_path.write_text(summary(report), "utf-8")
    return [json_path, md_path, *(write_plots(report, out) if plots else [])]


def load_report(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ReportError(f"cannot read report {path}: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise ReportError(f"{path} is not a ragmem report: it has no 'metrics' section")
    return data


def summary(report: Mapping[str, Any]) -> str:
    """Markdown: what was measured on which data, then one table per metric section."""
    dataset = report.get("dataset", {})
    lines = [f"# Evaluation: {dataset.get('name', 'unnamed dataset')}", ""]
    for key, value in dataset.items():
        if key != "name":
            lines.append(f"- {key}: `{json.dumps(value) if isinstance(value, dict) else value}`")
    lines += _provenance(report)
    for section, values in report.get("metrics", {}).items():
        lines += ["", f"## {section}", "", "| metric | value |", "|---|---:|"]
        lines += [f"| {name} | {_fmt(v)} |" for name, v in values.items()]
    for name, points in report.get("curves", {}).items():
        if points:
            keys = list(points[0])
            lines += ["", f"## {name}", "", "| " + " | ".join(keys) + " |",
                      "|" + "---:|" * len(keys)]
            lines += ["| " + " | ".join(_fmt(p.get(k)) for k in keys) + " |" for p in points]
    if report.get("config"):
        config = json.dumps(report["config"], indent=2, sort_keys=True)
        lines += ["", "## config", "", "```json", config, "```"]
    return "\n".join(lines) + "\n"


def _provenance(report: Mapping[str, Any]) -> list[str]:
    """System, command, version, models (with weight hashes), index, and notes, if given."""
    lines = []
    if report.get("system"):
        lines.append(f"- system: {report['system']}")
    run = report.get("run", {})
    if run.get("command"):
        lines.append(f"- command: `{run['command']}`")
    if run.get("ragmem_version"):
        lines.append(f"- ragmem {run['ragmem_version']} (git {run.get('git')}), python "
                     f"{run.get('python', '?')}, {run.get('platform', '?')}")
    for role, model in run.get("models", {}).items():
        hashes = ", ".join(f"{f} {h[:12]}" for f, h in model.get("sha256", {}).items())
        lines.append(f"- {role}: {model.get('name')}" + (f" ({hashes})" if hashes else ""))
    if run.get("baseline"):
        lines.append(f"- baseline: `{json.dumps(run['baseline'])}`")
    if report.get("index"):
        lines.append(f"- index: `{json.dumps(report['index'])}`")
    lines += [f"- note: {note}" for note in report.get("notes", [])]
    return lines


def compare(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    """Markdown table of every metric in either report: A, B and B - A.

    Says so above the table when the two were computed on different data, because then
    the differences do not measure the systems alone.
    """
    name_a, name_b = (r.get("name") or r.get("dataset", {}).get("name", "?") for r in (a, b))
    lines = [f"A: {name_a}  B: {name_b}"]
    da, db = a.get("dataset", {}), b.get("dataset", {})
    for key in ("sha256", "n_questions"):
        if da.get(key) != db.get(key):
            lines.append(f"\n**Warning: different {key}: A {da.get(key)} vs B {db.get(key)}.**")
    lines += ["", "| metric | A | B | B - A |", "|---|---:|---:|---:|"]
    flat_a, flat_b = _flatten(a.get("metrics", {})), _flatten(b.get("metrics", {}))
    for name in [*flat_a, *(n for n in flat_b if n not in flat_a)]:
        va, vb = flat_a.get(name), flat_b.get(name)
        delta = _fmt(vb - va, signed=True) if va is not None and vb is not None else "-"
        lines.append(f"| {name} | {_fmt(va)} | {_fmt(vb)} | {delta} |")
    return "\n".join(lines) + "\n"


def _flatten(metrics: Mapping[str, Any]) -> dict[str, int | float]:
    return {
        f"{section}.{name}": v
        for section, values in metrics.items()
        for name, v in values.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def _fmt(value: Any, signed: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    sign = "+" if signed else ""
    if isinstance(value, int):
        return f"{value:{sign},d}"
    return f"{value:{sign},.1f}" if abs(value) >= 1000 else f"{value:{sign}.4f}"


# Plots ------------------------------------------------------------------------------


def write_plots(report: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """The plots the report has data for: recall@k, latency breakdown, context vs budget."""
    out = Path(out_dir)
    metrics = report.get("metrics", {})
    written = []
    recall = sorted(
        (int(m.group(1)), float(v))
        for name, v in metrics.get("retrieval", {}).items()
        if (m := _RECALL.match(name))
    )
    if recall:
        written.append(_plot_recall(recall, out / "recall_at_k.png"))
    latency = metrics.get("latency", {})
    if any(f"{s}_p50_s" in latency for s in STAGES):
        written.append(_plot_latency(latency, out / "latency.png"))
    budget = report.get("curves", {}).get("answer_in_context_vs_budget", [])
    if budget:
        written.append(_plot_budget(budget, out / "answer_in_context_vs_budget.png"))
    return written


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ReportError("plots need matplotlib: pip install 'ragmem[eval]'") from None
    matplotlib.use("Agg")  # files only: never open a window, work without a display
    import matplotlib.pyplot as plt

    return plt


def _plot_recall(points: list[tuple[int, float]], path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ks, values = zip(*points, strict=True)
    ax.plot(ks, values, marker="o")
    ax.set(xscale="log", xlabel="k (documents)", ylabel="recall@k", ylim=(0, 1.02))
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _plot_latency(latency: Mapping[str, float], path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    bottoms = [0.0, 0.0]
    for stage in STAGES:
        heights = [float(latency.get(f"{stage}_p{q}_s", 0.0)) for q in (50, 95)]
        ax.bar(["p50", "p95"], heights, bottom=bottoms, label=stage)
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    # Per-stage percentiles stacked: p95 of the sum can be lower than this stack.
    ax.set(ylabel="seconds per question", title="latency by stage (stacked percentiles)")
    ax.legend()
    return _save(fig, path)


def _plot_budget(points: list[Mapping[str, float]], path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ordered = sorted(points, key=lambda p: p["token_budget"])
    ax.plot(
        [p["token_budget"] for p in ordered], [p["answer_in_context"] for p in ordered], marker="o"
    )
    ax.set(xlabel="working-memory token budget", ylabel="answer in context", ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    fig.clf()
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
