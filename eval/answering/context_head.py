"""A trained head on the generator's states of each span *in its context* (issue 8).

    python eval/answering/context_head.py states --rows TRAIN.jsonl --npz train.npz \
        --questions 2000 --cache CANDS --out train-ctx.npz
    python eval/answering/context_head.py compare --states train.npz --ctx train-ctx.npz

The shipped head (lm_head.py) reads the generator's state after "context, question,
span": the model's view of the span as the answer. Reading comprehension models read
the other way round: the question first, then the passage, and a start/end score on
each passage token, which has seen the question. A causal model can do that too: with
the question before the context, the state at a span's first and last tokens is the
model's view of that place in the text given the question. This script caches those
states for the kept candidates (one more forward over ~200-400 tokens a question) and
measures, by k-fold cross-validation over SQuAD train questions, what a linear head on
them adds to the shipped second stage.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lm_head import (  # noqa: E402
    BASE,
    candidates_of,
    feature_dicts,
    fit_head,
    held_out_top1,
    load,
    oof_head_scores,
    stacked,
)
from options import judged, judged_table, paired_gain  # noqa: E402
from train_ranker import matrix, passages_of, refit_second_stage  # noqa: E402

from ragmem.answering import EXTRACT_INSTRUCTION, ExtractAnswerer  # noqa: E402
from ragmem.config import AnsweringConfig, Config  # noqa: E402
from ragmem.extraction import shipped_weights  # noqa: E402

KINDS = ("start", "end", "mean")


def context_prompt(generator: Any, question: str, kept: list[Any]) -> tuple[str, dict[Any, int]]:
    """The question, then every sentence the kept spans come from, in document order;
    and where each sentence starts in the rendered prompt."""
    sentences = []
    for c in kept:
        if c.evidence not in sentences:
            sentences.append(c.evidence)
    sentences.sort(key=lambda e: (e.passage, e.sentence.start))
    head = f"Question: {question}\n\nContext: "
    at, parts, pos = {}, [], len(head)
    for e in sentences:
        at[e] = pos
        parts.append(e.sentence.text)
        pos += len(e.sentence.text) + 1
    user = head + " ".join(parts)
    prompt = generator.render(EXTRACT_INSTRUCTION, user)
    offset = prompt.index(user)
    return prompt, {e: offset + p for e, p in at.items()}


def span_token_states(generator: Any, question: str, kept: list[Any],
                      layers: tuple[int, ...]) -> np.ndarray:
    """(len(kept), len(layers), 3, hidden): each span's state at its first token, its
    last token and their mean, per layer, with the question before the context."""
    prompt, at = context_prompt(generator, question, kept)
    model = generator._loaded()
    tok = generator._tokenizer
    enc = tok(prompt, add_special_tokens=generator._adds_special_tokens(prompt),
              return_offsets_mapping=True)
    offsets = np.array(enc["offset_mapping"])
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([enc["input_ids"]]), output_hidden_states=True,
                    logits_to_keep=1)
    hs = torch.stack([out.hidden_states[k][0] for k in layers], 0).float().numpy()
    result = np.zeros((len(kept), len(layers), 3, hs.shape[-1]), dtype=np.float32)
    for i, c in enumerate(kept):
        a = at[c.evidence] + (c.start - c.evidence.sentence.start)
        b = a + (c.end - c.start)
        assert prompt[a:b] == c.text, (prompt[a:b], c.text)
        toks = np.where((offsets[:, 1] > a) & (offsets[:, 0] < b))[0]
        result[i, :, 0] = hs[:, toks[0]]
        result[i, :, 1] = hs[:, toks[-1]]
        result[i, :, 2] = hs[:, toks].mean(1)
    return result


def states(args: argparse.Namespace) -> None:
    from ragmem.embedding import SentenceTransformerEmbedder
    from ragmem.generation import load_generator

    d = load(args.npz)
    embedder = SentenceTransformerEmbedder(Config().embedder.model)
    first_only = ExtractAnswerer(None, AnsweringConfig(mode="extract"), embedder,
                                 weights=json.loads(json.dumps(shipped_weights())))
    rows, kept_all = candidates_of(first_only, args.rows, d, args.cache)
    generator = load_generator(Config().generator.model)
    layers = tuple(int(x) for x in args.layers.split(","))
    n = min(args.questions, len(rows))
    hidden = []
    t0 = time.time()
    for g in range(n):
        if kept_all[g]:
            hidden.append(span_token_states(generator, rows[g]["question"], kept_all[g],
                                            layers).astype(np.float16))
        if g % 100 == 0:
            print(f"{g}/{n} {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    rows_kept = d["group"] < n
    np.savez(args.out, hidden=np.concatenate(hidden), layers=np.array(layers),
             kinds=np.array(KINDS), questions=n, candidates=int(rows_kept.sum()))
    print(f"{n} questions, {int(rows_kept.sum())} candidates, {time.time() - t0:.0f} s")


def flat(ctx: dict[str, Any], layer: str, kinds: str) -> np.ndarray:
    """The context states of ``layer`` ("20" or "12+20") and ``kinds`` ("start+end"),
    side by side, one row per candidate."""
    li = [list(ctx["layers"]).index(int(x)) for x in layer.split("+")]
    ki = [KINDS.index(k) for k in kinds.split("+")]
    h = ctx["hidden"][:, li][:, :, ki].astype(np.float32)
    return h.reshape(len(h), -1)


def as_states(d: dict[str, Any], x: np.ndarray) -> dict[str, Any]:
    """``d``'s candidates with ``x`` (one row each) as their only layer, 0, so that
    lm_head.py's head fitting reads it."""
    return {"group": d["group"], "f1": d["f1"], "hidden": x[:, None], "layers": np.array([0])}


