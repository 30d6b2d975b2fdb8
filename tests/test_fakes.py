"""The fakes of conftest.py implement the real interfaces, so no production code needs to
know about them: what a fake can do is decided as for any model."""

from __future__ import annotations

import numpy as np

from ragmem.generation import scorer_of
from tests.conftest import EchoGenerator, KeywordEmbedder, WordCountScorer


def test_the_echo_writes_and_does_not_score() -> None:
    echo = EchoGenerator()
    prompt = echo.render("Answer.",
                         "Passages:\n[1] Cats sleep. Dogs bark.\n\nQuestion: Which dogs bark?")
    assert echo.generate(prompt, 8) == "Dogs bark. [1]"
    assert "".join(echo.stream(prompt, 8)) == echo.generate(prompt, 8)
    assert scorer_of(echo) is None


def test_the_word_count_scorer_scores_through_the_shared_code() -> None:
    scorer = WordCountScorer()
    assert scorer_of(scorer) is scorer
    prompt = "the crow dropped the cheese"
    state = scorer.prefill(prompt)
    (cheese, bread) = scorer.continuation_logprobs(state, ["cheese", "bread"])
    assert cheese[0] > bread[0]
    assert scorer.score_options(prompt, ["cheese", "bread"]) == [
        float(cheese.sum(dtype=np.float64)), float(bread.sum(dtype=np.float64))]


def test_the_keyword_embedder_normalises() -> None:
    vectors = KeywordEmbedder().embed(["cats sleep", ""])
    assert np.isclose(np.linalg.norm(vectors[0]), 1.0) and not vectors[1].any()
