"""ask latency and answers on the demo corpus, the answer modes side by side.

    python -m eval.bench.answer_modes [--rounds 3] [--modes extract,extract-pmi,generate]
        [--out eval/reports/answer-modes-demo]

Modes: ``extract`` without and ``extract-pmi`` with ``AnsweringConfig.pmi``, and
``generate``. Indexes ragmem/demo/corpus once (default models), loads both models, then
for every demo question retrieves and fills the working memory and answers it in every
mode, in rotating order each round, so all modes see the same machine load. Reported: p50 /
p95 of the whole ask (retrieve + fill + answer, models loaded) per mode, and whether the
answer holds one of the question's gold strings. Then the first ``ragmem ask`` in a
fresh process, per mode: wall time of the command, models loaded from the disk cache.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# mode name -> (AnsweringConfig.mode, AnsweringConfig.pmi)
MODES = {"extract": ("extract", False), "extract-pmi": ("extract", True),
         "generate": ("generate", False)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "eval/reports/answer-modes-demo")
    ap.add_argument("--modes", default=",".join(MODES),
                    help=f"comma-separated, of {', '.join(MODES)}")
    args = ap.parse_args()
    modes = args.modes.split(",")
    if unknown := set(modes) - set(MODES):
        ap.error(f"unknown modes {sorted(unknown)}; choose from {', '.join(MODES)}")

    import torch

    from ragmem import Assistant, __version__
    from ragmem.answering import answerer_for
    from ragmem.config import AnsweringConfig, Config

    config = Config()
    head = {"command": "python " + " ".join(sys.argv),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} "
                       f"cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
                       f"ragmem {__version__}, load average {os.getloadavg()[0]:.1f}",
            "config": config.to_dict()}
    print(json.dumps({k: head[k] for k in ("command", "machine")}))
    lines = (ROOT / "ragmem/demo/questions.jsonl").read_text(encoding="utf-8").splitlines()
    questions = [json.loads(line) for line in lines if line.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "demo"
        assistant = Assistant.create(index, config)
        assistant.index([ROOT / "ragmem/demo/corpus"])
        answerers = {mode: answerer_for(AnsweringConfig(mode=MODES[mode][0], pmi=MODES[mode][1]),
                                        assistant.generator, assistant.embedder)
                     for mode in modes}
        assistant.ask(questions[0]["question"])  # loads both models, outside the timing
        rows: dict[str, list[dict[str, object]]] = {m: [] for m in answerers}
        for r in range(args.rounds):
            for i, q in enumerate(questions):
                k = (r + i) % len(modes)
                order = modes[k:] + modes[:k]
                for mode in order:
                    t0 = time.perf_counter()
                    passages = assistant.retriever.passages(q["question"])
                    buffer = assistant.working_memory.fill(q["question"], passages)
                    answer = answerers[mode].answer(buffer)
                    seconds = time.perf_counter() - t0
                    right = any(a.lower() in answer.text.lower() for a in q["answers"])
                    rows[mode].append({"round": r, "question": q["question"],
                                       "answer": answer.text, "seconds": seconds,
                                       "right": right, "abstained": answer.abstained})
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        assistant.close()
        cold = {}
        for mode in answerers:
            answer, pmi = MODES[mode]
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "ragmem.cli", "ask", str(index),
                            questions[0]["question"], "--answer", answer, "--no-stream"],
                           check=True, capture_output=True,
                           env={**os.environ, "RAGMEM_ANSWERING_PMI": str(pmi).lower()})
            cold[mode] = time.perf_counter() - t0
    summary = {}
    for mode, rs in rows.items():
        times = sorted(float(x["seconds"]) for x in rs)  # type: ignore[arg-type]
        first = [x for x in rs if x["round"] == 0]
        summary[mode] = {"ask_p50_s": statistics.median(times),
                         "ask_p95_s": times[int(0.95 * (len(times) - 1))],
                         "right": sum(bool(x["right"]) for x in first),
                         "abstained": sum(bool(x["abstained"]) for x in first),
                         "questions": len(first), "first_ask_fresh_process_s": cold[mode]}
    report = {**head, "summary": summary, "answers": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    md = [f"# Answer modes on the demo corpus ({len(questions)} questions, "
          f"{args.rounds} rounds)", "", f"Command: `{head['command']}`  ",
          f"Machine: {head['machine']}", "",
          "| mode | ask p50 s | ask p95 s | gold in answer | abstained | first ask, fresh "
          "process s |", "|---|---:|---:|---:|---:|---:|"]
    for mode, s in summary.items():
        md.append(f"| {mode} | {s['ask_p50_s']:.2f} | {s['ask_p95_s']:.2f} | "
                  f"{s['right']}/{s['questions']} | {s['abstained']} | "
                  f"{s['first_ask_fresh_process_s']:.1f} |")
    md += ["", "| question | " + " | ".join(modes) + " |", "|---|" + "---|" * len(modes)]
    for per_mode in zip(*(rows[m] for m in modes), strict=True):
        if per_mode[0]["round"] == 0:
            md.append(f"| {per_mode[0]['question']} | "
                      + " | ".join(_cell(x) for x in per_mode) + " |")
    (args.out / "summary.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    print("\n".join(md))


def _cell(row: dict[str, object]) -> str:
    text = " ".join(str(row["answer"]).split()).replace("|", "\\|")
    return ("✓ " if row["right"] else "") + (text if len(text) < 90 else text[:87] + "...")


if __name__ == "__main__":
    main()