def oof(d: dict[str, Any], x: np.ndarray, l2: float, folds: int) -> np.ndarray:
    """Each candidate's score from a head on ``x`` fitted without its question."""
    return oof_head_scores(as_states(d, x), 0, l2, folds)


def restricted(d: dict[str, Any], n: int) -> dict[str, Any]:
    """``d``'s candidates of its first ``n`` questions."""
    rows = d["group"] < n
    return {k: (v[rows] if isinstance(v, np.ndarray) and v.shape[:1] == rows.shape else v)
            for k, v in d.items()} | {"questions": d["questions"][:n]}


def compare(args: argparse.Namespace) -> None:
    """k-fold over train questions: the shipped second stage (first-stage score,
    likelihoods, the head after the span, the span's own features) with and without a
    head on the context states; each head's scores out of fold."""
    torch.manual_seed(0)
    ctx = load(args.ctx)
    full = load(args.states)
    d = restricted(full, int(ctx["questions"]))
    assert len(ctx["hidden"]) == len(d["f1"]), "the context states are of other candidates"
    shipped, cols = shipped_design(d, full, args.rows, args.cache, args.folds)
    arms: dict[str, tuple[np.ndarray, list[str]]] = {"shipped second stage": (shipped, cols)}
    for layer in args.layers.split(","):
        for kinds in args.kinds.split(","):
            for l2 in (float(x) for x in args.l2.split(",")):
                t0 = time.time()
                score = oof(d, flat(ctx, layer, kinds), l2, args.folds)
                name = f"+ context head, layer {layer}, {kinds}, l2 {l2:g}"
                arms[name] = (np.c_[shipped, score], [*cols, "context_head"])
                print(f"  {name}: fitted in {time.time() - t0:.0f} s", file=sys.stderr)
    results = cv_second_stage(d, arms, args.folds)
    if args.out:
        Path(args.out).write_text(json.dumps({
            "command": "python " + " ".join(sys.argv), "questions": len(results),
            "folds": args.folds, "results": results}, indent=1) + "\n")


def shipped_design(d: dict[str, Any], full: dict[str, Any], rows: str, cache: str | None,
                   folds: int) -> tuple[np.ndarray, list[str]]:
    """The shipped second stage's inputs for ``d``'s candidates (the first ``n``
    questions of ``full``): first-stage score, likelihoods, the head after the span
    (layer 20, l2 0.01, out of fold) and the span's own features."""
    from ragmem.embedding import SentenceTransformerEmbedder

    names = [str(n) for n in d["names"]]
    base = [n for n in names if n in BASE]
    x0 = d["features"][:, [names.index(b) for b in base]]
    head = oof_head_scores(d, 20, 0.01, folds)[:, None]
    embedder = SentenceTransformerEmbedder(Config().embedder.model)
    first_only = ExtractAnswerer(None, AnsweringConfig(mode="extract"), embedder,
                                 weights=json.loads(json.dumps(shipped_weights())))
    _, kept_all = candidates_of(first_only, rows, full, cache)
    kept_all = kept_all[:len(np.unique(d["group"]))]
    span_names = sorted({k for kept in kept_all for c in kept for k in c.features})
    spans = matrix([c.features for kept in kept_all for c in kept], span_names)
    return np.c_[x0, head, spans], [*base, "lm_head", *span_names]


