"""What the span ranker is trained on, as plain files in a work folder (JSON lines and
.npz, never pickle), so a long retrain resumes where it stopped.

1. ``sample``: which SQuAD questions (a seeded sample of those after the first
   ``skip``: the first 1,000 are the reported test and are never read here);
2. ``working_memories``: each question's working memory as the default pipeline fills
   it (``<kind>.jsonl``), with the whole index (answerable) or with the question's own
   article filtered out of the search (absent: nothing retrieved can answer it);
3. ``scored_candidates``: each question's first-stage candidates with the generator's
   view of them (log-likelihoods, its hidden state after each span, and for the first
   few questions the likelihoods under ``NULL_QUESTION``), in parts of ``PART``
   questions (``<kind>-<start>.npz``), each keyed by everything that decides it.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragmem.evaluation.datasets import QADataset, QAExample
from ragmem.evaluation.metrics import token_f1
from ragmem.pipeline import Pipeline
from ragmem.span_ranking import NULL_QUESTION, SpanRanker, lm_features, pmi_features
from ragmem.types import Filter, Passage, Sentence

PART = 250  # questions per scored part: what a stopped run loses at most


def sample(total: int, skip: int, seed: int, n: int) -> list[int]:
    """``n`` question indices drawn with ``seed`` from those at or after ``skip``, in
    the order drawn: the first ``k`` of them are the sample of ``k``.

        >>> sample(10, 4, 1, 3) == sample(10, 4, 1, 6)[:3], min(sample(10, 4, 1, 6))
        (True, 4)
    """
    pool = list(range(skip, total))
    random.Random(seed).shuffle(pool)
    return pool[:n]


def working_memories(pipeline: Pipeline, data: QADataset, indices: Sequence[int],
                     absent: bool, path: Path) -> list[dict[str, Any]]:
    """Each question's working memory as a JSON row (question, answers, passages with
    their sentences at document offsets), kept in ``path``; rows already there for the
    same questions are reused, so an interrupted run goes on where it stopped."""
    rows = _read_prefix(path, [data.examples[i].qid for i in indices])
    all_docs = sorted({d.doc_id for d in data.documents})
    t0 = time.perf_counter()
    with path.open("a", encoding="utf-8") as f:
        for k in range(len(rows), len(indices)):
            e: QAExample = data.examples[indices[k]]
            where = Filter(doc_ids=tuple(d for d in all_docs if d != e.doc_id)) \
                if absent else None
            buffer = pipeline.fill(e.question, where=where).buffer
            row = {"index": indices[k], "qid": e.qid, "question": e.question,
                   "answers": list(e.answers), "doc_id": e.doc_id,
                   "passages": [{"doc_id": p.doc_id, "path": p.path, "score": p.score,
                                 "sentences": [[s.index, s.start, s.end, s.text]
                                               for s in p.sentences]}
                                for p in buffer.passages]}
            f.write(json.dumps(row) + "\n")
            rows.append(row)
            _progress(f"{path.stem} working memories", k + 1, len(indices), t0)
    return rows


def _read_prefix(path: Path, qids: Sequence[str]) -> list[dict[str, Any]]:
    """The rows of ``path`` that are the first of ``qids``, in order; the file is cut
    to them (a line cut short by a kill, or rows of another sample, are dropped)."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("", encoding="utf-8")
        return []
    rows: list[dict[str, Any]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            break
        if len(rows) >= len(qids) or row.get("qid") != qids[len(rows)]:
            break
        rows.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return rows


def passages_of(row: dict[str, Any]) -> list[Passage]:
    """A working-memory row's passages, as the answerer reads them."""
    out = []
    for p in row["passages"]:
        sentences = tuple(Sentence(p["doc_id"], i, s, e, t) for i, s, e, t in p["sentences"])
        out.append(Passage(p["doc_id"], p["path"], sentences[0].start, sentences[-1].end,
                           p["score"], sentences))
    return out


@dataclass(frozen=True)
class Scored:
    """Candidates of many questions, one row each: ``group`` (the question's place in
    its list), token F1 against the gold (0 for absent questions), the features the
    second stage reads (``names``: the span's own, ``first_stage``, ``lm_*``, and
    ``pmi_*`` where scored), the evidence sentence's ``lexical`` and ``dense`` scores
    (the confidence reads them), and the generator's ``hidden`` state after the span."""

    group: np.ndarray
    f1: np.ndarray
    names: tuple[str, ...]
    features: np.ndarray
    lexical: np.ndarray
    dense: np.ndarray
    hidden: np.ndarray

    def column(self, name: str) -> np.ndarray:
        """One feature of every candidate (0 where a candidate lacks it)."""
        if name not in self.names:
            return np.zeros(len(self.group), dtype=np.float32)
        return self.features[:, self.names.index(name)]

    def matrix(self, names: Sequence[str]) -> np.ndarray:
        return np.stack([self.column(n) for n in names], 1) if names else \
            np.zeros((len(self.group), 0), dtype=np.float32)

    def questions(self, n: int) -> Scored:
        """The candidates of the first ``n`` questions."""
        rows = self.group < n
        return Scored(self.group[rows], self.f1[rows], self.names, self.features[rows],
                      self.lexical[rows], self.dense[rows], self.hidden[rows])


def scored_candidates(ranker: SpanRanker, rows: Sequence[dict[str, Any]], answerable: bool,
                      layer: int, pmi_questions: int, path: Path, key: str) -> Scored:
    """``Scored`` for ``rows``, computed by parts of ``PART`` questions kept as
    ``path``-<start>.npz; a part whose key (``key`` and its questions) matches is read
    back instead of computed."""
    parts = []
    t0 = time.perf_counter()
    for start in range(0, len(rows), PART):
        chunk = rows[start:start + PART]
        with_pmi = min(len(chunk), max(0, pmi_questions - start))
        part_key = hashlib.sha256(json.dumps([key, [r["qid"] for r in chunk],
                                              with_pmi]).encode()).hexdigest()
        file = path.with_name(f"{path.name}-{start}.npz")
        part = _read_part(file, part_key)
        if part is None:
            part = _score_part(ranker, chunk, answerable, layer, with_pmi)
            arrays: dict[str, Any] = {"key": np.array(part_key), **part}
            np.savez(file, **arrays)
        part["group"] = part["group"] + start
        parts.append(part)
        _progress(f"{path.name} scored", min(start + PART, len(rows)), len(rows), t0)
    return _joined(parts)


def read_scored(path: Path) -> Scored:
    """The scored parts a retrain left in its work folder (``path``: ``W/answerable``
    or ``W/absent``), as one ``Scored``, for research on the same numbers."""
    files = sorted(path.parent.glob(f"{path.name}-*.npz"),
                   key=lambda f: int(f.stem.rsplit("-", 1)[1]))
    if not files:
        raise FileNotFoundError(f"no {path.name}-*.npz in {path.parent}: run "
                                "python -m ragmem.training.span_ranker --work there first")
    parts = []
    for file in files:
        with np.load(file, allow_pickle=False) as z:
            part = {k: z[k] for k in z.files if k != "key"}
        part["group"] = part["group"] + int(file.stem.rsplit("-", 1)[1])
        parts.append(part)
    return _joined(parts)


def _joined(parts: Sequence[dict[str, np.ndarray]]) -> Scored:
    """Parts (their groups already offset) as one ``Scored``, features aligned by name."""
    names = sorted({str(n) for p in parts for n in p["names"]})

    def aligned(p: dict[str, np.ndarray]) -> np.ndarray:
        out = np.zeros((len(p["group"]), len(names)), dtype=np.float32)
        for j, n in enumerate(str(n) for n in p["names"]):
            out[:, names.index(n)] = p["features"][:, j]
        return out

    def joined(k: str) -> np.ndarray:
        return np.concatenate([p[k] for p in parts]) if parts else np.zeros(0)

    rows = [p for p in parts if len(p["group"])]
    return Scored(joined("group").astype(np.int64), joined("f1").astype(np.float32),
                  tuple(names), np.concatenate([aligned(p) for p in parts])
                  if parts else np.zeros((0, 0), dtype=np.float32),
                  joined("lexical").astype(np.float32), joined("dense").astype(np.float32),
                  np.concatenate([p["hidden"] for p in rows]).astype(np.float32)
                  if rows else np.zeros((0, 0), dtype=np.float32))


def _read_part(file: Path, key: str) -> dict[str, np.ndarray] | None:
    if not file.is_file():
        return None
    try:
        with np.load(file, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            return {k: z[k] for k in z.files if k != "key"}
    except (OSError, ValueError, KeyError):  # cut short by a kill: computed again
        return None


def _score_part(ranker: SpanRanker, rows: Sequence[dict[str, Any]], answerable: bool,
                layer: int, pmi_questions: int) -> dict[str, np.ndarray]:
    group: list[int] = []
    f1: list[float] = []
    feats: list[dict[str, float]] = []
    lexical: list[float] = []
    dense: list[float] = []
    hidden: list[np.ndarray] = []
    for g, row in enumerate(rows):
        kept, features = ranker.first_stage(row["question"], passages_of(row))
        if not kept:
            continue
        scores, states = ranker.span_states(row["question"], kept, (layer,))
        lm = [lm_features(lp, n) for lp, n, _ in scores]
        if g < pmi_questions:
            null = ranker.span_logprobs([NULL_QUESTION], kept)[0]
            lm = [{**f, **pmi_features(f, lm_features(lp, n))}
                  for f, (lp, n, _) in zip(lm, null, strict=True)]
        for c, f, extra, h in zip(kept, features, lm, states, strict=True):
            group.append(g)
            f1.append(token_f1(c.text, row["answers"]) if answerable else 0.0)
            feats.append({**f, **extra})
            lexical.append(c.evidence.lexical)
            dense.append(c.evidence.dense or 0.0)
            hidden.append(h[0].astype(np.float16))
    names = sorted({k for f in feats for k in f})
    return {"group": np.array(group, dtype=np.int64), "f1": np.array(f1, dtype=np.float32),
            "names": np.array(names, dtype=str),
            "features": np.array([[f.get(k, 0.0) for k in names] for f in feats],
                                 dtype=np.float32).reshape(len(feats), len(names)),
            "lexical": np.array(lexical, dtype=np.float32),
            "dense": np.array(dense, dtype=np.float32),
            "hidden": np.stack(hidden) if hidden else np.zeros((0, 0), dtype=np.float16)}


def _progress(what: str, done: int, total: int, t0: float) -> None:
    if done == total or done % 50 == 0:
        print(f"  {what}: {done}/{total} ({time.perf_counter() - t0:.0f} s)",
              file=sys.stderr, flush=True)
