"""Indexing on Ray Data: files are read and chunked in tasks, windows embedded by an actor
pool, and the results written by the ``Indexer`` in this process (pip install
'ragmem[scale]').

    >>> engine = RayEngine(IngestConfig(engine="ray"),                 # doctest: +SKIP
    ...                    EmbedderConfig(precision="fp32"), ChunkingConfig(),
    ...                    max_file_bytes=20_000_000, dim=384)
    >>> Indexer(memory, embedder).index(["papers/"], engine=engine)   # doctest: +SKIP

The plan, one Ray Data pipeline:

1. ``from_items`` of the files, ``files_per_task`` to a block; a task per block reads
   its files (``indexing.read_source``), drops the documents whose hash the index holds,
   chunks the rest (``indexing.chunk``, the tokenizer alone, no model) and returns one
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

from __future__ import annotations

import copy
import logging
import math
import os
import pickle
import socket
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ragmem.config import ChunkingConfig, Config, EmbedderConfig, IngestConfig, Precision
from ragmem.errors import ConfigError, DocumentError, EngineError, ModelError, RagmemError
from ragmem.indexing import Embedded, Event, SourceRead, chunk, is_unchanged, read_source
from ragmem.types import Document, Sentence, Window

if TYPE_CHECKING:
    from ragmem.embedding import Embedder
    from ragmem.memory.manifest import Manifest

INSTALL = "pip install 'ragmem[scale]'"
CONNECT_TIMEOUT_S = 5.0  # ray.init retries an unreachable address for minutes


@dataclass(frozen=True)
class _FileRecord:
    """What a reading task learnt of one file; travels to the driver in one row."""

    name: str
    documents: tuple[tuple[str, str], ...]
    problems: tuple[DocumentError, ...]
    chunked: tuple[tuple[Document, list[Sentence], list[Window]], ...]


class RayEngine:
    """An ``indexing.Engine`` on a Ray cluster: ``RAY_ADDRESS``'s, or a local Ray."""

    def __init__(self, settings: IngestConfig, embedder: EmbedderConfig,
                 chunking: ChunkingConfig, max_file_bytes: int, dim: int,
                 embedder_factory: Callable[[], Embedder] | None = None) -> None:
        """``embedder`` names the index's embedder and precision; the workers make it
        with ``embedding.from_config``, or with ``embedder_factory`` (picklable, e.g. a
        class) when given: an embedder of your own, or a fake in tests."""
        if embedder.precision == "auto":
            raise ConfigError("the ray engine needs the index's embedder precision "
                              "(fp32, fp16 or int8), not 'auto'")
        self.settings = settings
        self.embedder = embedder
        self.chunking = chunking
        self.max_file_bytes = max_file_bytes
        self.dim = dim
        self.embedder_factory = embedder_factory

    def run(self, files: Sequence[tuple[Path, Path]],
            known: Mapping[str, str]) -> Iterator[Event]:
        if not files:
            return
        ray = _import_ray()
        with ray_session(self.settings.ray_address), _data_context(ray), _errors_unwrapped():
            dataset = self._pipeline(ray, files, known)
            yield from _assemble(dataset.iter_batches(batch_size=None, batch_format="numpy"),
                                 self.dim)

    def _pipeline(self, ray: Any, files: Sequence[tuple[Path, Path]],
                  known: Mapping[str, str]) -> Any:
        num_gpus, actors = self._placement(ray.cluster_resources())
        # Absolute paths: a worker's working directory is not this one. ``name`` is the
        # path as given, what progress and ``failed`` show (as on the local path).
        items = [{"source": i, "root": str(root.absolute()), "file": str(file.absolute()),
                  "name": str(file)} for i, (root, file) in enumerate(files)]
        per_task = max(1, self.settings.files_per_task)
        dataset = ray.data.from_items(items, override_num_blocks=math.ceil(len(items) / per_task))
        reading = {"embedder": self.embedder, "factory": self.embedder_factory,
                   "chunking": self.chunking,
                   "max_bytes": self.max_file_bytes, "known": ray.put(dict(known))}
        dataset = dataset.map_batches(read_and_chunk, batch_size=None, fn_kwargs=reading)
        # Blocks of one actor call's windows, cut from the tasks' sorted output: a call
        # gets windows of similar length. It also keeps Ray Data from fusing reading into
        # the actors (a slow file would idle a model; tasks scale out on their own).
        dataset = dataset.repartition(target_num_rows_per_block=self.settings.batch_size)
        return dataset.map_batches(
            EmbedActor, batch_size=self.settings.batch_size,
            fn_constructor_kwargs={"config": self.embedder, "factory": self.embedder_factory,
                                   "threads": max(1, int(self.settings.cpus_per_actor))},
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=self.settings.cpus_per_actor, num_gpus=num_gpus or None)

    def _placement(self, resources: Mapping[str, float]) -> tuple[float, int]:
        """GPUs per actor and how many actors, from the settings and the cluster."""
        gpus, cpus = resources.get("GPU", 0.0), resources.get("CPU", 1.0)
        fp16 = self.embedder.precision == "fp16"
        num_gpus = self.settings.num_gpus
        if num_gpus is None:
            num_gpus = 1.0 if gpus and fp16 else 0.0
        if num_gpus and not fp16:
            raise ConfigError(
                f"GPU actors embed in fp16 and this index holds {self.embedder.precision} "
                "vectors; set RAGMEM_INGEST_NUM_GPUS=0, or index into a new fp16 index")
        if fp16 and not (num_gpus and gpus):
            raise ConfigError("this index holds fp16 vectors, made on a GPU, and the Ray "
                              "cluster has none for the actors; join a cluster with GPUs "
                              "(RAY_ADDRESS) or index with --engine local on a GPU machine")
        per_actor = self.settings.cpus_per_actor
        most = int((cpus - 1) // per_actor)  # a CPU stays with the reading tasks
        if most < 1:
            raise ConfigError(f"a Ray cluster of {cpus:g} CPUs has none for the reading "
                              f"tasks beside one actor of {per_actor:g}; join a bigger "
                              "cluster (RAY_ADDRESS) or use --engine local")
        actors = self.settings.actors or (
            min(most, max(1, int(gpus // num_gpus))) if num_gpus else most)
        if actors > most:
            # Ray Data would wait for ever: the actors hold every CPU, no task can read.
            raise ConfigError(f"{actors} embedding actors of {per_actor:g} CPUs leave no CPU "
                              f"for the reading tasks on a Ray cluster of {cpus:g}; use at "
                              f"most {most} (RAGMEM_INGEST_ACTORS)")
        return num_gpus, actors


def ray_engine(config: Config, manifest: Manifest) -> RayEngine:
    """The engine for an index: its embedder and precision from its manifest."""
    embedder = replace(config.embedder, model=manifest.embedder,
                       precision=cast(Precision, manifest.embedder_precision))
    return RayEngine(config.ingest, embedder, config.chunking,
                     config.documents.max_file_bytes, manifest.dim)


# -- on the workers -----------------------------------------------------------------

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
        _, docs, problems = read_source(Path(root), Path(file), max_bytes)
        chunked = tuple((d, *chunk(d, count_tokens, chunking)) for d in docs
                        if not is_unchanged(d, hashes))
        record = _FileRecord(str(name), tuple((d.doc_id, d.content_hash) for d in docs),
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


# -- back on the driver -------------------------------------------------------------

def _assemble(batches: Iterator[dict[str, np.ndarray]], dim: int) -> Iterator[Event]:
    """Rows in any order -> a ``SourceRead`` per file and an ``Embedded`` per document
    as soon as all its windows are back."""
    records: dict[int, _FileRecord] = {}
    waiting: dict[tuple[int, int], dict[int, np.ndarray]] = {}
    open_docs: dict[int, int] = {}  # source -> documents not yet handed over
    for batch in batches:
        touched: set[tuple[int, int]] = set()
        for i in np.flatnonzero(batch["window"] < 0):
            source = int(batch["source"][i])
            record: _FileRecord = pickle.loads(batch["record"][i])
            yield SourceRead(record.name, record.documents, record.problems,
                             sum(len(s) for _, s, _ in record.chunked),
                             sum(len(w) for _, _, w in record.chunked))
            if record.chunked:
                records[source] = record
                open_docs[source] = len(record.chunked)
                touched.update((source, j) for j in range(len(record.chunked)))
        for i in np.flatnonzero(batch["window"] >= 0):
            key = (int(batch["source"][i]), int(batch["doc"][i]))
            waiting.setdefault(key, {})[int(batch["window"][i])] = batch["vector"][i]
            touched.add(key)
        for source, j in sorted(touched):
            if source not in records:
                continue  # its record row has not come back yet
            doc, sentences, windows = records[source].chunked[j]
            parts = waiting.get((source, j), {})
            if len(parts) < len(windows):
                continue
            vectors = (np.stack([parts[k] for k in range(len(windows))]) if windows
                       else np.zeros((0, dim), dtype=np.float32))
            waiting.pop((source, j), None)
            yield Embedded(doc, sentences, windows, vectors)
            open_docs[source] -= 1
            if not open_docs[source]:
                del records[source], open_docs[source]
    if records or waiting:
        raise EngineError(f"the ray engine lost the windows of {len(open_docs)} files; "
                          "nothing was written: index again")


# -- the cluster ------------------------------------------------------------------

def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as error:
        raise EngineError(f"--engine ray needs Ray, which is not installed; {INSTALL}") \
            from error
    return ray


@contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Ray as it is when already started here (left running), else connected to
    ``address`` or ``$RAY_ADDRESS``, else a local Ray; one started here is shut down."""
    ray = _import_ray()
    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        _reachable(address)
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)
    except Exception as error:  # Ray raises ConnectionError, RuntimeError, ValueError...
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise EngineError(f"could not start {where} ({_first_line(error)}); check RAY_ADDRESS "
                          "(unset it for a local Ray) or use --engine local") from error
    try:
        yield
    finally:
        ray.shutdown()


def _reachable(address: str) -> None:
    """Fail in seconds, not minutes, when nothing listens at ``address``."""
    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except (OSError, ValueError) as error:
        raise EngineError(f"cannot reach the Ray cluster at {address} ({_first_line(error)});"
                          " start it (ray start --head), fix RAY_ADDRESS, or unset it for a "
                          "local Ray") from error


@contextmanager
def _data_context(ray: Any) -> Iterator[None]:
    """Ray Data set for a command line: no progress bars or logs of its own (the CLI
    draws its bar), and an error of ours raised in a task comes back as itself, not as a
    ``UserCodeException``. The caller's settings are put back after the run."""
    context = ray.data.DataContext.get_current()
    settings = {"enable_progress_bars": False, "raise_original_map_exception": True}
    before = {k: getattr(context, k) for k in settings}
    logger = logging.getLogger("ray.data")
    level = logger.level
    for key, value in settings.items():
        setattr(context, key, value)
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for key, value in before.items():
            setattr(context, key, value)
        logger.setLevel(level)


@contextmanager
def _errors_unwrapped() -> Iterator[None]:
    """A ragmem error raised in a task or actor (a model that will not load, say) comes
    out as itself, one line, not as Ray's wrapper with the worker's traceback."""
    try:
        yield
    except Exception as error:
        cause = _ragmem_cause(error)
        if cause is None or cause is error:
            raise
        raise cause from error


def _ragmem_cause(error: BaseException) -> RagmemError | None:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        inner = getattr(current, "cause", None)  # a RayTaskError keeps the original here
        if isinstance(inner, BaseException):
            current = inner
        elif isinstance(current, RagmemError):
            return _plain(current)
        else:
            current = current.__cause__
    return None


def _plain(error: RagmemError) -> RagmemError:
    """``error`` with its own message: Ray Data appends its retry advice to the one it
    carried back."""
    plain = copy.copy(error)
    plain.args = (f"{error.problem}; {error.fix.in_python()}" if error.fix else error.problem,)
    return plain


def _first_line(error: BaseException) -> str:
    text = " ".join(str(error).split("\n")[0].split())
    return text[:200] or type(error).__name__
