"""Fit ragmem.chinese_answers on CMRC 2018 trial questions, on their gold paragraphs (no
retrieval): WEIGHTS (a softmax over each question's candidate spans, fitted to maximise
the expected character F1, Adam with an L2 penalty), WHOLE (per question kind, whether
the best span, its clause or its sentence scores the higher F1) and ABSTAIN_BELOW (the
sentence-match threshold that best tells a question's own paragraph from the next
article's).

    flock /tmp/ragmem-bench.lock python -m eval.chinese.tune \
        ../shared/datasets/cmrc2018/cmrc2018_trial.json --out eval/reports/chinese/tune

Prints what to copy into ragmem/chinese_answers.py, and character EM/F1 on the gold
paragraphs of: the shipped settings, settings fitted on the first half and scored on the
second, the best evidence sentence as the answer, and the oracle (the best candidate
there is). Never run it on dev: dev is where the choice is reported.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ragmem.chinese_answers import (
    ABSTAIN_BELOW,
    WEIGHTS,
    WHOLE,
    ChineseSpans,
    _clause_of,
    _read_span,
    _sentence_of,
    features,
    score,
)
from ragmem.chunking import split_sentences
from ragmem.config import AnsweringConfig
from ragmem.evaluation.datasets import load_squad
from ragmem.evaluation.metrics import char_exact_match, char_f1
from ragmem.extraction import rank_sentences
from ragmem.types import Passage

WAYS = ("span", "clause", "sentence")


def rows_of(path: str, config: AnsweringConfig, limit: int | None, offset: int = 0
            ) -> list[dict[str, Any]]:
    data = load_squad(path, long_document=False)
    docs = list(data.documents)
    passages: dict[str, Passage] = {}

    def passage_of(doc_id: str) -> Passage:
        if doc_id not in passages:
            doc = next(d for d in docs if d.doc_id == doc_id)
            passages[doc_id] = Passage(doc_id, doc.path, 0, len(doc.text), 1.0,
                                       tuple(split_sentences(doc_id, doc.text)))
        return passages[doc_id]

    order = [d.doc_id for d in docs]
    out = []
    for ex in data.examples[offset:None if limit is None else offset + limit]:
        assert ex.doc_id is not None
        ask, cands = ChineseSpans(config).candidates(ex.question, [passage_of(ex.doc_id)])
        other = order[(order.index(ex.doc_id) + 1) % len(order)]
        wrong = rank_sentences(ex.question, [passage_of(other)])
        out.append({"ex": ex, "kind": ask.kind, "cands": cands,
                    "passage": passage_of(ex.doc_id),
                    "feats": [features(ask, c) for c in cands],
                    "f1": [char_f1(c.text, ex.answers) for c in cands],
                    "absent_lexical": wrong[0].lexical if wrong else 0.0})
    return out


def pick(row: Mapping[str, Any], weights: Mapping[str, float]) -> int:
    return max(range(len(row["cands"])), key=lambda i: score(row["feats"][i], weights))


def answer(row: Mapping[str, Any], weights: Mapping[str, float], way: str) -> str:
    c = row["cands"][pick(row, weights)]
    span = _read_span(c.evidence, c, 0.0)
    return {"span": span, "clause": _clause_of(span), "sentence": _sentence_of(span)}[way].text


def evaluate(rows: list[dict[str, Any]], weights: Mapping[str, float],
             whole: Mapping[str, str], threshold: float = 0.0) -> dict[str, float]:
    em = f1 = answered = 0.0
    for r in rows:
        if not r["cands"]:
            continue
        best = r["cands"][pick(r, weights)]
        if best.evidence.lexical < threshold:
            continue
        answered += 1
        text = answer(r, weights, whole.get(r["kind"], "span"))
        em += char_exact_match(text, r["ex"].answers)
        f1 += char_f1(text, r["ex"].answers)
    n = len(rows)
    return {"em": round(em / n, 4), "f1": round(f1 / n, 4), "answered": round(answered / n, 4)}


def fit(rows: list[dict[str, Any]], names: list[str], steps: int = 300, lr: float = 0.1,
        l2: float = 1e-3) -> dict[str, float]:
    """Weights that maximise the expected F1 of a softmax over each question's spans."""
    data = [(np.array([[f.get(n, 0.0) for n in names] for f in r["feats"]]),
             np.array(r["f1"])) for r in rows if r["cands"]]
    w, m, v = np.zeros(len(names)), np.zeros(len(names)), np.zeros(len(names))
    for t in range(1, steps + 1):
        grad = l2 * w
        for x, f1 in data:
            s = x @ w
            p = np.exp(s - s.max())
            p /= p.sum()
            grad -= x.T @ (p * (f1 - p @ f1)) / len(data)
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad * grad
        w -= lr * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    return {n: round(float(x), 3) for n, x in zip(names, w, strict=True) if abs(x) >= 5e-4}


