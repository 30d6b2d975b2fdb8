"""The span ranker's retrain command, run on a tiny SQuAD file with fakes that implement
the real interfaces: the embedder hashes words, the scorer counts them and shows a
hidden state made of the span's tokens."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ragmem.config import Config
from ragmem.errors import RagmemError
from ragmem.generation import PromptState
from ragmem.generation.token_trie import TokenTrie
from ragmem.span_ranking import HEADS, StateHead
from ragmem.span_weights import SpanWeights
from ragmem.training.span_ranker import (
    LINEAR_HEAD,
    MLP_HEAD,
    WEIGHTS,
    Settings,
    load_written,
    retrain,
)
from ragmem.training.span_ranker_data import read_scored
from ragmem.training.span_ranker_fit import choose_threshold, out_of_fold
from tests.conftest import KeywordEmbedder, WordCountScorer

PEOPLE = [("Alice Moreau", "Lyon", "1901", "three", "Marseille"),
          ("Bruno Keller", "Zurich", "1874", "seven", "Geneva"),
          ("Carla Ruiz", "Seville", "1932", "twelve", "Madrid"),
          ("Dmitri Volkov", "Kazan", "1888", "eleven", "Moscow"),
          ("Elena Rossi", "Turin", "1915", "four", "Naples"),
          ("Farid Haddad", "Beirut", "1950", "nine", "Cairo"),
          ("Greta Lind", "Uppsala", "1899", "twenty", "Stockholm")]
TINY = Settings(skip=3, questions=14, feature_questions=10, absent=5, pmi_questions=4,
                layer=1, mlp_units=2, epochs=40, confidence_epochs=200, folds=2)


def squad_file(path: Path) -> Path:
    """One article a person, three questions each (where, when, how many)."""
    articles = []
    for k, (name, city, year, count, later) in enumerate(PEOPLE):
        context = (f"{name} was born in {city} in {year}. Later {name.split()[0]} moved to "
                   f"{later} and opened a bakery there. Over the years {name.split()[0]} "
                   f"wrote {count} novels about the sea.")
        asked = [(f"Where was {name} born?", city), (f"When was {name} born?", year),
                 (f"How many novels did {name} write?", count)]
        qas = [{"id": f"q{k}-{j}", "question": q,
                "answers": [{"text": a, "answer_start": context.index(a)}]}
               for j, (q, a) in enumerate(asked)]
        articles.append({"title": name, "paragraphs": [{"context": context, "qas": qas}]})
    path.write_text(json.dumps({"version": "1.1", "data": articles}), encoding="utf-8")
    return path


class StateScorer(WordCountScorer):
    """``WordCountScorer`` with hidden states: after a trie path, a bag of its token ids
    folded into 8 numbers, the same at every layer."""

    model_id = "state-test"

    def __init__(self) -> None:
        super().__init__()
        self.forwards = 0

    def hidden_size(self) -> int | None:
        return 8

    def end_of_answer_ids(self) -> list[int]:
        return [0]

    def _node_forward(self, state: PromptState, trie: TokenTrie, nodes: Sequence[int],
                      layers: tuple[int, ...], at: Sequence[int]
                      ) -> tuple[np.ndarray, np.ndarray]:
        self.forwards += 1
        states = np.zeros((len(at), len(layers), 8), dtype=np.float32)
        for i, node in enumerate(at):
            while node >= 0:
                states[i, :, trie.tokens[node] % 8] += 1.0
                node = trie.parents[node]
        return self._node_logprobs(state, trie, nodes), states


def run(root: Path, out: str, scorer: StateScorer, settings: Settings = TINY) -> SpanWeights:
    """The retrain command on the tiny file, into ``root/out``, its work in ``root/work``."""
    squad = root / "dev.json"
    if not squad.is_file():
        squad_file(squad)
    return retrain(squad, root / out, root / "work", settings, Config(),
                   embedder=KeywordEmbedder(), generator=scorer, command="test")


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """The fits here are tiny: a second thread only waits for the first."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, SpanWeights]]:
    """One retrain for the module (torch on one thread: the fits are tiny)."""
    root = tmp_path_factory.mktemp("span-ranker")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAGMEM_HOME", str(root / "indexes"))
        scorer = StateScorer()
        try:
            weights = run(root, "out", scorer)
        finally:
            torch.set_num_threads(threads)
    assert scorer.forwards > 0
    yield root, weights


