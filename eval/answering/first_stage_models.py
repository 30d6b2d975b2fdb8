"""Linear vs small-MLP first-stage span rankers, on train questions only (k-fold).

    python eval/answering/first_stage_models.py --rows TRAIN.jsonl --ranked-cache RANKED.pkl

ROWS: cached working memories of SQuAD v1.1 dev questions after the first 1,000
(``train_ranker.py`` makes them). Candidates are the spans of the 5 best evidence
sentences with ragmem's features (as shipped); each model is fitted listwise (softmax
over a question's candidates, target the best-F1 candidates) on k-1 folds and scored on
the held-out fold: top-1 EM/F1 and the oracle F1 within the best ``scored_candidates``
(what the generator's rescoring can reach). Same folds, same candidates for every model.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_ranker import fit_listwise, matrix, padded_groups, passages_of  # noqa: E402

from ragmem.config import AnsweringConfig  # noqa: E402
from ragmem.evaluation.metrics import exact_match, token_f1  # noqa: E402
from ragmem.extraction import rank_sentences, sentence_candidates  # noqa: E402


def fit_mlp(groups: list[tuple[np.ndarray, np.ndarray]], hidden: int, l2: float,
            epochs: int, seed: int = 0) -> dict[str, np.ndarray]:
    """score = v . tanh(W x + b) + u . x: a linear part plus a small nonlinear one."""
    torch.manual_seed(seed)
    x, target, mask = padded_groups(groups)
    dim = x.shape[-1]
    w1 = torch.nn.Parameter(torch.randn(dim, hidden) * 0.1)
    b1 = torch.nn.Parameter(torch.zeros(hidden))
    v = torch.nn.Parameter(torch.zeros(hidden))
    u = torch.nn.Parameter(torch.zeros(dim))
    opt = torch.optim.Adam([w1, b1, v, u], lr=0.02)
    for _ in range(epochs):
        opt.zero_grad()
        logits = torch.tanh(x @ w1 + b1) @ v + x @ u
        logits = logits.masked_fill(~mask, float("-inf"))
        logp = torch.log_softmax(logits, 1).masked_fill(~mask, 0.0)
        loss = -(target * logp).sum() / len(x) + l2 * ((w1 ** 2).sum() + (v ** 2).sum()
                                                       + (u ** 2).sum())
        loss.backward()
        opt.step()
    return {k: p.detach().numpy() for k, p in
            {"w1": w1, "b1": b1, "v": v, "u": u}.items()}


def mlp_scores(m: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    return np.tanh(x @ m["w1"] + m["b1"]) @ m["v"] + x @ m["u"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", required=True)
    ap.add_argument("--ranked-cache", required=True, help="pickle of the sentence order")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--models", default="linear,mlp8,mlp16,mlp32")
    ap.add_argument("--l2", type=float, default=1e-3)
    ap.add_argument("--epochs", type=int, default=400)
    ap.add_argument("--out")
    args = ap.parse_args()
    rows = [json.loads(line) for line in open(args.rows)]
    cfg = AnsweringConfig(mode="extract")
    ranked = pickle.loads(Path(args.ranked_cache).read_bytes())
    if len(ranked) != len(rows):
        ranked = [rank_sentences(r["question"], passages_of(r)) for r in rows]
    cands = [[c for e in rk[:cfg.evidence_sentences]
              for c in sentence_candidates(r["question"], e, cfg.max_span_words)]
             for r, rk in zip(rows, ranked, strict=True)]
    f1s = [np.array([token_f1(c.text, r["answers"]) for c in cs], dtype=np.float32)
           for r, cs in zip(rows, cands, strict=True)]
    names = sorted({k for cs in cands for c in cs for k in c.features})
    xs = [matrix([c.features for c in cs], names) if cs else np.zeros((0, len(names)),
                                                                        np.float32)
          for cs in cands]
    fold = np.arange(len(rows)) % args.folds
    results: dict[str, dict[str, Any]] = {}
    for model in args.models.split(","):
        t0 = time.time()
        em, f1, oracle = np.zeros(len(rows)), np.zeros(len(rows)), np.zeros(len(rows))
        for k in range(args.folds):
            train = [(xs[i], f1s[i]) for i in range(len(rows)) if fold[i] != k and len(f1s[i])]
            if model == "linear":
                w = fit_listwise(train, names, l2=args.l2)
                wv = np.array([w.get(n, 0.0) for n in names], dtype=np.float32)

                def score(x: np.ndarray, wv: np.ndarray = wv) -> np.ndarray:
                    return x @ wv
            else:
                m = fit_mlp(train, int(model[3:]), args.l2, args.epochs)

                def score(x: np.ndarray, m: dict[str, np.ndarray] = m) -> np.ndarray:
                    return mlp_scores(m, x)
            for i in np.flatnonzero(fold == k):
                if not len(f1s[i]):
                    continue
                order = np.argsort(-score(xs[i]), kind="stable")
                em[i] = float(exact_match(cands[i][order[0]].text, rows[i]["answers"]))
                f1[i] = float(f1s[i][order[0]])
                oracle[i] = float(f1s[i][order[:cfg.scored_candidates]].max())
        results[model] = {"em": round(float(em.mean()), 4), "f1": round(float(f1.mean()), 4),
                          "f1_se": round(float(f1.std() / np.sqrt(len(f1))), 4),
                          "oracle_top24_f1": round(float(oracle.mean()), 4),
                          "seconds": round(time.time() - t0, 1)}
        print(model, json.dumps(results[model]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"command": " ".join(sys.argv),
                                              "questions": len(rows), "folds": args.folds,
                                              "features": len(names), "results": results},
                                             indent=1) + "\n")


if __name__ == "__main__":
    main()
