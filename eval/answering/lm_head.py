"""A trained head on the generator's hidden state after each candidate span (issue 8).

    python eval/answering/lm_head.py states --rows TRAIN.jsonl --out train-states.npz
    python eval/answering/lm_head.py compare --states train-states.npz [--folds 5]

The second stage scores the first stage's best spans with the generator: "context,
question, span, end of answer" runs through it anyway (one forward over a token trie).
The hidden state at the end-of-answer token is the model's whole view of the span as
the answer; a linear head on it (576 numbers for SmolLM2-135M, shipped as .npy) reads
that view directly instead of through the next-token log-probabilities alone.

``states`` caches, per cached working memory, the kept candidates' second-stage
features, token F1/EM against the gold, and their hidden states at a few layers.
``compare`` fits, by k-fold cross-validation over questions (SQuAD train questions
only: the rows cached by train_ranker.py are questions after the first 1,000), the
shipped second stage with and without the head's score, per layer and l2, and prints
top-1 EM and F1 with paired standard errors.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import pickle
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from options import judged, judged_table, paired_gain  # noqa: E402
from train_ranker import (  # noqa: E402
    OUT,
    fit_listwise,
    matrix,
    passages_of,
    refit_second_stage,
)

from ragmem.answering import ExtractAnswerer, lm_features  # noqa: E402
from ragmem.config import AnsweringConfig, Config  # noqa: E402
from ragmem.evaluation.metrics import exact_match, token_f1  # noqa: E402
from ragmem.extraction import shipped_weights  # noqa: E402

LAYERS = (8, 16, 20, 24, 27, 30)  # SmolLM2-135M: 30 blocks; 30 is after the final norm
HEAD_FILE = "extractive-head.npy"
# The second stage's inputs before the head: first-stage score and the likelihoods.
BASE = ("first_stage", "lm_tokens", "lm_end", "lm_first", "lm_length", "lm_missing")


def states(args: argparse.Namespace) -> None:
    from ragmem.embedding import SentenceTransformerEmbedder
    from ragmem.generation import load_generator

    rows = [json.loads(line) for line in open(args.rows)][args.skip:args.skip + args.questions]
    embedder = SentenceTransformerEmbedder(Config().embedder.model)
    generator = load_generator(Config().generator.model)
    answerer = ExtractAnswerer(generator, AnsweringConfig(mode="extract"), embedder)
    layers = tuple(int(x) for x in args.layers.split(","))
    group, feats, f1, em, hidden, texts = [], [], [], [], [], []
    t0 = time.time()
    for i, r in enumerate(rows):
        kept, features = answerer.first_stage(r["question"], passages_of(r))
        if kept:
            scores, h = answerer.span_states(r["question"], kept, layers)
            for c, f, (lp, n, _), hc in zip(kept, features, scores, h, strict=True):
                group.append(i)
                feats.append({**f, **lm_features(lp, n)})
                f1.append(token_f1(c.text, r["answers"]))
                em.append(float(exact_match(c.text, r["answers"])))
                hidden.append(hc.astype(np.float16))
                texts.append(c.text)
        if i % 25 == 0:
            print(f"{i}/{len(rows)} {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    names = sorted({k for f in feats for k in f})
    np.savez_compressed(args.out, group=np.array(group), f1=np.array(f1), em=np.array(em),
                        features=matrix(feats, names), names=np.array(names),
                        hidden=np.stack(hidden), layers=np.array(layers),
                        texts=np.array(texts), questions=np.array([r["qid"] for r in rows]))
    print(f"{len(rows)} questions, {len(f1)} candidates, {time.time() - t0:.0f} s")


def load(path: str) -> dict[str, Any]:
    z = np.load(path)
    return {k: z[k] for k in z.files}


def groups_of(d: dict[str, Any], x: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for g in np.unique(d["group"]):
        rows = d["group"] == g
        out.append((x[rows], d["f1"][rows]))
    return out


def stacked(d: dict[str, Any], layer: str | int, rows: Any = slice(None)) -> np.ndarray:
    """The states of ``layer`` ("20", or "16+24": both layers' states side by side)."""
    where = [list(d["layers"]).index(int(x)) for x in str(layer).split("+")]
    h = d["hidden"][rows][:, where].astype(np.float32)
    return h.reshape(len(h), -1)


def design(d: dict[str, Any], base: list[str], layer: str | None,
           head: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
    """The second stage's inputs: the shipped features, plus the head's score when
    ``head`` is given (fitted separately on the state of ``layer``)."""
    names = [str(n) for n in d["names"]]
    x = d["features"][:, [names.index(b) for b in base]]
    if head is None or layer is None:
        return x, list(base)
    score = stacked(d, layer) @ head[:-1] + head[-1]
    return np.concatenate([x, score[:, None]], axis=1), [*base, "lm_head"]


def fit_head(d: dict[str, Any], rows: np.ndarray, layer: str | int, l2: float,
             epochs: int = 300) -> np.ndarray:
    """A listwise linear head on the layer's state (standardised inside, folded back):
    weights then bias, so ``state @ w[:-1] + w[-1]`` is its score."""
    h = stacked(d, layer, rows)
    mu, sd = h.mean(0), h.std(0) + 1e-3
    z = (h - mu) / sd
    groups = [(z[d["group"][rows] == g], d["f1"][rows][d["group"][rows] == g])
              for g in np.unique(d["group"][rows])]
    w = fit_listwise(groups, [str(k) for k in range(z.shape[1])], l2=l2, epochs=epochs)
    v = np.array([w.get(str(k), 0.0) for k in range(z.shape[1])], dtype=np.float32)
    return np.concatenate([v / sd, [-(mu / sd) @ v]]).astype(np.float32)


def top1(groups: list[tuple[np.ndarray, np.ndarray]], ems: list[np.ndarray],
         w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f1 = np.array([y[int(np.argmax(x @ w))] if len(y) else 0.0 for x, y in groups])
    em = np.array([e[int(np.argmax(x @ w))] if len(e) else 0.0
                   for (x, _), e in zip(groups, ems, strict=True)])
    return em, f1


def held_out_top1(d: dict[str, Any], x: np.ndarray, cols: list[str], mix_rows: np.ndarray,
                  test_q: list[int], qs: np.ndarray, ems: list[np.ndarray], l2: float = 1e-3
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The second stage's mix fitted on the candidates in ``mix_rows``; top-1 EM and F1
    of the questions ``test_q`` (indices into ``qs``) under it."""
    w = fit_listwise(groups_of({**d, "group": d["group"][mix_rows], "f1": d["f1"][mix_rows]},
                               x[mix_rows]), cols, l2=l2)
    wv = np.array([w.get(c, 0.0) for c in cols], dtype=np.float32)
    groups = [(x[d["group"] == qs[j]], d["f1"][d["group"] == qs[j]]) for j in test_q]
    return top1(groups, [ems[j] for j in test_q], wv)


def compare(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    d = load(args.states)
    names = [str(n) for n in d["names"]]
    base = [n for n in names if n in BASE]
    qs = np.unique(d["group"])
    fold_of = {g: k % args.folds for k, g in enumerate(qs)}
    fold = np.array([fold_of[g] for g in d["group"]])
    ems_all = [d["em"][d["group"] == g] for g in qs]
    results: dict[str, Any] = {}
    arms: list[tuple[str, str | None, float]] = [("shipped features", None, 0.0)]
    arms += [(f"+ head on layer {layer}, l2 {l2:g}", layer, l2)
             for layer in args.layers.split(",")
             for l2 in [float(x) for x in args.l2.split(",")]]
    for name, layer, l2 in arms:
        t0 = time.time()
        em, f1 = np.zeros(len(qs)), np.zeros(len(qs))
        for k in range(args.folds):
            train = fold != k
            head = None
            if layer is not None:
                # The head is fitted on half the training folds, the mix on the other
                # half, so the mix sees the head's out-of-sample scores.
                half = np.array([fold_of[g] % 2 == k % 2 for g in d["group"]]) & train
                head = fit_head(d, np.where(half)[0], layer, l2)
                mix_rows = train & ~half
            else:
                mix_rows = train
            x, cols = design(d, base, layer, head)
            test_q = [j for j, g in enumerate(qs) if fold_of[g] == k]
            em[test_q], f1[test_q] = held_out_top1(d, x, cols, mix_rows, test_q, qs, ems_all)
        results[name] = {"em": float(em.mean()), "f1": float(f1.mean()),
                         "per_question_f1": f1.tolist()}
        base_f1 = np.array(results["shipped features"]["per_question_f1"])
        diff = f1 - base_f1
        print(f"{name:40s} EM {em.mean():.3f} F1 {f1.mean():.3f}  "
              f"paired dF1 {diff.mean():+.3f} (SE {diff.std() / np.sqrt(len(diff)):.3f})"
              f"  {time.time() - t0:.0f} s", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"states": args.states, "folds": args.folds,
                                              "results": results}, indent=1) + "\n")


def second_stage(args: argparse.Namespace) -> None:
    """What else the second stage could read, beside the head (train only, k-fold): the
    span's own first-stage features, and the embedder's view of the span against the
    question (cosine; a head on their elementwise product). Each arm refits the mix by
    k-fold over questions on the head's out-of-fold scores; paired against "+ head"."""
    from ragmem.embedding import SentenceTransformerEmbedder

    torch.manual_seed(0)
    d = load(args.states)
    names = [str(n) for n in d["names"]]
    base = [n for n in names if n in BASE]
    x0 = d["features"][:, [names.index(b) for b in base]]
    head = oof_head_scores(d, args.layer, args.l2, args.folds)[:, None]
    embedder = SentenceTransformerEmbedder(Config().embedder.model)
    first_only = ExtractAnswerer(None, AnsweringConfig(mode="extract"), embedder,
                                 weights=json.loads(json.dumps(shipped_weights())))
    _, kept_all = candidates_of(first_only, args.rows, d, args.cache)
    span_names = sorted({k for kept in kept_all for c in kept for k in c.features})
    spans = matrix([c.features for kept in kept_all for c in kept], span_names)
    arms = {"shipped features": (x0, base, 1e-3),
            "+ head": (np.c_[x0, head], [*base, "lm_head"], 1e-3)}
    for l2 in (1e-3, 1e-2):
        arms[f"+ head + the span's own features, l2 {l2:g}"] = (
            np.c_[x0, head, spans], [*base, "lm_head", *span_names], l2)
    if args.span_embeddings:
        rows = {r["qid"]: r for r in map(json.loads, open(args.rows))}
        qv = embedder.embed([rows[str(q)]["question"] for q in d["questions"]])[d["group"]]
        sv = embedder.embed([str(t) for t in d["texts"]])
        one = {**d, "layers": np.array([0])}
        arms["+ head + cosine(question, span)"] = (
            np.c_[x0, head, (qv * sv).sum(1)], [*base, "lm_head", "cosine"], 1e-3)
        for l2 in (1e-2, 1e-1):
            product = oof_head_scores({**one, "hidden": (qv * sv)[:, None]}, 0, l2, args.folds)
            arms[f"+ head + a head on question x span embeddings, l2 {l2:g}"] = (
                np.c_[x0, head, product], [*base, "lm_head", "embedding_head"], 1e-3)
    qs = np.unique(d["group"])
    fold_of = {g: k % args.folds for k, g in enumerate(qs)}
    ems = [d["em"][d["group"] == g] for g in qs]
    results: dict[str, Any] = {}
    for name, (x, cols, l2) in arms.items():
        em, f1 = np.zeros(len(qs)), np.zeros(len(qs))
        for k in range(args.folds):
            train = np.array([fold_of[g] != k for g in d["group"]])
            test_q = [j for j, g in enumerate(qs) if fold_of[g] == k]
            em[test_q], f1[test_q] = held_out_top1(d, x, cols, train, test_q, qs, ems, l2)
        results[name] = {"em": float(em.mean()), "f1": float(f1.mean()),
                         "per_question_f1": f1.tolist()}
        ref = np.array(results.get("+ head", results[name])["per_question_f1"])
        diff = f1 - ref
        print(f"{name:55s} EM {em.mean():.3f} F1 {f1.mean():.3f}  vs + head "
              f"{diff.mean():+.3f} (SE {diff.std() / np.sqrt(len(diff)):.3f})", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({
            "command": "python " + " ".join(sys.argv), "states": args.states,
            "folds": args.folds, "head": {"layer": args.layer, "l2": args.l2},
            "results": results}, indent=1) + "\n")


def oof_head_scores(d: dict[str, Any], layer: int, l2: float, folds: int) -> np.ndarray:
    """Each train candidate's head score from a head fitted without its question."""
    qs = np.unique(d["group"])
    fold_of = {g: k % folds for k, g in enumerate(qs)}
    fold = np.array([fold_of[g] for g in d["group"]])
    li = list(d["layers"]).index(layer)
    out = np.zeros(len(fold), dtype=np.float32)
    for k in range(folds):
        head = fit_head(d, np.where(fold != k)[0], layer, l2)
        rows = fold == k
        out[rows] = d["hidden"][rows, li].astype(np.float32) @ head[:-1] + head[-1]
    return out


def candidates_of(answerer: ExtractAnswerer, rows_path: str, d: dict[str, Any],
                  cache: str | None = None) -> tuple[list[dict[str, Any]], list[list[Any]]]:
    """The cached questions and their first-stage candidates (no generator needed: the
    embedder and features decide them), checked against the cached texts. ``cache``: a
    folder to keep them in (a local pickle, keyed by the rows and the candidates)."""
    n = len(d["questions"])
    rows = [json.loads(line) for line in open(rows_path)][:n]
    if cache:
        key = hashlib.sha256(json.dumps([str(Path(rows_path).resolve()), n,
                                         d["texts"].tolist()]).encode()).hexdigest()[:16]
        path = Path(cache) / f"candidates-{key}.pkl"
        if path.is_file():
            return rows, pickle.loads(path.read_bytes())
        _, kept_all = candidates_of(answerer, rows_path, d)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(kept_all))
        return rows, kept_all
    # Near-tied first-stage scores can swap the last few places between runs (float
    # rounding in the embedder), so candidates are matched to the cache by text, in
    # the cache's order, out of a wider list.
    wide = ExtractAnswerer(None, replace(answerer.config, scored_candidates=96),
                           answerer.embedder)
    kept_all = []
    for g, r in enumerate(rows):
        pool, _ = wide.first_stage(r["question"], passages_of(r))
        kept = []
        for text in (str(t) for t in d["texts"][d["group"] == g]):
            match = next((c for c in pool if c.text == text and c not in kept), None)
            assert match is not None, f"question {g}: {text!r} is not a candidate any more"
            kept.append(match)
        kept_all.append(kept)
    return rows, kept_all


def feature_dicts(d: dict[str, Any], head_scores: np.ndarray | None, g: int,
                  kept: list[Any]) -> list[dict[str, float]]:
    """The second stage's features of question ``g``'s candidates, as the answerer
    builds them: the span's own (first-stage) features, the cached first-stage score
    and likelihoods, and the head's score when given."""
    names = [str(n) for n in d["names"]]
    rows = np.where(d["group"] == g)[0]
    out = []
    for i, c in zip(rows, kept, strict=True):
        f = dict(c.features)
        f |= {k: float(v) for k, v in zip(names, d["features"][i], strict=True)
              if v != 0 or k == "first_stage"}
        f = {k: v for k, v in f.items() if k != "lm_missing" or v}
        if head_scores is not None:
            f["lm_head"] = float(head_scores[i])
        out.append(f)
    return out


def fit(args: argparse.Namespace) -> None:
    from ragmem.embedding import SentenceTransformerEmbedder

    torch.manual_seed(0)
    cfg = AnsweringConfig(mode="extract")
    old = json.loads(json.dumps(shipped_weights()))
    train, absent = load(args.train), load(args.train_absent)
    oof = oof_head_scores(train, args.layer, args.l2, args.folds)
    head = fit_head(train, np.arange(len(train["f1"])), args.layer, args.l2)
    li = list(absent["layers"]).index(args.layer)
    absent_scores = absent["hidden"][:, li].astype(np.float32) @ head[:-1] + head[-1]
    embedder = SentenceTransformerEmbedder(Config().embedder.model)
    first_only = ExtractAnswerer(None, cfg, embedder, weights=old)
    items: list[tuple[str, list[Any], list[dict[str, float]], list[float]]] = []
    for kind, path, d, scores in (("answerable", args.train_rows, train, oof),
                                  ("absent", args.train_absent_rows, absent, absent_scores)):
        _, kept_all = candidates_of(first_only, path, d, args.cache)
        for g, kept in enumerate(kept_all):
            f1 = d["f1"][d["group"] == g] if kind == "answerable" else np.zeros(len(kept))
            use = None if args.no_head else scores
            fs = feature_dicts(d, use, g, kept)
            if args.no_joint:  # the second stage as before: first-stage score, generator
                fs = [{k: v for k, v in f.items() if k == "first_stage" or k.startswith("lm_")}
                      for f in fs]
            items.append((kind, kept, fs, [float(x) for x in f1]))
    stage2, cw, cb, threshold, table = refit_second_stage(old, cfg, embedder, items,
                                                          args.max_f1_loss, args.mix_l2)
    trained = trained_record(old["trained"], (
        f"refitted on {len(np.unique(train['group']))} answerable and "
        f"{len(np.unique(absent['group']))} absent train questions with the head's score "
        f"(lm_head: a linear head on the generator's layer-{args.layer} state after the "
        f"span and the end of the answer, listwise, l2 {args.l2}; out-of-fold scores "
        f"for the fit)" + ("" if args.no_joint else
                           f"; with the span's first-stage features, l2 {args.mix_l2}")))
    trained["threshold_table"] = table
    out = {**old, "rescore": {"weights": stage2}, "confidence": {"weights": cw, "bias": cb},
           "abstain_below": threshold, "trained": trained}
    out.pop("head", None)
    data = Path(args.out).parent
    if not args.no_head:
        out["head"] = {"file": HEAD_FILE, "layer": args.layer,
                       "model": Config().generator.model, "size": int(len(head) - 1)}
        if Path(args.out).resolve() == OUT.resolve():
            np.save(data / HEAD_FILE, head.astype(np.float32), allow_pickle=False)
        else:  # an arm to compare, not the shipped weights: the head travels inline
            del out["head"]["file"]
            out["head"]["vector"] = [float(x) for x in head]
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n", "utf-8")
    wrote = f"{args.out} and {data / HEAD_FILE}" if "file" in out.get("head", {}) else args.out
    print(f"stage 2: {stage2}\nabstain_below {threshold}; wrote {wrote}", file=sys.stderr)


def trained_record(trained: dict[str, Any], how: str) -> dict[str, Any]:
    """The weights file's ``trained`` entry after a refit: this command appended to the
    ones before it, today's date, and ``how`` the rescoring and confidence were fitted."""
    return {**trained, "command": trained["command"] + " ; then python " + " ".join(sys.argv),
            "date": datetime.date.today().isoformat(), "rescore_and_confidence": how}


def evaluate(args: argparse.Namespace) -> None:
    """Weights files side by side over the same test candidates and generator states:
    the one before the head, a control, any ``--also``, and the shipped weights."""
    from ragmem.embedding import SentenceTransformerEmbedder

    cfg = AnsweringConfig(mode="extract")
    embedder = SentenceTransformerEmbedder(Config().embedder.model)
    files = {"before (no head)": json.loads(Path(args.old).read_text())}
    if args.control:
        files["refitted without the head (control)"] = json.loads(
            Path(args.control).read_text())
    for also in args.also:
        name, _, path = also.partition("=")
        files[name] = json.loads(Path(path).read_text())
    new = json.loads(json.dumps(shipped_weights()))
    files["with the head (shipped)"] = new
    judges = {name: ExtractAnswerer(None, cfg, embedder, weights=w) for name, w in files.items()}
    records: dict[str, dict[str, list[dict[str, float]]]] = {
        n: {"answerable": [], "absent": []} for n in judges}
    for kind, path, npz in (("answerable", args.rows, args.states),
                            ("absent", args.absent, args.absent_states)):
        d = load(npz)
        rows, kept_all = candidates_of(judges["before (no head)"], path, d, args.cache)
        # Each judge's own head, as ExtractAnswerer loads it (inline or shipped file).
        heads = {name: judge.heads.get("lm_head") for name, judge in judges.items()}
        scores = {name: None if head is None else head.score(stacked(d, head.layer))
                  for name, head in heads.items()}
        for g, (r, kept) in enumerate(zip(rows, kept_all, strict=True)):
            passages = passages_of(r)
            for name, judge in judges.items():
                fs = feature_dicts(d, scores[name], g, kept)
                records[name][kind].append(judged(judge, kept, fs, r, passages))
    table = judged_table(records)
    before = records["before (no head)"]["answerable"]
    report = {"command": "python " + " ".join(sys.argv), "questions": len(before),
              "absent_questions": len(records["before (no head)"]["absent"]),
              "head": new["head"], "table": table,
              "f1_gain_paired": paired_gain(
                  before, records["with the head (shipped)"]["answerable"]),
              "f1_gain_paired_over": {
                  name: paired_gain(rec["answerable"],
                                       records["with the head (shipped)"]["answerable"])
                  for name, rec in records.items() if name != "with the head (shipped)"}}
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("states")
    s.add_argument("--rows", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--questions", type=int, default=800)
    s.add_argument("--skip", type=int, default=0)
    s.add_argument("--layers", default=",".join(map(str, LAYERS)))
    c = sub.add_parser("compare")
    c.add_argument("--states", required=True)
    c.add_argument("--folds", type=int, default=5)
    c.add_argument("--layers", default="16,24,30")
    c.add_argument("--l2", default="1e-3,1e-2")
    c.add_argument("--out")
    t = sub.add_parser("second-stage", help="what else the second stage could read (train)")
    t.add_argument("--states", required=True)
    t.add_argument("--rows", required=True, help="the cached rows the states were made from")
    t.add_argument("--layer", type=int, default=20)
    t.add_argument("--l2", type=float, default=1e-2)
    t.add_argument("--folds", type=int, default=5)
    t.add_argument("--span-embeddings", action="store_true",
                   help="also the embedder's view of each span (embeds every candidate)")
    t.add_argument("--cache", help="a folder to keep the first-stage candidates in")
    t.add_argument("--out")
    f = sub.add_parser("fit", help="write the head and refit the second stage (train)")
    f.add_argument("--train", required=True, help="states of the answerable train rows")
    f.add_argument("--train-rows", required=True)
    f.add_argument("--train-absent", required=True)
    f.add_argument("--train-absent-rows", required=True)
    f.add_argument("--layer", type=int, default=24)
    f.add_argument("--l2", type=float, default=1e-2)
    f.add_argument("--folds", type=int, default=5)
    f.add_argument("--max-f1-loss", type=float, default=0.04)
    f.add_argument("--no-head", action="store_true",
                   help="refit on the same questions without the head (a control)")
    f.add_argument("--no-joint", action="store_true",
                   help="second stage on the first-stage score alone, not the span's features")
    f.add_argument("--mix-l2", type=float, default=1e-3, help="the second stage's l2")
    f.add_argument("--out", default=str(OUT))
    f.add_argument("--cache", help="a folder to keep the first-stage candidates in")
    e = sub.add_parser("evaluate", help="old vs shipped weights on the test states")
    e.add_argument("--rows", required=True)
    e.add_argument("--states", required=True)
    e.add_argument("--absent", required=True)
    e.add_argument("--absent-states", required=True)
    e.add_argument("--old", required=True, help="the weights file before the head")
    e.add_argument("--control", help="weights refitted on the same data without the head")
    e.add_argument("--also", action="append", default=[], metavar="NAME=WEIGHTS.json",
                   help="more weights to compare (a head inline as head.vector)")
    e.add_argument("--out", required=True)
    e.add_argument("--cache", help="a folder to keep the first-stage candidates in")
    args = ap.parse_args()
    {"states": states, "compare": compare, "second-stage": second_stage, "fit": fit,
     "evaluate": evaluate}[args.command](args)


if __name__ == "__main__":
    main()
