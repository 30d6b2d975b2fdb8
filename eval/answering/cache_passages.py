"""Cache what the default pipeline hands the answerer for SQuAD questions, so answer
options can be compared without re-running retrieval.

    python eval/answering/cache_passages.py --split test   # questions 0..499 (reported)
    python eval/answering/cache_passages.py --split train  # a seeded sample after the first 1,000

Each line: question, gold answers and spans, and the working-memory passages (sentences
with their document offsets), in prompt order.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from ragmem.config import Config
from ragmem.evaluation.datasets import load_squad
from ragmem.evaluation.indexes import open_index
from ragmem.types import Filter

SQUAD = "/work/shared/datasets/squad_v1.1_dev/dev-v1.1.json"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", choices=["test", "train", "dev"], required=True)
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--out", default="/work/cache/answering")
    ap.add_argument("--absent", action="store_true",
                    help="retrieve with each question's own article filtered out")
    args = ap.parse_args()
    data = load_squad(SQUAD)
    ex = data.examples
    if args.split == "test":
        chosen = ex[: args.n or 500]
    else:
        pool = list(range(1000, len(ex)))
        rnd = random.Random(1 if args.split == "train" else 2)
        rnd.shuffle(pool)
        # train and dev are disjoint samples of the questions after the first 1,000
        picked = pool[: 2000] if args.split == "train" else pool[2000: 2600]
        chosen = [ex[i] for i in sorted(picked[: args.n or len(picked)])]
    config = Config().with_env()
    assistant, _ = open_index(data.name, data.documents, config)
    out = Path(args.out) / f"{args.split}{'-absent' if args.absent else ''}.jsonl"
    all_docs = sorted({d.doc_id for d in data.documents})
    t0 = time.time()
    with assistant, out.open("w") as f:
        for i, e in enumerate(chosen):
            where = Filter(doc_ids=tuple(d for d in all_docs if d != e.doc_id)) \
                if args.absent else None
            buffer, _t = assistant.prepare(e.question, where=where)
            rec = {
                "qid": e.qid, "question": e.question, "answers": list(e.answers),
                "doc_id": e.doc_id, "spans": [list(s) for s in e.spans],
                "passages": [
                    {"doc_id": p.doc_id, "path": p.path, "score": p.score,
                     "sentences": [[s.index, s.start, s.end, s.text] for s in p.sentences]}
                    for p in buffer.passages],
                "tokens_used": buffer.tokens_used,
            }
            f.write(json.dumps(rec) + "\n")
            if i % 50 == 0:
                print(i, len(chosen), round(time.time() - t0, 1), flush=True)


if __name__ == "__main__":
    main()
