"""Indexing on Ray Data: files are read and chunked in tasks, windows embedded by an actor
pool, and the results written by the ``Indexer`` in this process (pip install
'ragmem[scale]').

    >>> engine = RayEngine(IngestConfig(engine="ray"),                 # doctest: +SKIP
    ...                    EmbedderConfig(precision="fp32"), ChunkingConfig(),
    ...                    max_file_bytes=20_000_000, dim=384)
    >>> Indexer(memory, embedder).index(["papers/"], engine=engine)   # doctest: +SKIP

The plan, one Ray Data pipeline:

1. ``from_items`` of the files, ``files_per_task`` to a block; a task per block reads
   its files (``ingest.read_source``), drops the documents whose hash the index holds,
   chunks the rest (``ingest.chunk``, the tokenizer alone, no model) and returns one
   row per file (what was read, pickled: a row holds scalars, a file many documents)
   and one per window, sorted longest first, cut into blocks of ``batch_size`` rows:
   an actor call gets windows of similar length (less padding).
2. ``map_batches`` on an actor pool: each actor loads the embedder once, at the index's
   own precision (checked: vectors must match the index's), on a GPU when the cluster
   has them and the index is fp16; file rows pass through untouched.
3. ``iter_batches`` here: each document's windows are put back together and handed to
   the ``Indexer`` as they complete; its one writer batch keeps the write atomic.

The windows are those of the local path (same functions, same tokenizer), the vectors
equal within float rounding (batches differ, so padding does).
"""

from ragmem.distributed.cluster import _reachable, ray_session
from ragmem.distributed.engine import RayEngine, ray_engine
from ragmem.distributed.workers import EmbedActor, read_and_chunk

__all__ = ["EmbedActor", "RayEngine", "_reachable", "ray_engine", "ray_session", "read_and_chunk"]
