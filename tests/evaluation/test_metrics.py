"""Metrics on hand-computed cases, and agreement with ranx on seeded random runs."""

from __future__ import annotations

import math
import random
import warnings

import numpy as np
import pytest

from ragmem.evaluation.metrics import (
    answer_in_text,
    answer_scores,
    average_precision,
    char_exact_match,
    char_f1,
    contains_gold,
    doc_run_from_windows,
    evidence_recall_at_k,
    exact_match,
    latency_metrics,
    mixed_segmentation,
    ndcg_at_k,
    normalize_answer,
    percentile,
    ranking,
    reciprocal_rank,
    retrieval_metrics,
    retrieval_metrics_per_query,
    span_hit,
    token_f1,
)
from ragmem.types import Citation, Hit, Timings


def hit(doc_id: str, score: float, start: int = 0, end: int = 10) -> Hit:
    return Hit(
        window_id=0, doc_id=doc_id, score=score, first=0, last=0, start=start, end=end, text=""
    )


# Retrieval, by hand ---------------------------------------------------------------


def test_ties_are_broken_by_doc_id_descending_like_trec_eval():
    assert ranking({"a": 1.0, "b": 2.0, "c": 1.0}) == ["b", "c", "a"]
    # Insertion order does not matter.
    assert ranking({"c": 1.0, "a": 1.0, "b": 2.0}) == ["b", "c", "a"]


def test_hand_computed_query():
    run = {"q": {"d1": 0.9, "d2": 0.8, "d3": 0.7, "d4": 0.6}}
    qrels = {"q": {"d2": 1, "d4": 2, "d9": 1}}
    m = retrieval_metrics(run, qrels, ks=(1, 2, 4))
    assert m["recall@1"] == 0.0
    assert m["recall@2"] == pytest.approx(1 / 3)
    assert m["recall@4"] == pytest.approx(2 / 3)
    assert m["mrr@10"] == 0.5
    # AP divides by all 3 relevant docs: (1/2 + 2/4) / 3
    assert m["map@100"] == pytest.approx((0.5 + 0.5) / 3)
    dcg = 1 / math.log2(3) + 2 / math.log2(5)
    idcg = 2 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["ndcg@10"] == pytest.approx(dcg / idcg)


def test_ideal_dcg_counts_relevant_docs_that_were_not_retrieved():
    # Only one of three relevant docs is found, at rank 1. An ideal DCG built from the
    # retrieved docs alone would give 1.0; the right figure is 1 / IDCG(3 relevant).
    qrels = {"q": {"a": 1, "b": 1, "c": 1}}
    run = {"q": {"a": 1.0, "x": 0.5}}
    expected = 1 / (1 + 1 / math.log2(3) + 1 / math.log2(4))
    assert ndcg_at_k(ranking(run["q"]), qrels["q"], 10) == pytest.approx(expected)
    assert retrieval_metrics(run, qrels)["ndcg@10"] == pytest.approx(0.4692787)


def test_windows_of_one_document_count_once_at_their_best_rank():
    hits = {"q": [hit("a", 0.9), hit("a", 0.8), hit("b", 0.7), hit("a", 0.95)]}
    run = doc_run_from_windows(hits)
    assert run == {"q": {"a": 0.95, "b": 0.7}}
    qrels = {"q": {"b": 1}}
    m = retrieval_metrics(run, qrels, ks=(1, 2))
    # Counting windows, b would sit at rank 4 (RR 1/4, recall@2 0).
    assert m["mrr@10"] == 0.5
    assert m["recall@2"] == 1.0
    assert m["map@100"] == 0.5


def test_queries_missing_from_run_score_zero_and_unjudged_ones_are_skipped():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 0}}
    run = {"q1": {"a": 1.0}, "q4": {"a": 1.0}}
    per_query = retrieval_metrics_per_query(run, qrels)
    assert set(per_query) == {"q1", "q2"}
    assert retrieval_metrics(run, qrels)["recall@1"] == 0.5
    with pytest.raises(ValueError, match="nothing to score"):
        retrieval_metrics(run, {"q": {"a": 0}})


def test_cutoffs_beyond_the_run_length():
    ranked = ["a", "b"]
    assert reciprocal_rank(ranked, {"b": 1}, 1) == 0.0
    assert average_precision(ranked, {"b": 1, "z": 1}, 100) == pytest.approx(0.25)


