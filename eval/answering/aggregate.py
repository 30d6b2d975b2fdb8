"""Choosing the answer from the ranked spans: the best one alone, or spans pooled.

    python eval/answering/aggregate.py rank --part train --n 600 --out TRAIN.json
    python eval/answering/aggregate.py rank --part test --n 500 --out TEST.json
    python eval/answering/aggregate.py rank --part test --n 300 --absent --out ABSENT.json
    python eval/answering/aggregate.py evaluate --train TRAIN.json --test TEST.json \\
        --absent ABSENT.json --out eval/reports/answer-stage-models/aggregate.json
    python eval/answering/aggregate.py cite --train TRAIN.json --test TEST.json

``rank`` runs the shipped pipeline (retrieve, fill, ``ExtractAnswerer.spans``) and
keeps each question's whole ranked list: every kept span with its share, confidence and
offsets. ``evaluate`` then tries ways of picking the answer from those same lists, so
the differences are the policies', not the machine's:

- ``top1``: the best span (shipped);
- ``same-text``: spans with the same normalised text pooled (a name said in three
  sentences is one answer with three supports), the pool with the largest summed share
  answering, cited where its best span is;
- ``contain``: the best span, or a longer kept span of the same sentence that contains
  it when its share is at least ``alpha`` times the best's ("Broncos" -> "Denver
  Broncos"): ``alpha`` is tuned on the train part;
- ``nested``: each span scored by its share plus ``beta`` times the shares of the kept
  spans inside it.

Train: SQuAD v1.1 dev questions after the first 1,000 (train_ranker.py's seed-1 sample);
test: the first 500, and the first 300 asked with their article filtered out.

``cite`` keeps the answer and asks where to cite it: when the chosen text occurs at
several places among the kept spans, the occurrence with the best sentence, retrieval,
first-stage or head score instead of the best-ranked one.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from options import paired_gain  # noqa: E402
from train_ranker import SQUAD, working_memories  # noqa: E402

from ragmem.config import Config  # noqa: E402
from ragmem.evaluation.datasets import load_squad  # noqa: E402
from ragmem.evaluation.metrics import (  # noqa: E402
    answer_in_text,
    exact_match,
    normalize_answer,
    span_hit,
    token_f1,
)

Row = dict[str, Any]
Policy = Callable[[list[dict[str, Any]]], int | None]


def rank(part: str, n: int, absent: bool, out: Path, keep: int = 24) -> None:
    """Each question's ranked spans from the shipped pipeline, as JSON."""
    from ragmem.answering import ExtractAnswerer
    from ragmem.evaluation.indexes import open_index

    data = load_squad(SQUAD)
    assistant, _ = open_index(data.name, data.documents, Config().with_env())
    rows: list[Row] = []
    with assistant:
        answerer = assistant.answerer
        assert isinstance(answerer, ExtractAnswerer)
        # Train: train_ranker.py's seed-1 sample (the absent questions are its first ones).
        for e, buffer in working_memories(assistant, data, n, 1, absent, part == "test"):
            spans = answerer.spans(e.question, buffer.passages)
            rows.append({
                "qid": e.qid, "question": e.question, "answers": list(e.answers),
                "doc_id": e.doc_id, "spans": [list(s) for s in e.spans],
                "passages": [[p.doc_id, p.start, p.end] for p in buffer.passages],
                "ranked": [{"text": s.candidate.text, "share": s.probability,
                            "confidence": s.confidence, "start": s.candidate.start,
                            "end": s.candidate.end, "passage": s.candidate.evidence.passage,
                            "sentence": s.candidate.evidence.sentence.start,
                            # What a confidence model could read (confidence.py).
                            "features": {k: round(v, 5) for k, v in s.features.items()},
                            "first_raw": answerer.features.score(s.candidate.features)}
                           for s in spans[:keep]],
                "abstain_below": answerer.abstain_below})
    out.write_text(json.dumps({"part": part, "absent": absent, "rows": rows}))


