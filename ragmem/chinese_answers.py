"""Answer spans for Chinese questions: whole words, placed where the question points.

A Chinese question is most often its answer sentence with the answer replaced by a
question word: "《战国无双3》是由哪两个公司合作开发的？" asks for what stands between
"是由" and "合作开发" in "《战国无双3》是由光荣和ω-force合作开发的". So each
candidate span (jieba words, from ``ragmem.extraction``: never a cut word) of the best
evidence sentences is scored, linearly, by

- how the sentence around it matches the question around its question word
  (characters shared right before and right after, question words next to it);
- what the question word asks for (多少/几: a number; 何时/哪一年: a date; 谁: a short
  name; 为什么: a reason, 因为/由于 ...) against the span's shape;
- how well its sentence matches the question (``rank_sentences``) and its length.

The weights were fitted on CMRC 2018 trial questions (their gold paragraphs; a softmax
over each question's candidates towards the one of best character F1):
``python -m eval.chinese.tune``. No model is loaded: it answers in milliseconds.

    >>> finder = ChineseSpans()
    >>> finder.read("长期记忆通常用什么来实现？", passages)[0].text     # doctest: +SKIP
    '模型参数'
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TYPE_CHECKING

from ragmem.config import AnsweringConfig
from ragmem.extraction import (
    STOPWORDS,
    Candidate,
    EvidenceSentence,
    answerable_spans,
    rank_sentences,
    words,
)
from ragmem.generation import Scorer
from ragmem.reading import ReadSpan
from ragmem.types import Passage

if TYPE_CHECKING:
    from ragmem.span_ranking import SpanRanker

# Question words, longest first at a position; the kind of answer each asks for.
CUES: tuple[tuple[str, str], ...] = (
    ("为什么", "why"), ("为何", "why"), ("什么原因", "why"), ("什么时候", "when"),
    ("何时", "when"), ("哪一年", "when"), ("哪年", "when"), ("哪一天", "when"),
    ("多少", "number"), ("多大", "number"), ("多长", "number"), ("多高", "number"),
    ("多久", "number"), ("几", "number"), ("哪里", "where"), ("哪儿", "where"),
    ("什么地方", "where"), ("谁", "who"), ("哪位", "who"), ("什么人", "who"),
    ("如何", "how"), ("怎么", "how"), ("怎样", "how"), ("哪些", "which"), ("哪个", "which"),
    ("哪", "which"), ("什么", "what"),
)
KINDS = ("why", "when", "number", "where", "who", "how", "which", "what", "other")
_NUMBER = re.compile(r"[\d０-９一二三四五六七八九十百千万亿两零]")
_DATE = re.compile(r"\d{3,4}年|[年月日]|世纪|年代|朝|时期|初|末")
_REASON = ("因为", "由于", "因", "为了", "以")
_PUNCT = re.compile(r"[\s，。、；：？！“”‘’《》（）()「」『』,.;:?!\"']")
_TRAILING = "？?。！!的呢吗呀"
_CLAUSE_MARKS = ("，", "；", "：", "。", ",", ";")

# Fitted on the first 600 CMRC 2018 trial questions (python -m eval.chinese.tune, its
# report in eval/reports/chinese/tune/): a feature's weight times its value, summed.
WEIGHTS: Mapping[str, float] = {
    "clause": -0.68, "clause_end": 1.523, "clause_start": 0.31, "how*clause": 0.095,
    "how*date": 0.069, "how*digit": -0.094, "how*long": 0.396, "how*n_words": 0.43,
    "how*reason": 0.027, "how*short": -0.336, "left_chars": 3.704, "left_covered": 0.756,
    "left_word": 1.622, "lexical": 1.867, "long": 0.581, "maximal": 2.273, "n_words": 1.566,
    "novel": 1.049, "number*clause": -0.371, "number*date": 0.008, "number*digit": 1.221,
    "number*long": -0.173, "number*n_words": -0.434, "number*reason": -0.02,
    "number*short": -0.476, "other*clause": -0.039, "other*date": 0.138, "other*digit": 0.145,
    "other*long": 0.215, "other*n_words": 0.175, "other*reason": -0.004, "other*short": -0.089,
    "overlap": -1.167, "rank0": 4.246, "rank1": -0.097, "right_chars": 2.195,
    "right_covered": 0.829, "right_word": 3.285, "what*clause": 0.609, "what*date": -0.297,
    "what*digit": -0.403, "what*long": 0.568, "what*n_words": 0.969, "what*reason": 0.32,
    "what*short": -0.412, "when*clause": -0.103, "when*date": 1.753, "when*digit": 1.249,
    "when*long": -1.293, "when*n_words": -0.939, "when*reason": -0.002, "when*short": -0.718,
    "where*clause": -0.34, "where*date": -0.178, "where*digit": -0.279, "where*long": -0.17,
    "where*n_words": -0.099, "where*reason": -0.008, "where*short": -0.11, "which*clause": -0.322,
    "which*date": 0.064, "which*digit": -0.718, "which*long": 1.003, "which*n_words": 1.116,
    "which*reason": 0.023, "which*short": -0.353, "who*clause": -0.184, "who*date": -0.481,
    "who*digit": -0.485, "who*long": -0.75, "who*n_words": -0.447, "who*reason": -0.008,
    "who*short": 0.096, "why*clause": -0.025, "why*date": 0.019, "why*digit": 0.22,
    "why*long": 0.787, "why*n_words": 0.795, "why*reason": 0.347, "why*short": -0.433,
}
MAX_SPAN_WORDS = 20  # Chinese answers run long: a clause, a reason, a list
# The question kinds answered better by the best span's whole clause or sentence than by
# the span itself (CMRC trial character F1; python -m eval.chinese.tune).
WHOLE: Mapping[str, str] = {"how": "sentence",
                            "number": "clause",
                            "other": "sentence",
                            "what": "clause",
                            "which": "clause",
                            "why": "sentence"}
# Abstain when the best span's sentence holds less of the question than this (its IDF
# share of the question's words): the threshold that best tells a question's own article
# from another one on CMRC trial (python -m eval.chinese.tune).
ABSTAIN_BELOW = 0.211
# With a generator (``scorer``, ``AnsweringConfig.chinese = "rescored"``): the best
# ``RESCORED`` spans by the cues are rescored by the cue score (relative to the best)
# plus the generator's view of each span as the answer (``ragmem.span_ranking.
# lm_features``), with these weights, fitted on CMRC trial questions 601-750 (gold
# paragraphs; python -m eval.chinese.rescore, eval/reports/chinese/rescore-trial/).
RESCORED = 8
RESCORE: Mapping[str, float] = {"cue": 2.207, "lm_end": 0.862, "lm_first": -0.229,
                                "lm_length": -1.048, "lm_tokens": 0.613}


@dataclass(frozen=True)
class Asked:
    """A question split at its question word: ``before``/``after`` without marks."""

    before: str
    cue: str
    after: str
    kind: str
    words_before: frozenset[str]
    words_after: frozenset[str]
    question_bigrams: frozenset[str] = frozenset()


def asked(question: str) -> Asked:
    """``asked("《战国无双3》是由哪两个公司合作开发的？")`` -> before "战国无双3是由",
    cue "哪", after "两个公司合作开发", kind "which"."""
    q = question.strip()
    found = [(q.find(cue), -len(cue), cue, kind) for cue, kind in CUES if cue in q]
    if not found:
        plain = _PUNCT.sub("", q).rstrip(_TRAILING)
        return Asked(plain, "", "", "other", _content(plain), frozenset(), _bigrams([plain]))
    at, _, cue, kind = min(found)
    before = _PUNCT.sub("", q[:at])
    after = _PUNCT.sub("", q[at + len(cue):]).rstrip(_TRAILING)
    if not before and after.startswith("是"):  # "什么是X？" is answered "X是…"
        before, after = after[1:] + "是", ""
    return Asked(before, cue, after, kind, _content(before), _content(after),
                 _bigrams([before, after]))


def _bigrams(parts: Sequence[str]) -> frozenset[str]:
    return frozenset(p[i:i + 2] for p in parts for i in range(len(p) - 1))


def _content(text: str) -> frozenset[str]:
    return frozenset(w for _, _, w in words(text) if w[0].isalnum() and w not in STOPWORDS)


def _common_suffix(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


def _best_prefix(after: str, text: str) -> int:
    """Characters ``text`` starts with that ``after`` holds in a row, from whichever of
    its first positions matches most (the words right after a question word often name
    the kind of answer, "哪两个公司", and are not in the sentence)."""
    return max((_common_prefix(after[s:], text) for s in range(min(len(after), 6))),
               default=0)


def _common_prefix(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


@lru_cache(maxsize=256)
def _covered_cached(bigrams: frozenset[str], text: str) -> tuple[bool, ...]:
    out = [False] * len(text)
    for i in range(len(text) - 1):
        if text[i:i + 2] in bigrams:
            out[i] = out[i + 1] = True
    return tuple(out)


def _covered(bigrams: frozenset[str], text: str) -> tuple[bool, ...]:
    """Per character of ``text``: whether a pair of characters around it is in the
    question (the part of the sentence the question restates, not the answer)."""
    return _covered_cached(bigrams, text)


@lru_cache(maxsize=256)
def _plain(text: str) -> tuple[str, list[int]]:
    """``text`` without marks and spaces, and where each offset of ``text`` falls in it."""
    at, kept = [0], []
    for ch in text:
        if not _PUNCT.match(ch):
            kept.append(ch)
        at.append(len(kept))
    return "".join(kept), at


@lru_cache(maxsize=256)
def _tokens(text: str) -> tuple[list[str], dict[int, int], dict[int, int]]:
    """A sentence's words, and the index of the word each offset starts or ends."""
    found = words(text)
    return ([w for _, _, w in found], {a: k for k, (a, _, _) in enumerate(found)},
            {b: k for k, (_, b, _) in enumerate(found)})


