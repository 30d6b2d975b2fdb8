"""Evidence sentences -> candidate answer spans, each a verbatim piece of one sentence.

The extractive answerer (``ragmem.answering``) never writes text of its own: it picks
spans out of the working memory's sentences. This module does the cheap part of that
choice, with no model:

1. ``rank_sentences``: every evidence sentence scored against the question by the
   question words it contains, weighted by how rare they are among the evidence
   (a local IDF), plus the retrieval score of its passage;
2. ``candidate_spans``: the word spans of a sentence that could be an answer (no
   stopword or punctuation at either edge, no sentence break inside);
3. ``span_features``: what a span looks like next to what the question asks for (a
   number for "how many", a capitalised name for "who", a year for "when"), and where
   it sits relative to the question's words in its sentence.

A linear ``Ranker`` (``ragmem.span_weights``: weights trained on SQuAD questions after the
first 1,000, shipped as JSON in ``ragmem/data/`` and checked against ``feature_schema``)
turns the features into a score. Words are runs of letters or digits; a run of
Chinese characters is split into jieba's words (``ragmem.chinese``), so a Chinese span
starts and ends on word boundaries and never cuts a word ("型参数" of "模型参数").

    >>> [w for _, _, w in words("Wells wrote it in 1895.")]
    ['Wells', 'wrote', 'it', 'in', '1895', '.']
    >>> question_type("How many goals did he score?")
    'how many'
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from ragmem.chinese import CJK_RUN, cjk_words
from ragmem.config import AnsweringConfig
from ragmem.types import Passage, Sentence

# How much the embedder's cosine counts beside the lexical score when sentences are
# ordered (eval/answering/train_ranker.py --sentence-recall measures the choice).
DENSE_WEIGHT = 1.0
CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# A word: one CJK character, or a run of letters/digits that may hold inner joiners
# ("1,200", "U.S.", "H.G.", "co-op", "don't"), or one punctuation mark.
_WORD = re.compile(rf"[{CJK}]|[^\W{CJK}]+(?:[-'’.,/:][^\W{CJK}]+)*|[^\w\s]")

STOPWORDS = frozenset("""
a an the of in on at to for from by with and or but as is are was were be been being that
this these those which who whom whose what when where why how it its their his her they he
she we you i than then there here into onto over under about after before during while if
so not no do does did has have had will would can could should may might must also such
other each some any all most more many much both either neither very just only own same
too s t
的 了 是 在 和 与 及 或 也 都 就 而 被 把 从 对 为 这 那 之 其 于 以 个 么 吗 呢 吧 啊
什么 哪 哪个 哪些 哪里 哪儿 哪一 谁 多少 几 何时 为什么 为何 如何 怎么 怎样 什么样 是否
""".split())
OPENERS = frozenset("([\"'“‘$£€¥")
CLOSERS = frozenset(")]\"'”’%")
BREAKS = frozenset(".;:!?。；：！？")

MONTHS = frozenset("""january february march april may june july august september october
november december jan feb mar apr jun jul aug sep sept oct nov dec""".split())
NUMBER_WORDS = frozenset("""zero one two three four five six seven eight nine ten eleven
twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty thirty forty
fifty sixty seventy eighty ninety hundred thousand million billion trillion half dozen
first second third fourth fifth sixth seventh eighth ninth tenth
一 二 三 四 五 六 七 八 九 十 百 千 万 亿 两 零""".split())

# What the question asks for, English and Chinese cue words; the first that matches wins.
QUESTION_TYPES: tuple[tuple[str, str], ...] = (
    ("how many", r"\bhow many\b|多少|几"),
    ("how much", r"\bhow much\b"),
    ("what year", r"\bwhat year\b|\bwhich year\b|哪一年|哪年"),
    ("when", r"\bwhen\b|什么时候|何时|哪天"),
    ("who", r"\bwho\b|\bwhom\b|\bwhose\b|谁"),
    ("where", r"\bwhere\b|哪里|哪儿|在哪"),
    ("why", r"\bwhy\b|为什么|为何"),
    ("how", r"\bhow\b|怎么|如何"),
    ("which", r"\bwhich\b|哪"),
    ("what", r"\bwhat\b|什么"),
)
TYPES = (*(t for t, _ in QUESTION_TYPES), "other")
SHAPES = ("capitalised", "some_capitals", "digit", "year", "month", "number_word")
PREPOSITIONS = frozenset("of by in at on from to".split())
ARTICLES = frozenset("the a an".split())


def words(text: str) -> list[tuple[int, int, str]]:
    """``(start, end, word)`` for every word and punctuation mark of ``text``; a run of
    Chinese characters gives jieba's words: ``"在模型参数中"`` -> 在, 模型, 参数, 中."""
    if CJK_RUN.search(text) is None:
        return [(m.start(), m.end(), m.group()) for m in _WORD.finditer(text)]
    out, at = [], 0
    for run in CJK_RUN.finditer(text):
        out += [(at + m.start(), at + m.end(), m.group())
                for m in _WORD.finditer(text[at:run.start()])]
        base = run.start()
        out += [(base + a, base + b, run.group()[a:b]) for a, b in cjk_words(run.group())]
        at = run.end()
    return out + [(at + m.start(), at + m.end(), m.group()) for m in _WORD.finditer(text[at:])]


