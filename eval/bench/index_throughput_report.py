"""The report of ``eval.bench.index_throughput``: the machine it ran on, its Markdown
tables and its chart."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("flags")).split()
    except (OSError, StopIteration):
        flags = []
    import faiss
    import torch

    try:
        import onnxruntime
        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = "not installed"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__,
            "onnxruntime": ort_version, "gpu": gpu, "faiss": faiss.__version__,
            "faiss_gpus": faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0,
            "isa": [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
                    if f in flags],
            "load_average_at_start": os.getloadavg()}


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Indexing throughput: {report['corpus']} ({report['documents']} documents)",
             "", f"Command: `{report['command']}`", "",
             f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores "
             f"({', '.join(report['machine']['isa'])}), load average at start "
             f"{report['machine']['load_average_at_start'][0]:.1f}; torch "
             f"{report['machine']['torch']}, onnxruntime {report['machine']['onnxruntime']}"
             + (f"; GPU {report['machine']['gpu']} (faiss {report['machine'].get('faiss')}, "
                f"{report['machine'].get('faiss_gpus', 0)} GPUs seen by faiss)"
                if report["machine"].get("gpu") else "") + ".",
             "", "Ratios compare paths measured in the same run; absolute figures depend on "
             "how busy the machine was.", ""]
    if report.get("embedders"):
        e = report["embedders"]
        lines += [f"## Embedders ({e['texts']} windows, {e['tokens']} tokens, median of "
                  f"{e['rounds']} interleaved rounds)", "",
                  "| path | tokens/s | x torch fp32 | tokens per CPU s | x torch fp32 (CPU) "
                  "| cosine to fp32 (mean / min) |", "|---|---:|---:|---:|---:|---:|"]
        for name, row in e["paths"].items():
            lines.append(f"| {name} | {row['tokens_per_s']:.0f} | {row.get('x_torch_fp32', '')}"
                         f" | {row['tokens_per_cpu_s']:.0f} | {row.get('x_torch_fp32_cpu', '')}"
                         f" | {row.get('cosine_mean', '')} / {row.get('cosine_min', '')} |")
        lines += [f"- {k}: {v}" for k, v in e["notes"].items()] + [""]
    if report.get("indexing"):
        lines += ["## Indexing (each path a fresh process)", "",
                  "`plain` is timed warm (encode + `IndexFlatIP.add`, the model loaded; its "
                  "whole process in the next column); `ragmem-index*` is `ragmem index "
                  "corpus.jsonl`, one whole process from launch to exit; `ragmem-fp32` and "
                  "the like time `add_documents` in a process, start-up included.", "",
                  "| path | timed s | whole process s | docs/s | x plain | x plain (CPU s) "
                  "| tokens embedded | tokens/s | embed tokens/s | peak RSS MB "
                  "| nDCG@10 dense | nDCG@10 hybrid |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, row in report["indexing"].items():
            if "error" in row:
                lines.append(f"| {name} | failed: {row['error']} |")
                continue
            lines.append(
                f"| {name} | {row['timed_s']} | {row['total_s']:.1f} "
                f"| {row['docs_per_s']} | {row.get('x_plain', '')} "
                f"| {row.get('x_plain_cpu', '')} | {row['tokens']} "
                f"| {row['tokens_per_s']:.0f} | {row['embed_tokens_per_s']:.0f} "
                f"| {row['peak_rss_mb']:.0f} | {row['ndcg@10 dense']} "
                f"| {row.get('ndcg@10 hybrid', '-')} |")
            if "ndcg@10 dense (fp32 questions)" in row:
                lines.append(f"| {name}, fp32 questions | | | | | | | | | | "
                             f"{row['ndcg@10 dense (fp32 questions)']} "
                             f"| {row['ndcg@10 hybrid (fp32 questions)']} |")
        lines.append("")
    return "\n".join(lines)


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = [("indexing", "docs_per_s", "docs/s (indexing)"),
             ("embedders", "tokens_per_s", "tokens/s (embedding only)")]
    parts = [p for p in parts if report.get(p[0])]
    fig, axes = plt.subplots(1, len(parts), figsize=(6 * len(parts), 3.6), squeeze=False)
    for ax, (key, metric, title) in zip(axes[0], parts, strict=True):
        rows = report[key]["paths"] if key == "embedders" else report[key]
        names = [n for n, r in rows.items() if metric in r]
        ax.barh(names, [rows[n][metric] for n in names], color="#4c72b0")
        ax.invert_yaxis()
        ax.set_title(title)
        for i, n in enumerate(names):
            ax.text(rows[n][metric], i, f" {rows[n][metric]:.0f}", va="center", fontsize=8)
    fig.suptitle(f"{report['corpus']}: {report['documents']} documents", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
