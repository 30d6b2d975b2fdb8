"""The assistant wires the stages: open or create an index, index documents, ask.

    >>> assistant = Assistant.create("notes")                           # doctest: +SKIP
    >>> assistant.index(["~/notes"])                                    # doctest: +SKIP
    >>> assistant.ask("What did we decide about the roof?").citations  # doctest: +SKIP

Each stage is a plain object of its own module: ``indexer`` (``ragmem.indexing``),
``retriever`` (``ragmem.retrieval``), ``working_memory`` (``ragmem.working_memory``) and
``answerer`` (``ragmem.answering``); ``pipeline`` (``ragmem.pipeline``) composes the
last three, and ``Chat`` (``ragmem.conversation``) and the evaluation harness compose
the same ``pipeline`` from outside. Models load on first use.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from ragmem.answering import Answerer, answerer_for
from ragmem.config import DEFAULT_EMBEDDER, Config, indexes_home, manifest_settings
from ragmem.embedding import Embedder
from ragmem.embedding import from_config as embedder_from_config
from ragmem.generation import Generator
from ragmem.generation import from_config as generator_from_config
from ragmem.indexing import Indexer, IndexProgress, IndexStats, engine_for
from ragmem.memory import Memory, create_memory, open_memory
from ragmem.memory.folder import refuse_if_locked
from ragmem.memory.opening import refuse_other_store
from ragmem.models import require_local
from ragmem.pipeline import Pipeline
from ragmem.reranking import from_config as reranker_from_config
from ragmem.retrieval import Retriever
from ragmem.types import Answer, Document, Filter, Hit, Passage
from ragmem.working_memory import WorkingMemory

__all__ = ["Assistant", "IndexProgress", "IndexStats", "resolve_index_path"]


def resolve_index_path(name_or_path: str | Path) -> Path:
    """``demo`` -> ``indexes/demo``; anything with a slash (``./demo``, ``/srv/idx``) is a path.

    A bare name never means a folder of the current directory: ``ragmem index demo
    --index demo`` must not mistake the corpus folder ``demo`` for the index.
    """
    if isinstance(name_or_path, Path) or "/" in str(name_or_path) \
            or str(name_or_path).startswith(("~", ".")):
        return Path(name_or_path).expanduser()
    return indexes_home() / str(name_or_path)


class Assistant:
    def __init__(self, memory: Memory, config: Config, *,
                 embedder: Embedder | None = None, generator: Generator | None = None) -> None:
        self.memory = memory
        self.config = config
        self.embedder = embedder or embedder_from_config(config.embedder)
        self._generator = generator
        self.indexer = Indexer(memory, self.embedder, config.chunking, config.index.embed_batch,
                               config.documents.max_file_bytes,
                               config.documents.max_read_seconds)
        self.retriever = Retriever(memory, self.embedder, config.retrieval,
                                   reranker_from_config(config.retrieval))
        self._working_memory: WorkingMemory | None = None
        self._answerer: Answerer | None = None
        self._pipeline: Pipeline | None = None

    # -- opening ------------------------------------------------------------
    @classmethod
    def create(cls, index: str | Path, config: Config | None = None, *,
               embedder: Embedder | None = None, generator: Generator | None = None,
               store: str | None = None, uri: str | None = None) -> Assistant:
        """Open the index at ``index`` (a name under indexes/ or a path), creating it if
        new. ``config`` is used as given; None means the defaults and the environment.

        ``store`` ("faiss" or "milvus") and ``uri`` (Milvus: a milvus-lite path ending in
        .db, or ``http://host:19530``) override ``config.index.store`` and
        ``config.milvus.uri``; both are fixed once the index exists.
        ``Assistant.create("notes", store="milvus")`` keeps the memory in milvus-lite,
        inside indexes/notes.
        """
        config = config if config is not None else Config().with_env()
        if store is not None or uri is not None:
            config = config.with_overrides({
                "index": {"store": store or ("milvus" if uri else config.index.store)},
                "milvus": {"uri": uri if uri is not None else config.milvus.uri}})
        path = resolve_index_path(index)
        if (path / "manifest.json").exists():
            # An existing index keeps its own store, embedder and chunking.
            refuse_other_store(path, config.index.store)
            return cls.open(index, config, embedder=embedder, generator=generator)
        refuse_if_locked(path)  # another creator at work: say so before loading a model
        if embedder is None:
            require_local(config.embedder.model, "embedder")  # missing: fail now, offline
            embedder = embedder_from_config(config.embedder)
        memory = create_memory(
            path, embedder=embedder.model_id, dim=embedder.dim,
            chunking=vars(config.chunking), config=config.index, milvus=config.milvus,
            precision=embedder.precision)
        return cls(memory, config, embedder=embedder, generator=generator)

    @classmethod
    def open(cls, index: str | Path, config: Config | None = None, *,
             embedder: Embedder | None = None,
             generator: Generator | None = None) -> Assistant:
        """Open an existing index. Its embedder and chunking come from its manifest,
        unless ``config`` asks for others (then the mismatch is refused)."""
        config = config if config is not None else Config().with_env()
        path = resolve_index_path(index)
        if embedder is not None:
            wanted: str | None = embedder.model_id
        else:
            wanted = config.embedder.model if config.embedder.model != DEFAULT_EMBEDDER else None
        # "auto" precision means the index's own; any other is checked against it.
        asked = embedder.precision if embedder else config.embedder.precision
        memory = open_memory(
            path, embedder=wanted, config=config.index, milvus=config.milvus,
            precision=None if asked == "auto" else asked,
            allow_precision_mismatch=config.embedder.allow_precision_mismatch)
        if embedder is None:
            try:  # a missing embedder fails here at once, not at the first question
                require_local(memory.manifest.embedder, "embedder")
            except BaseException:
                memory.close()
                raise
        config = manifest_settings(config, memory.manifest.embedder, memory.manifest.chunking)
        precision = memory.manifest.embedder_precision if asked == "auto" else asked
        config = config.with_overrides({"embedder": {"precision": precision}})  # checked
        return cls(memory, config, embedder=embedder, generator=generator)

    def close(self) -> None:
        self.memory.close()

    def __enter__(self) -> Assistant:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- models, loaded on first use ----------------------------------------
    @property
    def generator(self) -> Generator:
        if self._generator is None:
            self._generator = generator_from_config(self.config.generator)
        return self._generator

    @property
    def working_memory(self) -> WorkingMemory:
        if self._working_memory is None:
            self._working_memory = WorkingMemory(self.generator, self.config.working_memory)
        return self._working_memory

    @property
    def answerer(self) -> Answerer:
        if self._answerer is None:
            self._answerer = answerer_for(
                self.config.answering, self.config.reader, self.generator, self.embedder,
                max_new_tokens=self.config.working_memory.max_new_tokens)
        return self._answerer

    @property
    def pipeline(self) -> Pipeline:
        """retrieve -> fill -> answer: what ``ask``, ``stream``, ``Chat`` and the
        evaluation harness run."""
        if self._pipeline is None:
            self._pipeline = Pipeline(self.retriever, self.working_memory, self.answerer)
        return self._pipeline

    def warm_up(self) -> float:
        """Load the models now (they load on first use); returns the seconds it took.
        Timings then measure answering, not loading."""
        t0 = time.perf_counter()
        _ = self.embedder.dim  # loads the model; no text is embedded for it
        _ = self.working_memory.token_budget
        return time.perf_counter() - t0

    # -- long-term memory: ragmem.indexing ------------------------------------
    def index(self, paths: Sequence[str | Path], *, sync: bool = False,
              progress: Callable[[IndexProgress], None] | None = None,
              engine: str | None = None) -> IndexStats:
        """Add new and changed documents (by content hash); with ``sync``, also remove
        the documents under ``paths`` whose files are gone. Bad files, and bad lines of
        a .jsonl, are reported in ``failed`` as ``(where, reason)`` and skipped.
        ``engine``: "local" (this process) or "ray" (Ray Data reads, chunks and embeds;
        ``ragmem.distributed``); None: ``config.ingest.engine``."""
        config = self.config if engine is None else \
            self.config.with_overrides({"ingest": {"engine": engine}})  # checked
        runner = engine_for(config.ingest.engine, config, self.memory.manifest)
        return self.indexer.index(paths, sync=sync, progress=progress, engine=runner)

    def add_documents(self, documents: Iterable[Document], *, total: int = 0,
                      progress: Callable[[IndexProgress], None] | None = None) -> IndexStats:
        """Index documents already in memory (a dataset, another store) like files."""
        return self.indexer.add_documents(documents, total=total, progress=progress)

    def remove(self, doc_ids: Sequence[str]) -> int:
        """Delete documents by id; returns how many existed."""
        return self.indexer.remove(doc_ids)

    # -- asking -------------------------------------------------------------
    def retrieve(self, question: str, top_k: int | None = None,
                 where: Filter | None = None) -> list[Hit]:
        return self.retriever.retrieve(question, top_k, where)

    def retrieve_many(self, questions: Sequence[str], top_k: int | None = None,
                      where: Filter | None = None) -> list[list[Hit]]:
        """``retrieve`` for many questions, their embeddings computed in batches."""
        return self.retriever.retrieve_many(questions, top_k, where)

    def passages(self, question: str, top_k: int | None = None,
                 where: Filter | None = None) -> list[Passage]:
        return self.retriever.passages(question, top_k, where)

    def ask(self, question: str, top_k: int | None = None,
            where: Filter | None = None) -> Answer:
        """retrieve -> fill -> answer, the answer citing the passages its text uses."""
        return self.pipeline.ask(question, top_k, where)

    def stream(self, question: str, top_k: int | None = None,
               where: Filter | None = None) -> Iterator[str | Answer]:
        """``ask``, streamed: the answer's text as it is generated, then the ``Answer``."""
        pipeline = self.pipeline
        yield from pipeline.stream(pipeline.fill(question, top_k, where))
