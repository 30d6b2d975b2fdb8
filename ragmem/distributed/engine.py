"""``RayEngine``: the plan of the Ray Data pipeline (see ``ragmem.distributed``), where
its actors go, and putting each document's windows back together on the driver.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ragmem.config import ChunkingConfig, Config, EmbedderConfig, IngestConfig, Precision
from ragmem.distributed.cluster import data_context, errors_unwrapped, import_ray, ray_session
from ragmem.distributed.workers import EmbedActor, FileRecord, read_and_chunk
from ragmem.errors import ConfigError, EngineError
from ragmem.ingest import Embedded, Event, SourceRead

if TYPE_CHECKING:
    from ragmem.embedding import Embedder
    from ragmem.memory.manifest import Manifest


class RayEngine:
    """An ``ingest.Engine`` on a Ray cluster: ``RAY_ADDRESS``'s, or a local Ray."""

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
        ray = import_ray()
        with ray_session(self.settings.ray_address), data_context(ray), errors_unwrapped():
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



def _assemble(batches: Iterator[dict[str, np.ndarray]], dim: int) -> Iterator[Event]:
    """Rows in any order -> a ``SourceRead`` per file and an ``Embedded`` per document
    as soon as all its windows are back."""
    records: dict[int, FileRecord] = {}
    waiting: dict[tuple[int, int], dict[int, np.ndarray]] = {}
    open_docs: dict[int, int] = {}  # source -> documents not yet handed over
    for batch in batches:
        touched: set[tuple[int, int]] = set()
        for i in np.flatnonzero(batch["window"] < 0):
            source = int(batch["source"][i])
            record: FileRecord = pickle.loads(batch["record"][i])
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
