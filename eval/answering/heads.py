"""Do the span ranker's heads help its second stage? k-fold over train questions.

    python -m ragmem.training.span_ranker --squad ../shared/datasets/squad_v1.1_dev/dev-v1.1.json \\
        --work W --out /tmp/weights          # leaves W/answerable-*.npz
    python -m eval.answering.heads --work W --out heads-train.json

The research behind the shipped heads (eval/reports/answer-stage-models/lm-head.md,
mlp-head.md; the scripts that made those reports are at commit 8ae1abe), rerun on the
numbers a retrain keeps: each answerable train question's first-stage candidates, the
generator's likelihoods and its hidden state after each span. Each head's scores are
out of fold (a question is scored by a head fitted without it), then the second stage
is fitted and judged by k-fold over questions with the same folds, with no head, with
each head and with both (shipped). It prints and writes each arm's top-1 F1 and its
paired difference to the arm without heads (with its standard error). Only SQuAD dev
questions after the first 1,000 are in the work folder: nothing here reads the test.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ragmem.extraction import feature_schema
from ragmem.span_weights import LM_FEATURES
from ragmem.training.span_ranker import Settings
from ragmem.training.span_ranker_data import Scored, read_scored
from ragmem.training.span_ranker_fit import (
    fit_linear_head,
    fit_listwise,
    fit_mlp_head,
    groups_of,
    linear_scores,
    mlp_scores,
    out_of_fold,
)


def head_scores(d: Scored, s: Settings) -> dict[str, np.ndarray]:
    """Each candidate's out-of-fold score from the linear and the MLP head."""
    h, y, g = d.hidden, d.f1, d.group
    return {
        "lm_head": out_of_fold(h, y, g, s.folds, lambda a, b, c, other: linear_scores(
            fit_linear_head(a, b, c, s.head_l2, s.epochs), other)),
        "mlp_head": out_of_fold(h, y, g, s.folds, lambda a, b, c, other: mlp_scores(
            fit_mlp_head(a, b, c, s.mlp_units, s.mlp_l2, s.epochs, s.seed), other))}


def top1_f1(d: Scored, x: np.ndarray, names: Sequence[str], s: Settings) -> np.ndarray:
    """Per question, the F1 of the candidate a second stage fitted without its fold
    ranks first."""
    questions = np.unique(d.group)
    fold = {q: k % s.folds for k, q in enumerate(questions)}
    of_row = np.array([fold[q] for q in d.group])
    out = np.zeros(len(questions))
    for k in range(s.folds):
        train = of_row != k
        w = fit_listwise(groups_of(x[train], d.f1[train], d.group[train]), names, s.mix_l2,
                         s.epochs)
        v = np.array([w.get(n, 0.0) for n in names], dtype=np.float32)
        for j, q in enumerate(questions):
            if fold[q] == k:
                rows = d.group == q
                out[j] = d.f1[rows][int(np.argmax(x[rows] @ v))]
    return out


def compare(d: Scored, s: Settings) -> dict[str, Any]:
    torch.manual_seed(s.seed)
    spans = feature_schema()
    base = [n for n in d.names if n in spans or n == "first_stage" or n in LM_FEATURES]
    scores = head_scores(d, s)
    arms: dict[str, list[str]] = {"no head": [], "+ linear head (lm_head)": ["lm_head"],
            "+ MLP head (mlp_head)": ["mlp_head"], "+ both (shipped)": ["lm_head", "mlp_head"]}
    results: dict[str, Any] = {}
    for arm, heads in arms.items():
        x = np.column_stack([d.matrix(base), *(scores[h] for h in heads)])
        f1 = top1_f1(d, x, [*base, *heads], s)
        diff = f1 - results["no head"]["per_question_f1"] if results else np.zeros_like(f1)
        results[arm] = {"f1": float(f1.mean()), "paired_gain": float(diff.mean()),
                        "paired_gain_se": float(diff.std() / np.sqrt(len(diff))),
                        "per_question_f1": f1}
        print(f"{arm:28s} F1 {f1.mean():.3f}  vs no head {diff.mean():+.3f} "
              f"(SE {results[arm]['paired_gain_se']:.3f})", flush=True)
    for r in results.values():
        r["per_question_f1"] = r["per_question_f1"].round(4).tolist()
    return results


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m eval.answering.heads",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True, help="a span-ranker retrain's --work folder")
    parser.add_argument("--questions", type=int, help="the first N questions only")
    parser.add_argument("--folds", type=int, default=Settings.folds)
    parser.add_argument("--epochs", type=int, default=Settings.epochs)
    parser.add_argument("--out", help="a JSON report")
    args = parser.parse_args(argv)
    d = read_scored(Path(args.work) / "answerable")
    if args.questions:
        d = d.questions(args.questions)
    settings = Settings(folds=args.folds, epochs=args.epochs)
    print(f"python -m eval.answering.heads {' '.join(argv)}\n{len(np.unique(d.group))} "
          f"questions, {len(d.group)} candidates; machine {platform.machine()}, "
          f"{torch.get_num_threads()} threads", flush=True)
    results = compare(d, settings)
    if args.out:
        Path(args.out).write_text(json.dumps({
            "command": f"python -m eval.answering.heads {' '.join(argv)}",
            "questions": int(len(np.unique(d.group))), "settings": asdict(settings),
            "results": results}, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
