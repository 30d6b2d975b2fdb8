"""What ``eval.bench.index_throughput`` and ``eval.bench.embed_paths`` share: the BEIR
corpus, nDCG@10, the clock and the process's resources."""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

T0 = time.perf_counter()  # a path's clock starts before its imports


def say(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: ru_maxrss of a child still counts the parent's
    memory it was forked with)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_s() -> float:
    """CPU seconds of this process, all threads: on a machine shared with other work it
    tracks the work done better than the wall clock does."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- data -----------------------------------------------------------------------------

def load_corpus(folder: Path, split: str, limit: int | None) -> tuple[
        dict[str, tuple[str, str]], dict[str, str], dict[str, dict[str, int]]]:
    """Corpus (first ``limit`` docs), and the split's queries whose judged documents are
    all in it (all of them without a limit)."""
    from ragmem.evaluation.datasets import load_beir

    data = load_beir(folder, split)
    ids = list(data.corpus)[:limit] if limit else list(data.corpus)
    corpus = {d: data.corpus[d] for d in ids}
    qrels = {q: rel for q, rel in data.qrels.items() if set(rel) <= corpus.keys()}
    return corpus, {q: data.queries[q] for q in qrels}, qrels


def ndcg10(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]]) -> float:
    from ragmem.evaluation.metrics import retrieval_metrics

    return round(retrieval_metrics(run, qrels, (10,))["ndcg@10"], 4)
