"""Run the pipeline over a dataset and measure it: retrieval, long-document QA, multiple choice.

Each ``evaluate_*`` indexes the dataset through the real API (cached, see
:mod:`ragmem.evaluation.indexes`), asks every selected question, and returns a report
dict (see :mod:`ragmem.evaluation.report`) with the metrics, the per-question records,
and what is needed to reproduce it. Quality numbers are deterministic: questions are
selected by file order or a seeded sample, and decoding is greedy.

    >>> data = load_beir("../shared/datasets/scifact", "test")        # doctest: +SKIP
    >>> report = evaluate_retrieval(data, Config(), limit=50)          # doctest: +SKIP
    >>> report["metrics"]["retrieval"]["ndcg@10"]                     # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ragmem.chinese import cuts_word, has_cjk
from ragmem.config import Config
from ragmem.errors import ModelError
from ragmem.evaluation.datasets import (
    DatasetError,
    MCDataset,
    QADataset,
    QAExample,
    RetrievalDataset,
    select,
)
from ragmem.evaluation.indexes import IndexInfo, Progress, beir_documents, open_index
from ragmem.evaluation.metrics import (
    DEFAULT_KS,
    answer_in_text,
    answer_scores,
    contains_gold,
    doc_run_from_windows,
    normalize_answer,
    ranking,
    retrieval_metrics,
)
from ragmem.evaluation.provenance import run_info
from ragmem.evaluation.sections import (
    answers_section,
    cost_section,
    dataset_info,
    latency_section,
    mean,
    short_note,
    tick,
    working_memory_section,
)
from ragmem.generation import scorer_of
from ragmem.types import Answer, Filter, Timings
from ragmem.working_memory import WorkingMemory

if TYPE_CHECKING:
    from ragmem.assistant import Assistant
    from ragmem.embedding import Embedder
    from ragmem.generation import Generator

DOC_DEPTH = 100  # documents ranked per query: enough for recall@100 and map@100
WINDOW_FETCH = 300  # windows fetched to find DOC_DEPTH distinct documents
QUERY_BATCH = 64  # questions embedded together by evaluate_retrieval
ARTICLE_KS = (1, 5)  # the right article among the first k retrieved documents
BUDGETS = (512, 1024, 2048)  # working-memory token budgets of the answer-in-context curve
ABSTAIN = ("dont know", "do not know", "cannot answer", "not contain")  # normalised phrases


def evaluate_retrieval(
    dataset: RetrievalDataset, config: Config | None = None, *, limit: int | None = None,
    sample: int | None = None, seed: int = 0, window_fetch: int = WINDOW_FETCH,
    rebuild: bool = False, embedder: Embedder | None = None, progress: Progress | None = None,
    command: str | None = None, ignore_identical_ids: bool = True,
) -> dict[str, Any]:
    """Document-level recall@k, MRR@10, nDCG@10, MAP@100 of the default retriever.

    Windows are collapsed to their documents (best score per document); when the
    ``window_fetch`` windows hold fewer than 100 distinct documents, the count of such
    queries is reported, because recall@100 then undercounts.

    With ``ignore_identical_ids`` (the default, as BEIR and MTEB score), a document
    whose id is the query's own id is never ranked: in sets such as ArguAna the queries
    are themselves corpus documents, and finding a query's own text is no hit.

    Questions are embedded ``QUERY_BATCH`` at a time (``Retriever.retrieve_many``, the
    same rankings as one at a time); each question's latency is its batch's time
    divided by the batch size.
    """
    config = config if config is not None else Config().with_env()
    qids = select(list(dataset.queries), limit, sample, seed)
    corpus_name = dataset.name.split("/")[0]
    assistant, index = open_index(corpus_name, beir_documents(corpus_name, dataset.corpus),
                                  config, rebuild=rebuild, embedder=embedder, progress=progress)
    with assistant:
        run, timings, short = {}, [], 0
        for first in range(0, len(qids), QUERY_BATCH):
            batch = qids[first:first + QUERY_BATCH]
            start = time.perf_counter()
            found = assistant.retrieve_many([dataset.queries[q] for q in batch],
                                            top_k=window_fetch)
            each = (time.perf_counter() - start) / len(batch)
            for qid, hits in zip(batch, found, strict=True):
                timings.append(Timings(retrieve_s=each))
                best = doc_run_from_windows({qid: hits})[qid]
                if ignore_identical_ids:
                    best.pop(qid, None)
                ranked = ranking(best)  # trec_eval's order, ties included, as metrics see it
                available = len(dataset.corpus) - (ignore_identical_ids and qid in dataset.corpus)
                short += len(ranked) < min(DOC_DEPTH, available)
                run[qid] = {doc_id: best[doc_id] for doc_id in ranked[:DOC_DEPTH]}
            tick(progress, "retrieve", len(run), len(qids))
        models = {"embedder": assistant.embedder.model_id}
    qrels = {qid: dataset.qrels[qid] for qid in qids}
    return {
        "kind": "retrieval",
        "system": f"ragmem ({models['embedder']}, {config.retrieval.mode} retrieval)",
        "name": f"ragmem ({models['embedder']}, {config.retrieval.mode}) on {dataset.name}",
        "dataset": dataset_info(dataset.name, dataset.sha256, len(qids), limit, sample, seed,
                                 documents=len(dataset.corpus)),
        "run": run_info(config, command, models),
        "index": index.to_dict(),
        "metrics": {
            "retrieval": retrieval_metrics(run, qrels, DEFAULT_KS),
            "latency": latency_section(timings, ("retrieve",)),
            "cost": cost_section(index, len(timings), timings),
        },
        "notes": short_note(short, window_fetch, DOC_DEPTH)
        + identical_note(sum(q in dataset.corpus for q in qids), ignore_identical_ids),
        "config": config.to_dict(),
        "questions": [{"qid": q, "top10": list(run[q])[:10]} for q in qids],
    }


def evaluate_qa(
    dataset: QADataset, config: Config | None = None, *, limit: int | None = None,
    sample: int | None = None, seed: int = 0, generate: bool = True,
    budgets: Sequence[int] = BUDGETS, assistant: Assistant | None = None, rebuild: bool = False,
    embedder: Embedder | None = None, generator: Generator | None = None,
    progress: Progress | None = None, command: str | None = None, absent: bool = False,
) -> dict[str, Any]:
    """Evidence recall@k, answer-in-context (and its curve over ``budgets``), token use,
    and with ``generate``: SQuAD EM / F1, gold in answer, citation accuracy (the cited
    passage holds the gold; the cited span overlaps it), abstention.

    ``absent``: each question is asked with its own document filtered out of the
    search, so nothing retrieved can answer it: the report's ``abstained_absent`` is how
    often the answer says so, ``false_answers_absent`` how often it answers anyway.

    The dataset's documents are indexed under ``indexes/eval-...``; a dataset without
    documents (plain QA JSONL) needs an ``assistant`` over an existing index.
    """
    config = config if config is not None else Config().with_env()
    examples = select(dataset.examples, limit, sample, seed)
    index: IndexInfo | None = None
    if assistant is None:
        if not dataset.documents:
            raise DatasetError(f"{dataset.name} has no documents to index; evaluate it "
                               "against an existing index (pass assistant=Assistant.open(NAME))")
        assistant, index = open_index(dataset.name, dataset.documents, config,
                                      rebuild=rebuild, embedder=embedder,
                                      generator=generator, progress=progress)
    by_budget = {b: WorkingMemory(assistant.generator,
                                  replace(config.working_memory, token_budget=b))
                 for b in budgets}
    # Assistant.ask's pipeline, asked for a deeper list so each question is retrieved
    # once: its first top_k windows make the passages (the windows ask() finds), the
    # deeper list serves evidence@k.
    pipeline = assistant.pipeline
    depth = max(*DEFAULT_KS, assistant.config.retrieval.top_k)
    records, timings = [], []
    with assistant:
        doc_ids = ([d.doc_id for d in dataset.documents] if dataset.documents else
                   [d.doc_id for d in assistant.memory.documents()]) if absent else []
        for i, ex in enumerate(examples):
            where = Filter(doc_ids=tuple(d for d in doc_ids if d != ex.doc_id)) \
                if absent else None
            filled = pipeline.fill(ex.question, where=where, depth=depth)
            hits, passages, buffer, t = filled.hits, filled.passages, filled.buffer, \
                filled.timings
            question = buffer.question
            record: dict[str, Any] = {"qid": ex.qid, "question": ex.question}
            record |= {f"evidence@{k}": _found(hits[:k], ex) for k in DEFAULT_KS}
            record |= {f"article@{k}": _article_in(hits, ex, k) for k in ARTICLE_KS}
            record["budgets"] = {b: _found(wm.fill(question, passages).passages, ex)
                                 for b, wm in by_budget.items()}
            if generate:
                answer = pipeline.answer(filled)
                t = answer.timings
                record |= _answer_scores(answer, ex)
            record |= {"answer_in_context": _found(buffer.passages, ex),
                       "tokens_used": buffer.tokens_used, "token_budget": buffer.token_budget,
                       "dropped": len(buffer.dropped), "timings": vars(t)}
            records.append(record)
            timings.append(t)
            tick(progress, "ask" if generate else "prepare", i + 1, len(examples))
        models = {"embedder": assistant.embedder.model_id,
                  "generator": assistant.generator.model_id}
        documents = len(dataset.documents) or assistant.memory.counts()["documents"]
    stages = ("retrieve", "fill", "generate") if generate else ("retrieve", "fill")
    metrics: dict[str, Any] = {
        "evidence": {f"evidence_recall@{k}": mean(records, f"evidence@{k}")
                     for k in DEFAULT_KS}
        | {f"article@{k}": mean(records, f"article@{k}") for k in ARTICLE_KS},
        "working_memory": working_memory_section(records),
    }
    if generate and absent:
        abstained = mean(records, "abstained")
        metrics["answers"] = {"abstained_absent": abstained,
                              "false_answers_absent": 1.0 - abstained}
    elif generate:
        metrics["answers"] = answers_section(records, examples)
    metrics |= {"latency": latency_section(timings, stages),
                "cost": cost_section(index, len(timings), timings)}
    return {
        "kind": "qa",
        "system": f"ragmem ({models['embedder']} + {models['generator']})",
        "name": f"ragmem ({models['embedder']} + {models['generator']}) on {dataset.name}",
        "dataset": dataset_info(dataset.name, dataset.sha256, len(examples), limit, sample,
                                 seed, documents=documents)
        | {"relocated_answers": dataset.relocated_answers,
           "dropped_answers": dataset.dropped_answers,
           "skipped_questions": dataset.skipped_questions},
        "run": run_info(config, command, models),
        "index": index.to_dict() if index else {"path": str(assistant.memory.directory)},
        "metrics": metrics,
        "notes": dataset.notes(),
        "curves": {"answer_in_context_vs_budget": [
            {"token_budget": b, "answer_in_context": mean(
                [{"x": r["budgets"][b]} for r in records], "x")} for b in budgets]},
        "config": config.to_dict(),
        "questions": records,
    }


def evaluate_mc(
    dataset: MCDataset, config: Config | None = None, *, limit: int | None = None,
    sample: int | None = None, seed: int = 0, rebuild: bool = False,
    embedder: Embedder | None = None, generator: Generator | None = None,
    progress: Progress | None = None, command: str | None = None,
) -> dict[str, Any]:
    """Accuracy of picking the option the generator finds most likely after the filled
    working memory (retrieval restricted to the question's own document).

    Each option is scored as ``"(A) option text"``: the summed log-likelihood, so the
    letter counts too; no free text is parsed.
    """
    config = config if config is not None else Config().with_env()
    examples = select(dataset.examples, limit, sample, seed)
    assistant, index = open_index(dataset.name, dataset.documents, config, rebuild=rebuild,
                                  embedder=embedder, generator=generator, progress=progress)
    scorer = scorer_of(assistant.generator)
    if scorer is None:
        assistant.close()
        raise ModelError(f"multiple choice scores each option with the generator, and "
                         f"{assistant.generator.model_id} cannot score text; use a "
                         "transformers or llama.cpp generator")
    records, timings = [], []
    with assistant:
        for i, ex in enumerate(examples):
            letters = [chr(ord("A") + k) for k in range(len(ex.options))]
            options = [f"({letter}) {text}" for letter, text in zip(letters, ex.options,
                                                                     strict=True)]
            question = "\n".join([ex.question, *options])
            filled = assistant.pipeline.fill(question, where=Filter(doc_ids=(ex.doc_id,)),
                                             query=ex.question)
            t2 = time.perf_counter()
            scores = scorer.score_options(filled.buffer.prompt, options)
            t = replace(filled.timings, generate_s=time.perf_counter() - t2)
            pick = max(range(len(scores)), key=lambda k: (scores[k], -k))
            records.append({"qid": ex.qid, "gold": letters[ex.gold], "pick": letters[pick],
                            "correct": pick == ex.gold, "scores": scores,
                            "tokens_used": filled.buffer.tokens_used,
                            "token_budget": filled.buffer.token_budget,
                            "dropped": len(filled.buffer.dropped), "timings": vars(t)})
            timings.append(t)
            tick(progress, "score", i + 1, len(examples))
        models = {"embedder": assistant.embedder.model_id,
                  "generator": assistant.generator.model_id}
    return {
        "kind": "mc",
        "system": f"ragmem ({models['embedder']} + {models['generator']})",
        "name": f"ragmem ({models['embedder']} + {models['generator']}) on {dataset.name}",
        "dataset": dataset_info(dataset.name, dataset.sha256, len(examples), limit, sample,
                                 seed, documents=len(dataset.documents)),
        "run": run_info(config, command, models),
        "index": index.to_dict(),
        "metrics": {
            "answers": {"accuracy": mean(records, "correct"),
                        "chance": mean([{"x": 1 / len(e.options)} for e in examples], "x")},
            "working_memory": working_memory_section(records),
            "latency": latency_section(timings, ("retrieve", "fill", "generate")),
            "cost": cost_section(index, len(timings), timings),
        },
        "config": config.to_dict(),
        "questions": records,
    }


def identical_note(n: int, ignored: bool) -> list[str]:
    if not n:
        return []
    if ignored:
        return [f"{n} queries share their id with a corpus document; that document is not "
                "ranked for them (ignore_identical_ids, as BEIR and MTEB score)"]
    return [f"{n} queries share their id with a corpus document, ranked like any other "
            "(identical ids kept)"]


# Per-question scoring ---------------------------------------------------------------


def _found(located: Sequence[Any], ex: QAExample) -> bool:
    """Whether a gold span lies inside one of the hits/passages (answer text if no spans)."""
    if ex.is_impossible:
        return False
    if ex.spans:
        return contains_gold(located, ex.doc_id, ex.spans)
    return any(answer_in_text(x.text, ex.answers) for x in located)


def _article_in(hits: Sequence[Any], ex: QAExample, k: int) -> bool:
    """Whether the question's own document is among the first ``k`` distinct documents
    of the retrieved windows (the right article at k)."""
    docs: list[str] = []
    for h in hits:
        if h.doc_id not in docs:
            docs.append(h.doc_id)
    return ex.doc_id is not None and ex.doc_id in docs[:k]


def abstains(text: str) -> bool:
    """The answer says the passages do not answer: ``"I don't know."`` -> True."""
    norm = normalize_answer(text)
    return not norm or any(phrase in norm for phrase in ABSTAIN)


def _cuts_word(answer: Answer, abstained: bool) -> bool:
    """Whether the answer's span starts or ends inside a Chinese word of its sentence
    (jieba's words, ``ragmem.chinese``)."""
    if abstained or not answer.citations or not has_cjk(answer.text):
        return False
    c = answer.citations[0]
    if not 1 <= c.number <= len(answer.passages):
        return False
    for s in answer.passages[c.number - 1].sentences:
        if s.start <= c.start and c.end <= s.end:
            return cuts_word(s.text, c.start - s.start, c.end - s.start)
    return False


def _answer_scores(answer: Answer, ex: QAExample) -> dict[str, Any]:
    # An abstaining answer counts as the empty answer, as SQuAD v2.0 scores "no answer".
    abstained = answer.abstained or abstains(answer.text)
    prediction = "" if abstained else answer.text
    em, f1 = answer_scores(ex.question, prediction, ex.references or ex.answers)
    passages = answer.passages
    cited = [passages[c.number - 1] for c in answer.citations
             if 1 <= c.number <= len(passages)]
    return {"answer": answer.text, "golds": list(ex.references or ex.answers),
            "abstained": abstained,
            "mode": answer.mode, "confidence": answer.confidence,
            "em": em, "f1": f1, "cuts_word": _cuts_word(answer, abstained),
            "gold_in_answer": bool(prediction) and answer_in_text(prediction, ex.answers),
            "citation_correct": _found(cited, ex) if cited else False,
            # Stricter: the cited characters themselves overlap a gold answer's offsets.
            "citation_span_correct": bool(ex.spans) and any(
                c.doc_id == ex.doc_id and any(c.start < e and s < c.end for s, e in ex.spans)
                for c in answer.citations)}
