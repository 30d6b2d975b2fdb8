"""Filters as Milvus expressions, and how text is cut into VARCHAR pieces: pure
functions, tested without Milvus."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ragmem.errors import QuestionError
from ragmem.memory.milvus.expressions import (
    NOTHING,
    expression,
    glob_to_like,
    matches,
    metadata_json,
    quote,
)
from ragmem.memory.milvus.rows import pieces, window_id
from ragmem.types import Filter


def test_quote_escapes_what_milvus_reads_as_syntax() -> None:
    assert quote('a"b') == '"a\\"b"'
    assert quote("a\\b") == '"a\\\\b"'
    assert quote("line\nbreak\r") == '"line\\nbreak\\r"'
    assert quote("北京 é 'x'") == "\"北京 é 'x'\""


@pytest.mark.parametrize("glob, like", [
    ("reports/*.pdf", "reports/%.pdf"), ("a?c", "a_c"), ("*", "%"), ("plain", "plain"),
    ("doc_1", None), ("100%", None), ("[ab]*", None), ("back\\slash", None),
])
def test_a_glob_becomes_like_only_where_that_is_exact(glob: str, like: str | None) -> None:
    assert glob_to_like(glob) == like


def test_expression_joins_every_condition() -> None:
    where = Filter(doc_ids=("a", 'b"c'), path_glob="x/*", metadata={
        "lang": "en", "year": 2024, "draft": False, "score": 0.5})
    assert expression(where) == (
        '(doc_id in ["a", "b\\"c"]) and (doc_id like "x/%" or path like "x/%") and '
        '(metadata["lang"] == "en") and (metadata["year"] == 2024) and '
        '(metadata["draft"] == false) and (metadata["score"] == 0.5)')
    assert expression(Filter()) == ""


def test_what_matches_nothing_and_what_is_left_to_the_store() -> None:
    assert expression(Filter(doc_ids=())) == NOTHING
    assert expression(Filter(metadata={"k": None})) == NOTHING  # SQL's = NULL
    assert expression(Filter(path_glob="a_*")) is None  # resolved by id instead
    assert expression(Filter(metadata={'we"ird': 1})) is None
    with pytest.raises(QuestionError, match="only a string, a number or true/false"):
        expression(Filter(metadata={"tags": ["a", "b"]}))


def test_matches_is_the_same_filter_by_hand() -> None:
    meta = {"lang": "en", "n": 1}
    assert matches(Filter(path_glob="doc_[12]"), "doc_1", "/x", meta)
    assert matches(Filter(path_glob="/src/*"), "d", "/src/d.txt", meta)
    assert not matches(Filter(path_glob="doc_[12]"), "doc_3", "/x", meta)
    assert matches(Filter(metadata={"n": True}), "d", "", meta)  # as SQLite compares
    assert not matches(Filter(metadata={"k": None}), "d", "", {"k": None})
    assert not matches(Filter(doc_ids=("a",), metadata={"lang": "en"}), "b", "", meta)


def test_metadata_json_drops_headings_and_stringifies_the_rest() -> None:
    import datetime

    day = datetime.date(2024, 5, 1)
    assert metadata_json({"sections": [[0, "A"]], "when": day, "n": 2}) == {
        "n": 2, "when": "2024-05-01"}


@given(st.text(), st.integers(min_value=4, max_value=40))
def test_pieces_join_back_and_each_fits(text: str, limit: int) -> None:
    cut = pieces(text, limit)
    assert "".join(cut) == text
    assert all(0 < len(p.encode("utf-8")) <= limit for p in cut)


def test_window_ids_are_distinct_and_non_negative() -> None:
    ids = {window_id(f"doc-{d}", i) for d in range(200) for i in range(50)}
    assert len(ids) == 10_000 and min(ids) >= 0 and max(ids) < 2**63


def test_window_ids_are_the_same_in_every_process() -> None:
    """A Milvus index stores these keys: a retried write must hit the same rows in another
    process, Python or hash seed. Pinned values (BLAKE2b-64 of "doc_id NUL index", >> 1)."""
    assert window_id("a", 3) == 7955705615592020749
    assert window_id("a.txt", 0) == 3284840994612203086
    assert window_id("文档.txt", 12) == 5391435874093622074
