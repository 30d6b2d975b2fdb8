"""Does the span's likelihood *without* the question help the rescoring? (train only)

    python eval/answering/pmi.py --rows TRAIN.jsonl --questions 300

For each cached working memory (SQuAD v1.1 dev questions after the first 1,000), the
shipped first stage keeps its best candidates and the generator scores each as the
answer twice: given the question (the shipped features) and given a content-free
question (``--null``). The difference is the span's pointwise mutual information with
the question: it discounts spans the model likes in any case (frequent names, short
words). Second-stage rankers with and without the null-question features are fitted and
scored by k-fold cross-validation on the same questions: top-1 EM and F1.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_ranker import fit_listwise, matrix, passages_of  # noqa: E402

from ragmem.answering import ExtractAnswerer, lm_features, pmi_features  # noqa: E402
from ragmem.config import AnsweringConfig, Config  # noqa: E402
from ragmem.evaluation.metrics import exact_match, token_f1  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", required=True)
    ap.add_argument("--questions", type=int, default=300)
    ap.add_argument("--null", default="What is it?")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--cache", help="pickle of the scored candidates (made if missing)")
    ap.add_argument("--out")
    args = ap.parse_args()
    rows = [json.loads(line) for line in open(args.rows)][:args.questions]
    cache = Path(args.cache) if args.cache else None
    if cache and cache.is_file():
        scored = pickle.loads(cache.read_bytes())
    else:
        from ragmem.embedding import SentenceTransformerEmbedder
        from ragmem.generation import load_generator

        embedder = SentenceTransformerEmbedder(Config().embedder.model)
        generator = load_generator(Config().generator.model)
        answerer = ExtractAnswerer(generator, AnsweringConfig(mode="extract"), embedder)
        scored = []
        t0 = time.time()
        for i, r in enumerate(rows):
            kept, features = answerer.rescore_features(r["question"], passages_of(r))
            null = [lm_features(lp, n) for lp, n, _ in answerer.span_logprobs([args.null], kept)[0]]
            scored.append(([c.text for c in kept], features, null,
                           [token_f1(c.text, r["answers"]) for c in kept]))
            if i % 25 == 0:
                print(f"{i}/{len(rows)} {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
        if cache:
            cache.write_bytes(pickle.dumps(scored))
    variants: dict[str, Any] = {
        "shipped features (first stage + likelihoods)": lambda f, z: f,
        "+ null-question likelihoods": lambda f, z: {**f, **{f"null_{k}": v
                                                             for k, v in z.items()}},
        "+ PMI (tokens, end)": lambda f, z: {**f, **pmi_features(f, z)},
    }
    fold = np.arange(len(scored)) % args.folds
    results = {}
    for name, make in variants.items():
        feats = [[make(f, z) for f, z in zip(fs, zs, strict=True)] for _, fs, zs, _ in scored]
        names = sorted({k for fs in feats for f in fs for k in f})
        xs = [matrix(fs, names) for fs in feats]
        ys = [np.array(y, dtype=np.float32) for *_, y in scored]
        em, f1 = np.zeros(len(scored)), np.zeros(len(scored))
        for k in range(args.folds):
            train = [(xs[i], ys[i]) for i in range(len(scored)) if fold[i] != k and len(ys[i])]
            w = fit_listwise(train, names)
            wv = np.array([w.get(n, 0.0) for n in names], dtype=np.float32)
            for i in np.flatnonzero(fold == k):
                if len(ys[i]):
                    best = int(np.argmax(xs[i] @ wv))
                    f1[i] = ys[i][best]
                    em[i] = float(exact_match(scored[i][0][best], rows[i]["answers"]))
        results[name] = {"em": round(float(em.mean()), 4), "f1": round(float(f1.mean()), 4),
                         "f1_se": round(float(f1.std() / np.sqrt(len(f1))), 4)}
        print(name, json.dumps(results[name]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"command": " ".join(sys.argv),
                                              "questions": len(scored), "null": args.null,
                                              "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
