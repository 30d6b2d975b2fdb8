"""Does reading and chunking in a worker process, overlapped with embedding, index faster?
(issue 25, deliverable 3)

    python -m eval.bench.chunk_worker --limit 1500 --rounds 2

The first ``--limit`` SciFact abstracts, one ``.txt`` file each (a folder of documents,
as users index them), indexed by the default ``Indexer`` (reading, chunking, embedding and
writing in one process) and by a variant whose reading and chunking run in a worker
process (``multiprocessing.Pool(1).imap``, 8 files a task; it runs ahead of the embedder
without bound, which is what a bounded queue allows at best), the embedding and the single
writer unchanged. Each round
indexes a fresh index with each path, alternating; the embedder is loaded and warm before
the clock starts, shared by both. Prints and writes medians (OUT.json).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT.parent / "shared" / "datasets" / "scifact" / "corpus.jsonl"
_COUNTER: Any = None


def _worker_init() -> None:
    global _COUNTER
    from ragmem.config import EmbedderConfig
    from ragmem.embedding import token_counter

    _COUNTER = token_counter(EmbedderConfig())


def _read_and_chunk(job: tuple[Path, Path, dict[str, str]]) -> Any:
    from ragmem.config import ChunkingConfig, DocumentsConfig
    from ragmem.ingest import chunk_source, read_source

    root, file, known = job
    source = read_source(root, file, DocumentsConfig.max_file_bytes)
    return chunk_source(source, known, _COUNTER, ChunkingConfig())


def worker_indexer() -> Any:
    from ragmem.indexing import Indexer
    from ragmem.ingest import Event, SourceRead

    class WorkerIndexer(Indexer):
        """Reading and chunking in a worker process; embedding and writing here."""

        def index(self, paths: Any, **kw: Any) -> Any:
            from ragmem.documents import discover

            self._files = discover(paths, {})
            return self.ingest([], len(self._files), **kw)

        def _events(self, sources: Iterable[Any], known: Mapping[str, str]) -> Iterator[Event]:
            pending: list[Any] = []
            n = 0
            jobs = [(root, file, dict(known)) for root, file in self._files]
            ctx = multiprocessing.get_context("forkserver")
            with ctx.Pool(1, initializer=_worker_init) as pool:
                done = pool.imap(_read_and_chunk, jobs, chunksize=8)
                for (name, docs, problems), chunked in done:
                    counts = [0, 0]
                    for doc, sentences, windows in chunked:
                        pending.append((doc, sentences, windows))
                        counts[0] += len(sentences)
                        counts[1] += len(windows)
                        n += len(windows)
                        if n >= self.embed_batch:
                            yield from self._flush(pending)
                            n = 0
                    yield SourceRead(name, tuple((d.doc_id, d.content_hash) for d in docs),
                                     tuple(problems), counts[0], counts[1])
            if pending:
                yield from self._flush(pending)

        def _flush(self, pending: list[Any]) -> Iterator[Event]:
            from ragmem.ingest import Embedded

            vectors = self.embedder.embed([w.text for _, _, ws in pending for w in ws])
            offset = 0
            for doc, sentences, windows in pending:
                yield Embedded(doc, sentences, windows, vectors[offset:offset + len(windows)])
                offset += len(windows)
            pending.clear()

    return WorkerIndexer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--limit", type=int, default=1500)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "eval/reports/chunk-worker")
    args = p.parse_args()
    from ragmem.config import ChunkingConfig, Config
    from ragmem.embedding import from_config
    from ragmem.indexing import Indexer
    from ragmem.memory import create_memory

    embedder = from_config(Config().embedder)
    embedder.embed(["warm up"])
    variant = worker_indexer()
    times: dict[str, list[float]] = {"one process": [], "worker process": []}
    windows: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="ragmem-chunk-worker-") as tmp:
        folder = Path(tmp) / "docs"
        folder.mkdir()
        with open(CORPUS, encoding="utf-8") as f:
            for i, line in enumerate(f):
                if i >= args.limit:
                    break
                row = json.loads(line)
                (folder / f"{row['_id']}.txt").write_text(row["text"], encoding="utf-8")
        for r in range(args.rounds):
            for name, cls in (("one process", Indexer), ("worker process", variant)):
                index = Path(tmp) / f"{name}-{r}".replace(" ", "-")
                memory = create_memory(index, embedder=embedder.model_id, dim=embedder.dim,
                                       chunking=vars(ChunkingConfig()),
                                       precision=embedder.precision)
                t = time.perf_counter()
                stats = cls(memory, embedder, ChunkingConfig()).index([folder])
                times[name].append(time.perf_counter() - t)
                windows[name] = stats.windows
                memory.close()
                print(f"round {r} {name}: {times[name][-1]:.1f}s", file=sys.stderr, flush=True)
    assert windows["one process"] == windows["worker process"], windows
    report = {"command": "python -m eval.bench.chunk_worker " + " ".join(sys.argv[1:]),
              "documents": args.limit, "windows": windows["one process"],
              "precision": embedder.precision, "load_average_at_start": os.getloadavg(),
              "seconds": times,
              "median_s": {k: statistics.median(v) for k, v in times.items()}}
    report["worker_vs_one"] = round(report["median_s"]["one process"]
                                    / report["median_s"]["worker process"], 3)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
