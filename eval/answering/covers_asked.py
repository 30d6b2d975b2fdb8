"""Would the first stage find a span that holds every question word of its sentence?
(issue 8, train only)

    python eval/answering/covers_asked.py --rows TRAIN2000.jsonl --questions 1000 \\
        --cache /tmp/first-stage-1000.pkl

The demo's bank answer, "the City and Suburban Bank", holds the only question word
("bank") of its sentence, so its ``distance`` feature reads "no question word nearby",
which the first stage has learned to penalise. This adds one indicator,
``covers_asked`` (a question word inside the span and none outside it in the sentence),
refits the first stage by 5-fold CV over questions with and without it, and prints
the top-1 F1 and the best F1 among the 24 spans kept for the second stage.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_ranker import fit_listwise, matrix, passages_of  # noqa: E402

from ragmem.answering import ExtractAnswerer  # noqa: E402
from ragmem.config import AnsweringConfig, Config  # noqa: E402
from ragmem.evaluation.metrics import token_f1  # noqa: E402
from ragmem.extraction import (  # noqa: E402
    content_words,
    rank_sentences,
    sentence_candidates,
    stem,
    words,
)

Group = list[tuple[dict[str, float], float]]


def candidates(rows: list[dict], cfg: AnsweringConfig) -> list[Group]:
    """Every first-stage candidate's features (with ``covers_asked``) and token F1."""
    from ragmem.embedding import SentenceTransformerEmbedder

    answerer = ExtractAnswerer(None, cfg, SentenceTransformerEmbedder(Config().embedder.model))
    out = []
    for r in rows:
        q = r["question"]
        ranked = rank_sentences(q, passages_of(r), answerer._dense(q), cfg.dense_sentences)
        asked = set(content_words(q))
        group: Group = []
        for e in ranked[:cfg.evidence_sentences]:
            at = [(a, b) for a, b, w in words(e.sentence.text) if stem(w) in asked]
            for c in sentence_candidates(q, e, cfg.max_span_words):
                lo, hi = c.start - e.sentence.start, c.end - e.sentence.start
                inside = sum(1 for a, b in at if a >= lo and b <= hi)
                f = {**c.features, "covers_asked": float(inside > 0 and inside == len(at))}
                group.append((f, token_f1(c.text, r["answers"])))
        out.append(group)
    return out


def cross_validated(data: list[Group], cols: list[str], folds: int = 5, keep: int = 24
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Per question: F1 of the first stage's top span, and the best F1 among its ``keep``."""
    top1, best = np.zeros(len(data)), np.zeros(len(data))
    for k in range(folds):
        train = [(matrix([f for f, _ in g], cols), np.array([y for _, y in g], dtype=np.float32))
                 for j, g in enumerate(data) if j % folds != k and g]
        w = fit_listwise(train, cols)
        wv = np.array([w.get(c, 0.0) for c in cols], dtype=np.float32)
        for j, g in enumerate(data):
            if j % folds == k and g:
                y = np.array([y for _, y in g])
                order = np.argsort(-(matrix([f for f, _ in g], cols) @ wv), kind="stable")
                top1[j], best[j] = y[order[0]], y[order[:keep]].max()
    return top1, best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", required=True)
    ap.add_argument("--questions", type=int, default=1000)
    ap.add_argument("--cache", help="a local pickle of the candidates, reused when present")
    args = ap.parse_args()
    torch.manual_seed(0)
    cache = Path(args.cache) if args.cache else None
    if cache and cache.is_file():
        data = pickle.loads(cache.read_bytes())
    else:
        rows = [json.loads(line) for line in open(args.rows)][:args.questions]
        data = candidates(rows, AnsweringConfig(mode="extract"))
        if cache:
            cache.write_bytes(pickle.dumps(data))
    names = sorted({k for g in data for f, _ in g for k in f})
    t_b, o_b = cross_validated(data, [n for n in names if n != "covers_asked"])
    t_n, o_n = cross_validated(data, names)
    d1, d2 = t_n - t_b, o_n - o_b
    se = np.sqrt(len(d1))
    print(f"questions {len(data)}; candidates with covers_asked "
          f"{np.mean([f['covers_asked'] for g in data for f, _ in g]):.3f}")
    print(f"shipped features: top-1 F1 {t_b.mean():.3f}, best of 24 {o_b.mean():.3f}")
    print(f"+ covers_asked:   top-1 F1 {t_n.mean():.3f} ({d1.mean():+.3f}, SE {d1.std() / se:.3f}),"
          f" best of 24 {o_n.mean():.3f} ({d2.mean():+.3f}, SE {d2.std() / se:.3f})")


if __name__ == "__main__":
    main()
