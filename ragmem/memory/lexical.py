"""The lexical side of long-term memory: what SQLite FTS5 indexes, and how it is queried.

FTS5's ``unicode61`` tokenizer keeps a run of Chinese characters as one token, so runs
of CJK text are rewritten as their jieba words followed by their overlapping character
bigrams before indexing and querying (on CMRC 2018 dev, 848 articles in one index, the
right article at 1: bigrams 0.951, words 0.958, both 0.962; eval/reports/chinese/);
Latin text is left to FTS5's Porter stemmer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from ragmem.chinese import CJK, cjk_words

FTS_SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS windows_fts USING fts5(
    body, tokenize = 'porter unicode61 remove_diacritics 2'
);
"""

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]+")
_HAN = re.compile(f"[{CJK}]+")  # what jieba segments (not kana, not hangul)

# Dropped from queries only: they match nearly every window and make OR-queries slow.
STOPWORDS = frozenset("""
a an and are as at be but by for from has have if in into is it its of on or such that the
their then there these they this to was were will with what which who whom whose when where
why how do does did can could should would i you he she we me my your our his her them
""".split())


def _bigrams(match: re.Match[str]) -> str:
    run = match.group(0)
    if len(run) == 1:
        return f" {run} "
    return " " + " ".join(run[i:i + 2] for i in range(len(run) - 1)) + " "


def _words(match: re.Match[str]) -> str:
    return " " + " ".join(match.group(0)[a:b] for a, b in cjk_words(match.group(0))) + " "


def cjk_bigrams(text: str) -> str:
    """CJK runs as character bigrams only (the lexical form before jieba words).

    >>> cjk_bigrams("北京大学 in Beijing")
    ' 北京 京大 大学  in Beijing'
    """
    return _CJK.sub(_bigrams, text)


def lexical_form(text: str) -> str:
    """Text as FTS5 should index it: a CJK run as its jieba words, then its bigrams.

    >>> lexical_form("长期记忆 in Beijing")
    ' 长期 记忆  长期 期记 记忆  in Beijing'
    """
    return _CJK.sub(lambda m: (_HAN.sub(_words, m.group(0)) if len(m.group(0)) > 1 else "")
                    + _bigrams(m), text)


def query_terms(question: str) -> list[str]:
    """The question's distinct terms, lower-cased, in order; stopwords dropped unless
    nothing else is left.

    >>> query_terms("What is the BM25 of the BM25?")
    ['bm25']
    """
    terms = [t.lower() for t in re.findall(r"\w+", lexical_form(question))]
    kept = list(dict.fromkeys(t for t in terms if t not in STOPWORDS))
    return kept or list(dict.fromkeys(terms))


def most_informative(terms: Sequence[str], windows_with: Mapping[str, int],
                     n: int) -> list[str]:
    """The ``n`` terms held by the fewest windows (highest IDF), in question order.

    FTS5's cost grows with the windows each term matches, and BM25 gives a common term
    little weight anyway: a long question keeps its rare, telling terms. A term no
    window holds matches nothing, so it goes first; ties keep the earlier term.

    >>> most_informative(["cell", "p53", "tumour", "zzz"], {"cell": 900, "p53": 4,
    ...                  "tumour": 120}, 2)
    ['p53', 'tumour']
    """
    if len(terms) <= n:
        return list(terms)
    held = [t for t in terms if windows_with.get(t, 0) > 0]
    if len(held) <= n:
        return held or list(terms[:n])
    rank = sorted(range(len(held)), key=lambda i: (windows_with[held[i]], i))[:n]
    return [held[i] for i in sorted(rank)]


def fts_query(question: str | Sequence[str]) -> str | None:
    """An FTS5 MATCH expression: any of the question's terms (or of the given terms),
    each quoted (no operators).

    >>> fts_query('What is "BM25" in 北京?')
    '"bm25" OR "北京"'
    """
    terms = query_terms(question) if isinstance(question, str) else list(question)
    return " OR ".join(f'"{t}"' for t in terms) if terms else None


# How many windows hold each query term. FTS5 keeps terms stemmed ("volcanoes" ->
# "volcano"), so the query terms are first run through the same tokenizer: each one is
# a row of a temporary FTS5 table, and its 'instance' vocabulary maps row -> stem. Both
# vocabularies live in the connection's temp schema: nothing is written to the index.
TERM_STATS_SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS temp.query_terms USING fts5(
    t, tokenize = 'porter unicode61 remove_diacritics 2'
);
CREATE VIRTUAL TABLE IF NOT EXISTS temp.query_stems USING fts5vocab(
    'temp', 'query_terms', 'instance'
);
CREATE VIRTUAL TABLE IF NOT EXISTS temp.windows_vocab USING fts5vocab(
    'main', 'windows_fts', 'row'
);
"""
TERM_STATS_QUERY = """
SELECT s.doc, COALESCE(MAX(v.doc), 0) FROM temp.query_stems s
LEFT JOIN temp.windows_vocab v ON v.term = s.term GROUP BY s.doc
"""