def content_words(text: str) -> list[str]:
    """Stems of the words that carry meaning: no stopwords, no punctuation."""
    return [stem(w) for _, _, w in words(text)
            if w[0].isalnum() and w.lower() not in STOPWORDS]


_SUFFIXES = ("ings", "ing", "edly", "ed", "ers", "er", "es", "s", "ly")
_DOUBLED = re.compile(r"([bdfglmnprt])\1$")


@cache
def stem(word: str) -> str:
    """A light English stem, so the question's "bank's" or "tunnelling" meets the
    evidence's "Bank" or "tunnel": lower case, possessive dropped, one common suffix
    off when a stem of 3+ letters is left, a final doubled consonant undone. Words of
    other scripts come back lower-cased only.

    >>> [stem(w) for w in ("Bank's", "tunnelling", "tunnel", "robbers", "rob", "banks")]
    ['bank', 'tunnel', 'tunnel', 'rob', 'rob', 'bank']
    """
    w = word.lower()
    for possessive in ("'s", "’s"):
        w = w.removesuffix(possessive)
    if not w.isascii() or not w.isalpha():
        return w
    for suffix in _SUFFIXES:
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            w = w[:-len(suffix)]
            break
    return _DOUBLED.sub(r"\1", w) if len(w) > 3 else w


_HEAD_SKIP = frozenset("kind type sort name one ones part".split())


def question_head(question: str) -> str:
    """The stem of the noun a "which"/"what" question asks for ("" when none).

    >>> question_head("Which bank's cellar did they dig into?"), question_head("Who won?")
    ('bank', '')
    """
    ws = [w for _, _, w in words(question)]
    for i, w in enumerate(ws):
        if w.lower() in ("which", "what"):
            for nxt in ws[i + 1:i + 4]:
                low = nxt.lower()
                if low in STOPWORDS or low in _HEAD_SKIP:
                    continue
                return stem(nxt) if nxt[0].isalpha() else ""
            return ""
    return ""


def question_type(question: str) -> str:
    q = question.lower()
    for name, pattern in QUESTION_TYPES:
        if re.search(pattern, q):
            return name
    return "other"


def shape(span: str) -> dict[str, float]:
    """What a span looks like: ``shape("7 February 2016")["month"] == 1.0``."""
    tokens = [w for _, _, w in words(span) if w[0].isalnum()]
    lower = [w.lower() for w in tokens]
    capitals = sum(w[0].isupper() for w in tokens)
    return {
        "capitalised": float(bool(tokens) and capitals == len(tokens)),
        "some_capitals": capitals / max(1, len(tokens)),
        "digit": float(any(c.isdigit() for w in tokens for c in w)),
        "year": float(any(re.fullmatch(r"1[0-9]{3}|20[0-9]{2}", w) for w in tokens)),
        "month": float(any(w in MONTHS for w in lower)),
        "number_word": float(any(w in NUMBER_WORDS for w in lower)),
    }


@dataclass(frozen=True)
class EvidenceSentence:
    """One sentence of the working memory, scored against the question."""

    passage: int  # index into the buffer's passages (the prompt's [passage + 1])
    sentence: Sentence
    lexical: float  # IDF-weighted share of the question's words found in the sentence
    previous: float  # the same for the sentence before it (answers often follow context)
    passage_score: float
    dense: float | None = None  # cosine to the question, when it was computed
    rank: int = 0  # by lexical score, 0 = best


