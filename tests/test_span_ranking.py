"""The LM-scored span ranker: the extract path of Chinese questions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from ragmem.answering import NOT_FOUND, ExtractAnswerer
from ragmem.config import AnsweringConfig, WorkingMemoryConfig
from ragmem.errors import RagmemError
from ragmem.span_ranking import NULL_QUESTION, SpanRanker
from ragmem.span_weights import SpanWeights
from ragmem.working_memory import WorkingMemory
from tests.conftest import EchoGenerator
from tests.test_answering import BANK, bank_buffer
from tests.test_extraction import passage as extraction_passage


def hand_weights(abstain_below: float) -> dict[str, Any]:
    """Weights a reader can follow: prefer capitalised spans that end a clause and that
    the question does not already say."""
    return {"features": {"weights": {"some_capitals": 3.0, "before_punctuation": 2.0,
                                     "lexical": 5.0, "overlap": -2.0, "n_words": 0.5}},
            "rescore": {"weights": {"first_stage": 1.0}},
            "confidence": {"weights": {"probability": 4.0}, "bias": -1.0},
            "abstain_below": abstain_below}


def typed(weights: dict[str, Any]) -> SpanWeights:
    """Hand-made weights as the ranker takes them: typed, checked against the schemas."""
    return SpanWeights.from_dict(weights, "hand weights")


def ExtractAnswererOf(*args: Any, **kwargs: Any) -> ExtractAnswerer:  # noqa: N802
    return ExtractAnswerer(SpanRanker(*args, **kwargs))


def test_extract_answer_is_a_span_of_the_document_and_its_own_citation() -> None:
    buffer, document = bank_buffer()
    answerer = ExtractAnswererOf(None, AnsweringConfig(mode="extract", scored_candidates=0),
                                 weights=typed(hand_weights(0.0)))
    answer = answerer.answer(buffer)
    assert answer.mode == "extract" and not answer.abstained
    (cite,) = answer.citations
    assert document[cite.start:cite.end] == cite.quote == answer.text
    assert answer.text.endswith("Suburban Bank")


def test_extract_abstains_below_the_threshold_and_cites_nothing() -> None:
    buffer, document = bank_buffer()
    answerer = ExtractAnswererOf(None, AnsweringConfig(mode="extract", scored_candidates=0),
                                 weights=typed(hand_weights(0.999)))
    answer = answerer.answer(buffer)
    assert answer.abstained and answer.text == NOT_FOUND and answer.citations == ()
    (hint,) = answer.suggestions
    assert document[hint.start:hint.end] == hint.quote and hint.quote in BANK
    assert 0.0 <= answer.confidence < 0.999


def test_the_second_stage_reweighs_the_kept_spans_own_features() -> None:
    buffer, document = bank_buffer()
    config = AnsweringConfig(mode="extract", scored_candidates=24)
    by_first = ExtractAnswererOf(None, config, weights=typed(hand_weights(0.0))).answer(buffer)
    weights = hand_weights(0.0)
    weights["rescore"]["weights"] = {"first_stage": 0.1, "one_word": 10.0}
    answer = ExtractAnswererOf(None, config, weights=typed(weights)).answer(buffer)
    kept, features = SpanRanker(None, config, weights=typed(weights)).first_stage(
        buffer.question, buffer.passages)
    assert all(f["one_word"] == float(len(c.text.split()) == 1)
               for c, f in zip(kept, features, strict=True))
    assert len(by_first.text.split()) > 1 and len(answer.text.split()) == 1
    (cite,) = answer.citations
    assert document[cite.start:cite.end] == answer.text


class NullAwareRanker(SpanRanker):
    """Scores each span -1 per token given the question and -3 given the null question."""

    def _span_scores(self, questions: Any, kept: Any, layers: Any) -> Any:
        return [[(np.full(3, -3.0 if q == NULL_QUESTION else -1.0), 2, [1, 2, 9])
                 for _ in kept] for q in questions], [None for _ in questions]


def test_pmi_features_only_when_the_weights_use_them() -> None:
    plain = NullAwareRanker(None, AnsweringConfig(mode="extract"), weights=typed(hand_weights(0.0)))
    assert all("pmi_tokens" not in f for f in plain._likelihoods("Q?", [None]))  # type: ignore[list-item]
    weights = hand_weights(0.0)
    weights["rescore"]["weights"] |= {"pmi_tokens": 1.0, "pmi_end": 0.5}
    pmi = NullAwareRanker(None, AnsweringConfig(mode="extract"), weights=typed(weights))
    (f,) = pmi._likelihoods("Q?", [None])  # type: ignore[list-item]
    # 2 span tokens: -2 given the question, -6 given nothing; end token -1 vs -3.
    assert (f["lm_tokens"], f["pmi_tokens"], f["pmi_end"]) == (-2.0, 4.0, 2.0)


def test_pmi_is_opt_in_and_has_its_own_shipped_weights() -> None:
    default = SpanRanker(None, AnsweringConfig(mode="extract"))
    assert not any(k.startswith("pmi_") for k in default.rescore.weights)
    pmi = SpanRanker(None, AnsweringConfig(mode="extract", pmi=True))
    assert pmi.rescore.weights["pmi_tokens"] != 0 and pmi.features == default.features


def test_extract_with_no_evidence_abstains() -> None:
    wm = WorkingMemory(EchoGenerator(), WorkingMemoryConfig(token_budget=400))
    answer = ExtractAnswererOf(None, AnsweringConfig(scored_candidates=0),
                               weights=typed(hand_weights(0.0))).answer(wm.fill("Who?", []))
    assert answer.abstained and answer.citations == () and answer.suggestions == ()


# The tiny Llama only: the tiny GPT-2's end-of-text id is outside its 30-word vocabulary.
@pytest.mark.parametrize("tiny_causal", ["llama"], indirect=True)
def test_a_trained_head_scores_each_span_from_the_generators_state(
        tiny_causal: Any) -> None:
    """The head reads the generator's state after "prompt, span, end of answer"; with
    only its score in the second stage, the answer is the span it scores highest. A
    head of another model's width is left out rather than misread."""
    p = extraction_passage("t.txt", ["the robbers were tunnelling into the city bank cellar .",
                                     "the cat sat on a big red mat ."])
    wm = WorkingMemory(EchoGenerator(), WorkingMemoryConfig(token_budget=400))
    buffer = wm.fill("what did the robbers do ?", [p])
    rng = np.random.default_rng(0)
    weights = hand_weights(0.0)
    weights["rescore"] = {"weights": {"lm_head": 1.0}}
    weights["head"] = {"layer": -1, "vector": rng.normal(size=tiny_causal.hidden_size() + 1)}
    answerer = SpanRanker(tiny_causal, AnsweringConfig(mode="extract"), weights=typed(weights))
    kept, features = answerer.rescore_features(buffer.question, buffer.passages)
    _, states = answerer.span_states(buffer.question, kept, (-1,))
    head = np.asarray(weights["head"]["vector"], dtype=np.float32)
    expected = states[:, 0] @ head[:-1] + head[-1]
    np.testing.assert_allclose([f["lm_head"] for f in features], expected, rtol=1e-5)
    answer = ExtractAnswerer(answerer).answer(buffer)
    assert answer.text == kept[int(np.argmax(expected))].text
    weights["head"]["vector"] = np.ones(tiny_causal.hidden_size() + 5)
    wrong = SpanRanker(tiny_causal, AnsweringConfig(mode="extract"), weights=typed(weights))
    assert all("lm_head" not in f for f in wrong.rescore_features(buffer.question,
                                                                   buffer.passages)[1])