def cv_second_stage(d: dict[str, Any], arms: dict[str, tuple[np.ndarray, list[str]]],
                    folds: int) -> dict[str, Any]:
    """Each arm's second stage (l2 0.01) by k-fold over questions: top-1 EM and F1,
    printed with the paired F1 difference to the first arm."""
    qs = np.unique(d["group"])
    fold_of = {g: k % folds for k, g in enumerate(qs)}
    ems = [d["em"][d["group"] == g] for g in qs]
    results: dict[str, Any] = {}
    first = next(iter(arms))
    for name, (x, c) in arms.items():
        em, f1 = np.zeros(len(qs)), np.zeros(len(qs))
        for k in range(folds):
            train = np.array([fold_of[g] != k for g in d["group"]])
            test_q = [j for j, g in enumerate(qs) if fold_of[g] == k]
            em[test_q], f1[test_q] = held_out_top1(d, x, c, train, test_q, qs, ems, 0.01)
        results[name] = {"em": float(em.mean()), "f1": float(f1.mean()),
                         "per_question_f1": f1.tolist()}
        diff = f1 - np.array(results[first]["per_question_f1"])
        print(f"{name:55s} EM {em.mean():.3f} F1 {f1.mean():.3f}  vs {first} "
              f"{diff.mean():+.3f} (SE {diff.std() / np.sqrt(len(diff)):.3f})", flush=True)
    return results


Scores = Callable[[str, dict[str, Any]], np.ndarray]


def refit_and_judge(states_dir: str, cache: str | None, n: int, feature: str,
                    train_extra: np.ndarray, extra_of: Scores, out: str,
                    meta: dict[str, Any]) -> dict[str, Any]:
    """Refit the second stage, confidence and threshold on the first ``n`` train
    questions (and the absent ones) with and without one more feature, the shipped
    recipe otherwise (the head after the span: layer 20, l2 0.01; mix l2 0.01), then
    judge both and the shipped weights on the test states. ``train_extra``: the
    feature's out-of-fold scores of the train candidates; ``extra_of(kind, d)``: its
    scores of another file's candidates (``kind``: train-absent, test, test-absent)."""
    from ragmem.embedding import SentenceTransformerEmbedder

    torch.manual_seed(0)
    cfg = AnsweringConfig(mode="extract")
    old = json.loads(json.dumps(shipped_weights()))
    embedder = SentenceTransformerEmbedder(Config().embedder.model)
    first_only = ExtractAnswerer(None, cfg, embedder, weights=old)
    H = Path(states_dir)
    full = load(str(H / "train.npz"))
    train = restricted(full, n)
    lm_oof = oof_head_scores(train, 20, 0.01, 5)
    lm = fit_head(train, np.arange(len(train["f1"])), 20, 0.01)

    def scored(kind: str
               ) -> tuple[dict[str, Any], list[Any], list[Any], np.ndarray, np.ndarray]:
        d = load(str(H / f"{kind}.npz"))
        rows, kept_all = candidates_of(first_only, str(H / f"{kind}.jsonl"), d, cache)
        return d, rows, kept_all, stacked(d, 20) @ lm[:-1] + lm[-1], extra_of(kind, d)

    _, kept_all = candidates_of(first_only, str(H / "train.jsonl"), full, cache)
    ab, _, ab_kept, ab_lm, ab_extra = scored("train-absent")
    with_it = f"refitted, with {feature}"
    control_name = f"refitted, no {feature} (control)"
    weights: dict[str, dict[str, Any]] = {}
    for arm, use in ((control_name, False), (with_it, True)):
        items = []
        for kind, d, kept_of, lm_s, extra in (
                ("answerable", train, kept_all[:n], lm_oof, train_extra),
                ("absent", ab, ab_kept, ab_lm, ab_extra)):
            for g, kept in enumerate(kept_of):
                rows = np.where(d["group"] == g)[0]
                f1 = d["f1"][rows] if kind == "answerable" else np.zeros(len(kept))
                fs = feature_dicts(d, lm_s, g, kept)
                if use:
                    for f, i in zip(fs, rows, strict=True):
                        f[feature] = float(extra[i])
                items.append((kind, kept, fs, [float(x) for x in f1]))
        stage2, cw, cb, threshold, table = refit_second_stage(old, cfg, embedder, items, 0.04,
                                                              0.01)
        weights[arm] = {**old, "rescore": {"weights": stage2},
                        "confidence": {"weights": cw, "bias": cb}, "abstain_below": threshold,
                        "trained": {**old["trained"], "threshold_table": table}}
        print(f"{arm}: threshold {threshold}", file=sys.stderr, flush=True)
    judges = {"shipped": ExtractAnswerer(None, cfg, embedder, weights=old)}
    judges |= {a: ExtractAnswerer(None, cfg, embedder, weights=w) for a, w in weights.items()}
    records: dict[str, dict[str, list[dict[str, float]]]] = {
        a: {"answerable": [], "absent": []} for a in judges}
    shipped_head = judges["shipped"].heads["lm_head"]
    for kind, name in (("answerable", "test"), ("absent", "test-absent")):
        d, rows, kept_of, lm_s, extra = scored(name)
        ship_s = shipped_head.score(stacked(d, shipped_head.layer))
        for g, (r, kept) in enumerate(zip(rows, kept_of, strict=True)):
            passages = passages_of(r)
            idx = np.where(d["group"] == g)[0]
            for a, judge in judges.items():
                fs = feature_dicts(d, ship_s if a == "shipped" else lm_s, g, kept)
                if feature in judge.rescore.weights:
                    for f, i in zip(fs, idx, strict=True):
                        f[feature] = float(extra[i])
                records[a][kind].append(judged(judge, kept, fs, r, passages))
    table = judged_table(records)
    report = {"command": "python " + " ".join(sys.argv), "train_questions": n, **meta,
              "table": table,
              "f1_gain_paired_over_control": paired_gain(records[control_name]["answerable"],
                                                         records[with_it]["answerable"]),
              "stage2": {a: w["rescore"]["weights"] for a, w in weights.items()}}
    for a, row in table.items():
        print(a, row)
    print("paired over control", report["f1_gain_paired_over_control"])
    Path(out).write_text(json.dumps(report, indent=1) + "\n")
    return {"weights": weights[with_it], "report": report, "linear_head": lm}


