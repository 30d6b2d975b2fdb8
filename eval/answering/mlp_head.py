"""A small MLP head on the generator's state after each span, beside the linear head or
in place of it (issue 8, fourth round; shipped beside it, 8 units).

    python eval/answering/mlp_head.py compare --states train.npz --rows train.jsonl --cache CANDS
    python eval/answering/mlp_head.py fit-and-test --states-dir H --cache CANDS --out REPORT \\
        --weights-dir DIR

The shipped head is linear on the layer-20 state (577 numbers), and refitting it on
4,000 train questions instead of 2,000 gained nothing (lm-head.md, third round): the
linear read has levelled off. This asks whether a nonlinear read of the same state
does better: linear + ``hidden`` GELU units (576 x hidden more numbers), listwise like
the shipped head, its scores out of fold, fed to the shipped second stage by k-fold
over SQuAD train questions (``compare``). ``fit-and-test`` fits the chosen head on all
of them, refits the second stage with and without it, judges both on the test part and
writes the weights as ``ragmem/data/`` ships them (``ragmem.answering.StateHead``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from context_head import (  # noqa: E402
    cv_second_stage,
    refit_and_judge,
    restricted,
    shipped_design,
)
from lm_head import load, stacked, trained_record  # noqa: E402
from train_ranker import padded_groups  # noqa: E402

from ragmem.answering import StateHead  # noqa: E402
from ragmem.config import Config  # noqa: E402

FEATURE = "mlp_head"
HEAD_FILE = "extractive-mlp-head.npz"
LINEAR_FILE = "extractive-head.npy"


def fit_mlp(x: np.ndarray, f1: np.ndarray, group: np.ndarray, hidden: int, l2: float,
            epochs: int) -> dict[str, np.ndarray]:
    """Listwise: the softmax of the scores over each question's candidates is pulled
    toward its best-F1 candidates (train_ranker.fit_listwise's loss). Fitted on
    standardised states; returned folded back onto the raw state, as ``gelu_head``
    reads it: ``linear`` (size + 1: weights, bias), ``hidden`` (units, size + 1) and
    ``out`` (units + 1)."""
    torch.manual_seed(0)
    mu, sd = x.mean(0), x.std(0) + 1e-3
    z = (x - mu) / sd
    groups = [(z[group == g], f1[group == g]) for g in np.unique(group)]
    xt, target, mask = padded_groups(groups)
    inner = torch.nn.Linear(x.shape[1], hidden)
    outer = torch.nn.Linear(hidden, 1)
    linear = torch.nn.Linear(x.shape[1], 1, bias=False)
    params = [*inner.parameters(), *outer.parameters(), *linear.parameters()]
    opt = torch.optim.Adam(params, lr=0.01)
    gelu = torch.nn.GELU(approximate="tanh")
    for _ in range(epochs):
        opt.zero_grad()
        logits = (outer(gelu(inner(xt))) + linear(xt))[..., 0].masked_fill(~mask, float("-inf"))
        logp = torch.log_softmax(logits, 1).masked_fill(~mask, 0.0)
        penalty = sum((m.weight ** 2).sum() for m in (inner, outer, linear))
        loss = -(target * logp).sum() / len(xt) + l2 * penalty
        loss.backward()
        opt.step()
    w1 = inner.weight.detach().numpy() / sd  # (units, size): z = (x - mu) / sd folded in
    b1 = inner.bias.detach().numpy() - w1 @ mu
    v = linear.weight.detach().numpy()[0] / sd
    head = {"linear": np.r_[v, -(v @ mu)].astype(np.float32),
            "hidden": np.c_[w1, b1].astype(np.float32),
            "out": np.r_[outer.weight.detach().numpy()[0],
                         outer.bias.detach().numpy()].astype(np.float32)}
    with torch.inference_mode():  # the folded head scores as the fitted one
        zt = torch.from_numpy(z[:64].astype(np.float32))
        fitted = (outer(gelu(inner(zt))) + linear(zt))[..., 0].numpy()
    np.testing.assert_allclose(gelu_head(head, x[:64]), fitted, rtol=1e-3, atol=1e-3)
    return head


def gelu_head(head: dict[str, np.ndarray], states: np.ndarray) -> np.ndarray:
    """The head's score of each state (rows of ``states``), as the answerer reads it."""
    return StateHead(20, head["linear"], head["hidden"], head["out"]).score(states)


def oof_mlp(d: dict[str, Any], hidden: int, l2: float, epochs: int, folds: int) -> np.ndarray:
    h = stacked(d, 20)
    qs = np.unique(d["group"])
    fold_of = {g: k % folds for k, g in enumerate(qs)}
    fold = np.array([fold_of[g] for g in d["group"]])
    out = np.zeros(len(h), dtype=np.float32)
    for k in range(folds):
        tr = fold != k
        head = fit_mlp(h[tr], d["f1"][tr], d["group"][tr], hidden, l2, epochs)
        out[~tr] = gelu_head(head, h[~tr])
    return out


def compare(args: argparse.Namespace) -> None:
    full = load(args.states)
    d = restricted(full, args.questions)
    shipped, cols = shipped_design(d, full, args.rows, args.cache, args.folds)
    lm = cols.index("lm_head")
    arms: dict[str, tuple[np.ndarray, list[str]]] = {"shipped second stage": (shipped, cols)}
    for hidden in (int(x) for x in args.hidden.split(",")):
        for l2 in (float(x) for x in args.l2.split(",")):
            t0 = time.time()
            score = oof_mlp(d, hidden, l2, args.epochs, args.folds)
            swapped = shipped.copy()
            swapped[:, lm] = score
            arms[f"MLP head ({hidden} units, l2 {l2:g}) in place of the linear"] = (swapped, cols)
            arms[f"+ MLP head ({hidden} units, l2 {l2:g}) beside the linear"] = (
                np.c_[shipped, score], [*cols, FEATURE])
            print(f"  {hidden} units, l2 {l2:g}: {time.time() - t0:.0f} s", file=sys.stderr,
                  flush=True)
    results = cv_second_stage(d, arms, args.folds)
    if args.out:
        Path(args.out).write_text(json.dumps({
            "command": "python " + " ".join(sys.argv), "questions": args.questions,
            "folds": args.folds, "epochs": args.epochs, "results": results}, indent=1) + "\n")


def fit_and_test(args: argparse.Namespace) -> None:
    """The MLP head fitted on all the train questions, the second stage refitted with
    its score beside the linear head's, judged on test against a control; the head
    (.npz of plain arrays) and the weights written to ``--weights-dir``."""
    H = Path(args.states_dir)
    train = restricted(load(str(H / "train.npz")), args.questions)
    head = fit_mlp(stacked(train, 20), train["f1"], train["group"], args.hidden, args.l2,
                   args.epochs)

    def extra_of(kind: str, d: dict[str, Any]) -> np.ndarray:
        return gelu_head(head, stacked(d, 20))

    result = refit_and_judge(args.states_dir, args.cache, args.questions, FEATURE,
                             oof_mlp(train, args.hidden, args.l2, args.epochs, args.folds),
                             extra_of, args.out,
                             {"mlp_head": {"layer": 20, "units": args.hidden, "l2": args.l2,
                                           "epochs": args.epochs}})
    write_weights(Path(args.weights_dir), result["weights"], result["linear_head"], head,
                  args)


def write_weights(out: Path, weights: dict[str, Any], linear: np.ndarray,
                  head: dict[str, np.ndarray], args: argparse.Namespace) -> None:
    """The weights as ``ragmem/data/`` ships them: extractive.json naming both heads,
    the linear head (.npy) and the MLP head (.npz of plain arrays)."""
    out.mkdir(parents=True, exist_ok=True)
    model = Config().generator.model
    size = int(len(linear) - 1)
    trained = trained_record(weights["trained"], (
        f"refitted on {args.questions} answerable and the absent train questions with "
        f"two heads on the generator's layer-20 state after the span: lm_head (linear, "
        f"l2 0.01) and mlp_head (linear + {args.hidden} GELU units, l2 {args.l2:g}, "
        f"{args.epochs} epochs), out-of-fold scores for the fit; with the span's "
        f"first-stage features, mix l2 0.01"))
    np.save(out / LINEAR_FILE, linear.astype(np.float32), allow_pickle=False)
    np.savez(out / HEAD_FILE, **head)
    shipped = {**weights, "trained": trained,
               "head": {"file": LINEAR_FILE, "layer": 20, "model": model, "size": size},
               FEATURE: {"file": HEAD_FILE, "layer": 20, "model": model, "size": size,
                         "units": args.hidden}}
    (out / "extractive.json").write_text(json.dumps(shipped, indent=1) + "\n", "utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compare", help="k-fold on train: the MLP head in place of or "
                       "beside the linear one")
    c.add_argument("--states", required=True, help="lm_head.py states (train, layer 20)")
    c.add_argument("--rows", required=True)
    c.add_argument("--cache")
    c.add_argument("--questions", type=int, default=4000)
    c.add_argument("--hidden", default="16")
    c.add_argument("--l2", default="0.01")
    c.add_argument("--epochs", type=int, default=300)
    c.add_argument("--folds", type=int, default=5)
    c.add_argument("--out")
    f = sub.add_parser("fit-and-test", help="fit on train, judge on test, write the head")
    f.add_argument("--states-dir", required=True, help="lm_head.py states and rows: "
                   "train, train-absent, test, test-absent (.npz and .jsonl)")
    f.add_argument("--cache")
    f.add_argument("--questions", type=int, default=4000)
    f.add_argument("--hidden", type=int, default=16)
    f.add_argument("--l2", type=float, default=0.01)
    f.add_argument("--epochs", type=int, default=300)
    f.add_argument("--folds", type=int, default=5)
    f.add_argument("--out", required=True)
    f.add_argument("--weights-dir", required=True)
    args = ap.parse_args()
    {"compare": compare, "fit-and-test": fit_and_test}[args.command](args)


if __name__ == "__main__":
    main()
