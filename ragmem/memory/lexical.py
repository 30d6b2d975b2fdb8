"""The lexical side of long-term memory: what SQLite FTS5 indexes, and how it is queried.

FTS5's ``unicode61`` tokenizer keeps a run of Chinese characters as one token, so runs
of CJK text are rewritten as overlapping character bigrams (the usual choice for
Chinese BM25) before indexing and querying; Latin text is left to FTS5's Porter stemmer.
"""

from __future__ import annotations

import re

FTS_SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS windows_fts USING fts5(
    body, tokenize = 'porter unicode61 remove_diacritics 2'
);
"""

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]+")

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


def lexical_form(text: str) -> str:
    """Text as FTS5 should index it.

    >>> lexical_form("北京大学 in Beijing")
    ' 北京 京大 大学  in Beijing'
    """
    return _CJK.sub(_bigrams, text)


def fts_query(question: str) -> str | None:
    """An FTS5 MATCH expression: any of the question's terms, each quoted (no operators).

    >>> fts_query('What is "BM25" in 北京?')
    '"bm25" OR "北京"'
    """
    terms = [t.lower() for t in re.findall(r"\w+", lexical_form(question))]
    kept = list(dict.fromkeys(t for t in terms if t not in STOPWORDS))
    if not kept:
        kept = list(dict.fromkeys(terms))
    return " OR ".join(f'"{t}"' for t in kept) if kept else None