def features(ask: Asked, candidate: Candidate) -> dict[str, float]:
    """What ``WEIGHTS`` scores of one candidate span (see the module docstring)."""
    e = candidate.evidence
    text = e.sentence.text
    a, b = candidate.start - e.sentence.start, candidate.end - e.sentence.start
    plain, at = _plain(text)
    left, right = plain[:at[a]], plain[at[b]:]
    tokens, starts, ends = _tokens(text)
    first, last = starts[a], ends[b]
    own = {w for w in tokens[first:last + 1] if w[0].isalnum() and w not in STOPWORDS}
    n_words = sum(1 for w in tokens[first:last + 1] if w[0].isalnum())
    span = candidate.text
    f = {
        # the question's words may end in a light verb the sentence lacks ("…工作记忆有")
        "left_chars": min(max(_common_suffix(ask.before, left),
                              _common_suffix(ask.before[:-1], left)), 6) / 6,
        "right_chars": min(_best_prefix(ask.after, right), 6) / 6,
        "left_word": float(any(w in ask.words_before for w in tokens[max(0, first - 2):first])),
        "right_word": float(any(w in ask.words_after for w in tokens[last + 1:last + 3])),
        "overlap": len(own & (ask.words_before | ask.words_after)) / max(1, len(own)),
        "lexical": e.lexical,
        "rank0": float(e.rank == 0),
        "rank1": float(e.rank == 1),
        "passage_rank": 1.0 / (1 + e.passage),
        "n_words": min(n_words, 12) / 12,
        "clause_start": float(first == 0 or not tokens[first - 1][0].isalnum()),
        "clause_end": float(last + 1 >= len(tokens) or not tokens[last + 1][0].isalnum()),
    }
    covered = _covered(ask.question_bigrams, text)
    inside = covered[a:b]
    f["novel"] = 1.0 - sum(inside) / max(1, len(inside))
    f["left_covered"] = float(a > 0 and covered[a - 1])
    f["right_covered"] = float(b < len(text) and covered[b])
    f["maximal"] = float((a == 0 or covered[a - 1] or not text[a - 1].isalnum())
                         and (b >= len(text) or covered[b] or not text[b].isalnum()))
    f["clause"] = f["clause_start"] * f["clause_end"]
    f["long"] = float(n_words > 6)
    shapes = {"digit": float(bool(_NUMBER.search(span))),
              "date": float(bool(_DATE.search(span)) and bool(_NUMBER.search(span))),
              "reason": float(span.startswith(_REASON) or text[:a].endswith(_REASON)),
              "short": float(n_words <= 3 and not _NUMBER.search(span)),
              "clause": f["clause"], "long": f["long"], "n_words": f["n_words"]}
    for name, value in shapes.items():
        f[f"{ask.kind}*{name}"] = value
    return f


