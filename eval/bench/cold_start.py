"""Cold start: `ragmem ask` in a fresh process, from launch to the printed answer, per step;
and a warm ask in one process.

    python -m eval.bench.cold_start                    # demo corpus, default config, 5 runs
    python -m eval.bench.cold_start --runs 5 --dir /tmp/cold --label after

It builds the demo index once with the default config (in ``--dir``, kept, or a temp
folder), then:

- **end to end**: ``python -m ragmem.cli ask INDEX QUESTION`` (the default config: extract
  mode, streamed) as a fresh process, launch to exit, ``--runs`` times; median;
- **steps**: ``--runs`` fresh processes that each do what ``ragmem ask`` does, one step at
  a time: imports (``ragmem.cli``, ``ragmem.assistant``), open (the index), embed (the
  embedder's load and the question), retrieve (top-k windows -> passages; the question is
  embedded again, warm), fill (the working memory, in the generator's tokens), answer
  (span ranking, the generator scoring spans), print (what the CLI prints); per step the
  median, and the heavy modules loaded by then;
- **warm**: one process asks the demo's 11 questions once to warm up, then each
  ``--warm-rounds`` more times; p50 and p95 of ``Assistant.ask``.

Model caches (``~/.cache/ragmem``: the GGUF -> safetensors conversion, the ONNX export)
are warm, as on any run after the first. Writes OUT.json and OUT.md (default
eval/reports/cold-start); ``--label`` keeps several runs (before, after) in one report.
"""

from __future__ import annotations

import argparse
import contextlib
import io
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
STEPS = ("imports", "open", "embed", "retrieve", "fill", "answer", "print")


def steps(index: str, question: str) -> dict[str, Any]:
    """One fresh process: each step of `ragmem ask`, timed, with the modules it pulled in."""
    out: dict[str, Any] = {}

    cpu = [0.0]

    def step(name: str, t: float) -> float:
        now, used = time.perf_counter(), time.process_time()
        out[name] = {"s": round(now - t, 4), "cpu_s": round(used - cpu[0], 4),
                     "loaded": [m for m in HEAVY if m in sys.modules]}
        cpu[0] = used
        return now

    t = T0
    import ragmem.cli  # noqa: F401
    from ragmem.assistant import Assistant
    from ragmem.cli.output import print_span
    from ragmem.config import Config

    t = step("imports", t)
    assistant = Assistant.open(index, Config().with_env())
    t = step("open", t)
    assistant.embedder.embed([question])
    t = step("embed", t)
    passages = assistant.retriever.passages(question)
    t = step("retrieve", t)
    buffer = assistant.working_memory.fill(question, passages)
    t = step("fill", t)
    answer = assistant.answerer.answer(buffer)
    t = step("answer", t)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        print(answer.text)
        print_span(answer)
    step("print", t)
    out["total_s"] = round(time.perf_counter() - T0, 3)
    out["text"] = answer.text
    return out


def warm(index: str, rounds: int) -> dict[str, Any]:
    """One process: the demo's questions asked once, then ``rounds`` more times, timed."""
    from ragmem.assistant import Assistant
    from ragmem.config import Config

    lines = (ROOT / "ragmem/demo/questions.jsonl").read_text("utf-8").splitlines()
    questions = [json.loads(line)["question"] for line in lines if line.strip()]
    assistant = Assistant.open(index, Config().with_env())
    for q in questions:
        assistant.ask(q)
    times = []
    for _ in range(rounds):
        for q in questions:
            t = time.perf_counter()
            assistant.ask(q)
            times.append(time.perf_counter() - t)
    times.sort()
    return {"asks": len(times), "p50_s": round(statistics.median(times), 3),
            "p95_s": round(times[min(len(times) - 1, int(0.95 * len(times)))], 3),
            "loaded": [m for m in HEAVY if m in sys.modules]}


def build(index: Path) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ragmem.cli", "index", str(ROOT / "ragmem/demo/corpus"),
                    "--index", str(index)], check=True, cwd=ROOT, capture_output=True)
    return time.perf_counter() - t