def top1(spans: list[dict[str, Any]]) -> int | None:
    return 0 if spans else None


def same_text(spans: list[dict[str, Any]]) -> int | None:
    pools: dict[str, float] = defaultdict(float)
    for s in spans:
        pools[normalize_answer(s["text"])] += s["share"]
    if not pools:
        return None
    best = max(pools, key=lambda k: pools[k])
    return next(i for i, s in enumerate(spans) if normalize_answer(s["text"]) == best)


def _inside(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether span ``a`` lies within span ``b`` (same sentence, not the same span)."""
    return (a["sentence"] == b["sentence"] and a["passage"] == b["passage"]
            and b["start"] <= a["start"] and a["end"] <= b["end"]
            and (a["start"], a["end"]) != (b["start"], b["end"]))


def contain(alpha: float) -> Policy:
    def pick(spans: list[dict[str, Any]]) -> int | None:
        if not spans:
            return None
        best = spans[0]
        wider = [i for i, s in enumerate(spans)
                 if _inside(best, s) and s["share"] >= alpha * best["share"]]
        return max(wider, key=lambda i: spans[i]["share"]) if wider else 0
    return pick


def nested(beta: float) -> Policy:
    def pick(spans: list[dict[str, Any]]) -> int | None:
        if not spans:
            return None
        scores = [s["share"] + beta * sum(t["share"] for t in spans if _inside(t, s))
                  for s in spans]
        return max(range(len(spans)), key=lambda i: scores[i])
    return pick


def judged(rows: Sequence[Row], policy: Policy, abstain: bool = True) -> list[dict[str, float]]:
    """Per question, the ``outcome`` of the span ``policy`` picks; it answers when its own
    confidence clears the threshold (always, without ``abstain``)."""
    out = []
    for r in rows:
        i = policy(r["ranked"])
        s = r["ranked"][i] if i is not None else None
        answers = s is not None and (not abstain or s["confidence"] >= r["abstain_below"])
        out.append(outcome(r, s if answers else None))
    return out


def outcome(r: Row, s: dict[str, Any] | None) -> dict[str, float]:
    """Span ``s`` of question ``r`` as the answer (``None``: it abstains), scored as the
    harness scores it: EM, F1, gold in answer, citation (its passage holds an annotated
    gold span) and abstention."""
    if s is None:
        return {"em": 0.0, "f1": 0.0, "gold_in_answer": 0.0, "citation": 0.0,
                "abstained": 1.0}
    doc, start, end = r["passages"][s["passage"]]
    return {"em": exact_match(s["text"], r["answers"]),
            "f1": token_f1(s["text"], r["answers"]),
            "gold_in_answer": float(answer_in_text(s["text"], r["answers"])),
            "citation": float(span_hit(doc, start, end, r["doc_id"],
                                       [tuple(x) for x in r["spans"]])),
            "abstained": 0.0}


def summary(per: Sequence[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.fmean(p[k] for p in per), 4) for k in per[0]}


def evaluate(args: argparse.Namespace) -> None:
    train = json.loads(Path(args.train).read_text())["rows"]
    test = json.loads(Path(args.test).read_text())["rows"]
    absent = json.loads(Path(args.absent).read_text())["rows"] if args.absent else []
    grid = [0.1, 0.2, 0.3, 0.5, 0.7, 1.0]
    # Tuned on train, with abstention as shipped: the F1 a user gets.
    tuned = {}
    for name, make in (("contain", contain), ("nested", nested)):
        table = {str(x): summary(judged(train, make(x)))["f1"] for x in grid}
        tuned[name] = {"grid_train_f1": table,
                       "chosen": float(max(table, key=lambda k: table[k]))}
    policies: dict[str, Policy] = {
        "top1 (shipped)": top1, "same-text": same_text,
        f"contain (alpha {tuned['contain']['chosen']})": contain(tuned["contain"]["chosen"]),
        f"nested (beta {tuned['nested']['chosen']})": nested(tuned["nested"]["chosen"]),
    }
    report: dict[str, Any] = {
        "command": "python " + " ".join(sys.argv),
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "data": {"train": len(train), "test": len(test), "test_absent": len(absent)},
        "tuned_on_train": tuned, "train": {}, "test": {}}
    base_train = judged(train, top1)
    base_test = judged(test, top1)
    for name, policy in policies.items():
        tr, te = judged(train, policy), judged(test, policy)
        report["train"][name] = {**summary(tr), "f1_gain": paired_gain(base_train, tr)}
        report["test"][name] = {
            **summary(te), "f1_gain": paired_gain(base_test, te),
            "gold_gain": paired_gain(base_test, te, "gold_in_answer"),
            "citation_gain": paired_gain(base_test, te, "citation"),
            "no_threshold": summary(judged(test, policy, abstain=False)),
            "abstained_absent": summary(judged(absent, policy))["abstained"] if absent
            else None}
    text = json.dumps(report, indent=1)
    Path(args.out).write_text(text + "\n")
    print(text)


# Where to cite the chosen text among the kept spans with the same normalised text.
PLACES: dict[str, Callable[[dict[str, Any]], float]] = {
    "best-ranked (shipped)": lambda s: s["share"],
    "best sentence by words": lambda s: s["features"]["lexical"],
    "best sentence by words + cosine": lambda s: (s["features"]["lexical"]
                                                  + s["features"].get("dense", 0.0)),
    "best retrieval score": lambda s: s["features"]["passage_score"],
    "best first-stage score": lambda s: s["first_raw"],
    "best head score": lambda s: s["features"].get("lm_head", float("-inf")),
}


def cite(args: argparse.Namespace) -> None:
    report: dict[str, Any] = {"command": "python " + " ".join(sys.argv)}
    for part in ("train", "test"):
        rows = json.loads(Path(getattr(args, part)).read_text())["rows"]
        answered = [r for r in rows if r["ranked"]
                    and r["ranked"][0]["confidence"] >= r["abstain_below"]]
        several = sum(len({(s["passage"], s["start"]) for s in r["ranked"]
                           if normalize_answer(s["text"])
                           == normalize_answer(r["ranked"][0]["text"])}) > 1
                      for r in answered)
        report[part] = {"questions": len(rows), "several_places": several}
        for name, key in PLACES.items():
            hits = []
            for r in rows:
                if r not in answered:
                    hits.append(0.0)  # an abstention cites nothing: a miss, as in the harness
                    continue
                chosen = normalize_answer(r["ranked"][0]["text"])
                same = [s for s in r["ranked"] if normalize_answer(s["text"]) == chosen]
                # max keeps the first (best-ranked) of equal keys
                hits.append(outcome(r, max(same, key=key))["citation"])
            report[part][name] = round(statistics.fmean(hits), 4)
    print(json.dumps(report, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("rank", help="run the pipeline and keep each question's ranked spans")
    r.add_argument("--part", choices=("train", "test"), required=True)
    r.add_argument("--n", type=int, required=True)
    r.add_argument("--absent", action="store_true")
    r.add_argument("--out", required=True)
    e = sub.add_parser("evaluate", help="the policies on the ranked lists")
    e.add_argument("--train", required=True)
    e.add_argument("--test", required=True)
    e.add_argument("--absent")
    e.add_argument("--out", required=True)
    c = sub.add_parser("cite", help="where to cite the chosen text (citation accuracy)")
    c.add_argument("--train", required=True)
    c.add_argument("--test", required=True)
    args = ap.parse_args()
    if args.cmd == "rank":
        rank(args.part, args.n, args.absent, Path(args.out))
    elif args.cmd == "cite":
        cite(args)
    else:
        evaluate(args)


if __name__ == "__main__":
    main()
