"""The Chinese span finder's best spans rescored with the generator, on CMRC 2018 trial
gold paragraphs (no retrieval): fit ``RESCORE`` and measure it against the cues alone.

    flock /tmp/ragmem-bench.lock python -m eval.chinese.rescore \
        ../shared/datasets/cmrc2018/cmrc2018_trial.json --offset 600 --limit 400 \
        --out eval/reports/chinese/rescore-trial

Each question's own paragraph is its one passage. ``ChineseSpans`` scores its candidate
spans by the cues; the best ``RESCORED`` are shown to the packaged generator (SmolLM2-
135M-Instruct, the span ranker's prompt: "context, question, span, end of answer") and
get its log-likelihoods (``ragmem.chinese_answers.rescore_features``). Weights over the
cue score and those (a softmax over each question's rescored spans, maximising the
expected character F1 of the answer as it would be given: widened to its clause or
sentence per ``WHOLE``) are fitted on the first half of the questions and scored on the
second, against the cues alone and against ``AnsweringConfig.chinese = "span_ranker"``
(the English span ranker, features and generator, on the same paragraph). The default
questions are trial 601-1002: the cue weights were fitted on trial 1-600.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from typing import Any

from ragmem.chinese_answers import (
    RESCORED,
    WHOLE,
    _clause_of,
    _read_span,
    _sentence_of,
    rescore_features,
    score,
)
from ragmem.config import AnsweringConfig, GeneratorConfig
from ragmem.evaluation.metrics import char_exact_match, char_f1
from ragmem.extraction import Candidate
from ragmem.generation import scorer_of
from ragmem.generation.factory import from_config
from ragmem.span_ranking import SpanRanker

from .tune import emit, fit, rows_of, uptime


def given(c: Candidate, kind: str) -> str:
    """The answer ``ChineseSpans`` gives when ``c`` is its best span."""
    span = _read_span(c.evidence, c, 0.0)
    way = WHOLE.get(kind, "span")
    return {"span": span, "clause": _clause_of(span), "sentence": _sentence_of(span)}.get(
        way, span).text


def mean(values: list[float]) -> float:
    return round(sum(values) / max(1, len(values)), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("trial")
    parser.add_argument("--offset", type=int, default=600)
    parser.add_argument("--limit", type=int, default=400)
    parser.add_argument("--out", help="folder for report.json and README.md")
    args = parser.parse_args()
    t_start = time.perf_counter()
    config = AnsweringConfig()
    rows = rows_of(args.trial, config, args.limit, args.offset)
    generator = from_config(GeneratorConfig())
    scorer = scorer_of(generator)
    assert scorer is not None, "the packaged generator scores continuations"
    cue_ranker = SpanRanker(scorer, config)
    english = SpanRanker(scorer, config)
    t_lm = t_en = 0.0
    for r in rows:
        r["rescored"], r["rescored_f1"], r["english"] = [], [], ""
        if not r["cands"]:
            continue
        scores = [score(f) for f in r["feats"]]
        order = sorted(range(len(scores)), key=lambda k: -scores[k])[:RESCORED]
        kept = [r["cands"][k] for k in order]
        t0 = time.perf_counter()
        r["rescored"] = rescore_features(cue_ranker, r["ex"].question, kept,
                                         [scores[k] for k in order])
        t_lm += time.perf_counter() - t0
        r["kept"] = kept
        r["rescored_f1"] = [char_f1(given(c, r["kind"]), r["ex"].answers) for c in kept]
        t0 = time.perf_counter()
        spans = english.read(r["ex"].question, [r["passage"]]) if "passage" in r else []
        t_en += time.perf_counter() - t0
        r["english"] = spans[0].text if spans else ""
    half = len(rows) // 2
    fit_rows = [{"feats": r["rescored"], "f1": r["rescored_f1"], "cands": r["rescored"]}
                for r in rows[:half]]
    names = sorted({n for r in fit_rows for f in r["feats"] for n in f})
    weights = fit(fit_rows, names)

    def scored(rs: list[dict[str, Any]], w: dict[str, float]) -> dict[str, float]:
        texts = []
        for r in rs:
            if not r["rescored"]:
                texts.append("")
                continue
            best = max(range(len(r["kept"])), key=lambda i: score(r["rescored"][i], w))
            texts.append(given(r["kept"][best], r["kind"]))
        pairs = list(zip(texts, rs, strict=True))
        return {"em": mean([char_exact_match(t, r["ex"].answers) for t, r in pairs]),
                "f1": mean([char_f1(t, r["ex"].answers) for t, r in pairs])}

    held = rows[half:]
    english_f1 = mean([char_f1(r["english"], r["ex"].answers) for r in held])
    english_em = mean([char_exact_match(r["english"], r["ex"].answers) for r in held])
    report = {
        "command": " ".join(["python -m eval.chinese.rescore", *sys.argv[1:]]),
        "machine": f"{platform.platform()}; {uptime()}",
        "questions": {"fit": half, "scored": len(held),
                      "trial_range": [args.offset + 1, args.offset + len(rows)]},
        "rescored_candidates": RESCORED,
        "fitted_RESCORE": weights,
        "held_out": {"cues": scored(held, {"cue": 1.0}),
                     "cues_rescored_with_generator": scored(held, weights),
                     "span_ranker_english": {"em": english_em, "f1": english_f1},
                     "oracle_among_rescored": mean([max(r["rescored_f1"], default=0.0)
                                                    for r in held])},
        "fit_half": {"cues": scored(rows[:half], {"cue": 1.0}),
                     "cues_rescored_with_generator": scored(rows[:half], weights)},
        "seconds_per_question": {"generator_rescoring": round(t_lm / max(1, len(rows)), 3),
                                 "span_ranker_english": round(t_en / max(1, len(rows)), 3)},
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    emit(report, args.out)


if __name__ == "__main__":
    main()
