"""The LM-scored span ranker: Chinese questions' extract path.

The extractive reader (``ragmem.reading``) reads English only: the packaged MiniLM's
vocabulary has 488 CJK tokens. A Chinese question keeps the span ranker that preceded
the reader, which scores character-level candidate spans of the best evidence sentences
in two stages: candidate spans ranked by features (:mod:`ragmem.extraction`), then the
best few rescored with the generator's view (log-likelihood of each span as the answer,
and two small trained heads, ``StateHead``, reading its hidden state after "context,
question, span, end of answer"; plain arrays in ``ragmem/data/``). Its weights were
fitted on SQuAD train questions (eval/reports/answer-stage-models/).

    >>> ranker = SpanRanker(scorer, AnsweringConfig(), embedder)      # doctest: +SKIP
    >>> ranker.read("谁写了《茶经》？", passages)[0].text              # doctest: +SKIP
    '陆羽'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np

from ragmem.config import AnsweringConfig
from ragmem.errors import RagmemError
from ragmem.extraction import Candidate, EvidenceSentence, rank_sentences, sentence_candidates
from ragmem.generation import Scorer
from ragmem.reading import ReadSpan
from ragmem.span_weights import SpanWeights, shipped_weights
from ragmem.types import Passage

if TYPE_CHECKING:
    from ragmem.embedding import Embedder

# What the generator is told when it scores spans: the span is the whole answer.
EXTRACT_INSTRUCTION = ("Answer the question with a short phrase copied exactly from the "
                       "context.")
# A question that asks nothing: a span's likelihood under it is how much the generator
# likes the span anyway (a frequent name, a short word). Its difference to the real
# question's likelihood (the span's PMI with the question) lifted the rescoring's F1 by
# 0.022 +- 0.011 on train questions; opt-in (AnsweringConfig.pmi), as it doubles the
# generator's work (eval/reports/answer-stage-models/).
NULL_QUESTION = "What is it?"
# The second stage's features read from the generator's state, and the key of each
# one's head in the weights file.
HEADS = {"lm_head": "head", "mlp_head": "mlp_head"}


@dataclass(frozen=True)
class ScoredSpan:
    """A candidate after both stages: ``probability`` is its share among the rescored
    candidates; ``confidence`` the estimated chance that it is right."""

    candidate: Candidate
    score: float
    probability: float
    confidence: float
    features: dict[str, float]  # what the second stage scored


class SpanRanker:
    """Spans of the evidence ranked in two stages (see the module docstring)."""

    def __init__(self, scorer: Scorer | None, config: AnsweringConfig | None = None,
                 embedder: Embedder | None = None, weights: SpanWeights | None = None) -> None:
        """``scorer``: the generator's scoring capability (``generation.scorer_of``);
        None ranks by the first stage's features alone."""
        self.scorer = scorer
        self.config = config or AnsweringConfig()
        self.embedder = embedder
        w = weights or shipped_weights()
        if self.config.pmi and w.pmi is not None:  # the second stage fitted with PMI
            w = w.pmi
        self.features, self.rescore, self.confidence = w.features, w.rescore, w.confidence
        threshold = self.config.abstain_below
        self.abstain_below = float(w.abstain_below if threshold is None else threshold)
        # Trained heads on the generator's state after each span, each feeding the
        # second stage the feature it is named by, when the weights use that feature
        # (eval/answering/lm_head.py and mlp_head.py fit them).
        self.heads: dict[str, StateHead] = {
            feature: StateHead.from_spec(w.heads[key]) for feature, key in HEADS.items()
            if feature in self.rescore.weights and key in w.heads}

    def read(self, question: str, passages: Sequence[Passage]) -> list[ReadSpan]:
        """The ranked spans in the reader's terms: ``probability`` is the confidence."""
        return [ReadSpan(s.candidate.evidence.passage, s.candidate.evidence.sentence,
                         s.candidate.start, s.candidate.end, s.candidate.text,
                         s.confidence, 0.0) for s in self.spans(question, passages)]

    def spans(self, question: str, passages: Sequence[Passage]) -> list[ScoredSpan]:
        """Candidate spans of ``passages`` for ``question``, best first."""
        return self.ranked(*self.rescore_features(question, passages))

    def ranked(self, kept: Sequence[Candidate], features: Sequence[dict[str, float]]
               ) -> list[ScoredSpan]:
        """``kept`` with their second-stage ``features``, scored, best first."""
        if not kept:
            return []
        scores = np.array([self.rescore.score(f) for f in features])
        shares = np.exp(scores - scores.max())
        shares /= shares.sum()
        out = [ScoredSpan(c, float(s), float(p),
                          _sigmoid(self.confidence.score(confidence_signals(c, f, float(p)))), f)
               for c, f, s, p in zip(kept, features, scores, shares, strict=True)]
        out.sort(key=lambda x: -x.score)
        return out

    def rescore_features(self, question: str, passages: Sequence[Passage]
                         ) -> tuple[list[Candidate], list[dict[str, float]]]:
        """The first stage's best candidates, each with the features the second stage
        scores: its first-stage score (relative to the best) and the generator's view."""
        kept, features = self.first_stage(question, passages)
        if kept and self.config.scored_candidates and self.scorer is not None:
            for f, lm in zip(features, self._likelihoods(question, kept), strict=True):
                f.update(lm)
        return kept, features

    def first_stage(self, question: str, passages: Sequence[Passage]
                    ) -> tuple[list[Candidate], list[dict[str, float]]]:
        """The best ``scored_candidates`` spans by features alone, each with its
        features and its score relative to the best (``first_stage``)."""
        cfg = self.config
        dense = self._dense(question) if cfg.dense_sentences and self.embedder else None
        ranked = rank_sentences(question, passages, dense, cfg.dense_sentences)
        candidates = [c for e in ranked[:cfg.evidence_sentences]
                      for c in sentence_candidates(question, e, cfg.max_span_words)]
        if not candidates:
            return [], []
        first = np.array([self.features.score(c.features) for c in candidates])
        order = np.argsort(-first, kind="stable")[:max(1, cfg.scored_candidates)]
        kept = [candidates[i] for i in order]
        # The second stage sees the span's own features too: it reweighs them among the
        # few kept spans, next to what the generator says (eval/answering/lm_head.py).
        return kept, [{**candidates[i].features, "first_stage": float(first[i] - first[order[0]])}
                      for i in order]

    def _dense(self, question: str) -> Callable[[list[str]], list[float]]:
        assert self.embedder is not None
        embedder = self.embedder

        def cosines(texts: list[str]) -> list[float]:
            vectors = embedder.embed([question, *texts])
            return [float(v) for v in vectors[1:] @ vectors[0]]

        return cosines

    def _likelihoods(self, question: str, kept: Sequence[Candidate]) -> list[dict[str, float]]:
        """The generator's view of each span as the whole answer, given the question and
        the sentences the spans come from: summed log-probability of its tokens, of the
        answer ending right after it, and of its first token; and, when the weights use
        them, how much more likely the question makes the span than ``NULL_QUESTION``."""
        pmi = any(k.startswith("pmi_") for k in self.rescore.weights)
        heads = self._readable_heads()
        layers = tuple(sorted({h.layer for h in heads.values()}))
        (asked, *null), states = self._span_scores(
            [question, NULL_QUESTION] if pmi else [question], kept, layers)
        out = [lm_features(lp, n) for lp, n, _ in asked]
        if heads and states[0] is not None:
            for feature, head in heads.items():
                scores = head.score(states[0][:, layers.index(head.layer)])
                for f, score in zip(out, scores, strict=True):
                    f[feature] = float(score)
        if null:
            for f, (lp, n, _) in zip(out, null[0], strict=True):
                f.update(pmi_features(f, lm_features(lp, n)))
        return out

    def _readable_heads(self) -> dict[str, StateHead]:
        """The heads that fit this generator: it exposes hidden states of the size they
        were trained on (the packaged model's). A head that does not fit is left out:
        the second stage scores without its feature, as one the answer lacks."""
        if not self.heads or self.scorer is None:
            return {}
        size = self.scorer.hidden_size()
        return {k: h for k, h in self.heads.items() if h.size == size}

    def span_logprobs(self, questions: Sequence[str], kept: Sequence[Candidate]
                      ) -> list[list[tuple[np.ndarray | None, int, list[int]]]]:
        """Per question, per candidate: the log-probability of each of its tokens, then of
        the end of the answer (``None`` for a candidate whose sentence is not among the
        ``scored_sentences`` the generator is shown); how many tokens are the span's
        own; the token ids scored. The context comes before the question in the prompt,
        so it runs through the generator once for all ``questions``."""
        return self._span_scores(questions, kept, ())[0]

    def span_states(self, question: str, kept: Sequence[Candidate], layers: Sequence[int]
                    ) -> tuple[list[tuple[np.ndarray | None, int, list[int]]], np.ndarray]:
        """``span_logprobs`` for one question, and the generator's hidden states after
        each span and the end of the answer: (len(kept), len(layers), hidden)."""
        scores, states = self._span_scores([question], kept, tuple(layers))
        assert states[0] is not None
        return scores[0], states[0]

    def _span_scores(self, questions: Sequence[str], kept: Sequence[Candidate],
                     layers: tuple[int, ...]
                     ) -> tuple[list[list[tuple[np.ndarray | None, int, list[int]]]],
                                list[np.ndarray | None]]:
        assert self.scorer is not None
        generator = self.scorer
        sentences: list[EvidenceSentence] = []
        for c in kept:
            if c.evidence not in sentences:
                sentences.append(c.evidence)
        shown = sentences[:self.config.scored_sentences]
        context = " ".join(e.sentence.text for e in
                           sorted(shown, key=lambda e: (e.passage, e.sentence.start)))
        states = generator.prefill_shared([
            generator.render(EXTRACT_INSTRUCTION, f"{context}\n\nQuestion: {q}")
            for q in questions])
        end = generator.end_of_answer_ids()
        out: list[list[tuple[np.ndarray | None, int, list[int]]]] = []
        hidden: list[np.ndarray | None] = []
        for state in states:
            ids = [generator.continuation_ids(state, c.text) + end for c in kept]
            # Scored together even when a sentence is not shown: one forward over the trie.
            if layers:
                logprobs, h = generator.continuation_states(state, ids, layers)
                hidden.append(h)
            else:
                logprobs = generator.continuation_logprobs(state, ids)
                hidden.append(None)
            out.append([(lp if c.evidence in shown else None, len(seq) - len(end), seq)
                        for c, lp, seq in zip(kept, logprobs, ids, strict=True)])
        return out, hidden