@pytest.mark.parametrize("tiny_causal", ["llama"], indirect=True)  # as the test above
def test_a_head_with_gelu_units_scores_as_its_torch_form_and_feeds_the_second_stage(
        tiny_causal: Any) -> None:
    """The MLP head (linear + GELU units, tanh form, as mlp_head.py trains it) scores
    each span's state as torch would, and its feature decides the answer alone."""
    import torch

    from ragmem.span_ranking import StateHead

    size, units = tiny_causal.hidden_size(), 3
    rng = np.random.default_rng(1)
    spec = {"layer": -1, "linear": rng.normal(size=size + 1).tolist(),
            "hidden": rng.normal(size=(units, size + 1)).tolist(),
            "out": rng.normal(size=units + 1).tolist()}
    head = StateHead.from_spec(spec)
    states = rng.normal(size=(5, size)).astype(np.float32)
    t = torch.from_numpy(states)
    w1 = torch.tensor(spec["hidden"], dtype=torch.float32)
    out = torch.tensor(spec["out"], dtype=torch.float32)
    lin = torch.tensor(spec["linear"], dtype=torch.float32)
    gelu = torch.nn.functional.gelu(t @ w1[:, :-1].T + w1[:, -1], approximate="tanh")
    expected = (t @ lin[:-1] + lin[-1] + gelu @ out[:-1] + out[-1]).numpy()
    np.testing.assert_allclose(head.score(states), expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(RagmemError, match="mismatched shapes"):  # a damaged head: one line
        StateHead.from_spec({**spec, "out": spec["out"][:-1]})

    p = extraction_passage("t.txt", ["the robbers were tunnelling into the city bank cellar .",
                                     "the cat sat on a big red mat ."])
    wm = WorkingMemory(EchoGenerator(), WorkingMemoryConfig(token_budget=400))
    buffer = wm.fill("what did the robbers do ?", [p])
    weights = hand_weights(0.0)
    weights["rescore"] = {"weights": {"mlp_head": 1.0}}
    weights["mlp_head"] = spec
    answerer = SpanRanker(tiny_causal, AnsweringConfig(mode="extract"), weights=typed(weights))
    kept, features = answerer.rescore_features(buffer.question, buffer.passages)
    _, span_states = answerer.span_states(buffer.question, kept, (-1,))
    scores = head.score(span_states[:, 0])
    np.testing.assert_allclose([f["mlp_head"] for f in features], scores, rtol=1e-4)
    assert ExtractAnswerer(answerer).answer(buffer).text == kept[int(np.argmax(scores))].text


def test_the_shipped_heads_are_plain_numbers_for_the_packaged_generator() -> None:
    from ragmem.span_ranking import HEADS, StateHead
    from ragmem.span_weights import shipped_weights

    weights = shipped_weights()
    answerer = SpanRanker(None, AnsweringConfig(mode="extract"))
    assert "head" in weights.heads
    for feature, key in HEADS.items():
        if key not in weights.heads:
            continue
        spec = weights.heads[key]
        head = StateHead.from_spec(spec)  # .npy or .npz, read without pickle
        arrays = [head.linear, *([head.hidden, head.out] if head.hidden is not None else [])]
        assert head.size == spec["size"] and spec["model"] == "SmolLM2-135M-Instruct"
        assert all(a.dtype == np.float32 and np.isfinite(a).all() for a in arrays)
        assert answerer.rescore.weights[feature] != 0 and feature in answerer.heads
    # No generator to read states from: the second stage scores without the heads.
    assert not answerer._readable_heads()
