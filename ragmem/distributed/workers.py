"""What runs on the Ray workers: the reading tasks (``read_and_chunk``: files ->
documents -> windows, the tokenizer alone) and the embedding actors (``EmbedActor``: the
model loaded once per actor). Ray pickles them by reference: a worker imports this
module, never the driver's.
"""

from __future__ import annotations

import pickle
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragmem.config import ChunkingConfig, EmbedderConfig
from ragmem.errors import DocumentError, ModelError, RagmemError
from ragmem.ingest import chunk_source, read_source
from ragmem.types import Document, Sentence, Window

if TYPE_CHECKING:
    from ragmem.embedding import Embedder


@dataclass(frozen=True)
class FileRecord:
    """What a reading task learnt of one file; travels to the driver in one row."""

    name: str
    documents: tuple[tuple[str, str], ...]
    problems: tuple[DocumentError, ...]
    chunked: tuple[tuple[Document, list[Sentence], list[Window]], ...]



_KNOWN: dict[str, Mapping[str, str]] = {}  # per worker: the hashes, unpickled once


def read_and_chunk(batch: dict[str, np.ndarray], *, embedder: EmbedderConfig,
                   factory: Callable[[], Embedder] | None, chunking: ChunkingConfig,
                   max_bytes: int, known: Any) -> dict[str, Any]:
    """A reading task: files -> one record row per file, one row per window to embed."""
    import ray

    key = known.hex()
    if key not in _KNOWN:
        _KNOWN.clear()
        _KNOWN[key] = ray.get(known)
    hashes = _KNOWN[key]
    count_tokens = _counter(embedder, factory)
    records: list[tuple[int, bytes]] = []
    rows: list[tuple[int, int, int, int, str]] = []  # n_tokens, source, doc, window, text
    for source, root, file, name in zip(batch["source"], batch["root"], batch["file"],
                                        batch["name"], strict=True):
        (_, docs, problems), chunked = chunk_source(
            read_source(Path(root), Path(file), max_bytes), hashes, count_tokens, chunking)
        record = FileRecord(str(name), tuple((d.doc_id, d.content_hash) for d in docs),
                             tuple(_as_given(p, str(file), str(name)) for p in problems),
                             chunked)
        records.append((int(source), pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)))
        rows += [(w.n_tokens, int(source), j, k, w.text)
                 for j, (_, _, windows) in enumerate(chunked) for k, w in enumerate(windows)]
    rows.sort(key=lambda r: -r[0])  # longest first: a batch of similar lengths
    n = len(records)
    return {
        "source": np.array([s for s, _ in records] + [r[1] for r in rows], dtype=np.int64),
        "doc": np.array([-1] * n + [r[2] for r in rows], dtype=np.int64),
        "window": np.array([-1] * n + [r[3] for r in rows], dtype=np.int64),
        "n_tokens": np.array([0] * n + [r[0] for r in rows], dtype=np.int64),
        "text": np.array([""] * n + [r[4] for r in rows], dtype=object),
        "record": np.array([b for _, b in records] + [b""] * len(rows), dtype=object),
    }


_COUNTERS: dict[object, Callable[[str], int]] = {}


def _counter(embedder: EmbedderConfig,
             factory: Callable[[], Embedder] | None) -> Callable[[str], int]:
    """The embedder's token count, made once per worker process (the tokenizer alone:
    a reading task loads no model)."""
    from ragmem.embedding import token_counter

    key = factory or embedder.model
    if key not in _COUNTERS:
        _COUNTERS[key] = factory().count_tokens if factory else token_counter(embedder)
    return _COUNTERS[key]


def _as_given(problem: DocumentError, absolute: str, given: str) -> DocumentError:
    """``problem`` naming the file as the user gave it (``notes/a.md:3``, not the
    absolute path the worker read)."""
    if problem.where.startswith(absolute):
        return DocumentError(given + problem.where[len(absolute):], problem.reason)
    return problem


class EmbedActor:
    """One embedding actor: the model loaded once, at the index's precision."""

    def __init__(self, config: EmbedderConfig, factory: Callable[[], Embedder] | None,
                 threads: int) -> None:
        # An error here would reach the driver as the text of an ActorDiedError, with
        # the worker's traceback; raised by the first call it arrives as itself.
        self.error: RagmemError | None = None
        try:
            self.embedder = self._load(config, factory, threads)
            self.dim = self.embedder.dim  # loads the model now, once
        except RagmemError as error:
            self.error = error

    @staticmethod
    def _load(config: EmbedderConfig, factory: Callable[[], Embedder] | None,
              threads: int) -> Embedder:
        from ragmem.embedding import from_config

        embedder = factory() if factory else from_config(config)
        if embedder.precision != config.precision:
            raise ModelError(f"an embedding actor makes {embedder.precision} vectors and the "
                             f"index holds {config.precision} ones; give the actors the "
                             "device that makes them (RAGMEM_INGEST_NUM_GPUS)")
        if "torch" in sys.modules:  # a CPU actor uses its share of the cores, no more
            sys.modules["torch"].set_num_threads(threads)
        return embedder

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.error is not None:
            raise self.error
        rows = np.flatnonzero(batch["window"] >= 0)
        # Longest first, as the reading task sorted them: the embedder's own batches
        # then hold similar lengths whatever order Ray Data bundled the blocks in.
        rows = rows[np.argsort(-batch["n_tokens"][rows], kind="stable")]
        vectors = np.zeros((len(batch["window"]), self.dim), dtype=np.float32)
        if len(rows):
            vectors[rows] = self.embedder.embed([str(batch["text"][i]) for i in rows])
        out = {k: v for k, v in batch.items() if k != "text"}  # the record holds the text
        out["vector"] = vectors
        return out