@dataclass(frozen=True)
class StateHead:
    """A small trained head on the generator's hidden state at ``layer``: ``linear``
    (the weights, then the bias) plus, when given, GELU units: ``hidden`` (units, size
    + 1: each unit's weights, then its bias) and ``out`` (each unit's weight, then the
    bias). Plain numbers, shipped as .npy or .npz and read without pickle."""

    layer: int
    linear: np.ndarray
    hidden: np.ndarray | None = None
    out: np.ndarray | None = None

    @property
    def size(self) -> int:
        return len(self.linear) - 1

    def score(self, states: np.ndarray) -> np.ndarray:
        """(n, size) states -> (n,) scores."""
        scores = states @ self.linear[:-1] + self.linear[-1]
        if self.hidden is not None and self.out is not None:
            u = states @ self.hidden[:, :-1].T + self.hidden[:, -1]
            # GELU, tanh form: what the head was trained with (eval/answering/mlp_head.py)
            g = 0.5 * u * (1 + np.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u ** 3)))
            scores = scores + g @ self.out[:-1] + self.out[-1]
        return np.asarray(scores, dtype=np.float32)

    @classmethod
    def from_spec(cls, spec: dict) -> StateHead:
        """From a weights file's entry: the numbers inline (``vector``: the linear
        weights; or ``linear``, ``hidden``, ``out``), or a file in ``ragmem/data/``
        (.npy: the linear weights; .npz: ``linear``, ``hidden``, ``out``)."""
        layer = int(spec["layer"])
        if "vector" in spec:
            return cls(layer, np.asarray(spec["vector"], dtype=np.float32))
        name = spec.get("file", "inline")
        arrays = spec if "linear" in spec else shipped_head(name)
        if not isinstance(arrays, dict):
            return cls(layer, arrays)
        try:
            linear, hidden, out = (np.asarray(arrays[k], dtype=np.float32)
                                   for k in ("linear", "hidden", "out"))
        except KeyError as error:
            raise RagmemError(f"the extractive answerer's head {name} lacks {error}; "
                              "reinstall ragmem") from error
        if linear.ndim != 1 or hidden.shape != (len(out) - 1, len(linear)):
            raise RagmemError(f"the extractive answerer's head {name} has arrays of "
                              f"mismatched shapes {linear.shape}, {hidden.shape}, "
                              f"{out.shape}; reinstall ragmem")
        return cls(layer, linear, hidden, out)


