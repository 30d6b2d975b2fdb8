"""Candidate spans and their features: offsets, edges, question types, languages."""

from __future__ import annotations

import json
from importlib import resources

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ragmem.errors import RagmemError
from ragmem.extraction import (
    BASE_FEATURES,
    candidate_spans,
    content_words,
    feature_schema,
    question_type,
    rank_sentences,
    sentence_candidates,
    shape,
    words,
)
from ragmem.span_weights import FORMAT, Ranker, SpanWeights, schemas, shipped_weights
from ragmem.types import Passage, Sentence


def passage(doc_id: str, texts: list[str], score: float = 1.0, at: int = 0) -> Passage:
    sentences, start = [], at
    for i, text in enumerate(texts):
        sentences.append(Sentence(doc_id, i, start, start + len(text), text))
        start += len(text) + 1
    return Passage(doc_id, f"{doc_id}.txt", sentences[0].start, sentences[-1].end, score,
                   tuple(sentences))


def test_words_keep_numbers_abbreviations_and_chinese_words() -> None:
    assert [w for _, _, w in words("In 1,200 U.S. towns (2016).")] == \
        ["In", "1,200", "U.S", ".", "towns", "(", "2016", ")", "."]
    # jieba's words, not characters; Latin and digits beside them keep their own rule
    assert [w for _, _, w in words("丹佛野马队赢了")] == ["丹佛", "野马", "队", "赢", "了"]
    assert [w for _, _, w in words("9.1 长短期记忆")] == ["9.1", "长短期", "记忆"]
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


def test_a_hand_made_ranker_weighs_features_it_does_not_name_as_0() -> None:
    assert Ranker({"a": 2.0}, bias=1.0).score({"a": 1.5, "b": 9.0}) == 4.0


def test_every_feature_a_span_gets_is_in_the_schema() -> None:
    p = passage("doc", ["In 1895 H.G. Wells wrote it.", "Who wrote it? Wells, in London."])
    for question in ("Who wrote it?", "When was it written?", "How many books?", "谁写的？"):
        for evidence in rank_sentences(question, [p]):
            for c in sentence_candidates(question, evidence):
                assert set(c.features) <= feature_schema()
                assert set(BASE_FEATURES) <= set(c.features)


def test_the_shipped_weights_are_typed_and_checked_against_their_schemas() -> None:
    w = shipped_weights()
    assert isinstance(w, SpanWeights) and w.format == FORMAT
    assert 0.0 <= w.abstain_below <= 1.0 and w.trained["date"]
    for name in ("features", "rescore", "confidence"):
        ranker = getattr(w, name)
        assert ranker.schema == schemas()[name] and set(ranker.weights) <= ranker.schema
    assert w.pmi is not None and w.pmi.features == w.features


def shipped_json() -> dict:
    return json.loads(resources.files("ragmem").joinpath("data/extractive.json").read_text())


def test_a_renamed_feature_is_one_error_line_not_a_silent_0() -> None:
    data = shipped_json()
    data["features"]["weights"]["overlap_renamed"] = data["features"]["weights"].pop("overlap")
    with pytest.raises(RagmemError, match=r"features weights name 1 feature\(s\) ragmem does "
                                          r"not compute \(overlap_renamed\); retrain") as error:
        SpanWeights.from_dict(data)
    assert "\n" not in str(error.value)
    rescore = shipped_weights().rescore
    with pytest.raises(RagmemError, match="scored feature.*not trained with .new_feature."):
        rescore.score({"first_stage": 0.0, "new_feature": 1.0})


def test_weights_of_another_format_or_shape_are_one_error_line() -> None:
    with pytest.raises(RagmemError, match=f"format 2; this ragmem reads format {FORMAT}"):
        SpanWeights.from_dict({**shipped_json(), "format": 2})
    broken = shipped_json()
    del broken["rescore"]
    with pytest.raises(RagmemError, match="not span-ranker weights .bad or missing 'rescore'"):
        SpanWeights.from_dict(broken)
