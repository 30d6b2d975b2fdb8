"""A pure BM25 baseline on the same corpus texts the dense index holds (``bm25s``).

bm25s tokenises with its own regex, drops English stopwords, and stems with the
Snowball English stemmer when PyStemmer is installed (recorded in the report as
``stemmer``); scoring is bm25s' default (Lucene BM25, k1=1.5, b=0.75).
"""

from __future__ import annotations

import time
from typing import Any

from ragmem.config import Config
from ragmem.evaluation.datasets import RetrievalDataset, select
from ragmem.evaluation.harness import DOC_DEPTH, identical_note
from ragmem.evaluation.indexes import IndexInfo, Progress, beir_documents
from ragmem.evaluation.metrics import DEFAULT_KS, ranking, retrieval_metrics
from ragmem.evaluation.provenance import run_info
from ragmem.evaluation.report import ReportError
from ragmem.evaluation.sections import cost_section, dataset_info, latency_section, tick
from ragmem.types import Timings


def _stemmer() -> tuple[Any, str]:
    try:
        import Stemmer
    except ImportError:
        return None, "none (PyStemmer not installed)"
    return Stemmer.Stemmer("english"), "snowball-english (PyStemmer)"


def evaluate_bm25(
    dataset: RetrievalDataset, *, limit: int | None = None, sample: int | None = None,
    seed: int = 0, progress: Progress | None = None, command: str | None = None,
    ignore_identical_ids: bool = True,
) -> dict[str, Any]:
    """The retrieval report of :func:`~ragmem.evaluation.harness.evaluate_retrieval`, for BM25
    over whole documents (``title + "\\n\\n" + text``, exactly what ragmem indexes);
    ``ignore_identical_ids`` as there."""
    try:
        import bm25s
    except ImportError:
        raise ReportError("the BM25 baseline needs bm25s: pip install 'ragmem[eval]'") from None
    corpus_name = dataset.name.split("/")[0]
    documents = beir_documents(corpus_name, dataset.corpus)
    stem, stemmer = _stemmer()
    start = time.perf_counter()
    tokens = bm25s.tokenize([d.text for d in documents], stopwords="en", stemmer=stem,
                            show_progress=False)
    retriever = bm25s.BM25()
    retriever.index(tokens, show_progress=False)
    build_s = time.perf_counter() - start
    qids = select(list(dataset.queries), limit, sample, seed)
    k = min(DOC_DEPTH, len(documents))
    run, timings = {}, []
    for i, qid in enumerate(qids):
        t0 = time.perf_counter()
        query = bm25s.tokenize([dataset.queries[qid]], stopwords="en", stemmer=stem,
                               show_progress=False)
        own = ignore_identical_ids and qid in dataset.corpus  # then one more: its own
        found, scores = retriever.retrieve(query, k=min(k + own, len(documents)),
                                           show_progress=False)
        timings.append(Timings(retrieve_s=time.perf_counter() - t0))
        ranked = [(documents[int(j)].doc_id, float(s))
                  for j, s in zip(found[0], scores[0], strict=True)]
        if ignore_identical_ids:
            ranked = [(doc_id, s) for doc_id, s in ranked if doc_id != qid]
        run[qid] = dict(ranked[:DOC_DEPTH])
        tick(progress, "retrieve", i + 1, len(qids))
    qrels = {qid: dataset.qrels[qid] for qid in qids}
    index = IndexInfo("(in memory)", True, len(documents), len(documents), build_s)
    return {
        "kind": "retrieval",
        "system": "bm25s",
        "name": f"bm25s on {dataset.name}",
        "dataset": dataset_info(dataset.name, dataset.sha256, len(qids), limit, sample, seed,
                                 documents=len(documents)),
        "run": run_info(Config(), command, {}) | {
            "baseline": {"bm25s": bm25s.__version__, "stopwords": "en", "stemmer": stemmer,
                         "method": retriever.method, "k1": retriever.k1, "b": retriever.b}},
        "index": {"path": index.path, "built": True, "build_s": round(build_s, 3),
                  "documents": len(documents)},
        "metrics": {
            "retrieval": retrieval_metrics(run, qrels, DEFAULT_KS),
            "latency": latency_section(timings, ("retrieve",)),
            "cost": cost_section(index, len(timings), timings),
        },
        "notes": identical_note(sum(q in dataset.corpus for q in qids), ignore_identical_ids),
        "questions": [{"qid": q, "top10": ranking(run[q])[:10]} for q in qids],
    }
