"""Cold start: `ragmem ask` in a fresh process, from launch to the printed answer, and its parts.

    python -m eval.bench.cold_start                      # demo corpus, fp32 and int8 indexes
    python -m eval.bench.cold_start --runs 3 --precisions int8

For each embedder precision it builds the demo index once (in a temp folder), then:

- **end to end**: ``python -m ragmem.cli ask INDEX QUESTION`` as a fresh process, timed
  from launch to exit (``--runs`` times; median);
- **parts**: a fresh process that does what ``ragmem ask`` does, one step at a time:
  imports (``ragmem.cli`` + ``ragmem.assistant``), open the index, embedder load, generator
  load, retrieve (+ fill), answer (generate), and which heavy modules each step imported.

The model caches (``~/.cache/ragmem``: the GGUF -> safetensors conversion, the ONNX
export) are warm, as on any run after the first. Writes OUT.json and OUT.md
(default eval/reports/cold-start).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

T0 = time.perf_counter()
ROOT = Path(__file__).resolve().parents[2]
QUESTION = "Which bank's cellar were the robbers tunnelling into?"
HEAVY = ("torch", "transformers", "sentence_transformers", "onnxruntime", "faiss")


def parts(index: str, question: str) -> dict[str, Any]:
    """One fresh process: each step of `ragmem ask`, timed, with the modules it pulled in."""
    out: dict[str, Any] = {}

    def step(name: str, t: float) -> float:
        now = time.perf_counter()
        out[name] = {"s": round(now - t, 3),
                     "loaded": [m for m in HEAVY if m in sys.modules]}
        return now

    t = T0
    import ragmem.cli  # noqa: F401
    from ragmem.assistant import Assistant

    t = step("imports", t)
    assistant = Assistant.open(index)
    t = step("open index", t)
    _ = assistant.embedder.dim
    t = step("embedder load", t)
    _ = assistant.working_memory.token_budget
    t = step("generator load", t)
    passages = assistant.retriever.passages(question)
    buffer = assistant.working_memory.fill(question, passages)
    t = step("retrieve + fill", t)
    answer = assistant.answerer.answer(buffer)
    step("answer", t)
    out["total_s"] = round(time.perf_counter() - T0, 3)
    out["printed"] = answer.text  # not "answer": that key is the step's timing
    return out


def build(index: Path, precision: str) -> float:
    env = os.environ | {"RAGMEM_EMBEDDER_PRECISION": precision}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ragmem.cli", "index", str(ROOT / "ragmem/demo/corpus"),
                    "--index", str(index)], check=True, cwd=ROOT, env=env,
                   capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--question", default=QUESTION)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--precisions", default="fp32,int8")
    p.add_argument("--out", type=Path, default=ROOT / "eval/reports/cold-start")
    p.add_argument("--dir", type=Path, help="build the demo indexes here and keep them "
                   "(an index already there is reused); default: a temp folder")
    p.add_argument("--parts", nargs=2, metavar=("INDEX", "QUESTION"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.parts:
        print(json.dumps(parts(*args.parts)))
        return
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    report: dict[str, Any] = {"command": command, "question": args.question,
                              "machine": {"platform": platform.platform(),
                                          "cores": os.cpu_count(),
                                          "load_average_at_start": os.getloadavg()},
                              "precisions": {}}
    print(json.dumps({k: report[k] for k in ("command", "machine")}), file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="ragmem-cold-") as tmp:
        for precision in args.precisions.split(","):
            index = (args.dir or Path(tmp)) / f"demo-{precision}"
            row: dict[str, Any] = {}
            if not (index / "manifest.json").exists():
                row["build_s"] = round(build(index, precision), 1)
            runs = []
            for _ in range(args.runs):
                t = time.perf_counter()
                done = subprocess.run([sys.executable, "-m", "ragmem.cli", "ask", str(index),
                                       args.question], cwd=ROOT, capture_output=True,
                                      text=True, check=True)
                runs.append(time.perf_counter() - t)
            row["end_to_end_s"] = [round(r, 2) for r in runs]
            row["end_to_end_median_s"] = round(statistics.median(runs), 2)
            row["printed"] = done.stdout.strip().splitlines()[0] if done.stdout else ""
            done = subprocess.run([sys.executable, "-m", "eval.bench.cold_start", "--parts",
                                   str(index),
                                   args.question], cwd=ROOT, capture_output=True, text=True,
                                  check=True)
            row["parts"] = json.loads(done.stdout.strip().splitlines()[-1])
            report["precisions"][precision] = row
            print(json.dumps({precision: row}), file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


def markdown(report: dict[str, Any]) -> str:
    steps = ("imports", "open index", "embedder load", "generator load", "retrieve + fill",
             "answer")
    lines = ["# Cold start: `ragmem ask` on the demo corpus", "",
             f"Command: `{report['command']}`", "",
             f"Machine: {report['machine']['platform']}, {report['machine']['cores']} cores, "
             f"load average at start {report['machine']['load_average_at_start'][0]:.1f}.", "",
             "| embedder precision | end to end (median) | " + " | ".join(steps)
             + " | parts total |", "|---|---:|" + "---:|" * (len(steps) + 1)]
    for precision, row in report["precisions"].items():
        cells = [f"{row['parts'][s]['s']:.2f} s" for s in steps]
        lines.append(f"| {precision} | {row['end_to_end_median_s']:.2f} s | "
                     + " | ".join(cells) + f" | {row['parts']['total_s']:.2f} s |")
    lines += ["", "Heavy modules loaded after each step:", ""]
    for precision, row in report["precisions"].items():
        lines.append(f"- {precision}: " + "; ".join(
            f"{s}: {', '.join(row['parts'][s]['loaded']) or '-'}" for s in steps))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
