"""Answers to Chinese questions through the whole pipeline, one index, every option.

    flock /tmp/ragmem-bench.lock python -m eval.chinese.answers \
        ../shared/datasets/cmrc2018/cmrc2018_dev.json --limit 1000 \
        --out eval/reports/chinese/answers-dev-first1000

CMRC 2018 long-document: all the file's articles in one index (the one ``ragmem eval
qa`` builds for the same file), each question asked as ``ragmem ask`` asks it. Each
option of ``AnsweringConfig.chinese`` is one ``evaluate_qa`` report under ``--out``
(``cues``; ``rescored``, which runs the generator, on the first ``--generator-limit``
questions), and ``README.md`` puts them side by side: character
EM/F1 (CMRC's official way), the right article at 1 and 5, evidence in the working
memory, abstention, answers that cut a word, and the seconds per question.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

from ragmem.config import Config
from ragmem.evaluation import load_squad, write_report
from ragmem.evaluation.harness import evaluate_qa
from ragmem.evaluation.indexes import open_index

OPTIONS = ("cues", "rescored")
SLOW = ("rescored",)  # it runs the 135M generator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("file")
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--generator-limit", type=int, default=200,
                        help="questions for rescored (it runs the generator)")
    parser.add_argument("--options", default=",".join(OPTIONS))
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    data = load_squad(args.file)
    out = Path(args.out)
    command = " ".join(["python -m eval.chinese.answers", *sys.argv[1:]])
    rows = []
    for option in args.options.split(","):
        config = Config().with_env().with_overrides(
            {"answering": {"mode": "extract", "chinese": option}})
        assistant, _ = open_index(data.name, data.documents, config)
        limit = args.generator_limit if option in SLOW else args.limit
        t0 = time.perf_counter()
        report = evaluate_qa(data, config, limit=limit, assistant=assistant, budgets=(1024,),
                             command=f"{command}  # option {option}")
        seconds = time.perf_counter() - t0
        write_report(report, out / option)
        answers, evidence = report["metrics"]["answers"], report["metrics"]["evidence"]
        rows.append({"option": option, "questions": limit,
                     "em": answers["exact_match"], "f1": answers["f1"],
                     "abstained": answers["abstained_answerable"],
                     "cut_words": answers.get("answers_cutting_a_word", 0.0),
                     "article@1": evidence["article@1"], "article@5": evidence["article@5"],
                     "evidence@5": evidence["evidence_recall@5"],
                     "answer_in_context": report["metrics"]["working_memory"]
                     ["answer_in_context"],
                     "s_per_question": seconds / max(1, limit)})
        print(json.dumps(rows[-1]), flush=True)
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    lines = [f"# Chinese answers, {data.name} long-document ({len(data.documents)} articles "
             "in one index)", "", f"- command: `{command}`",
             f"- machine: {platform.platform()}; {uptime}",
             *[f"- note: {n}" for n in data.notes()], "",
             "| option | questions | EM (char) | F1 (char) | abstained | answers cutting a "
             "word | article@1 | article@5 | evidence@5 | answer in context | s/question |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['option']} | {r['questions']} | {r['em']:.3f} | {r['f1']:.3f} | "
              f"{r['abstained']:.3f} | {r['cut_words']:.0f} | {r['article@1']:.3f} | "
              f"{r['article@5']:.3f} | {r['evidence@5']:.3f} | "
              f"{r['answer_in_context']:.3f} | {r['s_per_question']:.2f} |" for r in rows]
    out.mkdir(parents=True, exist_ok=True)
    (out / "README.md").write_text("\n".join(lines) + "\n")
    (out / "summary.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
