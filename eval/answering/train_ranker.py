"""Train the extractive answerer's weights (ragmem/data/extractive.json).

    python eval/answering/train_ranker.py                      # cache, fit, write weights
    python eval/answering/train_ranker.py --questions 800 --absent 800

Data: SQuAD v1.1 dev, long-document setting (one document per article), only questions
*after the first 1,000* in file order (a seeded sample); the first 500 are the reported
test and never seen here. For each question the default pipeline's working memory is
cached (``--cache``), once with the whole index ("answerable") and once with the
question's own article filtered out ("absent": the evidence cannot hold the answer).

Three small linear models are fitted, all on named features (see ragmem.extraction):

1. ``features``: ranks every candidate span of the best evidence sentences (listwise
   softmax; the target is the candidates with the best token F1 against the gold);
2. ``rescore``: ranks the first stage's best ``scored_candidates`` with the generator's
   log-likelihoods added;
3. ``confidence``: logistic, the chance that the chosen span is right (F1 >= 0.5), on
   answerable and absent questions; ``abstain_below`` is the threshold that keeps the
   F1 lost on answerable questions within ``--max-f1-loss`` while abstaining as often
   as possible on absent ones.
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ragmem.answering import ExtractAnswerer, confidence_signals
from ragmem.config import AnsweringConfig, Config
from ragmem.evaluation.datasets import QADataset, QAExample, load_squad
from ragmem.evaluation.metrics import token_f1
from ragmem.extraction import Ranker, rank_sentences, sentence_candidates
from ragmem.types import Filter, Passage, Sentence

if TYPE_CHECKING:
    from ragmem.assistant import Assistant
    from ragmem.working_memory import Buffer

SQUAD = "/work/shared/datasets/squad_v1.1_dev/dev-v1.1.json"
OUT = Path(__file__).resolve().parents[2] / "ragmem" / "data" / "extractive.json"
FIRST_UNSEEN = 1000  # questions before this index are never used here


def working_memories(assistant: Assistant, data: QADataset, n: int, seed: int, absent: bool,
                     test: bool = False) -> Iterator[tuple[QAExample, Buffer]]:
    """The default pipeline's working memory for ``n`` questions of ``data``: a seeded
    sample of those after the first ``FIRST_UNSEEN``, or with ``test`` the first ``n``
    (the reported part, for evaluation only). ``absent``: each question asked with its
    own article filtered out of the search."""
    pool = list(range(FIRST_UNSEEN, len(data.examples)))
    random.Random(seed).shuffle(pool)
    chosen = list(data.examples[:n]) if test else [data.examples[i] for i in sorted(pool[:n])]
    all_docs = sorted({d.doc_id for d in data.documents})
    t0 = time.perf_counter()
    for i, e in enumerate(chosen):
        where = Filter(doc_ids=tuple(d for d in all_docs if d != e.doc_id)) if absent else None
        passages = assistant.retriever.passages(e.question, where=where)
        yield e, assistant.working_memory.fill(e.question, passages)
        if i % 50 == 0:
            print(f"  {'absent' if absent else 'answerable'}: {i + 1}/{len(chosen)} "
                  f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)


def cache_working_memories(path: Path, n: int, seed: int, absent: bool,
                           test: bool = False) -> None:
    """``working_memories`` as JSON lines."""
    from ragmem.evaluation.indexes import open_index

    data = load_squad(SQUAD)
    assistant, _ = open_index(data.name, data.documents, Config().with_env())
    with assistant, path.open("w") as f:
        for e, buffer in working_memories(assistant, data, n, seed, absent, test):
            f.write(json.dumps({
                "qid": e.qid, "question": e.question, "answers": list(e.answers),
                "doc_id": e.doc_id, "spans": [list(s) for s in e.spans],
                "passages": [{"doc_id": p.doc_id, "path": p.path, "score": p.score,
                              "sentences": [[s.index, s.start, s.end, s.text]
                                            for s in p.sentences]}
                             for p in buffer.passages]}) + "\n")


def passages_of(row: dict[str, Any]) -> list[Passage]:
    out = []
    for p in row["passages"]:
        sentences = tuple(Sentence(p["doc_id"], i, s, e, t) for i, s, e, t in p["sentences"])
        out.append(Passage(p["doc_id"], p["path"], sentences[0].start, sentences[-1].end,
                           p["score"], sentences))
    return out


def fit_listwise(groups: Sequence[tuple[np.ndarray, np.ndarray]], names: list[str],
                 l2: float = 1e-3, epochs: int = 300) -> dict[str, float]:
    """Weights of a linear score whose softmax over each group puts its mass on the
    group's best candidates (target: best F1 in the group, ties shared). The groups are
    padded into one tensor (padding masked out of the softmax), so an epoch is one
    batched step rather than a Python loop over groups."""
    x, target, mask = padded_groups(groups)
    w = torch.zeros(len(names), requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.05)
    for _ in range(epochs):
        opt.zero_grad()
        logits = (x @ w).masked_fill(~mask, float("-inf"))
        logp = torch.log_softmax(logits, 1).masked_fill(~mask, 0.0)
        loss = -(target * logp).sum() / len(x) + l2 * (w ** 2).sum()
        loss.backward()
        opt.step()
    return {k: round(float(v), 5) for k, v in zip(names, w.detach(), strict=True) if v != 0}


def padded_groups(groups: Sequence[tuple[np.ndarray, np.ndarray]]
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Groups with some F1 > 0 as one padded tensor: features, target (the best-F1
    candidates share the mass) and the mask of real rows."""
    items = [(x, y) for x, y in groups if len(y) and y.max() > 0]
    width = max(len(y) for _, y in items)
    x = torch.zeros(len(items), width, items[0][0].shape[1])
    target = torch.zeros(len(items), width)
    mask = torch.zeros(len(items), width, dtype=torch.bool)
    for g, (xg, yg) in enumerate(items):
        n = len(yg)
        x[g, :n] = torch.from_numpy(np.asarray(xg, dtype=np.float32))
        best = torch.from_numpy((yg == yg.max()).astype(np.float32))
        target[g, :n] = best / best.sum()
        mask[g, :n] = True
    return x, target, mask