def fit_and_test(args: argparse.Namespace) -> None:
    """The context head (fitted on the questions its states cover) as the feature."""
    C = Path(args.ctx_dir)
    full = load(str(Path(args.states_dir) / "train.npz"))
    ctx = load(str(C / "train.npz"))
    n = int(ctx["questions"])
    train = restricted(full, n)
    x_ctx = flat(ctx, args.layer, args.kinds)
    cx = fit_head(as_states(train, x_ctx), np.arange(len(train["f1"])), 0, args.l2)

    def extra_of(kind: str, d: dict[str, Any]) -> np.ndarray:
        c = load(str(C / f"{kind}.npz"))
        assert int(c["questions"]) == len(np.unique(d["group"]))
        return flat(c, args.layer, args.kinds) @ cx[:-1] + cx[-1]

    refit_and_judge(args.states_dir, args.cache, n, "context_head",
                    oof(train, x_ctx, args.l2, args.folds), extra_of, args.out,
                    {"context_head": {"layer": args.layer, "kinds": args.kinds, "l2": args.l2}})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("states")
    s.add_argument("--rows", required=True)
    s.add_argument("--npz", required=True, help="lm_head.py states of the same rows")
    s.add_argument("--questions", type=int, default=2000)
    s.add_argument("--layers", default="12,20")
    s.add_argument("--cache")
    s.add_argument("--out", required=True)
    c = sub.add_parser("compare")
    c.add_argument("--states", required=True, help="lm_head.py states (train)")
    c.add_argument("--ctx", required=True, help="this script's states of the same rows")
    c.add_argument("--rows", required=True)
    c.add_argument("--cache")
    c.add_argument("--layers", default="12,16,20,24")
    c.add_argument("--kinds", default="start+end,start+end+mean")
    c.add_argument("--l2", default="0.01,0.03")
    c.add_argument("--folds", type=int, default=5)
    c.add_argument("--out")
    f = sub.add_parser("fit-and-test")
    f.add_argument("--states-dir", required=True, help="lm_head.py states and rows: "
                   "train, train-absent, test, test-absent (.npz and .jsonl)")
    f.add_argument("--ctx-dir", required=True, help="this script's states of the same")
    f.add_argument("--layer", default="20")
    f.add_argument("--kinds", default="start+end")
    f.add_argument("--l2", type=float, default=0.01)
    f.add_argument("--folds", type=int, default=5)
    f.add_argument("--cache")
    f.add_argument("--out", required=True)
    args = p.parse_args()
    {"states": states, "compare": compare, "fit-and-test": fit_and_test}[args.command](args)


if __name__ == "__main__":
    main()
