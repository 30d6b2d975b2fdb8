"""ragmem.chinese: jieba's words and the offsets a span may not cut."""

from __future__ import annotations

from ragmem.chinese import cjk_words, cuts_word, has_cjk, word_boundaries

SENTENCE = "在大语言模型中，长短期记忆通过模型参数实现。"


def test_words_cover_each_cjk_run_and_nothing_else():
    words = [SENTENCE[a:b] for a, b in cjk_words(SENTENCE)]
    assert "长短期" in words and "模型" in words and "参数" in words
    assert "，" not in "".join(words) and "。" not in "".join(words)
    assert "".join(words) == SENTENCE.replace("，", "").replace("。", "")


def test_runs_are_segmented_alone_so_latin_and_digits_bound_them():
    text = "9.1 什么是工作记忆？"
    assert [text[a:b] for a, b in cjk_words(text)] == ["什么", "是", "工作记忆"]


def test_cut_words_are_found():
    at = SENTENCE.index("型参数")
    assert cuts_word(SENTENCE, at, at + 3)  # 型参数, out of 模型参数
    assert cuts_word(SENTENCE, SENTENCE.index("长短"), SENTENCE.index("长短") + 2)
    start = SENTENCE.index("模型参数")
    assert not cuts_word(SENTENCE, start, start + 4)
    assert start in word_boundaries(SENTENCE) and start + 1 not in word_boundaries(SENTENCE)


def test_has_cjk():
    assert has_cjk("RAG 是什么") and not has_cjk("What is RAG?")
