"""How many evidence sentences should give candidate spans? Measured on train questions.

    python eval/answering/evidence_budget.py --rows TRAIN.jsonl [--fit 560]

ROWS: cached working memories of SQuAD v1.1 dev questions after the first 1,000
(``train_ranker.py`` makes them). The first ``--fit`` questions train the first-stage
ranker for each setting, the rest score it (features only, no generator): top-1 EM/F1,
the oracle F1 within the ``scored_candidates`` best (what the generator could reach), and
how often a gold-bearing sentence gives candidates. Sentence order is computed once per
question, so settings differ only in which sentences give candidates.
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

from ragmem.config import AnsweringConfig, Config  # noqa: E402
from ragmem.evaluation.metrics import exact_match, token_f1  # noqa: E402
from ragmem.extraction import (  # noqa: E402
    EvidenceSentence,
    question_head,
    rank_sentences,
    sentence_candidates,
    stem,
    words,
)


def names_head(e: EvidenceSentence, head: str) -> bool:
    """The sentence has a capitalised word whose stem is the question's head noun."""
    return bool(head) and any(w[0].isupper() and stem(w) == head
                              for _, _, w in words(e.sentence.text))


def choose(ranked: list[EvidenceSentence], question: str, n: int, head_extra: int
           ) -> list[EvidenceSentence]:
    out = ranked[:n]
    if head_extra:
        head = question_head(question)
        extra = [e for e in ranked[n:12] if names_head(e, head)][:head_extra]
        out = out + extra
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", required=True)
    ap.add_argument("--fit", type=int, default=560)
    ap.add_argument("--settings", default="5:0,6:0,8:0,10:0,5:1,5:2,6:2")
    ap.add_argument("--out")
    ap.add_argument("--ranked-cache", help="pickle of the sentence order (made if missing)")
    args = ap.parse_args()
    from ragmem.answering import ExtractAnswerer
    from ragmem.embedding import SentenceTransformerEmbedder

    rows = [json.loads(line) for line in open(args.rows)]
    cfg = AnsweringConfig(mode="extract")
    embedder = SentenceTransformerEmbedder(Config().embedder.model)
    placeholder = {"features": {"weights": {}}, "rescore": {"weights": {"first_stage": 1.0}},
                   "confidence": {"weights": {}}, "abstain_below": 0.0}
    answerer = ExtractAnswerer(None, cfg, embedder, weights=placeholder)
    t0 = time.time()
    cache = Path(args.ranked_cache) if args.ranked_cache else None
    if cache and cache.is_file():
        ranked = pickle.loads(cache.read_bytes())
    else:
        ranked = [rank_sentences(r["question"], passages_of(r),
                                 answerer._dense(r["question"]), cfg.dense_sentences)
                  for r in rows]
        if cache:
            cache.write_bytes(pickle.dumps(ranked))
    print(f"ranked {len(rows)} in {time.time() - t0:.0f} s", file=sys.stderr)
    results: list[dict[str, Any]] = []
    for setting in args.settings.split(","):
        n, extra = (int(x) for x in setting.split(":"))
        cands = [[c for e in choose(rk, r["question"], n, extra)
                  for c in sentence_candidates(r["question"], e, cfg.max_span_words)]
                 for r, rk in zip(rows, ranked, strict=True)]
        f1s = [np.array([token_f1(c.text, r["answers"]) for c in cs], dtype=np.float32)
               for r, cs in zip(rows, cands, strict=True)]
        names = sorted({k for cs in cands[:args.fit] for c in cs for k in c.features})
        w = fit_listwise([(matrix([c.features for c in cs], names), y)
                          for cs, y in zip(cands[:args.fit], f1s[:args.fit], strict=True) if cs],
                         names)
        em, f1, oracle, sent = [], [], [], []
        for r, cs, y in zip(rows[args.fit:], cands[args.fit:], f1s[args.fit:], strict=True):
            if not cs:
                em.append(0.0), f1.append(0.0), oracle.append(0.0), sent.append(0.0)
                continue
            s = np.array([sum(w.get(k, 0.0) * v for k, v in c.features.items()) for c in cs])
            order = np.argsort(-s, kind="stable")
            em.append(float(exact_match(cs[order[0]].text, r["answers"])))
            f1.append(float(y[order[0]]))
            oracle.append(float(y[order[:cfg.scored_candidates]].max()))
            sent.append(float(y.max() >= 0.999))
        row = {"evidence_sentences": n, "head_extra": extra,
               "em": round(float(np.mean(em)), 4), "f1": round(float(np.mean(f1)), 4),
               "oracle_top24_f1": round(float(np.mean(oracle)), 4),
               "gold_span_among_candidates": round(float(np.mean(sent)), 4),
               "candidates_mean": round(float(np.mean([len(c) for c in cands])), 1)}
        results.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"command": " ".join(sys.argv), "fit": args.fit,
                                              "questions": len(rows), "results": results},
                                             indent=1) + "\n")


if __name__ == "__main__":
    main()
