"""Candidate spans and their features: offsets, edges, question types, languages."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ragmem.extraction import (
    Ranker,
    candidate_spans,
    content_words,
    question_type,
    rank_sentences,
    sentence_candidates,
    shape,
    shipped_weights,
    words,
)
from ragmem.types import Passage, Sentence


def passage(doc_id: str, texts: list[str], score: float = 1.0, at: int = 0) -> Passage:
    sentences, start = [], at
    for i, text in enumerate(texts):
        sentences.append(Sentence(doc_id, i, start, start + len(text), text))
        start += len(text) + 1
    return Passage(doc_id, f"{doc_id}.txt", sentences[0].start, sentences[-1].end, score,
                   tuple(sentences))


def test_words_keep_numbers_abbreviations_and_cjk_characters() -> None:
    assert [w for _, _, w in words("In 1,200 U.S. towns (2016).")] == \
        ["In", "1,200", "U.S", ".", "towns", "(", "2016", ")", "."]
    assert [w for _, _, w in words("丹佛野马队赢了")] == list("丹佛野马队赢了")
    text = "Wells, H. G. wrote it."
    assert all(text[a:b] == w for a, b, w in words(text))


def test_candidate_spans_have_no_stopword_or_punctuation_at_the_edges() -> None:
    text = "The Denver Broncos defeated the Carolina Panthers 24–10."
    spans = {text[a:b] for a, b in candidate_spans(text)}
    assert {"Denver Broncos", "Carolina Panthers", "24–10"} <= spans
    assert not any(s.split()[0].lower() == "the" or s.endswith(".") for s in spans)
    assert "Panthers 24–10." not in spans


def test_candidate_spans_stop_at_sentence_breaks_and_length() -> None:
    text = "Alpha beta gamma; delta epsilon."
    spans = {text[a:b] for a, b in candidate_spans(text, max_words=2)}
    assert "Alpha beta" in spans and "Alpha beta gamma" not in spans
    assert not any(";" in s for s in spans)


@given(st.text(alphabet=st.sampled_from(list("ab 1,.;()丹佛XY-")), max_size=60))
def test_candidate_offsets_slice_back_to_whole_words(text: str) -> None:
    bounds = {a for a, _, _ in words(text)} | {b for _, b, _ in words(text)}
    for a, b in candidate_spans(text):
        assert 0 <= a < b <= len(text)
        assert a in bounds and b in bounds
        assert text[a:b] == text[a:b].strip()


def test_question_types_in_english_and_chinese() -> None:
    assert question_type("How many goals were scored?") == "how many"
    assert question_type("Who won Super Bowl 50?") == "who"
    assert question_type("In what year did it open?") == "what year"
    assert question_type("谁赢得了比赛？") == "who"
    assert question_type("比赛在哪里举行？") == "where"
    assert question_type("Tell me about it") == "other"


def test_shape_sees_years_months_and_names() -> None:
    s = shape("7 February 2016")
    assert s["year"] == s["month"] == s["digit"] == 1.0
    assert shape("Denver Broncos")["capitalised"] == 1.0
    assert shape("three")["number_word"] == 1.0


def test_rank_sentences_prefers_the_one_with_rare_question_words() -> None:
    p = passage("a", ["The game was played in a stadium.",
                      "The Denver Broncos won the game against Carolina.",
                      "Fans watched the game on television."])
    ranked = rank_sentences("Which team won the game?", [p])
    assert ranked[0].sentence.text.startswith("The Denver Broncos")
    assert [e.rank for e in ranked] == [0, 1, 2]
    assert content_words("Which team won the game?") == ["team", "won", "game"]


def test_rank_sentences_uses_dense_scores_for_the_best_few() -> None:
    p = passage("a", ["One two.", "Three four.", "Five six."])
    ranked = rank_sentences("two?", [p], dense=lambda texts: [0.5] * len(texts), dense_top=2)
    assert [e.dense for e in ranked] == [0.5, 0.5, None]


def test_sentence_candidates_are_located_in_the_document() -> None:
    p = passage("doc", ["Intro text here.", "The bank is the City and Suburban Bank."], at=100)
    document = " " * 100 + "Intro text here. The bank is the City and Suburban Bank."
    evidence = rank_sentences("Which bank?", [p])[0]
    for c in sentence_candidates("Which bank?", evidence):
        assert document[c.start:c.end] == c.text
    assert "City and Suburban Bank" in {c.text for c in sentence_candidates("Which bank?",
                                                                            evidence)}


def test_ranker_ignores_unknown_features_and_weights_ship() -> None:
    assert Ranker({"a": 2.0}, bias=1.0).score({"a": 1.5, "b": 9.0}) == 4.0
    w = shipped_weights()
    assert {"features", "rescore", "confidence", "abstain_below", "trained"} <= set(w)
    assert 0.0 <= w["abstain_below"] <= 1.0
