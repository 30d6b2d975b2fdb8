"""Refit the rescoring and confidence with the PMI features, and measure them on test.

    python eval/answering/pmi_weights.py fit --train TRAIN.jsonl --train-absent TA.jsonl \\
        --scored PMI_TRAIN.pkl --scored-absent PMI_TA.pkl        # writes extractive.json
    python eval/answering/pmi_weights.py evaluate --rows TEST.jsonl --absent TEST_ABSENT.jsonl \\
        --old OLD_WEIGHTS.json --out eval/reports/answer-stage-models/pmi-test.json

``fit`` writes the weights file's ``pmi`` section (used when ``AnsweringConfig.pmi``):
it keeps the shipped first stage (its candidates do not depend on the generator)
and refits the second stage (first-stage score, likelihoods, PMI) and the confidence on
the same train questions ``train_ranker.py`` uses (the first 300 answerable and 300
absent after the first 1,000), from ``pmi.py``'s cached generator scores. ``evaluate``
runs both weight sets over the same candidates and likelihoods of the reported test
questions (SQuAD dev 0-499, and 0-299 asked without their article).
"""

from __future__ import annotations

import argparse
import datetime
import json
import pickle
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from options import judged, judged_table, paired_gain  # noqa: E402
from train_ranker import OUT, passages_of, refit_second_stage  # noqa: E402

from ragmem.answering import (  # noqa: E402
    NULL_QUESTION,
    ExtractAnswerer,
    lm_features,
    pmi_features,
)
from ragmem.config import AnsweringConfig, Config  # noqa: E402
from ragmem.extraction import shipped_weights  # noqa: E402


def fit(args: argparse.Namespace) -> None:
    from ragmem.embedding import SentenceTransformerEmbedder

    cfg = AnsweringConfig(mode="extract")
    old = json.loads(json.dumps(shipped_weights()))
    embedder = SentenceTransformerEmbedder(Config().embedder.model)
    first_only = ExtractAnswerer(None, cfg, embedder, weights=old)
    items: list[tuple[str, list[Any], list[dict[str, float]], list[float]]] = []
    for kind, rows_path, scored_path in (("answerable", args.train, args.scored),
                                         ("absent", args.train_absent, args.scored_absent)):
        scored = pickle.loads(Path(scored_path).read_bytes())
        rows = [json.loads(line) for line in open(rows_path)][:len(scored)]
        for r, (texts, feats, null, f1) in zip(rows, scored, strict=True):
            kept, _ = first_only.rescore_features(r["question"], passages_of(r))
            assert [c.text for c in kept] == texts, "first stage differs from the cache"
            feats = [{**f, **pmi_features(f, z)} for f, z in zip(feats, null, strict=True)]
            items.append((kind, kept, feats, f1 if kind == "answerable" else [0.0] * len(f1)))
    stage2, cw, cb, threshold, table = refit_second_stage(old, cfg, embedder, items,
                                                          args.max_f1_loss)
    trained = dict(old["trained"])
    trained.update({
        "command": trained["command"] + " ; then python " + " ".join(sys.argv),
        "date": datetime.date.today().isoformat(),
        "rescore_and_confidence": "refitted with the PMI features (the span's likelihood "
                                  f"given the question minus given {NULL_QUESTION!r}) on "
                                  "the same train questions",
        "threshold_table": table})
    out = {**old, "pmi": {"rescore": {"weights": stage2},
                          "confidence": {"weights": cw, "bias": cb},
                          "abstain_below": threshold, "trained": trained}}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n", "utf-8")
    print(f"stage 2: {stage2}\nabstain_below {threshold}; wrote {args.out}", file=sys.stderr)


def scored_test(args: argparse.Namespace, cfg: AnsweringConfig, old: dict[str, Any],
                embedder: Any) -> list[tuple[Any, ...]]:
    """Each test question's candidates, their features before PMI and their likelihoods
    under the null question (cached in ``args.cache``: the generator's part is slow)."""
    cache = Path(args.cache)
    if cache.is_file():
        return list(pickle.loads(cache.read_bytes()))
    from ragmem.generation import load_generator

    scorer = ExtractAnswerer(load_generator(Config().generator.model), cfg, embedder,
                             weights=old)
    out: list[tuple[Any, ...]] = []
    t0 = time.time()
    for kind, path, limit in (("answerable", args.rows, args.limit),
                              ("absent", args.absent, args.absent_limit)):
        rows = [json.loads(line) for line in open(path)][:limit]
        for i, r in enumerate(rows):
            t = time.perf_counter()
            kept, feats = scorer.rescore_features(r["question"], passages_of(r))
            base_s = time.perf_counter() - t
            t = time.perf_counter()
            null = [lm_features(lp, n) for lp, n, _ in
                    scorer.span_logprobs([NULL_QUESTION], kept)[0]] if kept else []
            out.append((kind, r, kept, feats, null, base_s, time.perf_counter() - t))
            if i % 50 == 0:
                print(f"{kind} {i}/{len(rows)} {time.time() - t0:.0f} s", file=sys.stderr,
                      flush=True)
    cache.write_bytes(pickle.dumps(out))
    return out


def evaluate(args: argparse.Namespace) -> None:
    from ragmem.embedding import SentenceTransformerEmbedder

    cfg = AnsweringConfig(mode="extract")
    old = json.loads(Path(args.old).read_text())
    new = json.loads(json.dumps(shipped_weights()))
    embedder = SentenceTransformerEmbedder(Config().embedder.model)
    if args.compute_only:
        scored_test(args, cfg, old, embedder)
        return
    judges = {"default (no PMI)": ExtractAnswerer(None, cfg, embedder, weights=old),
              "with PMI (AnsweringConfig.pmi)": ExtractAnswerer(
                  None, replace(cfg, pmi=True), embedder, weights=new)}
    records: dict[str, dict[str, list[dict[str, float]]]] = {n: {"answerable": [],
                                                                "absent": []} for n in judges}
    for kind, r, kept, feats, null, base_s, null_s in scored_test(args, cfg, old, embedder):
        passages = passages_of(r)
        for name, judge in judges.items():
            fs = feats if "default" in name else [
                {**f, **pmi_features(f, z)} for f, z in zip(feats, null, strict=True)]
            records[name][kind].append({
                **judged(judge, kept, fs, r, passages),
                "answer_s": base_s + (0.0 if "default" in name else null_s)})
    table = judged_table(records)
    gain = paired_gain(*(records[n]["answerable"] for n in judges))
    report = {"command": "python " + " ".join(sys.argv), "questions": args.limit,
              "absent_questions": args.absent_limit, "null_question": NULL_QUESTION,
              "table": table, "f1_gain_paired": gain}
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fit")
    f.add_argument("--train", required=True)
    f.add_argument("--train-absent", required=True)
    f.add_argument("--scored", required=True)
    f.add_argument("--scored-absent", required=True)
    f.add_argument("--max-f1-loss", type=float, default=0.04)
    f.add_argument("--out", default=str(OUT))
    e = sub.add_parser("evaluate")
    e.add_argument("--rows", required=True)
    e.add_argument("--absent", required=True)
    e.add_argument("--old", required=True, help="the weights before the PMI features")
    e.add_argument("--limit", type=int, default=500)
    e.add_argument("--absent-limit", type=int, default=300)
    e.add_argument("--cache", required=True, help="pickle of the scored test questions")
    e.add_argument("--compute-only", action="store_true", help="fill the cache and stop")
    e.add_argument("--out")
    args = ap.parse_args()
    fit(args) if args.command == "fit" else evaluate(args)


if __name__ == "__main__":
    main()
