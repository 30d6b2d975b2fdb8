"""The demo's own questions, asked as a user asks them: right, wrong or abstained.

    ragmem index ragmem/demo/corpus --index demo
    python -m eval.demo --index demo --out eval/reports/reader/demo.json

ragmem/demo/questions.jsonl holds 11 questions about the three bundled stories, each
with its gold answers and the sentence that answers it. Too few to tune on, and nothing
is tuned on them: they show what a new user meets. An answer is right when its token
F1 against a gold answer is at least 0.5 (SQuAD's normalisation); a wrong answer with
confidence 0.5 or more is the failure users mind most, and is counted apart. Timings:
each question asked warm (models loaded), the median of ``--rounds`` rounds; the first
ask of a fresh ``ragmem ask`` process, timed as a whole.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ragmem import Assistant
from ragmem.config import Config
from ragmem.evaluation.metrics import exact_match, token_f1

ROOT = Path(__file__).resolve().parents[1]


def demo_questions() -> list[dict[str, Any]]:
    """ragmem/demo/questions.jsonl: question, answers, doc_id, evidence."""
    lines = (ROOT / "ragmem/demo/questions.jsonl").read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def judge(answer_text: str, abstained: bool, confidence: float | None,
          answers: list[str]) -> dict[str, Any]:
    f1 = 0.0 if abstained else token_f1(answer_text, answers)
    right = not abstained and f1 >= 0.5
    return {"answer": answer_text, "abstained": abstained, "confidence": confidence,
            "em": 0.0 if abstained else exact_match(answer_text, answers), "f1": f1,
            "right": right,
            "wrong_confident": not abstained and not right and (confidence or 0) >= 0.5}


def first_ask_seconds(index: str, question: str) -> float:
    """A fresh ``ragmem ask`` process, start to exit."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ragmem.cli", "ask", index, question],
                   check=True, capture_output=True)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m eval.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", default="demo")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fresh", type=int, default=3, help="fresh-process first asks")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    questions = demo_questions()
    with Assistant.open(args.index, Config().with_env()) as assistant:
        assistant.warm_up()
        rows, seconds = [], []
        for r in range(args.rounds):
            for q in questions:
                t0 = time.perf_counter()
                answer = assistant.ask(q["question"])
                seconds.append(time.perf_counter() - t0)
                if r == 0:
                    rows.append({"question": q["question"], "gold": q["answers"],
                                 **judge(answer.text, answer.abstained, answer.confidence,
                                         q["answers"])})
    fresh = [first_ask_seconds(args.index, questions[0]["question"])
             for _ in range(args.fresh)]
    report = {
        "command": " ".join(["python -m eval.demo", *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {platform.system()}",
        "questions": len(rows),
        "right": sum(r["right"] for r in rows),
        "abstained": sum(r["abstained"] for r in rows),
        "wrong": sum(not r["right"] and not r["abstained"] for r in rows),
        "wrong_confident": sum(r["wrong_confident"] for r in rows),
        "warm_ask_p50_s": statistics.median(seconds),
        "first_ask_fresh_process_s": fresh, "first_ask_median_s": statistics.median(fresh),
        "rows": rows,
    }
    for r in rows:
        mark = "right" if r["right"] else "abstained" if r["abstained"] else "WRONG"
        print(f"{mark:9} {r['confidence'] or 0:.2f}  {r['question']}  ->  {r['answer']}")
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n",
                                  encoding="utf-8")


if __name__ == "__main__":
    main()