@cache
def shipped_head(name: str) -> np.ndarray | dict[str, np.ndarray]:
    """A head's weights shipped in ``ragmem/data/``, float32: .npy, the weights on the
    generator's hidden state, then the bias; .npz, named arrays (``StateHead``)."""
    path = resources.files("ragmem").joinpath(f"data/{name}")
    try:
        with path.open("rb") as f:
            loaded = np.load(f, allow_pickle=False)
            if isinstance(loaded, np.ndarray):
                return np.asarray(loaded, dtype=np.float32)
            with loaded:
                return {k: np.asarray(loaded[k], dtype=np.float32) for k in loaded.files}
    except (OSError, ValueError) as error:
        raise RagmemError(f"the extractive answerer's head {name} is missing or damaged "
                          f"({error}); reinstall ragmem") from error


def lm_features(logprobs: np.ndarray | None, n: int) -> dict[str, float]:
    """The rescoring features of one span from its token log-probabilities (``n`` of
    them the span's, the rest the end of the answer)."""
    if logprobs is None:  # not in the scored context: no generator signal
        return {"lm_missing": 1.0}
    return {"lm_tokens": float(logprobs[:n].sum()), "lm_end": float(logprobs[n:].sum()),
            "lm_first": float(logprobs[0]), "lm_length": n / 10.0}


def pmi_features(asked: dict[str, float], null: dict[str, float]) -> dict[str, float]:
    """The span's log-likelihood given the question minus given ``NULL_QUESTION``."""
    if "lm_tokens" not in asked or "lm_tokens" not in null:
        return {}
    return {"pmi_tokens": asked["lm_tokens"] - null["lm_tokens"],
            "pmi_end": asked["lm_end"] - null["lm_end"]}


def confidence_signals(candidate: Candidate, features: dict[str, float],
                       probability: float) -> dict[str, float]:
    """What the confidence model reads of a chosen span: how far it stands out among
    the rescored candidates, how well its sentence matches the question, and the
    generator's likelihoods."""
    e = candidate.evidence
    return {"probability": probability, "lexical": e.lexical, "dense": e.dense or 0.0,
            **{k: v for k, v in features.items() if k.startswith("lm_")}}


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x > -50 else 0.0