def fit_confidence(answerer: ExtractAnswerer,
                   items: Sequence[tuple[str, Sequence[Any], Sequence[dict[str, float]],
                                         Sequence[float]]],
                   max_f1_loss: float) -> tuple[dict[str, float], float, float,
                                                list[dict[str, float]]]:
    """The confidence model (logistic: is the chosen span right, F1 >= 0.5?) over
    ``(kind, kept, features, f1)`` items of both kinds, and its abstention threshold."""
    signals, right, f1s, kinds = [], [], [], []
    for kind, kept, features, f1 in items:
        if not kept:
            continue
        best = answerer.ranked(kept, features)[0]
        signals.append(confidence_signals(best.candidate, best.features, best.probability))
        b = list(kept).index(best.candidate)
        right.append(float(f1[b] >= 0.5))
        f1s.append(f1[b])
        kinds.append(kind)
    cnames = sorted({k for s in signals for k in s})
    cw, cb = fit_logistic(matrix(signals, cnames), np.array(right), cnames)
    conf = np.array([1 / (1 + np.exp(-Ranker(cw, cb).score(s))) for s in signals])
    threshold, table = choose_threshold(conf, np.array(f1s), np.array(kinds), max_f1_loss)
    return cw, cb, threshold, table


def refit_second_stage(old: dict[str, Any], cfg: AnsweringConfig, embedder: Any,
                       items: Sequence[tuple[str, Sequence[Any], Sequence[dict[str, float]],
                                             Sequence[float]]],
                       max_f1_loss: float, l2: float = 1e-3
                       ) -> tuple[dict[str, float], dict[str, float], float, float,
                                  list[dict[str, float]]]:
    """The second stage (listwise, answerable items) and the confidence and threshold
    (both kinds) refitted on ``(kind, kept, features, f1)`` items, the first stage of
    ``old`` kept: rescore weights, confidence weights and bias, threshold, its table."""
    names = sorted({k for _, _, fs, _ in items for f in fs for k in f})
    stage2 = fit_listwise([(matrix(fs, names), np.array(y, dtype=np.float32))
                           for kind, _, fs, y in items if kind == "answerable" and fs], names,
                          l2=l2)
    answerer = ExtractAnswerer(None, cfg, embedder,
                               weights={**old, "rescore": {"weights": stage2}})
    cw, cb, threshold, table = fit_confidence(answerer, items, max_f1_loss)
    return stage2, cw, cb, threshold, table


def fit_logistic(x: np.ndarray, y: np.ndarray, names: list[str], l2: float = 1e-3,
                 epochs: int = 2000) -> tuple[dict[str, float], float]:
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    w = torch.zeros(len(names), requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=0.05)
    for _ in range(epochs):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, yt)
        (loss + l2 * (w ** 2).sum()).backward()
        opt.step()
    return ({k: round(float(v), 5) for k, v in zip(names, w.detach(), strict=True)},
            round(float(b.detach()), 5))


