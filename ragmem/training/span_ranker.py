"""Retrain the span ranker's shipped weights: ``python -m ragmem.training.span_ranker``.

One command rebuilds the three files of ``ragmem/data/`` that ``ragmem.span_weights`` and
``ragmem.span_ranking`` read (``extractive.json``, ``extractive-head.npy``,
``extractive-mlp-head.npz``) from SQuAD v1.1 dev questions after the first 1,000 (the
first 1,000 are the reported test and are never read), with the configured embedder and
generator (by default the packaged all-MiniLM-L6-v2 and SmolLM2-135M-Instruct):

    python -m ragmem.training.span_ranker \\
        --squad ../shared/datasets/squad_v1.1_dev/dev-v1.1.json \\
        --work /tmp/span-ranker --out ragmem/data

1. a seeded sample of the questions, asked through the default pipeline with the whole
   index (answerable) and with their own article filtered out (absent); the working
   memories are kept in ``--work`` (``ragmem.training.span_ranker_data``);
2. the first stage: a listwise linear ranker over every candidate span's features,
   on the first ``feature_questions``;
3. the generator's view of each question's best ``scored_candidates`` spans:
   log-likelihoods, the hidden state at ``layer`` after "context, question, span, end
   of answer", and (first ``pmi_questions``) the likelihoods under a question that asks
   nothing; kept in ``--work`` as .npz, so a stopped run resumes;
4. two heads on that state (linear; linear + ``mlp_units`` GELU units), listwise;
5. the second stage (the span's own features, its first-stage score, the likelihoods and
   the heads' out-of-fold scores), listwise; the confidence (logistic: is the chosen
   span right, F1 >= 0.5?) on answerable and absent questions, and the threshold that
   loses at most ``max_f1_loss`` F1 on answerable ones while abstaining most on absent;
6. the opt-in PMI second stage and confidence (``AnsweringConfig.pmi``) the same way.

The weights are written, then loaded back through ``ragmem.span_weights`` and
``StateHead`` as the answerer loads them. Settings default to the recipe of the
shipped files (eval/reports/answer-stage-models/lm-head.md, mlp-head.md).
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ragmem.config import AnsweringConfig, Config
from ragmem.errors import RagmemError
from ragmem.evaluation.datasets import load_squad
from ragmem.evaluation.indexes import open_index
from ragmem.evaluation.metrics import token_f1
from ragmem.extraction import feature_schema
from ragmem.generation import scorer_of
from ragmem.span_ranking import HEADS, SpanRanker, StateHead
from ragmem.span_weights import FORMAT, LM_FEATURES, PMI_FEATURES, SpanWeights
from ragmem.training.span_ranker_data import (
    Scored,
    passages_of,
    sample,
    scored_candidates,
    working_memories,
)
from ragmem.training.span_ranker_fit import (
    choose_threshold,
    fit_linear_head,
    fit_listwise,
    fit_logistic,
    fit_mlp_head,
    groups_of,
    linear_scores,
    mlp_scores,
    out_of_fold,
)

if TYPE_CHECKING:
    from ragmem.embedding import Embedder
    from ragmem.generation import Generator, Scorer

WEIGHTS, LINEAR_HEAD, MLP_HEAD = "extractive.json", "extractive-head.npy", "extractive-mlp-head.npz"


@dataclass(frozen=True)
class Settings:
    """The recipe; each default is the one the shipped files were trained with."""

    skip: int = 1000  # SQuAD dev questions before this are the test: never read
    seed: int = 1
    questions: int = 4000  # answerable questions for the heads and the second stage
    feature_questions: int = 800  # the first of them that fit the first stage
    absent: int = 300  # the first of them asked again without their article
    pmi_questions: int = 300  # the first of each kind scored under the null question too
    layer: int = 20  # the generator's hidden state the heads read
    head_l2: float = 0.01
    mlp_units: int = 8
    mlp_l2: float = 0.03
    mix_l2: float = 0.01  # the second stage's
    epochs: int = 300  # of every listwise fit
    confidence_epochs: int = 2000
    folds: int = 5  # the heads' scores that fit the second stage are out of fold
    max_f1_loss: float = 0.04  # what abstaining may cost on answerable questions


def retrain(squad: str | Path, out: str | Path, work: str | Path,
            settings: Settings = Settings(), config: Config | None = None, *,
            embedder: Embedder | None = None, generator: Generator | None = None,
            command: str = "") -> SpanWeights:
    """Steps 1-6 of the module docstring; writes the three files into ``out`` and
    returns the weights as loaded back. ``embedder``/``generator``: used instead of
    the configured models (the generator must be a ``Scorer`` with hidden states)."""
    t0 = time.perf_counter()
    s, config = settings, config or Config().with_env()
    out, work = Path(out), Path(work)
    work.mkdir(parents=True, exist_ok=True)
    data = load_squad(squad)
    drawn = sample(len(data.examples), s.skip, s.seed,
                   max(s.questions, s.feature_questions, s.pmi_questions, s.absent))
    if len(drawn) < max(s.questions, s.feature_questions):
        raise RagmemError(f"{squad} has {len(drawn)} questions after the first {s.skip}; "
                          f"ask for at most that many (--questions, --feature-questions)")
    assistant, _ = open_index(data.name, data.documents, config, embedder=embedder,
                              generator=generator)
    with assistant:
        rows = working_memories(assistant.pipeline, data, drawn, False,
                                work / "answerable.jsonl")
        absent_rows = working_memories(assistant.pipeline, data, drawn[:s.absent], True,
                                       work / "absent.jsonl")
        embedder, generator = assistant.embedder, assistant.generator
    scorer = scorer_of(generator)
    if scorer is None or scorer.hidden_size() is None:
        raise RagmemError(f"the generator {generator.model_id} cannot show its hidden "
                          "states, which the span ranker's heads read; retrain with a "
                          "causal transformers model (--generator)")
    cfg = replace(config.answering, mode="extract", pmi=False)
    torch.manual_seed(s.seed)
    stage1 = fit_first_stage(rows[:s.feature_questions], cfg, embedder, s.epochs)
    ranker = SpanRanker(scorer, cfg, embedder, SpanWeights.from_dict(_first_only(stage1)))
    key = json.dumps([data.sha256, stage1, s.layer, vars(cfg), embedder.model_id,
                      generator.model_id], sort_keys=True, default=str)
    answerable = scored_candidates(ranker, rows[:s.questions], True, s.layer,
                                   s.pmi_questions, work / "answerable", key)
    absent = scored_candidates(ranker, absent_rows, False, s.layer, s.pmi_questions,
                               work / "absent", key)
    linear, mlp, main = fit_second_stage(answerable, absent, s)
    pmi = fit_pmi(answerable.questions(s.pmi_questions), absent.questions(s.pmi_questions), s)
    trained = {
        "command": command or "ragmem.training.span_ranker.retrain",
        "date": datetime.date.today().isoformat(),
        "data": f"SQuAD v1.1 dev ({Path(squad).name}, sha256 {data.sha256[:16]}), questions "
                f"after the first {s.skip} drawn with seed {s.seed}: the first "
                f"{min(s.feature_questions, len(rows))} for the first stage, "
                f"{len(np.unique(answerable.group))} with candidates for the heads and the "
                f"second stage, {len(np.unique(absent.group))} of them asked without their "
                f"article for the confidence; the first {s.pmi_questions} of each for PMI",
        "settings": asdict(s), "config": vars(cfg),
        "models": {"embedder": embedder.model_id, "generator": generator.model_id},
        "threshold_table": main.pop("threshold_table"),
        "seconds": round(time.perf_counter() - t0)}
    head = {"layer": s.layer, "model": generator.model_id, "size": int(len(linear) - 1)}
    weights = {"format": FORMAT, "features": {"weights": stage1}, **main,
               "trained": trained, "pmi": pmi,
               HEADS["lm_head"]: {"file": LINEAR_HEAD, **head},
               HEADS["mlp_head"]: {"file": MLP_HEAD, **head, "units": s.mlp_units}}
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / LINEAR_HEAD, linear.astype(np.float32), allow_pickle=False)
    np.savez(out / MLP_HEAD, linear=mlp["linear"], hidden=mlp["hidden"], out=mlp["out"])
    (out / WEIGHTS).write_text(json.dumps(weights, indent=1, default=str) + "\n", "utf-8")
    return load_written(out, scorer)


def fit_first_stage(rows: Sequence[dict[str, Any]], cfg: AnsweringConfig,
                    embedder: Embedder, epochs: int) -> dict[str, float]:
    """The listwise ranker over every candidate of each question's best evidence
    sentences (its target: the candidates with the best F1 against the gold)."""
    every = SpanRanker(None, replace(cfg, scored_candidates=10 ** 9), embedder,
                       SpanWeights.from_dict(_first_only({})))
    groups = []
    for row in rows:
        kept, _ = every.first_stage(row["question"], passages_of(row))
        if kept:
            groups.append(([c.features for c in kept],
                           np.array([token_f1(c.text, row["answers"]) for c in kept],
                                    dtype=np.float32)))
    names = sorted({k for fs, _ in groups for f in fs for k in f})
    return fit_listwise([(_matrix(fs, names), y) for fs, y in groups], names, 1e-3, epochs)


def fit_second_stage(answerable: Scored, absent: Scored, s: Settings
                     ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    """The two heads, then the second stage and confidence over the span's features,
    its first-stage score, the likelihoods and the heads' scores (out of fold on the
    answerable questions they were fitted on)."""
    h, y, g = answerable.hidden, answerable.f1, answerable.group
    linear = fit_linear_head(h, y, g, s.head_l2, s.epochs)
    mlp = fit_mlp_head(h, y, g, s.mlp_units, s.mlp_l2, s.epochs, s.seed)
    linear_oof = out_of_fold(h, y, g, s.folds, lambda a, b, c, other: linear_scores(
        fit_linear_head(a, b, c, s.head_l2, s.epochs), other))
    mlp_oof = out_of_fold(h, y, g, s.folds, lambda a, b, c, other: mlp_scores(
        fit_mlp_head(a, b, c, s.mlp_units, s.mlp_l2, s.epochs, s.seed), other))
    spans = feature_schema()
    base = [n for n in answerable.names if n in spans or n == "first_stage" or n in LM_FEATURES]
    names = [*base, *HEADS]
    x = np.c_[answerable.matrix(base), linear_oof, mlp_oof]
    x_absent = np.c_[absent.matrix(base), linear_scores(linear, absent.hidden),
                     mlp_scores(mlp, absent.hidden)] if len(absent.group) else \
        np.zeros((0, len(names)), dtype=np.float32)
    return linear, mlp, _stage_and_confidence(answerable, x, absent, x_absent, names,
                                              s.mix_l2, s)


def fit_pmi(answerable: Scored, absent: Scored, s: Settings) -> dict[str, Any]:
    """The second stage on first-stage score, likelihoods and PMI, and its confidence
    (no heads: the opt-in PMI path predates them)."""
    names = [n for n in answerable.names if n == "first_stage" or n in LM_FEATURES
             or n in PMI_FEATURES]
    out = _stage_and_confidence(answerable, answerable.matrix(names), absent,
                                absent.matrix(names), names, 1e-3, s)
    return {**out, "trained": {"threshold_table": out.pop("threshold_table")}}


def _stage_and_confidence(answerable: Scored, x: np.ndarray, absent: Scored,
                          x_absent: np.ndarray, names: list[str], l2: float, s: Settings
                          ) -> dict[str, Any]:
    rescore = fit_listwise(groups_of(x, answerable.f1, answerable.group), names, l2,
                           s.epochs)
    w = np.array([rescore.get(n, 0.0) for n in names], dtype=np.float32)
    signals, right, f1, is_answerable = [], [], [], []
    for scored, xs, kind in ((answerable, x, True), (absent, x_absent, False)):
        for q in np.unique(scored.group):
            rows = np.flatnonzero(scored.group == q)
            scores = xs[rows] @ w
            shares = np.exp(scores - scores.max())
            best = int(np.argmax(scores))
            r = rows[best]
            # what SpanRanker.ranked gives confidence_signals for the chosen span
            signals.append({"probability": float(shares[best] / shares.sum()),
                            "lexical": float(scored.lexical[r]), "dense": float(scored.dense[r]),
                            **{n: float(xs[r, j]) for j, n in enumerate(names)
                               if n.startswith("lm_")}})
            right.append(float(scored.f1[r] >= 0.5))
            f1.append(float(scored.f1[r]))
            is_answerable.append(kind)
    cnames = sorted({k for sig in signals for k in sig})
    cx = _matrix(signals, cnames)
    cw, cb = fit_logistic(cx, np.array(right), cnames, epochs=s.confidence_epochs)
    confidence = 1 / (1 + np.exp(-(cx @ np.array([cw[n] for n in cnames]) + cb)))
    threshold, table = choose_threshold(confidence, np.array(f1), np.array(is_answerable),
                                        s.max_f1_loss)
    return {"rescore": {"weights": rescore}, "confidence": {"weights": cw, "bias": cb},
            "abstain_below": threshold, "threshold_table": table}


def load_written(out: Path, scorer: Scorer | None = None) -> SpanWeights:
    """The weights in ``out`` as the answerer loads them: the JSON through
    ``SpanWeights`` (checked against the feature schemas), each head through
    ``StateHead`` from plain arrays (no pickle), of the scorer's hidden size."""
    weights = SpanWeights.from_dict(json.loads((out / WEIGHTS).read_text("utf-8")),
                                    str(out / WEIGHTS))
    size = scorer.hidden_size() if scorer is not None else None
    for key, spec in weights.heads.items():
        loaded = np.load(out / spec["file"], allow_pickle=False)
        if isinstance(loaded, np.ndarray):  # .npy: the linear head's weights, then bias
            head = StateHead.from_spec({"layer": spec["layer"], "vector": loaded.tolist()})
        else:
            with loaded:
                head = StateHead.from_spec({"layer": spec["layer"],
                                            **{k: loaded[k].tolist() for k in loaded.files}})
        if head.size != spec["size"] or (size is not None and head.size != size):
            raise RagmemError(f"{out / spec['file']}: the {key} head reads states of "
                              f"{head.size} numbers, not {spec['size']}; retrain it")
    return weights


