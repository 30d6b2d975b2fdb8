"""Which evidence sentences should the extractor take spans from? (issue 8, train only)

    python eval/answering/sentence_ranking.py --rows TRAIN.jsonl [--questions 800]

For each cached working memory (SQuAD v1.1 dev questions after the first 1,000), the
sentence holding the annotated answer is the target; each ranking of the working
memory's sentences is scored by how often that sentence is among its best k (the
extractor takes candidates from the best ``evidence_sentences``, 5). Rankings: words
only (local-IDF overlap), words with the embedder's cosine on the best ``dense_top`` by
words (shipped: 12), and the cosine on every sentence, at a few weights.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_ranker import passages_of  # noqa: E402

from ragmem.config import Config  # noqa: E402
from ragmem.extraction import rank_sentences  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", required=True)
    ap.add_argument("--questions", type=int, default=800)
    ap.add_argument("--out")
    args = ap.parse_args()
    from ragmem.embedding import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder(Config().embedder.model)
    rows = [json.loads(line) for line in open(args.rows)][:args.questions]
    arms = {"words only": (0, 0.0), "words + cosine of the best 12 (shipped)": (12, 1.0),
            "words + cosine of the best 24": (24, 1.0)}
    arms |= {f"words + {w:g} x cosine of all": (10_000, w) for w in (0.5, 1.0, 2.0, 4.0)}
    ks = (1, 3, 5, 8)
    hits = {a: np.zeros((len(rows), len(ks))) for a in arms}
    found = np.zeros(len(rows), dtype=bool)
    t0 = time.time()
    import ragmem.extraction as extraction

    for i, r in enumerate(rows):
        passages = passages_of(r)
        gold = [(s, e) for s, e in r["spans"]]
        texts = [s.text for p in passages for s in p.sentences]
        vectors = embedder.embed([r["question"], *texts]) if texts else None
        cos = {} if vectors is None else dict(zip(texts, (vectors[1:] @ vectors[0]).tolist(),
                                                  strict=False))

        def dense(ts: list[str], cos: dict[str, float] = cos) -> list[float]:
            return [cos[t] for t in ts]

        for name, (top, weight) in arms.items():
            extraction.DENSE_WEIGHT = weight
            ranked = rank_sentences(r["question"], passages, dense if top else None, top)
            where = next((k for k, ev in enumerate(ranked)
                          if any(ev.sentence.doc_id == r["doc_id"]
                                 and ev.sentence.start <= gs and ge <= ev.sentence.end
                                 for gs, ge in gold)), None)
            if where is not None:
                found[i] = True
                hits[name][i] = [where < k for k in ks]
        if i % 100 == 0:
            print(f"{i}/{len(rows)} {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    print(f"{len(rows)} questions; the annotated sentence is in the working memory for "
          f"{found.mean():.3f}")
    table = {}
    for name in arms:
        rec = hits[name].mean(0)
        table[name] = {f"top{k}": round(float(v), 4) for k, v in zip(ks, rec, strict=True)}
        print(f"{name:42s} " + "  ".join(f"@{k} {v:.3f}" for k, v in zip(ks, rec, strict=True)))
    if args.out:
        Path(args.out).write_text(json.dumps({"command": "python " + " ".join(sys.argv),
                                              "in_memory": float(found.mean()),
                                              "recall": table}, indent=1) + "\n")


if __name__ == "__main__":
    main()