def matrix(dicts: Sequence[dict[str, float]], names: list[str]) -> np.ndarray:
    return np.array([[d.get(k, 0.0) for k in names] for d in dicts], dtype=np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--questions", type=int, default=800, help="answerable questions")
    ap.add_argument("--absent", type=int, default=800, help="questions without their article")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cache", default="eval/answering/.cache")
    ap.add_argument("--lm-questions", type=int, default=400,
                    help="questions of each kind whose spans the generator rescores")
    ap.add_argument("--max-f1-loss", type=float, default=0.04)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    files = {}
    for kind, n, absent in (("answerable", args.questions, False),
                            ("absent", args.absent, True)):
        files[kind] = cache / f"squad-after1000-seed{args.seed}-{n}-{kind}.jsonl"
        if not files[kind].is_file():
            print(f"caching {kind} working memories -> {files[kind]}", file=sys.stderr)
            cache_working_memories(files[kind], n, args.seed, absent)
    rows = {k: [json.loads(line) for line in p.open()] for k, p in files.items()}

    from ragmem.embedding import SentenceTransformerEmbedder
    from ragmem.generation import load_generator

    config = AnsweringConfig(mode="extract")
    embedder = SentenceTransformerEmbedder(Config().embedder.model)
    generator = load_generator(Config().generator.model)
    t0 = time.time()

    # Stage 1: feature ranker over every candidate of the best evidence sentences.
    def candidates(row: dict[str, Any]) -> list[Any]:
        answerer = ExtractAnswerer(None, config, embedder, weights=_placeholder())
        ranked = rank_sentences(row["question"], passages_of(row),
                                answerer._dense(row["question"]), config.dense_sentences)
        return [c for e in ranked[:config.evidence_sentences]
                for c in sentence_candidates(row["question"], e, config.max_span_words)]

    first = []
    for i, r in enumerate(rows["answerable"]):
        first.append(candidates(r))
        if i % 100 == 0:
            print(f"  candidates {i}/{len(rows['answerable'])} {time.time() - t0:.0f} s",
                  file=sys.stderr, flush=True)
    names = sorted({k for cs in first for c in cs for k in c.features})
    groups = [(matrix([c.features for c in cs], names),
               np.array([token_f1(c.text, r["answers"]) for c in cs], dtype=np.float32))
              for r, cs in zip(rows["answerable"], first, strict=True) if cs]
    stage1 = fit_listwise(groups, names)
    print(f"stage 1: {len(names)} features, {time.time() - t0:.0f} s", file=sys.stderr)

    # Stage 2: the first stage's best candidates with the generator's likelihoods added.
    # Each question's likelihoods are computed once (the slow part, ~1 s) and serve both
    # the rescoring fit (answerable questions) and the confidence fit (both kinds).
    weights = {**_placeholder(), "features": {"weights": stage1}}
    answerer = ExtractAnswerer(generator, config, embedder, weights=weights)
    lm_rows: dict[str, list[tuple[list[Any], list[dict[str, float]], list[float]]]] = {}
    for kind, rs in rows.items():
        lm_rows[kind] = []
        for i, r in enumerate(rs[:args.lm_questions]):
            kept, features = answerer.rescore_features(r["question"], passages_of(r))
            f1 = [token_f1(c.text, r["answers"]) if kind == "answerable" else 0.0
                  for c in kept]
            lm_rows[kind].append((kept, features, f1))
            if i % 50 == 0:
                print(f"  {kind} likelihoods {i}/{args.lm_questions} "
                      f"{time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    rnames = sorted({k for _, fs, _ in lm_rows["answerable"] for f in fs for k in f})
    rgroups = [(matrix(fs, rnames), np.array(y, dtype=np.float32))
               for _, fs, y in lm_rows["answerable"] if fs]
    stage2 = fit_listwise(rgroups, rnames)
    print(f"stage 2: {stage2}", file=sys.stderr)

    # Confidence: on answerable (right = F1 >= 0.5) and absent (never right) questions.
    weights = {**weights, "rescore": {"weights": stage2}}
    answerer = ExtractAnswerer(None, config, embedder, weights=weights)
    cw, cb, threshold, table = fit_confidence(
        answerer, [(kind, kept, features, f1) for kind, items in lm_rows.items()
                   for kept, features, f1 in items], args.max_f1_loss)
    out = {
        "features": {"weights": stage1},
        "rescore": {"weights": stage2},
        "confidence": {"weights": cw, "bias": cb},
        "abstain_below": threshold,
        "trained": {
            "command": " ".join(["python", *sys.argv]),
            "date": datetime.date.today().isoformat(),
            "data": f"SQuAD v1.1 dev, questions after the first {FIRST_UNSEEN} "
                    f"(seed {args.seed}): {len(rows['answerable'])} answerable for the "
                    f"features; the first {args.lm_questions} answerable and as many with "
                    f"their article filtered out for the rescoring and confidence",
            "config": vars(config),
            "threshold_table": table,
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n", "utf-8")
    print(f"wrote {args.out} in {time.time() - t0:.0f} s", file=sys.stderr)


def _placeholder() -> dict[str, Any]:
    return {"features": {"weights": {}}, "rescore": {"weights": {"first_stage": 1.0}},
            "confidence": {"weights": {}}, "abstain_below": 0.0}


def choose_threshold(conf: np.ndarray, f1: np.ndarray, kinds: np.ndarray,
                     max_loss: float) -> tuple[float, list[dict[str, float]]]:
    answerable, absent = kinds == "answerable", kinds == "absent"
    base = f1[answerable].mean()
    table, best = [], 0.0
    for t in np.round(np.arange(0.0, 1.0, 0.02), 2):
        keep = conf >= t
        loss = base - (f1 * keep)[answerable].mean()
        abstain = float((~keep)[absent].mean())
        table.append({"abstain_below": float(t), "f1_loss": round(float(loss), 4),
                      "abstain_absent": round(abstain, 4)})
        if loss <= max_loss:
            best = float(t)
    return best, table


if __name__ == "__main__":
    main()
