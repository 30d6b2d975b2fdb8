"""Chinese words: where a run of Chinese characters may be cut, and where not.

Chinese is written without spaces, so a span of characters can cut a word in two
("型参数" out of "模型参数"). jieba (a dictionary and an HMM for unknown words; it
ships its dictionary and runs offline) segments each run of CJK characters; Latin
letters, digits and punctuation around a run are left to the caller's own tokenizer.
jieba is loaded on first use, and quietly: ``import ragmem`` stays cheap.

    >>> [text[a:b] for text in ["长短期记忆通过模型参数实现"] for a, b in cjk_words(text)]
    ['长短期', '记忆', '通过', '模型', '参数', '实现']
    >>> cuts_word("长短期记忆通过模型参数实现", 8, 11)   # "型参数"
    True
"""

from __future__ import annotations

import logging
import re
from functools import cache
from typing import Any

CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
CJK_RUN = re.compile(f"[{CJK}]+")
_HAS_CJK = re.compile(f"[{CJK}]")


def has_cjk(text: str) -> bool:
    """Whether ``text`` holds a Chinese character: ``has_cjk("什么是RAG?") -> True``."""
    return _HAS_CJK.search(text) is not None


@cache
def _segmenter() -> Any:
    """jieba's default tokenizer, its dictionary loaded once, with no log lines."""
    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.dt.initialize()
    return jieba.dt


@cache
def _run_words(run: str) -> tuple[tuple[int, int], ...]:
    """Word offsets inside one run of CJK characters (HMM on, so unknown names hold)."""
    return tuple((a, b) for _, a, b in _segmenter().tokenize(run))


def cjk_words(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of every Chinese word of ``text``, in order; each CJK run is
    segmented on its own, so a word never spans a digit, a letter or a punctuation mark
    (the same runs whatever text around them is segmented with)."""
    out: list[tuple[int, int]] = []
    for m in CJK_RUN.finditer(text):
        base = m.start()
        out.extend((base + a, base + b) for a, b in _run_words(m.group()))
    return out


def word_boundaries(text: str) -> set[int]:
    """Offsets of ``text`` a span may start or end at without cutting a Chinese word:
    every offset except those strictly inside a word of two or more characters."""
    inside = {k for a, b in cjk_words(text) for k in range(a + 1, b)}
    return set(range(len(text) + 1)) - inside


def cuts_word(text: str, start: int, end: int) -> bool:
    """Whether the span ``text[start:end]`` starts or ends inside a Chinese word."""
    for a, b in cjk_words(text):
        if a < start < b or a < end < b:
            return True
    return False