def _first_only(stage1: dict[str, float]) -> dict[str, Any]:
    """Weights that rank by the first stage alone (the second stage: its score)."""
    return {"features": {"weights": stage1}, "rescore": {"weights": {"first_stage": 1.0}},
            "confidence": {"weights": {}}, "abstain_below": 0.0}


def _matrix(dicts: Sequence[Any], names: Sequence[str]) -> np.ndarray:
    return np.array([[d.get(k, 0.0) for k in names] for d in dicts],
                    dtype=np.float32).reshape(len(dicts), len(names))


def main(argv: Sequence[str] | None = None) -> None:
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m ragmem.training.span_ranker",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--squad", required=True, help="SQuAD v1.1 dev JSON")
    parser.add_argument("--out", required=True, help="folder for the three weight files "
                        "(ragmem/data to ship them)")
    parser.add_argument("--work", required=True, help="folder for the working memories and "
                        "generator scores (.jsonl, .npz); a rerun resumes from it")
    for f in fields(Settings):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default),
                            default=f.default, help=f"default {f.default}")
    args = parser.parse_args(argv)
    settings = Settings(**{f.name: getattr(args, f.name) for f in fields(Settings)})
    weights = retrain(args.squad, args.out, args.work, settings,
                      command=" ".join(["python -m ragmem.training.span_ranker", *argv]))
    print(json.dumps({"out": args.out, "abstain_below": weights.abstain_below,
                      "rescore": dict(weights.rescore.weights),
                      "seconds": weights.trained.get("seconds")}))


if __name__ == "__main__":
    main()