def _child(flag: str, *args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "eval.bench.cold_start", flag, *args],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(index: Path, question: str, runs: int, rounds: int) -> dict[str, Any]:
    row: dict[str, Any] = {}
    if not (index / "manifest.json").exists():
        row["build_s"] = round(build(index), 1)
    manifest = json.loads((index / "manifest.json").read_text())
    row["manifest_embedder"] = f"{manifest['embedder']} {manifest.get('embedder_precision')}"
    ends = []
    for _ in range(runs):
        t = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "ragmem.cli", "ask", str(index), question],
                              cwd=ROOT, capture_output=True, text=True, check=True)
        ends.append(time.perf_counter() - t)
    row["end_to_end_s"] = [round(r, 2) for r in ends]
    row["end_to_end_median_s"] = round(statistics.median(ends), 2)
    row["printed"] = done.stdout.strip().splitlines()[0] if done.stdout else ""
    parts = [_child("--steps", str(index), question) for _ in range(runs)]
    row["steps"] = {s: {"median_s": round(statistics.median(p[s]["s"] for p in parts), 3),
                        "cpu_median_s": round(statistics.median(p[s]["cpu_s"] for p in parts), 3),
                        "loaded": parts[-1][s]["loaded"]} for s in STEPS}
    row["steps_total_median_s"] = round(statistics.median(p["total_s"] for p in parts), 3)
    if rounds:
        row["warm"] = _child("--warm", str(index), str(rounds))
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--question", default=QUESTION)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warm-rounds", type=int, default=3)
    p.add_argument("--label", default="after", help="this run's row in the report")
    p.add_argument("--out", type=Path, default=ROOT / "eval/reports/cold-start")
    p.add_argument("--dir", type=Path, help="build the demo index here and keep it "
                   "(an index already there is reused); default: a temp folder")
    p.add_argument("--steps", nargs=2, metavar=("INDEX", "QUESTION"), help=argparse.SUPPRESS)
    p.add_argument("--warm", nargs=2, metavar=("INDEX", "ROUNDS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.steps:
        print(json.dumps(steps(*args.steps)))
        return
    if args.warm:
        print(json.dumps(warm(args.warm[0], int(args.warm[1]))))
        return
    command = "python -m eval.bench.cold_start " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    old = json.loads(args.out.with_suffix(".json").read_text()) \
        if args.out.with_suffix(".json").exists() else {}
    runs_so_far = old.get("runs", {}) if isinstance(old.get("runs"), dict) else {}
    machine = {"platform": platform.platform(), "cores": os.cpu_count(),
               "load_average_at_start": os.getloadavg(),
               "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()}
    print(json.dumps({"command": command, "machine": machine}), file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="ragmem-cold-") as tmp:
        index = (args.dir or Path(tmp)) / "demo"
        row = measure(index, args.question, args.runs, args.warm_rounds)
    row |= {"command": command, "machine": machine,
            "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                     capture_output=True, text=True).stdout.strip()}
    runs_so_far[args.label] = row
    report = {"question": args.question, "runs": runs_so_far}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


def markdown(report: dict[str, Any]) -> str:
    lines = ["# Cold start: `ragmem ask` on the demo corpus (default config, extract mode)", "",
             f"Question: \"{report['question']}\". Step times are medians over fresh "
             "processes (wall, and the process's CPU time in brackets: all its threads); a step's "
             "time includes the libraries and models it loads first.", ""]
    runs = report["runs"]
    lines += ["| | " + " | ".join(runs) + " |", "|---|" + "---:|" * len(runs)]
    rows = [("**end to end** (median)", lambda r: f"**{r['end_to_end_median_s']:.2f} s**"),
            *((s, lambda r, s=s: f"{r['steps'][s]['median_s']:.3f} s" + (
                f" ({r['steps'][s]['cpu_median_s']:.3f} s CPU)"
                if "cpu_median_s" in r["steps"][s] else "")) for s in STEPS),
            ("steps total (median)", lambda r: f"{r['steps_total_median_s']:.2f} s"),
            ("warm ask p50 / p95", lambda r: f"{r['warm']['p50_s']:.3f} / "
             f"{r['warm']['p95_s']:.3f} s" if "warm" in r else "-"),
            ("printed", lambda r: r["printed"][:40]),
            ("embedder (manifest)", lambda r: str(r["manifest_embedder"])),
            ("commit", lambda r: r["commit"])]
    for name, cell in rows:
        lines.append(f"| {name} | " + " | ".join(cell(r) for r in runs.values()) + " |")
    lines += ["", "Heavy modules loaded after each step:", ""]
    for label, r in runs.items():
        lines.append(f"- {label}: " + "; ".join(
            f"{s}: {', '.join(r['steps'][s]['loaded']) or '-'}" for s in STEPS)
            + (f"; warm process: {', '.join(r['warm']['loaded'])}" if "warm" in r else ""))
    lines += ["", "Commands and machine:", ""]
    for label, r in runs.items():
        lines.append(f"- {label}: `{r['command']}` at {r['commit']}; "
                     f"{r['machine']['cores']} cores; `{r['machine']['uptime']}`")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