def whole_by_kind(rows: list[dict[str, Any]], weights: Mapping[str, float]) -> dict[str, str]:
    """Per question kind, the way of answering with the best mean F1 (span on a tie)."""
    f1: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(WAYS, 0.0))
    for r in rows:
        if r["cands"]:
            for way in WAYS:
                f1[r["kind"]][way] += char_f1(answer(r, weights, way), r["ex"].answers)
    best = {k: max(WAYS, key=lambda w: (f[w], w == "span")) for k, f in f1.items()}
    return {k: w for k, w in sorted(best.items()) if w != "span"}


def threshold_of(rows: list[dict[str, Any]], weights: Mapping[str, float]) -> float:
    """The sentence-match level that best separates own paragraphs (answer) from the
    next article's (abstain), counting both errors alike."""
    own = [r["cands"][pick(r, weights)].evidence.lexical for r in rows if r["cands"]]
    other = [r["absent_lexical"] for r in rows]
    levels = sorted(set(own) | set(other))
    right = [sum(x >= t for x in own) + sum(x < t for x in other) for t in levels]
    return round(float(levels[int(np.argmax(right))]), 3)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("trial")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--offset", type=int, default=0, help="skip the first N questions")
    parser.add_argument("--check", action="store_true",
                        help="only score the shipped settings (no fitting)")
    parser.add_argument("--out", help="folder for report.json and README.md")
    args = parser.parse_args()
    config = AnsweringConfig()
    t0 = time.perf_counter()
    rows = rows_of(args.trial, config, args.limit, args.offset)
    if args.check:
        report = {"command": " ".join(["python -m eval.chinese.tune", *sys.argv[1:]]),
                  "machine": f"{platform.platform()}; {uptime()}", "questions": len(rows),
                  "shipped": evaluate(rows, WEIGHTS, WHOLE),
                  "shipped_with_abstention": evaluate(rows, WEIGHTS, WHOLE, ABSTAIN_BELOW),
                  "seconds": round(time.perf_counter() - t0, 1)}
        print(json.dumps(report, indent=1, ensure_ascii=False))
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / "check.json").write_text(json.dumps(report, indent=1))
        return
    names = sorted({n for r in rows for f in r["feats"] for n in f})
    half = len(rows) // 2
    w_half = fit(rows[:half], names)
    whole_half = whole_by_kind(rows[:half], w_half)
    weights = fit(rows, names)
    whole = whole_by_kind(rows, weights)
    threshold = threshold_of(rows, weights)
    sentence_all = dict.fromkeys(("why", "when", "number", "where", "who", "how", "which",
                                  "what", "other"), "sentence")
    report = {
        "command": " ".join(["python -m eval.chinese.tune", *sys.argv[1:]]),
        "machine": f"{platform.platform()}; {uptime()}",
        "questions": len(rows),
        "config": {"evidence_sentences": config.evidence_sentences},
        "gold_paragraph": {
            "shipped": evaluate(rows, WEIGHTS, WHOLE),
            "shipped_with_abstention": evaluate(rows, WEIGHTS, WHOLE, ABSTAIN_BELOW),
            "fitted_on_first_half_scored_on_second": evaluate(rows[half:], w_half, whole_half),
            "fitted_spans_only_second_half": evaluate(rows[half:], w_half, {}),
            "fitted_sentence_second_half": evaluate(rows[half:], w_half, sentence_all),
            "fitted_on_all": evaluate(rows, weights, whole),
            "fitted_on_all_with_abstention": evaluate(rows, weights, whole, threshold),
            "oracle_candidate_f1": round(sum(max(r["f1"], default=0.0) for r in rows)
                                         / len(rows), 4),
        },
        "fitted": {"WEIGHTS": weights, "WHOLE": whole, "ABSTAIN_BELOW": threshold},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    emit(report, args.out)


def emit(report: dict[str, Any], out: str | None) -> None:
    """Print ``report``, and write it as ``out``/report.json when a folder is given."""
    print(json.dumps(report, indent=1, ensure_ascii=False))
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