def score(f: Mapping[str, float], weights: Mapping[str, float] = WEIGHTS) -> float:
    return sum(weights.get(k, 0.0) * v for k, v in f.items())


class ChineseSpans:
    """A ``SpanFinder`` (``ragmem.answering``) for Chinese questions: the best word-boundary
    span by the cues above; ``probability`` is its softmax share among the candidates."""

    def __init__(self, config: AnsweringConfig | None = None,
                 weights: Mapping[str, float] = WEIGHTS,
                 abstain_below: float = ABSTAIN_BELOW, scorer: Scorer | None = None,
                 rescore: Mapping[str, float] = RESCORE) -> None:
        """``scorer``: the generator's scoring capability; with it the best spans by the
        cues are rescored by what it makes of each (``RESCORE``)."""
        self.config = config or AnsweringConfig()
        self.weights = weights
        self.abstain_below = abstain_below
        self.scorer = scorer
        self.rescore = rescore
        self._ranker: SpanRanker | None = None

    def candidates(self, question: str, passages: Sequence[Passage]
                   ) -> tuple[Asked, list[Candidate]]:
        ask = asked(question)
        # Sentences that hold as much of the question's words are told apart by how many
        # of its character pairs they hold ("大语言模型的工作记忆" over "大语言模型应用中").
        ranked = sorted(rank_sentences(question, passages), key=lambda e: (
            -e.lexical, -len(ask.question_bigrams & _bigrams([e.sentence.text])), e.rank))
        ranked = [replace(e, rank=r) for r, e in enumerate(ranked)]
        return ask, [c for e in ranked[:self.config.evidence_sentences]
                     for c in spans_of(question, e)]

    def read(self, question: str, passages: Sequence[Passage]) -> list[ReadSpan]:
        """The candidates best first; ``probability`` is how much of the question (by
        IDF) its sentence holds, the confidence the answerer abstains by. Where the
        question's kind is better answered whole on CMRC trial (``WHOLE``), the best
        span comes back widened to its clause or sentence."""
        ask, found = self.candidates(question, passages)
        if not found:
            return []
        scores = [score(features(ask, c), self.weights) for c in found]
        order = sorted(range(len(found)), key=lambda k: -scores[k])
        if self.scorer is not None:
            order = self.rescored(question, found, scores, order)
        out = [_read_span(found[k].evidence, found[k], found[k].evidence.lexical)
               for k in order]
        whole = WHOLE.get(ask.kind, "span")
        if whole == "sentence":
            return [_sentence_of(out[0])]
        if whole == "clause":
            return [_clause_of(out[0])]
        return out


    def rescored(self, question: str, found: Sequence[Candidate], scores: Sequence[float],
                 order: Sequence[int]) -> list[int]:
        """``order`` with its first ``RESCORED`` candidates reordered by ``RESCORE``."""
        from ragmem.span_ranking import SpanRanker

        if self._ranker is None:  # its weights are read once; only its prompt is used
            self._ranker = SpanRanker(self.scorer, self.config)
        head = list(order[:RESCORED])
        views = rescore_features(self._ranker, question, [found[k] for k in head],
                                 [scores[k] for k in head])
        rescored = [score(v, self.rescore) for v in views]
        head = [k for _, k in sorted(zip(rescored, head, strict=True), key=lambda x: -x[0])]
        return head + list(order[RESCORED:])


