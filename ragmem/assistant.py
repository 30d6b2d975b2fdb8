"""The assistant: wires documents -> chunks -> long-term memory -> working memory -> answer."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ragmem.answering import Answerer
from ragmem.chunking import chunk_document
from ragmem.config import ChunkingConfig, Config, indexes_home
from ragmem.conversation import Chat
from ragmem.documents import discover, load_file
from ragmem.embedding import Embedder
from ragmem.embedding import from_config as embedder_from_config
from ragmem.errors import DocumentError
from ragmem.generation import Generator
from ragmem.generation import from_config as generator_from_config
from ragmem.memory import LongTermMemory
from ragmem.models import require_local
from ragmem.reranking import from_config as reranker_from_config
from ragmem.retrieval import Retriever, check_question
from ragmem.types import Answer, Document, Filter, Hit, Passage, Sentence, Timings, Window
from ragmem.working_memory import WorkingMemory

EMBED_BATCH = 256  # windows embedded per call while indexing
# What ingestion reads: a name for progress, the documents, and what was wrong (a bad
# file, or bad lines of a .jsonl whose other lines are kept).
Source = tuple[str, list[Document], list[DocumentError]]


@dataclass(frozen=True)
class IndexProgress:
    files_done: int
    files_total: int
    sentences: int
    windows: int
    elapsed_s: float
    current: str = ""


@dataclass(frozen=True)
class IndexStats:
    files: int
    added: int
    updated: int
    unchanged: int
    removed: int
    sentences: int
    windows: int
    seconds: float
    failed: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def windows_per_s(self) -> float:
        return self.windows / self.seconds if self.seconds > 0 else 0.0


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
    def __init__(self, memory: LongTermMemory, config: Config, *,
                 embedder: Embedder | None = None, generator: Generator | None = None) -> None:
        self.memory = memory
        self.config = config
        self.embedder = embedder or embedder_from_config(config.embedder)
        self._generator = generator
        self.retriever = Retriever(memory, self.embedder, config.retrieval,
                                   reranker_from_config(config.retrieval))
        self._working_memory: WorkingMemory | None = None
        self._answerer: Answerer | None = None

    # -- opening ------------------------------------------------------------
    @classmethod
    def create(cls, index: str | Path, config: Config | None = None, *,
               embedder: Embedder | None = None,
               generator: Generator | None = None) -> Assistant:
        """Open the index at ``index`` (a name under indexes/ or a path), creating it if new."""
        config = (config or Config()).with_env()
        if (resolve_index_path(index) / "manifest.json").exists():
            # An existing index keeps its own embedder and chunking.
            return cls.open(index, config, embedder=embedder, generator=generator)
        if embedder is None:
            require_local(config.embedder.model, "embedder")  # missing: fail now, offline
            embedder = embedder_from_config(config.embedder)
        memory = LongTermMemory.create(
            resolve_index_path(index), embedder=embedder.model_id, dim=embedder.dim,
            chunking=vars(config.chunking), config=config.index, precision=embedder.precision)
        config = replace(config, chunking=ChunkingConfig(**memory.manifest.chunking))
        return cls(memory, config, embedder=embedder, generator=generator)

    @classmethod
    def open(cls, index: str | Path, config: Config | None = None, *,
             embedder: Embedder | None = None,
             generator: Generator | None = None) -> Assistant:
        """Open an existing index; its embedder and chunking come from its manifest."""
        config = (config or Config()).with_env()
        path = resolve_index_path(index)
        wanted = embedder.model_id if embedder else None
        # "auto" precision means the index's own; any other is checked against it.
        asked = embedder.precision if embedder else config.embedder.precision
        memory = LongTermMemory.open(
            path, embedder=wanted, config=config.index,
            precision=None if asked == "auto" else asked,
            allow_precision_mismatch=config.embedder.allow_precision_mismatch)
        if embedder is None:
            try:  # a missing embedder fails here at once, not at the first question
                require_local(memory.manifest.embedder, "embedder")
            except BaseException:
                memory.close()
                raise
        config = replace(
            config,
            embedder=replace(config.embedder, model=memory.manifest.embedder,
                             precision=memory.manifest.embedder_precision
                             if asked == "auto" else asked),
            chunking=ChunkingConfig(**memory.manifest.chunking))
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
            self._answerer = Answerer(self.generator, self.config.working_memory.max_new_tokens)
        return self._answerer

    def warm_up(self) -> float:
        """Load the models now (they load on first use); returns the seconds it took.
        Timings then measure answering, not loading."""
        t0 = time.perf_counter()
        _ = self.embedder.dim  # loads the model; no text is embedded for it
        _ = self.working_memory.token_budget
        return time.perf_counter() - t0

    # -- long-term memory ---------------------------------------------------
    def index(self, paths: Sequence[str | Path], *, sync: bool = False,
              progress: Callable[[IndexProgress], None] | None = None) -> IndexStats:
        """Add new and changed documents (by content hash); with ``sync``, also remove
        documents whose files are gone. Bad files, and bad lines of a .jsonl, are reported
        in ``failed`` as ``(where, reason)`` and skipped."""
        files = discover(paths)
        max_bytes = self.config.documents.max_file_bytes

        def sources() -> Iterator[Source]:
            for root, file in files:
                problems: list[DocumentError] = []
                try:
                    docs = load_file(file, root, max_bytes=max_bytes,
                                     on_problem=problems.append)
                except DocumentError as exc:
                    yield str(file), [], [exc]
                else:
                    yield str(file), docs, problems

        return self._ingest(sources(), len(files), sync=sync, progress=progress)

    def add_documents(self, documents: Iterable[Document], *, total: int = 0,
                      progress: Callable[[IndexProgress], None] | None = None) -> IndexStats:
        """Index documents already in memory (a dataset, another store) like files."""
        return self._ingest(((d.doc_id, [d], []) for d in documents), total, sync=False,
                            progress=progress)

    def _ingest(self, sources: Iterable[Source], total: int, *, sync: bool,
                progress: Callable[[IndexProgress], None] | None) -> IndexStats:
        start = time.perf_counter()
        known = self.memory.content_hashes()
        failed: list[tuple[str, str]] = []
        seen: set[str] = set()
        n_sources = added = updated = unchanged = n_sent = n_win = 0
        pending: list[tuple[Document, list[Sentence], list[Window]]] = []
        chunking = self.config.chunking

        with self.memory.writer() as writer:
            def flush() -> None:
                # Windows of many documents go to the embedder together: bigger batches.
                texts = [w.text for _, _, ws in pending for w in ws]
                vectors = self.embedder.embed(texts)
                offset = 0
                for doc, sentences, windows in pending:
                    writer.add(doc, sentences, windows, vectors[offset:offset + len(windows)])
                    offset += len(windows)
                pending.clear()

            for name, docs, problems in sources:
                n_sources += 1
                failed.extend((e.where, e.reason) for e in problems)
                for doc in docs:
                    seen.add(doc.doc_id)
                    if known.get(doc.doc_id) == doc.content_hash:
                        unchanged += 1
                        continue
                    if doc.doc_id in known:
                        updated += 1
                    else:
                        added += 1
                    sentences, windows = chunk_document(
                        doc, self.embedder.count_tokens, chunking.window_tokens,
                        chunking.overlap_sentences, chunking.max_sentence_chars)
                    pending.append((doc, sentences, windows))
                    n_sent += len(sentences)
                    n_win += len(windows)
                    if sum(len(w) for _, _, w in pending) >= EMBED_BATCH:
                        flush()
                if progress:
                    progress(IndexProgress(n_sources, max(total, n_sources), n_sent, n_win,
                                           time.perf_counter() - start, name))
            if pending:
                flush()
            removed = 0
            if sync:
                for doc_id in sorted(set(known) - seen):
                    writer.remove(doc_id)
                    removed += 1
        return IndexStats(n_sources, added, updated, unchanged, removed, n_sent, n_win,
                          time.perf_counter() - start, tuple(failed))

    def remove(self, doc_ids: Sequence[str]) -> int:
        """Delete documents by id; returns how many existed."""
        known = self.memory.content_hashes()
        n = 0
        with self.memory.writer() as writer:
            for doc_id in doc_ids:
                if doc_id in known:
                    writer.remove(doc_id)
                    n += 1
        return n

    # -- asking -------------------------------------------------------------
    def retrieve(self, question: str, top_k: int | None = None,
                 where: Filter | None = None) -> list[Hit]:
        return self.retriever.retrieve(question, top_k, where)

    def passages(self, question: str, top_k: int | None = None,
                 where: Filter | None = None) -> list[Passage]:
        return self.retriever.passages(question, top_k, where)

    def ask(self, question: str, top_k: int | None = None,
            where: Filter | None = None) -> Answer:
        """retrieve -> fill -> answer, the answer citing the passages its text uses."""
        question = check_question(question)
        t0 = time.perf_counter()
        passages = self.retriever.passages(question, top_k, where)
        t1 = time.perf_counter()
        buffer = self.working_memory.fill(question, passages)
        timings = Timings(retrieve_s=t1 - t0, fill_s=time.perf_counter() - t1)
        return self.answerer.answer(buffer, timings)

    def stream(self, question: str, top_k: int | None = None,
               where: Filter | None = None) -> Iterator[str | Answer]:
        """``ask``, streamed: the answer's text as it is generated, then the ``Answer``."""
        question = check_question(question)
        t0 = time.perf_counter()
        passages = self.retriever.passages(question, top_k, where)
        t1 = time.perf_counter()
        buffer = self.working_memory.fill(question, passages)
        timings = Timings(retrieve_s=t1 - t0, fill_s=time.perf_counter() - t1)
        yield from self.answerer.stream(buffer, timings)

    def chat(self, *, top_k: int | None = None, where: Filter | None = None,
             rewrite: str | None = None) -> Chat:
        """A conversation: follow-up questions, earlier turns kept in working memory."""
        return Chat(self.retriever, self.working_memory, self.answerer, top_k=top_k,
                    where=where, rewrite=rewrite or self.config.retrieval.rewrite)