@dataclass(frozen=True)
class Candidate:
    """A span of one evidence sentence; ``start``/``end`` are document offsets."""

    evidence: EvidenceSentence
    start: int
    end: int
    text: str
    features: Mapping[str, float] = field(repr=False)


def rank_sentences(question: str, passages: Sequence[Passage],
                   dense: Callable[[list[str]], list[float]] | None = None,
                   dense_top: int = AnsweringConfig.dense_sentences) -> list[EvidenceSentence]:
    """Every sentence of ``passages``, best first. The IDF is local to the evidence: a
    question word found in every passage tells little about which sentence answers.
    ``dense`` (texts -> cosine to the question) rescores the ``dense_top`` best."""
    flat = [(i, s) for i, p in enumerate(passages) for s in p.sentences]
    bags = [set(content_words(s.text)) for _, s in flat]
    df: Counter[str] = Counter(w for bag in bags for w in bag)
    asked = set(content_words(question))
    n = len(flat)
    idf = {w: math.log(1 + n / df[w]) if df[w] else math.log(1 + n) for w in asked}
    mass = sum(idf.values()) or 1.0
    lexical = [sum(idf[w] for w in asked & bag) / mass for bag in bags]
    scored = []
    for k, (i, s) in enumerate(flat):
        before = lexical[k - 1] if k > 0 and flat[k - 1][0] == i else 0.0
        scored.append(EvidenceSentence(i, s, lexical[k], before, passages[i].score))
    order = sorted(range(n), key=lambda k: (-lexical[k], k))
    ranked = [_with(scored[k], rank=r) for r, k in enumerate(order)]
    if dense is not None and ranked:
        # The embedder sees the best few by words and reorders them by words and meaning
        # together: an answer sentence often shares just one word with the question.
        top = ranked[:dense_top]
        cosines = dense([e.sentence.text for e in top])
        top = [_with(e, dense=float(c)) for e, c in zip(top, cosines, strict=True)]
        top.sort(key=lambda e: -(e.lexical + DENSE_WEIGHT * (e.dense or 0.0)))
        ranked[:dense_top] = top
    return ranked


def _with(e: EvidenceSentence, **changes: Any) -> EvidenceSentence:
    from dataclasses import replace

    return replace(e, **changes)


def candidate_spans(text: str,
                    max_words: int = AnsweringConfig.max_span_words) -> list[tuple[int, int]]:
    """Spans of ``text`` that could be an answer, as ``(start, end)`` offsets into it: at
    most ``max_words`` words, no stopword or punctuation at either edge (brackets,
    currency and percent signs aside), no sentence break inside.

    >>> [("Paris is big."[a:b]) for a, b in candidate_spans("Paris is big.")]
    ['Paris', 'Paris is big', 'big']
    """
    tokens = words(text)
    out = []
    for i, (start, _, first) in enumerate(tokens):
        if first.lower() in STOPWORDS or (not first[0].isalnum() and first not in OPENERS):
            continue
        count = 0
        for _, end, word in tokens[i:]:
            if word in BREAKS:
                break
            count += word[0].isalnum()
            if count > max_words:
                break
            if word.lower() in STOPWORDS or (not word[0].isalnum() and word not in CLOSERS):
                continue
            out.append((start, end))
    return out


_OUTLINE_NUMBER = re.compile(r"\d+(?:\.\d+)*[.、]?")  # at a sentence's start: "9.1", "2、"


def answerable_spans(question: str, text: str,
                     max_words: int = AnsweringConfig.max_span_words) -> list[tuple[int, int]]:
    """``candidate_spans`` of one sentence that may answer ``question``: for a Chinese
    question, none of a sentence that is itself a question or a Markdown heading
    ("### 9.1 什么是工作记忆？"), and not the number a sentence starts with ("9.1 工作
    记忆的局限性": a section's number)."""
    if CJK_RUN.search(question) is None:
        return candidate_spans(text, max_words)
    if text.rstrip().endswith(("？", "?")) or text.lstrip().startswith("#"):
        return []  # a question, a Markdown heading
    return [(a, b) for a, b in candidate_spans(text, max_words)
            if not (_OUTLINE_NUMBER.fullmatch(text, a, b) and not text[:a].strip("#* \t"))]


