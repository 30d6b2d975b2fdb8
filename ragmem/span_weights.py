"""The span ranker's trained weights as typed, versioned data, checked on load.

``ragmem/data/extractive.json`` holds three linear models over named features (the
first stage over a span's features, the second over those plus the generator's view,
the confidence over a few signals), the abstention threshold, the heads the second
stage reads, and how it was all trained. Each model has a feature schema, the names
ragmem computes for it; a weight whose name is not in its schema (a feature renamed or
dropped since training) is refused on load in one line, and scoring a feature outside
the schema is refused too, so nothing is silently scored as 0. A schema feature the
weights leave out weighs 0, as training left it.

    >>> weights = shipped_weights()                                    # doctest: +SKIP
    >>> weights.rescore.score({"first_stage": 0.0, "lm_tokens": -2.1})  # doctest: +SKIP
    -1.37
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from ragmem.errors import RagmemError
from ragmem.extraction import feature_schema

FORMAT = 1  # the file format this ragmem reads; a file without "format" is format 1
SHIPPED = "ragmem/data/extractive.json"
RETRAIN = "retrain the span ranker (python -m ragmem.training.span_ranker) or reinstall ragmem"

# What the second stage and the confidence model read beside a span's own features
# (ragmem.span_ranking: lm_features, pmi_features, HEADS, confidence_signals).
LM_FEATURES = frozenset({"lm_tokens", "lm_end", "lm_first", "lm_length", "lm_missing"})
PMI_FEATURES = frozenset({"pmi_tokens", "pmi_end"})
HEAD_FEATURES = frozenset({"lm_head", "mlp_head"})


@cache
def schemas() -> dict[str, frozenset[str]]:
    """Model name -> the features ragmem computes for it."""
    spans = feature_schema()
    return {"features": spans,
            "rescore": spans | {"first_stage"} | LM_FEATURES | PMI_FEATURES | HEAD_FEATURES,
            "confidence": frozenset({"probability", "lexical", "dense", "lm_head"}) | LM_FEATURES}


@dataclass(frozen=True)
class Ranker:
    """A linear score over named features: ``bias + sum(weight * value)``. With a
    ``schema``, every weight must name one of its features, and so must every feature
    scored; without one (a hand-made ranker), a feature the weights don't name weighs 0.

        >>> Ranker({"a": 2.0}, bias=1.0).score({"a": 1.5, "b": 9.0})
        4.0
    """

    weights: Mapping[str, float]
    bias: float = 0.0
    schema: frozenset[str] | None = field(default=None, repr=False)
    name: str = "ranker"

    def __post_init__(self) -> None:
        if self.schema is not None and (unknown := sorted(set(self.weights) - self.schema)):
            raise RagmemError(f"the span ranker's {self.name} weights name "
                              f"{len(unknown)} feature(s) ragmem does not compute "
                              f"({', '.join(unknown[:3])}); {RETRAIN}")

    def score(self, features: Mapping[str, float]) -> float:
        if self.schema is not None and not features.keys() <= self.schema:
            unknown = sorted(features.keys() - self.schema)
            raise RagmemError(f"the span ranker scored feature(s) its {self.name} weights "
                              f"were not trained with ({', '.join(unknown[:3])}); {RETRAIN}")
        return self.bias + sum(self.weights.get(k, 0.0) * v for k, v in features.items())


@dataclass(frozen=True)
class SpanWeights:
    """Everything the span ranker was trained to: its three rankers, the probability
    below which it abstains, the heads' specs (by their key in the file: ``head``,
    ``mlp_head``), the refit with the PMI features when there is one, and provenance."""

    features: Ranker
    rescore: Ranker
    confidence: Ranker
    abstain_below: float
    heads: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    pmi: SpanWeights | None = None
    trained: Mapping[str, Any] = field(default_factory=dict, repr=False)
    format: int = FORMAT

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "weights") -> SpanWeights:
        """From the JSON layout of ``extractive.json``; a wrong format, a missing part
        or a feature outside its schema is one ``RagmemError`` line."""
        version = data.get("format", 1)
        if version != FORMAT:
            raise RagmemError(f"{source} is span-ranker format {version!r}; this ragmem "
                              f"reads format {FORMAT}: {RETRAIN}")
        try:
            rankers = {name: Ranker(dict(data[name]["weights"]),
                                    float(data[name].get("bias", 0.0)), schemas()[name], name)
                       for name in ("features", "rescore", "confidence")}
            abstain = float(data["abstain_below"])
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise RagmemError(f"{source} is not span-ranker weights (bad or missing "
                              f"{error}); {RETRAIN}") from error
        pmi = data.get("pmi")
        return cls(rankers["features"], rankers["rescore"], rankers["confidence"], abstain,
                   {k: dict(data[k]) for k in ("head", "mlp_head") if k in data},
                   cls.from_dict({**data, **pmi, "pmi": None}, f"{source} (pmi)")
                   if pmi else None,
                   dict(data.get("trained") or {}), version)


@cache
def shipped_weights() -> SpanWeights:
    """The trained weights in ``ragmem/data/extractive.json`` (see its ``trained`` field
    for how they were made), checked against their schemas."""
    path = resources.files("ragmem").joinpath("data/extractive.json")
    try:
        data: dict[str, Any] = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as error:
        raise RagmemError(f"the extractive answerer's weights are missing or damaged "
                          f"({error}); reinstall ragmem") from error
    return SpanWeights.from_dict(data, SHIPPED)