def test_retrain_writes_the_three_files_and_they_load_as_the_answerer_loads_them(
        trained: tuple[Path, SpanWeights]) -> None:
    root, weights = trained
    out = root / "out"
    assert sorted(p.name for p in out.iterdir()) == sorted([WEIGHTS, LINEAR_HEAD, MLP_HEAD])
    data = json.loads((out / WEIGHTS).read_text("utf-8"))
    assert SpanWeights.from_dict(data) == weights  # through ragmem/span_weights.py
    assert weights.features.weights and weights.pmi is not None
    assert {"first_stage", *HEADS} <= set(weights.rescore.weights)
    assert any(k.startswith("pmi_") for k in weights.pmi.rescore.weights)
    assert 0.0 <= weights.abstain_below < 1.0
    assert weights.trained["command"] == "test"
    assert weights.trained["settings"]["questions"] == TINY.questions
    with np.load(out / MLP_HEAD, allow_pickle=False) as mlp:
        head = StateHead(TINY.layer, mlp["linear"], mlp["hidden"], mlp["out"])
        assert mlp["hidden"].shape == (TINY.mlp_units, 9)
    assert head.size == 8 == weights.heads[HEADS["mlp_head"]]["size"]
    assert np.load(out / LINEAR_HEAD, allow_pickle=False).shape == (9,)


def test_a_rerun_reads_the_generator_scores_back_and_writes_the_same_weights(
        trained: tuple[Path, SpanWeights], monkeypatch: pytest.MonkeyPatch) -> None:
    root, _ = trained
    monkeypatch.setenv("RAGMEM_HOME", str(root / "indexes"))
    scorer = StateScorer()
    run(root, "again", scorer)
    assert scorer.forwards == 0  # the work folder's .npz parts, not the generator
    for name in (LINEAR_HEAD, MLP_HEAD):
        assert (root / "out" / name).read_bytes() == (root / "again" / name).read_bytes()
    first, second = (json.loads((root / d / WEIGHTS).read_text("utf-8"))
                     for d in ("out", "again"))
    for d in (first, second):
        del d["trained"]["seconds"]
    assert first == second


def test_written_weights_naming_an_unknown_feature_are_refused_in_one_line(
        trained: tuple[Path, SpanWeights], tmp_path: Path) -> None:
    root, _ = trained
    shutil.copytree(root / "out", tmp_path / "out")
    path = tmp_path / "out" / WEIGHTS
    data = json.loads(path.read_text("utf-8"))
    data["rescore"]["weights"]["renamed_feature"] = 1.0
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(RagmemError, match="renamed_feature") as error:
        load_written(tmp_path / "out")
    assert "\n" not in str(error.value)


def test_too_few_questions_after_the_test_part_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(RagmemError, match="--questions"):
        run(tmp_path, "out", StateScorer(), replace(TINY, questions=100))


def test_out_of_fold_scores_each_question_with_a_head_fitted_without_it() -> None:
    group = np.repeat(np.arange(6), 3)
    states = np.arange(18, dtype=np.float32)[:, None]
    seen: list[set[int]] = []

    def fit_and_score(h: np.ndarray, y: np.ndarray, g: np.ndarray,
                      other: np.ndarray) -> np.ndarray:
        seen.append(set(g.tolist()))
        return other[:, 0] * 0 + len(seen)

    scores = out_of_fold(states, np.zeros(18, dtype=np.float32), group, 3, fit_and_score)
    for fold, trained_on in enumerate(seen):
        scored = set(group[scores == fold + 1].tolist())
        assert scored and not scored & trained_on
        assert scored | trained_on == set(range(6))


def test_the_threshold_is_the_highest_that_loses_at_most_the_allowed_f1() -> None:
    # answerable: right at 0.9 and 0.7, wrong at 0.3; absent: 0.5 and 0.1
    confidence = np.array([0.9, 0.7, 0.3, 0.5, 0.1])
    f1 = np.array([1.0, 1.0, 0.0, 0.0, 0.0])
    answerable = np.array([True, True, True, False, False])
    threshold, table = choose_threshold(confidence, f1, answerable, max_loss=0.0)
    assert threshold == 0.7  # above it the answer at 0.7 would be lost
    row = next(r for r in table if r["abstain_below"] == 0.7)
    assert row == {"abstain_below": 0.7, "f1_loss": 0.0, "abstain_absent": 1.0}


def test_the_heads_research_reruns_on_the_numbers_a_retrain_keeps(
        trained: tuple[Path, SpanWeights], tmp_path: Path) -> None:
    from eval.answering.heads import main as heads

    root, _ = trained
    heads(["--work", str(root / "work"), "--folds", "2", "--epochs", "20",
           "--out", str(tmp_path / "heads.json")])
    report = json.loads((tmp_path / "heads.json").read_text("utf-8"))
    scored = read_scored(root / "work" / "answerable")
    assert report["questions"] == len(np.unique(scored.group)) > 0
    results = report["results"]
    assert list(results) == ["no head", "+ linear head (lm_head)", "+ MLP head (mlp_head)",
                             "+ both (shipped)"]
    for arm in results.values():
        assert 0.0 <= arm["f1"] <= 1.0
        assert len(arm["per_question_f1"]) == report["questions"]
    assert results["no head"]["paired_gain"] == 0.0
