"""Choose the reader's abstention threshold on the whole pipeline, on training questions:
``python -m ragmem.training.threshold``.

The threshold the training command picks reads gold and negative paragraphs directly;
what a user meets is the working memory of a long-document index. This asks SQuAD
training questions (articles after the first 1,000 questions; the test articles are not
even indexed) through ``ragmem eval qa``'s harness twice, with the question's own
article searchable and filtered out, never abstaining, and keeps the lowest threshold
that abstains on ``--target`` of the absent ones. The weights file is rewritten with it
(its tensors unchanged) when ``--write`` is given.

    python -m ragmem.training.threshold --squad ../shared/datasets/squad_v1.1_dev/dev-v1.1.json \\
        --weights ragmem/data/reader.safetensors --questions 300 --write
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ragmem.config import Config
from ragmem.evaluation.datasets import QADataset, load_squad, select
from ragmem.evaluation.harness import evaluate_qa
from ragmem.training import data


def train_dataset(squad_path: str, questions: int, seed: int,
                  held_out: int = data.TEST_QUESTIONS) -> QADataset:
    """The long-document SQuAD of the training articles only, ``questions`` sampled."""
    full = load_squad(squad_path, long_document=True)
    squad = data.load(squad_path, held_out)
    test_titles = {squad.titles[a] for a in squad.test_articles}
    documents = [d for d in full.documents if d.title not in test_titles]
    kept = {d.doc_id for d in documents}
    examples = select([e for e in full.examples if e.doc_id in kept], sample=questions,
                      seed=seed)
    return QADataset(documents, examples, f"squad-train-articles-{full.sha256[:8]}",
                     full.sha256)


def sweep(present: list[dict[str, Any]], absent: list[dict[str, Any]],
          target: float) -> dict[str, Any]:
    """The lowest threshold abstaining on ``target`` of ``absent``, and what it costs."""
    conf_absent = np.array([r["confidence"] or 0.0 for r in absent])
    threshold = float(np.quantile(conf_absent, target, method="higher"))
    f1 = np.array([r["f1"] for r in present])
    conf = np.array([r["confidence"] or 0.0 for r in present])
    kept = np.where(conf >= threshold, f1, 0.0)
    table = [{"abstain_below": float(t), "f1": float(np.where(conf >= t, f1, 0.0).mean()),
              "abstained_answerable": float((conf < t).mean()),
              "abstained_absent": float((conf_absent < t).mean())}
             for t in (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)]
    return {"abstain_below": threshold, "questions": len(present), "sweep": table,
            "confidence_f1": [[float(c), float(x)] for c, x in zip(conf, f1, strict=True)],
            "confidence_absent": [float(c) for c in conf_absent],
            "f1_never_abstaining": float(f1.mean()), "f1": float(kept.mean()),
            "f1_cost": float(f1.mean() - kept.mean()),
            "f1_cost_se": float((f1 - kept).std() / math.sqrt(len(f1))),
            "abstained_answerable": float((conf < threshold).mean()),
            "abstained_absent": float((conf_absent < threshold).mean())}


def at_threshold(present: list[dict[str, Any]], absent: list[dict[str, Any]],
                 threshold: float) -> dict[str, float]:
    """The harness's answer metrics of never-abstaining runs, as if the answers below
    ``threshold`` had abstained (an abstention scores 0 and cites nothing)."""
    def kept(r: dict[str, Any], key: str) -> float:
        return float(r[key]) if (r["confidence"] or 0.0) >= threshold else 0.0

    n = len(present)
    out = {k: sum(kept(r, k) for r in present) / n
           for k in ("em", "f1", "gold_in_answer", "citation_correct", "citation_span_correct")}
    out["abstained_answerable"] = sum((r["confidence"] or 0.0) < threshold
                                      for r in present) / n
    if absent:
        out["abstained_absent"] = sum((r["confidence"] or 0.0) < threshold
                                      for r in absent) / len(absent)
    return out


def rewrite_threshold(weights: Path, threshold: float) -> None:
    from safetensors.torch import load_file, save_file

    from ragmem.reader_model import read_weights

    schema, _ = read_weights(weights)
    tensors = load_file(str(weights))
    tmp = weights.with_name(weights.name + ".tmp")
    save_file(tensors, str(tmp),
              metadata=replace(schema, abstain_below=threshold).metadata())
    tmp.replace(weights)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ragmem.training.threshold",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--squad", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--target", type=float, default=0.85)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true", help="rewrite the weights file")
    parser.add_argument("--out", default=None, help="JSON report")
    parser.add_argument("--rescore", nargs=2, metavar=("PRESENT", "ABSENT"), default=None,
                        help="instead: score two never-abstaining harness reports "
                             "(report.json) at the weights' threshold and a sweep")
    args = parser.parse_args(argv)
    if args.rescore:
        _rescore(Path(args.weights), *args.rescore)
        return
    dataset = train_dataset(args.squad, args.questions, args.seed)
    config = Config().with_env().with_overrides({
        "reader": {"weights": str(Path(args.weights).resolve()), "abstain_below": 0.0},
        "answering": {"mode": "extract", "extractor": "reader"}})
    runs = [evaluate_qa(dataset, config, budgets=(2048,), absent=absent)["questions"]
            for absent in (False, True)]
    result = {"command": "python -m ragmem.training.threshold " + " ".join(
        argv if argv is not None else __import__("sys").argv[1:]),
        **sweep(runs[0], runs[1], args.target)}
    print(json.dumps(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    if args.write:
        rewrite_threshold(Path(args.weights), result["abstain_below"])


def _rescore(weights: Path, present_report: str, absent_report: str) -> None:
    from ragmem.reader_model import read_weights

    present, absent = (json.loads(Path(p).read_text("utf-8"))["questions"]
                       for p in (present_report, absent_report))
    shipped = read_weights(weights)[0].abstain_below
    rows = {f"{t:.3f}": at_threshold(present, absent, t)
            for t in sorted({0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, shipped})}
    print(json.dumps({"shipped_threshold": shipped, "present": len(present),
                      "absent": len(absent), "at": rows}, indent=1))


if __name__ == "__main__":
    main()
