"""Which evidence sentences should the extractor take spans from? (issue 8, train only)

    python eval/answering/sentence_ranking.py --rows TRAIN.jsonl [--questions 800]

For each cached working memory (SQuAD v1.1 dev questions after the first 1,000), the
sentence holding the annotated answer is the target; each ranking of the working
memory's sentences is scored by how often that sentence is among its best k (the
extractor takes candidates from the best ``evidence_sentences``, 5). Rankings: words
only (local-IDF overlap), words with the embedder's cosine on the best ``dense_top`` by
words (shipped: 12), and the cosine on every sentence, at a few weights. Two
reorderings of the shipped ranking (fourth round): plus beta times the question-word
score of the sentence before (answers often follow the sentence that matches the
question), and plus gamma / (1 + the passage's rank) (sentences of the best-retrieved
windows first).

``--demo-index demo`` also ranks the sentences of the demo questions' working memories
(ragmem/demo/questions.jsonl; each names its evidence sentence) and prints the evidence
sentence's rank under each ordering: a check on narrative text, 11 questions, not tuned on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_ranker import passages_of  # noqa: E402

from ragmem.config import Config  # noqa: E402
from ragmem.extraction import EvidenceSentence, rank_sentences  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", required=True)
    ap.add_argument("--questions", type=int, default=800)
    ap.add_argument("--demo-index", help="also rank the demo questions' evidence sentences")
    ap.add_argument("--out")
    args = ap.parse_args()
    from ragmem.embedding import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder(Config().embedder.model)
    rows = [json.loads(line) for line in open(args.rows)][:args.questions]
    arms: dict[str, tuple[int, float, Reorder | None]] = {
        "words only": (0, 0.0, None), "words + cosine of the best 12 (shipped)": (12, 1.0, None),
        "words + cosine of the best 24": (24, 1.0, None)}
    arms |= {f"words + {w:g} x cosine of all": (10_000, w, None) for w in (0.5, 1.0, 2.0, 4.0)}
    arms |= {f"shipped + {b:g} x the sentence before's words": (12, 1.0, after(b))
             for b in (0.25, 0.5, 1.0)}
    arms |= {f"shipped + {g:g} / (1 + passage rank)": (12, 1.0, passage_prior(g))
             for g in (0.1, 0.2, 0.4)}
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

        for name, (top, weight, reorder) in arms.items():
            extraction.DENSE_WEIGHT = weight
            ranked = rank_sentences(r["question"], passages, dense if top else None, top)
            ranked = reorder(ranked) if reorder else ranked
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
    extraction.DENSE_WEIGHT = 1.0
    demo = demo_ranks(args.demo_index, arms) if args.demo_index else None
    if args.out:
        Path(args.out).write_text(json.dumps({"command": "python " + " ".join(sys.argv),
                                              "in_memory": float(found.mean()),
                                              "recall": table, "demo_evidence_ranks": demo},
                                             indent=1) + "\n")


Reorder = Callable[[list[EvidenceSentence]], list[EvidenceSentence]]


def _score(e: EvidenceSentence) -> float:
    """The shipped ordering's key (words, and the cosine where it was computed)."""
    return e.lexical + (e.dense or 0.0)


def after(beta: float) -> Reorder:
    return lambda ranked: sorted(ranked, key=lambda e: -(_score(e) + beta * e.previous))


def passage_prior(gamma: float) -> Reorder:
    return lambda ranked: sorted(ranked, key=lambda e: -(_score(e) + gamma / (1 + e.passage)))


def demo_ranks(index: str, arms: dict[str, tuple[int, float, Reorder | None]]
               ) -> dict[str, list[int | None]]:
    """Per ordering, the rank of each demo question's evidence sentence in its working
    memory (None: not in it), under the shipped retrieval."""
    from demo_diagnosis import demo_questions, evidence_rank

    from ragmem import Assistant
    from ragmem.answering import ExtractAnswerer

    out: dict[str, list[int | None]] = {name: [] for name, arm in arms.items() if arm[0] == 12}
    with Assistant.open(index) as assistant:
        answerer = assistant.answerer
        assert isinstance(answerer, ExtractAnswerer)
        for q in demo_questions():
            buffer = assistant.working_memory.fill(
                q["question"], assistant.retriever.passages(q["question"]))
            shipped = rank_sentences(q["question"], buffer.passages,
                                     answerer._dense(q["question"]), 12)
            for name in out:
                reorder = arms[name][2]
                out[name].append(evidence_rank(reorder(shipped) if reorder else shipped, q))
    for name, ranks in out.items():
        print(f"demo {name:42s} {ranks}")
    return out


if __name__ == "__main__":
    main()
