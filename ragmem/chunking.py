"""Document -> sentences and windows. Pure functions with exact character offsets.

    >>> [s.text for s in split_sentences("d", "Dr. Watson arrived. 他来了。Then he left.")]
    ['Dr. Watson arrived.', '他来了。', 'Then he left.']

For every sentence and window: ``text[x.start:x.end] == x.text``. No sentence is
longer than ``max_sentence_chars``: runaway input (a 50 MB line) is cut at soft breaks
before any tokenizer sees it, so memory and time stay proportional to the text.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from ragmem.config import ChunkingConfig
from ragmem.types import Document, Sentence, Window

MAX_SENTENCE_CHARS = ChunkingConfig.max_sentence_chars

_CLOSERS = "\"'”’)]}」』）》】〉»"
_OPENERS = "\"'“‘([{「『（《【〈«¿¡"
_CJK_TERMINATORS = frozenset("。！？")
_TERMINATOR = re.compile(rf"[.!?…。！？]+[{re.escape(_CLOSERS)}]*")
_SPACE_THEN = re.compile(r"\s+(\S)")
_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n")
_HEADING = re.compile(r"[ \t]{0,3}#{1,6}(?:[ \t]|$)")
_LIST_ITEM = re.compile(r"[ \t]*(?:[-*+]|\d{1,3}(?P<dot>[.)]))[ \t]+\S")
# Always followed by more of the same sentence. "etc." is left out on purpose: it
# usually ends a sentence when the next word is capitalised.
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st sr jr vs fig figs eq cf approx dept gen gov sen rep rev capt col"
    " lt sgt mt vol ca jan feb mar apr jun jul aug sep sept oct nov dec".split()
)
_DOTTED = re.compile(r"(?:[A-Za-z]{1,2}\.)+[A-Za-z]{1,2}")  # e.g, i.e, U.S, Ph.D, a.m
_INITIAL = re.compile(r"[A-Z]\.")
# Where an over-long sentence may be cut: after whitespace or clause punctuation.
_SOFT_BREAK = re.compile(r"[\s,;:，、；：]+")
# The ranges BERT's pre-tokenizer splits into single characters.
_CJK_CHAR = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]")


def split_sentences(doc_id: str, text: str,
                    max_chars: int = MAX_SENTENCE_CHARS) -> list[Sentence]:
    """Split English and Chinese text into stripped, ordered, non-overlapping sentences
    of at most ``max_chars`` characters (longer ones are cut at soft breaks).

    >>> [s.text for s in split_sentences("d", 'He said "Stop." Then it was 3.14 a.m.')]
    ['He said "Stop."', 'Then it was 3.14 a.m.']
    >>> [s.text for s in split_sentences("d", "one two three four", max_chars=9)]
    ['one two', 'three', 'four']
    """
    if max_chars < 1:
        raise ValueError(f"max_chars={max_chars} must be 1 or more")
    bounds = sorted(_boundaries(text) | {0, len(text)})
    sentences: list[Sentence] = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        start, end = _strip(text, a, b)
        for s, e in _bounded(text, start, end, max_chars):
            sentences.append(Sentence(doc_id, len(sentences), s, e, text[s:e]))
    return sentences


def _bounded(text: str, start: int, end: int, max_chars: int) -> list[tuple[int, int]]:
    """``text[start:end]`` as stripped pieces of at most ``max_chars``, each ended at the
    last soft break that fits (or cut between characters where there is none)."""
    pieces: list[tuple[int, int]] = []
    while end - start > max_chars:
        limit = start + max_chars
        cut = limit
        for m in _SOFT_BREAK.finditer(text, start + 1, limit):
            cut = m.end()  # the last break wins; the scan covers max_chars, never more
        a, b = _strip(text, start, cut)
        if a < b:
            pieces.append((a, b))
        start = _strip(text, cut, end)[0]
    if start < end:
        pieces.append((start, end))
    return pieces


def _boundaries(text: str) -> set[int]:
    cuts = {m.start() + 1 for m in _PARAGRAPH_BREAK.finditer(text)}
    headings: list[tuple[int, int]] = []  # no cuts inside a heading line: "## 1. Intro"
    list_dots: set[int] = set()  # the "." of "1. item" is a marker, not a full stop
    pos = 0
    while pos <= len(text):  # line by line, without copying the lines out
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end
        # endpos=end: the patterns see the line alone, as if it were the whole string.
        if _HEADING.match(text, pos, end):
            cuts.update((pos, end))
            headings.append((pos, end))
        elif item := _LIST_ITEM.match(text, pos, end):
            cuts.add(pos)
            if item.group("dot"):
                list_dots.add(item.start("dot"))
        pos = end + 1
    heading_starts = [a for a, _ in headings]

    for m in _TERMINATOR.finditer(text):
        i = bisect_right(heading_starts, m.start()) - 1
        if m.start() in list_dots or (i >= 0 and m.start() < headings[i][1]):
            continue
        run = m.group().rstrip(_CLOSERS)
        if any(c in _CJK_TERMINATORS for c in run):
            cuts.add(m.end())  # Chinese needs no space or capital after a full stop
            continue
        after = _SPACE_THEN.match(text, m.end())
        if after is None or not _starts_sentence(after.group(1)):
            continue
        if run == "." and _is_abbreviation(text, m.start(), after.start(1)):
            continue
        cuts.add(m.end())
    return cuts


def _starts_sentence(c: str) -> bool:
    # Uppercase, digits, opening quotes, and scripts without case (Chinese).
    return c in _OPENERS or c.isdigit() or (c.isalpha() and not c.islower())


def _is_abbreviation(text: str, dot: int, next_word: int) -> bool:
    start = dot
    while start > 0 and dot - start < 40 and not text[start - 1].isspace():
        start -= 1
    token = text[start:dot].lstrip(_OPENERS)
    low = token.lower()
    if low in _ABBREVIATIONS or low in {"e.g", "i.e"}:
        return True
    if low == "no":  # "No. 5" vs "No. That is wrong."
        return text[next_word].isdigit()
    if _DOTTED.fullmatch(token):
        return True
    if len(token) == 1 and token.isupper():  # "J. R. R. Tolkien", but "So did I. Then"
        return token != "I" or _INITIAL.match(text, next_word) is not None
    return False


def _strip(text: str, a: int, b: int) -> tuple[int, int]:
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return a, b


def chunk_document(
    doc: Document,
    count_tokens: Callable[[str], int],
    window_tokens: int = 256,
    overlap_sentences: int = 1,
    max_sentence_chars: int = MAX_SENTENCE_CHARS,
) -> tuple[list[Sentence], list[Window]]:
    """Sentences of ``doc`` (over-long ones cut to fit) and windows packed from them.

    Each window is a run of whole sentences with ``count_tokens(window.text) <=
    window_tokens``; consecutive windows share ``overlap_sentences`` sentences when the
    budget allows. With a whitespace counter and ``window_tokens=4``,
    ``"A b. C d. E f."`` gives windows ``"A b. C d."`` and ``"C d. E f."``.
    """
    overhead = count_tokens("")  # special tokens the tokenizer adds to any text
    if window_tokens <= overhead:
        raise ValueError(
            f"window_tokens={window_tokens} leaves no room for text: the tokenizer adds "
            f"{overhead} special tokens; use window_tokens > {overhead}"
        )
    if overlap_sentences < 0:
        raise ValueError(f"overlap_sentences={overlap_sentences} must be 0 or more")

    raw = split_sentences(doc.doc_id, doc.text, max_sentence_chars)
    tokens = _TokenIndex.of(doc.text, raw, count_tokens)

    def count(a: int, b: int) -> int:
        """Tokens of ``doc.text[a:b]`` as ``count_tokens`` counts them."""
        inside = tokens.inside(a, b) if tokens is not None and not (
            _joined(doc.text, a) or _joined(doc.text, b)) else None
        return count_tokens(doc.text[a:b]) if inside is None else overhead + inside

    sentences: list[Sentence] = []
    counts: list[int] = []
    for s in raw:
        n = count(s.start, s.end)
        pieces = [(s.start, s.end, n)] if n <= window_tokens else _cut_to_fit(
            doc.text, s.start, s.end, count_tokens, window_tokens
        )
        for a, b, n in pieces:
            sentences.append(Sentence(doc.doc_id, len(sentences), a, b, doc.text[a:b]))
            counts.append(n)
    windows = _pack(doc, sentences, counts, count, overhead, window_tokens, overlap_sentences)
    return sentences, windows


@runtime_checkable
class SpanCounter(Protocol):
    """A token counter that can also give the character spans of a text's tokens
    (``ragmem.embedding.base.TokenCounter``): a document is then tokenised once."""

    exact_spans: bool

    def __call__(self, text: str) -> int: ...

    def spans(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]: ...


def _joined(text: str, at: int) -> bool:
    """Whether ``at`` cuts a word as BERT's pre-tokenizer sees words: WordPiece reads a
    word's piece alone unlike the same piece inside the word, even where token ends
    meet. Whitespace, punctuation (ASCII symbols included) and CJK characters stand
    alone, so a cut beside one joins nothing."""
    return 0 < at < len(text) and not _stands_alone(text[at - 1]) \
        and not _stands_alone(text[at])


def _stands_alone(c: str) -> bool:
    return c.isspace() or (c.isascii() and not c.isalnum()) \
        or unicodedata.category(c).startswith("P") or bool(_CJK_CHAR.match(c))


class _TokenIndex:
    """A document's tokens, by character span, from one tokenisation in blocks of whole
    sentences (a block of at most ``BLOCK_CHARS``: memory stays bounded). A run of
    sentences is counted as the tokens inside it; where a token crosses its ends (a
    sentence cut inside a word) the run is tokenised alone instead."""

    BLOCK_CHARS = 50_000

    def __init__(self, starts: list[int], ends: list[int]) -> None:
        self.starts, self.ends = starts, ends

    @classmethod
    def of(cls, text: str, sentences: Sequence[Sentence],
           count_tokens: Callable[[str], int]) -> _TokenIndex | None:
        if not sentences or not isinstance(count_tokens, SpanCounter) \
                or not count_tokens.exact_spans:
            return None
        blocks: list[tuple[int, int]] = []
        for s in sentences:
            # A new block only where a word cannot continue across the cut.
            clean = s.start == 0 or text[s.start - 1].isspace()
            if blocks and (not clean or s.end - blocks[-1][0] <= cls.BLOCK_CHARS):
                blocks[-1] = (blocks[-1][0], s.end)
            else:
                blocks.append((s.start, s.end))
        starts: list[int] = []
        ends: list[int] = []
        spans = count_tokens.spans([text[a:b] for a, b in blocks])
        for (a, _), offsets in zip(blocks, spans, strict=True):
            if offsets:
                shifted = np.asarray(offsets, dtype=np.int64) + a
                starts.extend(shifted[:, 0].tolist())
                ends.extend(shifted[:, 1].tolist())
        return cls(starts, ends)

    def inside(self, a: int, b: int) -> int | None:
        """Tokens within ``[a, b)``; None when a token crosses ``a`` or ``b``."""
        i = bisect_left(self.starts, a)
        j = bisect_right(self.ends, b)
        if (i > 0 and self.ends[i - 1] > a) or (j < len(self.starts) and self.starts[j] < b):
            return None
        return max(j - i, 0)


def _pack(
    doc: Document,
    sentences: list[Sentence],
    counts: list[int],
    count: Callable[[int, int], int],
    overhead: int,
    budget: int,
    overlap: int,
) -> list[Window]:
    # Counting is the slow part: estimate a run as the sum of its sentences' counts
    # (special tokens once), then check each finished window with a single call.
    cost = [n - overhead for n in counts]
    windows: list[Window] = []
    fresh = 0  # first sentence no window covers yet
    while fresh < len(sentences):
        first = max(fresh - overlap, windows[-1].first + 1 if windows else 0)
        est = overhead + sum(cost[first : fresh + 1])
        while first < fresh and est > budget:  # overlap gives way to new text
            est -= cost[first]
            first += 1
        last = fresh
        while last + 1 < len(sentences) and est + cost[last + 1] <= budget:
            last += 1
            est += cost[last]
        while True:
            text = doc.text[sentences[first].start : sentences[last].end]
            n_tokens = counts[first] if first == last else \
                count(sentences[first].start, sentences[last].end)
            if n_tokens <= budget or first == last:
                break
            if last > fresh:
                last -= 1
            else:
                first += 1
        windows.append(Window(
            doc.doc_id, len(windows), first, last,
            sentences[first].start, sentences[last].end, text, n_tokens,
        ))
        fresh = last + 1
    return windows


def _cut_to_fit(
    text: str, start: int, end: int, count_tokens: Callable[[str], int], budget: int
) -> list[tuple[int, int, int]]:
    """Cut ``text[start:end]`` into stripped ``(start, end, n_tokens)`` pieces that fit.

    Each piece is the longest that fits, ended at the last whitespace or clause mark
    inside it; a run with none (a long URL, unpunctuated Chinese) is cut between
    characters.
    """
    soft = [m.end() for m in _SOFT_BREAK.finditer(text, start, end)]
    pieces: list[tuple[int, int, int]] = []
    a = start
    while (a := _strip(text, a, end)[0]) < end:
        b, n = _longest_fit(text, a, end, soft, count_tokens, budget)
        pieces.append((a, b, n))
        a = b
    return pieces


def _longest_fit(
    text: str, a: int, end: int, soft: list[int], count_tokens: Callable[[str], int],
    budget: int,
) -> tuple[int, int]:
    def count(b: int) -> int:
        return count_tokens(text[a : _strip(text, a, b)[1]])

    # Gallop on the end position (text[a:lo] fits, text[a:hi] does not), so the calls
    # cost a few times the piece, never the whole rest of the sentence.
    lo, n_lo, hi = a, 0, end + 1
    p = min(a + 4 * budget, end)
    while True:
        n = count(p)
        if n > budget:
            hi = p
            break
        lo, n_lo = p, n
        if p == end:
            return _strip(text, a, end)[1], n
        p = min(a + 2 * (p - a), end)
    # Then bisect over the soft breaks, not characters: a prefix cut inside a word can
    # count more tokens than the whole word ("ambassad" > "ambassador"), which would
    # send a search over characters short of the last break that really fits.
    breaks = soft[bisect_right(soft, a) : bisect_left(soft, hi)]  # breaks in (a, hi)
    i, j = bisect_right(breaks, lo), len(breaks)  # breaks[i:j] lie in (lo, hi)
    best: tuple[int, int] | None = None
    while i < j:
        mid = (i + j) // 2
        n = count(breaks[mid])
        if n <= budget:
            best, i = (breaks[mid], n), mid + 1
        else:
            j = mid
    if best is None and (k := bisect_right(breaks, lo) - 1) >= 0:
        n = count(breaks[k])  # the last break before lo
        best = (breaks[k], n) if n <= budget else None
    if best is not None:
        return _strip(text, a, best[0])[1], best[1]
    # No break fits (a long URL, unpunctuated Chinese): cut between characters.
    while hi - lo > 1:
        mid = (lo + hi) // 2
        n = count(mid)
        if n <= budget:
            lo, n_lo = mid, n
        else:
            hi = mid
    if lo == a:  # one character over budget: keep it rather than loop forever
        return a + 1, count(a + 1)
    return _strip(text, a, lo)[1], n_lo