def test_nan_scores_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        doc_run_from_windows({"q": [hit("a", float("nan"))]})


# Agreement with ranx ----------------------------------------------------------------


def random_case(seed: int, n_queries: int = 120, ties: bool = True):
    rng = random.Random(seed)
    pool = [f"doc{i}" for i in range(60)]
    hits, qrels = {}, {}
    for q in range(n_queries):
        qid = f"q{q}"
        relevant = rng.sample(pool, rng.randint(1, 8))
        qrels[qid] = {d: rng.choice([1, 1, 2, 3]) for d in relevant}
        qrels[qid][rng.choice(pool)] = 0  # judged non-relevant (or overriding one)
        if not any(g > 0 for g in qrels[qid].values()):
            qrels[qid][relevant[0]] = 1
        if rng.random() < 0.05:
            continue  # nothing retrieved for this query
        # Window hits: many windows per doc, scores coarse enough to tie.
        windows = [rng.choice(pool) for _ in range(rng.randint(1, 150))]
        scale = 10 if ties else 1e9
        hits[qid] = [hit(d, round(rng.random() * scale) / scale) for d in windows]
    return doc_run_from_windows(hits), qrels


RANX_NAMES = ["recall@1", "recall@5", "recall@10", "recall@100", "mrr@10", "ndcg@10", "map@100"]