def rescore_features(ranker: SpanRanker, question: str, kept: Sequence[Candidate],
                     scores: Sequence[float]) -> list[dict[str, float]]:
    """Per candidate: its cue score relative to the best (``cue``) and the generator's
    log-likelihoods of it as the whole answer, its sentences shown to it as the span
    ranker shows them (``SpanRanker.span_logprobs``)."""
    from ragmem.span_ranking import lm_features

    views = ranker.span_logprobs([question], kept)[0]
    top = max(scores)
    return [{"cue": s - top, **lm_features(lp, n)}
            for s, (lp, n, _) in zip(scores, views, strict=True)]


def spans_of(question: str, e: EvidenceSentence) -> list[Candidate]:
    """The word-boundary spans of one evidence sentence that may answer ``question``
    (their features are ``features``', computed when scored)."""
    text, at = e.sentence.text, e.sentence.start
    return [Candidate(e, at + a, at + b, text[a:b], {})
            for a, b in answerable_spans(question, text, MAX_SPAN_WORDS)]


def _clause_of(span: ReadSpan) -> ReadSpan:
    """The clause holding ``span``: from the mark before it to the mark after it."""
    s = span.sentence
    a, b = span.start - s.start, span.end - s.start
    left = max((s.text.rfind(m, 0, a) for m in _CLAUSE_MARKS), default=-1) + 1
    rights = [k for k in (s.text.find(m, b) for m in _CLAUSE_MARKS) if k >= 0]
    right = min(rights, default=len(s.text.rstrip("。！？!?.；; ")))
    text = s.text[left:right].strip()
    start = s.start + left + (len(s.text[left:right]) - len(s.text[left:right].lstrip()))
    return replace(span, start=start, end=start + len(text), text=text)


def _sentence_of(span: ReadSpan) -> ReadSpan:
    """The whole sentence holding ``span``, its final mark left out (``sentence`` mode)."""
    s = span.sentence
    text = s.text.rstrip("。！？!?.；; ")
    return replace(span, start=s.start, end=s.start + len(text), text=text)


def _read_span(e: EvidenceSentence, c: Candidate, probability: float) -> ReadSpan:
    return ReadSpan(e.passage, e.sentence, c.start, c.end, c.text, probability, 0.0)
