"""Evaluation metrics: pure functions on plain dicts and on fields the pipeline records.

Retrieval metrics follow trec_eval (and so BEIR's pytrec_eval numbers and ranx):

- ``run``: ``{qid: {doc_id: score}}``, higher is better; ``qrels``: ``{qid: {doc_id:
  grade}}``, grade > 0 is relevant. Each query judged relevant-anything in ``qrels``
  counts once in the mean; a query missing from ``run`` scores 0; queries only in
  ``run`` are ignored.
- Ties in score are broken by doc id, descending, as trec_eval's ``comp_sim_docno``
  does. ranx has no tie rule of its own (its order among equal scores follows
  insertion order through numba's unstable argsort), so tests compare against ranx on
  rank-encoded scores.
- nDCG uses linear gain (grade / log2(rank + 1)) and its ideal DCG is computed from
  *all* relevant documents in ``qrels``, retrieved or not. MAP@k divides by the number
  of relevant documents, not by k.

Windows are not documents: collapse window hits with :func:`doc_run_from_windows`
(best score per document) before scoring at document level.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]
DEFAULT_KS = (1, 5, 10, 100)


class Scored(Protocol):
    """What a window hit offers: ``ragmem.types.Hit`` satisfies it."""

    @property
    def doc_id(self) -> str: ...
    @property
    def score(self) -> float: ...


class Located(Protocol):
    """A span of one document: ``Hit``, ``Passage`` and ``Citation`` satisfy it."""

    @property
    def doc_id(self) -> str: ...
    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...


# Retrieval --------------------------------------------------------------------------


def ranking(scores: Mapping[str, float]) -> list[str]:
    """Doc ids best first; equal scores by doc id descending (trec_eval's rule).

    ``{"a": 1.0, "b": 2.0, "c": 1.0} -> ["b", "c", "a"]``
    """
    return sorted(scores, key=lambda d: (scores[d], d), reverse=True)


def doc_run_from_windows(hits: Mapping[str, Iterable[Scored]]) -> dict[str, dict[str, float]]:
    """Window hits per question -> document run: each document once, at its best score.

    ``{"q": [Hit(doc "a", 0.9), Hit(doc "b", 0.8), Hit(doc "a", 0.7)]}
    -> {"q": {"a": 0.9, "b": 0.8}}``
    """
    run: dict[str, dict[str, float]] = {}
    for qid, found in hits.items():
        best: dict[str, float] = {}
        for hit in found:
            score = float(hit.score)
            if math.isnan(score):
                raise ValueError(f"question {qid!r}: doc {hit.doc_id!r} has a NaN score")
            if hit.doc_id not in best or score > best[hit.doc_id]:
                best[hit.doc_id] = score
        run[qid] = best
    return run


def recall_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    rel = {d for d, g in relevant.items() if g > 0}
    return len(rel.intersection(ranked[:k])) / len(rel) if rel else 0.0


def reciprocal_rank(ranked: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    for rank, doc_id in enumerate(ranked[:k], start=1):
        if relevant.get(doc_id, 0) > 0:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    """Ideal DCG from every relevant doc in the qrels: missing ones lower the score."""
    gains = [max(relevant.get(d, 0), 0) for d in ranked[:k]]
    ideal = sorted((g for g in relevant.values() if g > 0), reverse=True)[:k]
    idcg = _dcg(ideal)
    return _dcg(gains) / idcg if idcg > 0 else 0.0


def _dcg(gains: Iterable[int]) -> float:
    return sum(g / math.log2(rank + 1) for rank, g in enumerate(gains, start=1))


def average_precision(ranked: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    n_relevant = sum(1 for g in relevant.values() if g > 0)
    if n_relevant == 0:
        return 0.0
    hits, total = 0, 0.0
    for rank, doc_id in enumerate(ranked[:k], start=1):
        if relevant.get(doc_id, 0) > 0:
            hits += 1
            total += hits / rank
    return total / n_relevant


def retrieval_metrics_per_query(
    run: Run, qrels: Qrels, ks: Sequence[int] = DEFAULT_KS
) -> dict[str, dict[str, float]]:
    """``{qid: {"recall@1": .., "mrr@10": .., "ndcg@10": .., "map@100": ..}}``."""
    out: dict[str, dict[str, float]] = {}
    for qid, relevant in qrels.items():
        if not any(g > 0 for g in relevant.values()):
            continue  # nothing to find: no metric is defined for it
        ranked = ranking(run.get(qid, {}))
        scores = {f"recall@{k}": recall_at_k(ranked, relevant, k) for k in ks}
        scores["mrr@10"] = reciprocal_rank(ranked, relevant, 10)
        scores["ndcg@10"] = ndcg_at_k(ranked, relevant, 10)
        scores["map@100"] = average_precision(ranked, relevant, 100)
        out[qid] = scores
    return out


def retrieval_metrics(run: Run, qrels: Qrels, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Mean over judged queries of recall@k (each k), mrr@10, ndcg@10 and map@100."""
    per_query = retrieval_metrics_per_query(run, qrels, ks)
    if not per_query:
        raise ValueError("qrels judge no document relevant (grade > 0): nothing to score")
    names = next(iter(per_query.values()))
    return {m: sum(s[m] for s in per_query.values()) / len(per_query) for m in names}


# Evidence ---------------------------------------------------------------------------


def span_hit(
    doc_id: str, start: int, end: int, gold_doc_id: str | None, spans: Iterable[tuple[int, int]]
) -> bool:
    """Whether ``[start, end)`` of ``doc_id`` contains a whole gold span of the gold doc.

    ``span_hit("d", 10, 50, "d", [(12, 20)]) -> True``; ``(45, 55)`` would be False.
    """
    if gold_doc_id is not None and doc_id != gold_doc_id:
        return False
    return any(start <= s and e <= end for s, e in spans)


def contains_gold(
    found: Iterable[Located], gold_doc_id: str | None, spans: Iterable[tuple[int, int]]
) -> bool:
    """Whether any hit, passage or citation holds a gold span (answer-in-context, citations)."""
    spans = list(spans)
    return any(span_hit(x.doc_id, x.start, x.end, gold_doc_id, spans) for x in found)


def evidence_recall_at_k(
    hits: Sequence[Located], gold_doc_id: str | None, spans: Iterable[tuple[int, int]], k: int
) -> float:
    """1.0 when one of the first ``k`` window hits contains a gold answer span, else 0.0."""
    return float(contains_gold(hits[:k], gold_doc_id, spans))


def answer_in_text(text: str, answers: Iterable[str]) -> bool:
    """Fallback when no spans are known: a normalised gold answer occurs in the text."""
    haystack = f" {normalize_answer(text)} "
    return any(a_norm and f" {a_norm} " in haystack for a_norm in map(normalize_answer, answers))


# Answers (SQuAD v1.1 official normalisation) ----------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower, drop punctuation and articles, squeeze whitespace: ``"The  Cat!" -> "cat"``."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", s).split())


def exact_match(prediction: str, answers: Iterable[str]) -> float:
    """Max over gold answers; no gold answers (SQuAD v2.0) means abstaining is right."""
    golds = [normalize_answer(a) for a in answers] or [""]
    return float(normalize_answer(prediction) in golds)


def token_f1(prediction: str, answers: Iterable[str]) -> float:
    """Max over gold answers of the bag-of-tokens F1, as the official SQuAD script."""
    pred = normalize_answer(prediction).split()
    return max(_f1(pred, normalize_answer(a).split()) for a in (list(answers) or [""]))


def _f1(pred: list[str], gold: list[str]) -> float:
    if not pred or not gold:
        return float(pred == gold)  # SQuAD v2.0: both empty (abstained) is a match
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


# Answers in Chinese (CMRC 2018's official script, v5) -------------------------------

# The marks cmrc2018_evaluate.py strips before comparing (its ``sp_char``).
CMRC_PUNCTUATION = frozenset(["-", ":", "_", "*", "^", "/", "\\", "~", "`", "+", "=",
                              "，", "。", "：", "？", "！", "“", "”", "；", "’", "《", "》",
                              "……", "·", "、", "「", "」", "（", "）", "－", "～", "『", "』"])
_HAN = re.compile(r"[\u4e00-\u9fa5]")
_LATIN_TOKEN = re.compile(r"\w+|[^\w\s]")
_ASKS_IN_CHINESE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def mixed_segmentation(text: str, drop_punctuation: bool = True) -> list[str]:
    """CMRC's tokens: each Chinese character alone, other runs split into words (the
    official script uses nltk's ``word_tokenize`` there; a word/punctuation regex
    agrees on the words and numbers of CMRC answers), lower-cased, its marks dropped.

    ``mixed_segmentation("《光荣》和ω-Force 2") -> ['光', '荣', '和', 'ωforce', '2']``
    (the script drops a mark before it splits, so "ω-Force" becomes one word)
    """
    out: list[str] = []
    latin = ""
    for ch in text.lower().strip():
        if drop_punctuation and ch in CMRC_PUNCTUATION:
            continue
        if _HAN.match(ch) or ch in CMRC_PUNCTUATION:
            out.extend(_LATIN_TOKEN.findall(latin))
            latin = ""
            out.append(ch)
        else:
            latin += ch
    out.extend(_LATIN_TOKEN.findall(latin))
    return out


def _cmrc_plain(text: str) -> str:
    return "".join(ch for ch in text.lower().strip() if ch not in CMRC_PUNCTUATION)


def char_exact_match(prediction: str, answers: Iterable[str]) -> float:
    """CMRC's EM: equal once lower-cased and its marks removed, max over references."""
    pred = _cmrc_plain(prediction)
    return float(any(pred == _cmrc_plain(a) for a in answers))


def char_f1(prediction: str, answers: Iterable[str]) -> float:
    """CMRC's F1, max over references: the longest common *substring* of the two token
    lists (not a bag overlap, as SQuAD's) over the prediction's and the reference's
    lengths. ``char_f1("光荣公司", ["光荣和ω-force"]) -> 2 * (2/4 * 2/4) / 1 = 0.5``"""
    pred = mixed_segmentation(prediction)
    best = 0.0
    for answer in dict.fromkeys(answers):
        gold = mixed_segmentation(answer)
        common = _longest_common_run(pred, gold)
        if common:
            precision, recall = common / len(pred), common / len(gold)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def _longest_common_run(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest run of tokens ``a`` and ``b`` share (dynamic programming)."""
    best, row = 0, [0] * (len(b) + 1)
    for x in a:
        previous = 0
        for j, y in enumerate(b, start=1):
            here = previous + 1 if x == y else 0
            previous, row[j] = row[j], here
            if here > best:
                best = here
    return best


def asks_in_chinese(question: str) -> bool:
    """Whether a question is written in Chinese (it holds a CJK character)."""
    return _ASKS_IN_CHINESE.search(question) is not None


def answer_scores(question: str, prediction: str, answers: Sequence[str]
                  ) -> tuple[float, float]:
    """``(EM, F1)`` by the question's language: CMRC's character-level metrics for a
    Chinese question, SQuAD's token-level ones for any other (and for a question with
    no answer, where abstaining is right)."""
    if answers and asks_in_chinese(question):
        return char_exact_match(prediction, answers), char_f1(prediction, answers)
    return exact_match(prediction, answers), token_f1(prediction, answers)


# Cost -------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default): p50 of [1,2,3,4] = 2.5."""
    if not values:
        raise ValueError("percentile of no values: time at least one question")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


class Timed(Protocol):
    """Per-question stage timings: ``ragmem.types.Timings`` satisfies it."""

    @property
    def retrieve_s(self) -> float: ...
    @property
    def fill_s(self) -> float: ...
    @property
    def generate_s(self) -> float: ...


STAGES = ("retrieve", "fill", "generate")


def latency_metrics(timings: Sequence[Timed]) -> dict[str, float]:
    """``{"retrieve_p50_s", "retrieve_p95_s", ..., "total_p95_s"}`` over the questions."""
    per_stage = {stage: [float(getattr(t, f"{stage}_s")) for t in timings] for stage in STAGES}
    per_stage["total"] = [sum(parts) for parts in zip(*per_stage.values(), strict=True)]
    return {
        f"{stage}_p{q}_s": percentile(values, q)
        for stage, values in per_stage.items()
        for q in (50, 95)
    }