def ranx_per_query(run, qrels):
    ranx = pytest.importorskip("ranx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba's uint64 -> int64 cast notice
        scores = ranx.evaluate(
            ranx.Qrels(qrels),
            ranx.Run(run),
            RANX_NAMES,
            return_mean=False,
            make_comparable=True,
            save_results_in_run=False,
        )
    qids = sorted(qrels)  # ranx sorts query ids
    return {
        name: dict(zip(qids, map(float, values), strict=True)) for name, values in scores.items()
    }


@pytest.mark.slow  # ranx compiles its metrics with numba on first use: ~50 s on 2 cores
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_ranx_with_ties_and_duplicate_windows(seed):
    run, qrels = random_case(seed)
    # ranx orders equal scores by insertion order (through numba's unstable argsort),
    # not by doc id, so hand it ranks: the metric arithmetic is what is compared.
    ranked_run = {
        q: {d: float(len(s) - i) for i, d in enumerate(ranking(s))} for q, s in run.items() if s
    }
    ours = retrieval_metrics_per_query(run, qrels)
    theirs = ranx_per_query(ranked_run, qrels)
    assert any(len(set(s.values())) < len(s) for s in run.values())  # ties did occur
    for name in RANX_NAMES:
        for qid in qrels:
            assert ours[qid][name] == pytest.approx(theirs[name][qid], abs=1e-6), (name, qid)


@pytest.mark.slow
def test_agrees_with_ranx_on_raw_scores_without_ties():
    run, qrels = random_case(7, ties=False)
    run = {q: s for q, s in run.items() if s}
    ours = retrieval_metrics(run, qrels)
    theirs = ranx_per_query(run, qrels)
    for name in RANX_NAMES:
        assert ours[name] == pytest.approx(float(np.mean(list(theirs[name].values()))), abs=1e-6)


# Evidence ---------------------------------------------------------------------------


def test_span_hit_needs_the_whole_span_in_the_right_document():
    assert span_hit("d", 10, 50, "d", [(12, 20)])
    assert span_hit("d", 12, 20, "d", [(12, 20)])
    assert not span_hit("d", 10, 50, "d", [(45, 55)])
    assert not span_hit("e", 10, 50, "d", [(12, 20)])
    assert span_hit("e", 10, 50, None, [(12, 20)])
    assert not span_hit("d", 10, 50, "d", [])


def test_contains_gold_reads_hits_and_citations():
    hits = [hit("d", 0.9, 0, 10), hit("d", 0.8, 30, 60)]
    assert evidence_recall_at_k(hits, "d", [(40, 45)], 1) == 0.0
    assert evidence_recall_at_k(hits, "d", [(40, 45)], 2) == 1.0
    cited = [Citation(number=1, doc_id="d", path="p", start=38, end=50, quote="")]
    assert contains_gold(cited, "d", [(40, 45)])
    assert not contains_gold(cited, "d", [(30, 45)])


def test_answer_in_text_matches_whole_normalised_tokens():
    assert answer_in_text("It flows into the Blue River, quickly.", ["blue river"])
    assert not answer_in_text("A bluer river.", ["blue river"])
    assert not answer_in_text("anything", [""])


# Answers ----------------------------------------------------------------------------


def test_squad_normalisation():
    assert normalize_answer("The  Blue-River!") == "blueriver"
    assert normalize_answer("an apple, a pear and THE plum") == "apple pear and plum"


def test_exact_match_and_f1_take_the_max_over_gold_answers():
    golds = ["the Blue River", "Blue River", "river"]
    assert exact_match("Blue river.", golds) == 1.0
    assert exact_match("Blue", golds) == 0.0
    assert token_f1("blue river today", ["the Blue River"]) == pytest.approx(0.8)
    assert token_f1("river river", golds) == pytest.approx(2 / 3)  # vs "river": p 1/2, r 1
    assert token_f1("nothing here", golds) == 0.0


def test_no_gold_answer_rewards_abstaining():
    assert exact_match("", []) == 1.0
    assert token_f1("", []) == 1.0
    assert exact_match("Ada", []) == 0.0
    assert token_f1("Ada", []) == 0.0
    assert token_f1("", ["Ada"]) == 0.0


# Cost -------------------------------------------------------------------------------


@pytest.mark.parametrize("values", [[1.0], [1.0, 2.0, 3.0, 4.0], [0.3, 5.0, 0.1, 9.9, 2.2, 2.2]])
def test_percentiles_match_numpy(values):
    for q in (0, 50, 95, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_latency_metrics_read_timings():
    timings = [Timings(0.1, 0.01, 1.0), Timings(0.3, 0.03, 3.0)]
    m = latency_metrics(timings)
    assert m["retrieve_p50_s"] == pytest.approx(0.2)
    assert m["generate_p95_s"] == pytest.approx(2.9)
    assert m["total_p50_s"] == pytest.approx(2.22)
    with pytest.raises(ValueError):
        latency_metrics([])


# CMRC 2018 (character level) ---------------------------------------------------------


def test_mixed_segmentation_splits_han_characters_and_keeps_latin_words():
    assert mixed_segmentation("《战国无双3》由KOEI开发，2009年") == [
        "战", "国", "无", "双", "3", "由", "koei", "开", "发", "2009", "年"]
    # the script drops a mark before it splits, so the two halves join
    assert mixed_segmentation("ω-Force") == ["ωforce"]


def test_char_exact_match_ignores_cmrc_punctuation_and_case():
    assert char_exact_match("《光荣》", ["光荣"]) == 1.0
    assert char_exact_match("KOEI", ["koei"]) == 1.0
    assert char_exact_match("光荣和", ["光荣", "和光"]) == 0.0


def test_char_f1_is_the_longest_common_substring_not_a_bag():
    # 4 predicted tokens, 4 gold ones (光 荣 和 ωforce), "光荣" in common: P = R = 1/2
    assert char_f1("光荣公司", ["光荣和ω-force"]) == pytest.approx(0.5)
    # the same characters in another order share only runs of 1: a bag would say 1.0
    assert char_f1("荣光", ["光荣"]) == pytest.approx(0.5)
    assert char_f1("无关", ["光荣"]) == 0.0
    assert char_f1("", ["光荣"]) == 0.0
    # max over the references
    assert char_f1("长城", ["万里长城", "长城"]) == 1.0


def test_answer_scores_choose_the_metric_by_the_question_language():
    # A Chinese question: characters (CMRC); an English one: words (SQuAD).
    # the longest common run is "两万" (or "公里"): P = 2/4, R = 2/6
    assert answer_scores("长城有多长？", "两万公里", ["两万一千公里"]) == pytest.approx(
        (0.0, 2 * (2 / 4 * 2 / 6) / (2 / 4 + 2 / 6)))
    assert answer_scores("How long?", "twenty thousand km", ["21 thousand km"]) == \
        pytest.approx((0.0, 2 * (2 / 3 * 2 / 3) / (4 / 3)))
    assert answer_scores("什么？", "", []) == (1.0, 1.0)
