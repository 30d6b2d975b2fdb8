"""Whether to answer: the confidence model with more of what the pipeline already knows.

    python eval/answering/confidence.py --train TRAIN.json --train-absent TRAIN_ABSENT.json \\
        --test TEST.json --test-absent TEST_ABSENT.json \\
        --out eval/reports/answer-stage-models/confidence.json

The lists are ``aggregate.py rank`` output: each question's ranked spans from the shipped
pipeline with their second-stage features. The confidence model is logistic (is the
chosen span right, F1 >= 0.5?), fitted on train answerable and train absent questions;
its threshold is train_ranker.py's rule: abstain as often as possible on absent
questions while losing at most ``--max-f1-loss`` F1 on answerable ones. Arms:

- ``shipped``: the shipped confidence and threshold;
- ``refit``: the shipped signals refitted on these lists (the control: the train
  shares here are in-sample for the second stage, so this arm carries the same bias);
- ``refit + retrieval``: also the passage's retrieval score, the best span's raw
  first-stage score and its sentence's rank: how well the evidence fits at all, which
  a missing article should lower;
- ``refit + agreement``: also how far the best span stands out (share of the best
  minus the second) and the share of every span with the same text.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from aggregate import outcome, summary  # noqa: E402
from options import paired_gain  # noqa: E402
from train_ranker import choose_threshold, fit_logistic, matrix  # noqa: E402

from ragmem.evaluation.metrics import normalize_answer  # noqa: E402
from ragmem.extraction import Ranker  # noqa: E402

Row = dict[str, Any]


def shipped_signals(r: Row) -> dict[str, float]:
    """``ragmem.answering.confidence_signals`` of the best span."""
    s = r["ranked"][0]
    f = s["features"]
    return {"probability": s["share"], "lexical": f.get("lexical", 0.0),
            "dense": f.get("dense", 0.0), **{k: v for k, v in f.items() if k.startswith("lm_")}}


def retrieval_signals(r: Row) -> dict[str, float]:
    s = r["ranked"][0]
    f = s["features"]
    return {**shipped_signals(r), "passage_score": f.get("passage_score", 0.0),
            "first_raw": s["first_raw"], "rank0": f.get("rank0", 0.0)}


def agreement_signals(r: Row) -> dict[str, float]:
    spans = r["ranked"]
    second = spans[1]["share"] if len(spans) > 1 else 0.0
    text = normalize_answer(spans[0]["text"])
    support = sum(s["share"] for s in spans if normalize_answer(s["text"]) == text)
    return {**shipped_signals(r), "margin": spans[0]["share"] - second, "support": support}


SIGNALS = {"refit": shipped_signals, "refit + retrieval": retrieval_signals,
           "refit + agreement": agreement_signals,
           "refit + both": lambda r: {**retrieval_signals(r), **agreement_signals(r)}}


def judged(rows: Sequence[Row], confidence: Sequence[float], threshold: float
           ) -> list[dict[str, float]]:
    """Per question, the ``outcome`` of its best span, which answers when the confidence
    clears ``threshold``."""
    return [outcome(r, r["ranked"][0] if r["ranked"] and c >= threshold else None)
            for r, c in zip(rows, confidence, strict=True)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name in ("train", "train-absent", "test", "test-absent", "out"):
        ap.add_argument(f"--{name}", required=True)
    ap.add_argument("--max-f1-loss", type=float, default=0.04)
    args = ap.parse_args()

    def load(path: str) -> list[Row]:
        return list(json.loads(Path(path).read_text())["rows"])

    train, train_absent = load(args.train), load(args.train_absent)
    test, test_absent = load(args.test), load(args.test_absent)
    labelled = [(r, k) for rows, k in ((train, "answerable"), (train_absent, "absent"))
                for r in rows if r["ranked"]]
    fit_rows = [r for r, _ in labelled]
    kinds = np.array([k for _, k in labelled])
    f1 = np.array([outcome(r, r["ranked"][0])["f1"] if k == "answerable" else 0.0
                   for r, k in labelled])
    right = (f1 >= 0.5).astype(np.float32)

    report: dict[str, Any] = {
        "command": "python " + " ".join(sys.argv),
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        "data": {"train": len(train), "train_absent": len(train_absent),
                 "test": len(test), "test_absent": len(test_absent)},
        "max_f1_loss": args.max_f1_loss, "arms": {}}
    shipped_threshold = test[0]["abstain_below"]
    arms: dict[str, tuple[list[float], list[float], float, dict[str, float]]] = {
        "shipped": ([r["ranked"][0]["confidence"] if r["ranked"] else 0.0 for r in test],
                    [r["ranked"][0]["confidence"] if r["ranked"] else 0.0
                     for r in test_absent], shipped_threshold, {})}
    for name, signals in SIGNALS.items():
        dicts = [signals(r) for r in fit_rows]
        names = sorted({k for d in dicts for k in d})
        w, b = fit_logistic(matrix(dicts, names), right, names)
        model = Ranker(w, b)

        def conf(rows: Sequence[Row], model: Ranker = model, signals: Any = signals
                 ) -> list[float]:
            return [float(1 / (1 + np.exp(-model.score(signals(r))))) if r["ranked"] else 0.0
                    for r in rows]

        threshold, _ = choose_threshold(np.array(conf(fit_rows)), f1, kinds, args.max_f1_loss)
        arms[name] = (conf(test), conf(test_absent), threshold, {**w, "bias": b})
    base = judged(test, arms["shipped"][0], arms["shipped"][2])
    for name, (c_test, c_absent, threshold, weights) in arms.items():
        per = judged(test, c_test, threshold)
        report["arms"][name] = {
            "abstain_below": threshold, **summary(per),
            "abstained_absent": round(float(np.mean(np.array(c_absent) < threshold)), 4),
            "f1_gain": paired_gain(base, per),
            "citation_gain": paired_gain(base, per, "citation"),
            "weights": weights}
        # The whole trade-off on test, for the plot: every threshold, not only the chosen.
        report["arms"][name]["curve"] = [
            {"abstain_below": t, "f1": summary(judged(test, c_test, t))["f1"],
             "abstained_absent": round(float(np.mean(np.array(c_absent) < t)), 4)}
            for t in np.round(np.arange(0.0, 0.7, 0.02), 2).tolist()]
    text = json.dumps(report, indent=1)
    Path(args.out).write_text(text + "\n")
    print(json.dumps({k: {m: v for m, v in a.items() if m not in ("weights", "curve")}
                      for k, a in report["arms"].items()}, indent=1))
    plot(report, Path(args.out).with_suffix(".png"))


def plot(report: dict[str, Any], path: Path) -> None:
    """F1 on answerable questions against abstention on absent ones, one line per arm,
    the chosen threshold marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name, arm in report["arms"].items():
        xs = [p["abstained_absent"] for p in arm["curve"]]
        ys = [p["f1"] for p in arm["curve"]]
        (line,) = ax.plot(xs, ys, label=name, lw=1.4)
        ax.plot([arm["abstained_absent"]], [arm["f1"]], "o", color=line.get_color())
    ax.axvline(0.70, color="grey", ls=":", lw=1)
    ax.set_xlabel("abstained on questions whose article is absent (test, 300)")
    ax.set_ylabel("F1 on answerable questions (test, first 500)")
    ax.set_title("When to abstain: each confidence model over its thresholds\n"
                 "(dots: the threshold chosen on train)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