def sentence_candidates(question: str, evidence: EvidenceSentence,
                        max_words: int = AnsweringConfig.max_span_words) -> list[Candidate]:
    """The candidate spans of one evidence sentence, with their features."""
    text = evidence.sentence.text
    tokens = words(text)
    asked = set(content_words(question))
    kind = question_type(question)
    head = question_head(question)
    near = [k for k, (_, _, w) in enumerate(tokens) if stem(w) in asked]
    starts = {a: k for k, (a, _, _) in enumerate(tokens)}
    ends = {b: k for k, (_, b, _) in enumerate(tokens)}
    out = []
    for a, b in answerable_spans(question, text, max_words):
        first, last = starts[a], ends[b]
        features = span_features(text[a:b], kind, asked, evidence, tokens, near, first, last,
                                 head)
        out.append(Candidate(evidence, evidence.sentence.start + a, evidence.sentence.start + b,
                             text[a:b], features))
    return out


# The features ``span_features`` computes that do not depend on the question type.
BASE_FEATURES = (
    "lexical", "previous", "rank0", "rank1", "rank2", "passage_rank", "passage_score", "dense",
    "dense_missing", "n_words", "one_word", "two_words", "three_words", "long", "overlap",
    "nothing_new", "distance", "adjacent", "near", "comma_inside", "after_bracket",
    "after_question_word", "before_question_word", "after_preposition", "after_article",
    "before_punctuation", "ends_with_head", "has_head")


def feature_schema() -> frozenset[str]:
    """Every feature name ``span_features`` can give: the base ones, each span shape,
    and the shape, ``n_words`` and ``one_word`` crossed with each question type
    (``"who*capitalised"``). Trained weights are checked against it
    (``ragmem.span_weights``)."""
    crossed = (*SHAPES, "n_words", "one_word")
    return frozenset([*BASE_FEATURES, *SHAPES, *(f"{t}*{f}" for t in TYPES for f in crossed)])


def span_features(span: str, kind: str, asked: set[str], evidence: EvidenceSentence,
                  tokens: Sequence[tuple[int, int, str]], near: Sequence[int],
                  first: int, last: int, head: str = "") -> dict[str, float]:
    """Features of the span ``tokens[first..last]``; see the module docstring."""
    look = shape(span)
    n_words = sum(1 for _, _, w in tokens[first:last + 1] if w[0].isalnum())
    own = content_words(span)
    overlap = sum(w in asked for w in own) / max(1, len(own))
    outside = [min(abs(k - first), abs(k - last)) for k in near if k < first or k > last]
    distance = min(outside, default=30)
    left = stem(tokens[first - 1][2]) if first > 0 else ""
    right = stem(tokens[last + 1][2]) if last + 1 < len(tokens) else ""
    f = {
        "lexical": evidence.lexical,
        "previous": evidence.previous,
        "rank0": float(evidence.rank == 0),
        "rank1": float(evidence.rank == 1),
        "rank2": float(evidence.rank == 2),
        "passage_rank": 1.0 / (1 + evidence.passage),
        "passage_score": evidence.passage_score,
        "dense": evidence.dense or 0.0,
        "dense_missing": float(evidence.dense is None),
        "n_words": min(n_words, 10) / 10,
        "one_word": float(n_words == 1),
        "two_words": float(n_words == 2),
        "three_words": float(n_words == 3),
        "long": float(n_words > 5),
        "overlap": overlap,
        "nothing_new": float(overlap == 1.0),
        "distance": min(distance, 30) / 30,
        "adjacent": float(distance <= 1),
        "near": float(distance <= 3),
        "comma_inside": float("," in span),
        "after_bracket": float(left == "("),
        "after_question_word": float(left in asked),
        "before_question_word": float(right in asked),
        "after_preposition": float(left in PREPOSITIONS),
        "after_article": float(left in ARTICLES),
        "before_punctuation": float(right in {",", ".", ";", ")", ""} or right in BREAKS),
        # "Which bank ...?" -> "the City and Suburban Bank": the span names the kind of
        # thing asked for, usually as its last word.
        "ends_with_head": float(bool(head) and stem(tokens[last][2]) == head),
        "has_head": float(bool(head) and head in own),
    }
    for s in SHAPES:
        f[s] = look[s]
        f[f"{kind}*{s}"] = look[s]
    f[f"{kind}*n_words"] = f["n_words"]
    f[f"{kind}*one_word"] = f["one_word"]
    return f
