"""What one ``ragmem serve`` process holds: every served index's warm assistant, its
write queue, the conversations, and the limit on asks at once.

Models load once and are shared: every index built with the same embedder uses one
embedder object, and all indexes use one generator. Asks take turns on one lock (two
cores gain nothing from two at once, and the models are shared); up to
``ServeConfig.max_asks`` may be running or waiting, and one more is refused with a 503
that says when to retry. Writes run on each index's own queue (``writes``), beside the
asks, each through its own connection.

    >>> service = Service(Config().with_env())                          # doctest: +SKIP
    >>> service.ask(AskRequest("Who is Irene Adler?", index="demo"))    # doctest: +SKIP
"""

from __future__ import annotations

import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragmem.config import Config, indexes_home
from ragmem.serve.errors import HttpError, not_found
from ragmem.serve.writes import WriteQueue
from ragmem.types import Answer, Filter

if TYPE_CHECKING:
    from ragmem.assistant import Assistant
    from ragmem.conversation import Chat
    from ragmem.embedding import Embedder
    from ragmem.generation import Generator as TextGenerator

INDEX_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
NEW_CONVERSATION = "new"


@dataclass(frozen=True)
class AskRequest:
    """One question to one index. ``mode``: the answer mode (extract, generate, auto);
    ``retrieval``: dense, lexical or hybrid; ``conversation``: "new" starts a chat, an
    id continues it (follow-ups keep their context, as in ``ragmem chat``)."""

    question: str
    index: str | None = None
    top_k: int | None = None
    mode: str | None = None
    retrieval: str | None = None
    where: Filter | None = None
    conversation: str | None = None


class AskLimit:
    """At most ``size`` asks running or waiting; past it, a 503 with Retry-After."""

    def __init__(self, size: int, retry_after_s: int) -> None:
        self.size = size
        self.retry_after_s = retry_after_s
        self.active = 0
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            if self.active >= self.size:
                raise HttpError(503, f"{self.active} asks are already running or waiting "
                                     f"(the limit is {self.size}); retry in "
                                     f"{self.retry_after_s} s",
                                {"Retry-After": str(self.retry_after_s)})
            self.active += 1

    def leave(self) -> None:
        with self._lock:
            self.active -= 1


class Served:
    """One index: its assistant (kept warm), a reader per other answer or retrieval
    mode asked for (the same memory and models), and its write queue."""

    def __init__(self, name: str, assistant: Assistant, writes: WriteQueue) -> None:
        self.name = name
        self.assistant = assistant
        self.writes = writes
        self._readers: dict[tuple[str | None, str | None], Assistant] = {}

    def reader(self, mode: str | None, retrieval: str | None) -> Assistant:
        if mode is None and retrieval is None:
            return self.assistant
        if (mode, retrieval) not in self._readers:
            from ragmem.assistant import Assistant

            base = self.assistant
            config = base.config.with_overrides({
                "answering": {"mode": mode or base.config.answering.mode},
                "retrieval": {"mode": retrieval or base.config.retrieval.mode}})
            self._readers[(mode, retrieval)] = Assistant(
                base.memory, config, embedder=base.embedder, generator=base.generator)
        return self._readers[(mode, retrieval)]

    @property
    def uploads(self) -> Path:
        return self.assistant.memory.directory / "uploads"


class Service:
    """Serves ``names`` (default: every index under ``home``, ``$RAGMEM_HOME``).
    ``embedder``/``generator``: models to use instead of loading the configured ones
    (tests pass fakes)."""

    def __init__(self, config: Config, home: Path | None = None, names: Sequence[str] = (),
                 *, embedder: Embedder | None = None,
                 generator: TextGenerator | None = None) -> None:
        self.config = config
        self.home = home or indexes_home()
        self.fixed_names = tuple(names)
        for name in self.fixed_names:
            self._check_name(name)
            if not (self.home / name / "manifest.json").exists():
                raise HttpError(404, f"no index {name!r} under {self.home}; build it with: "
                                     f"ragmem index PATH --index {name}")
        self.limit = AskLimit(config.serve.max_asks, config.serve.retry_after_s)
        self.lock = threading.Lock()  # asks, and reads of a document, take turns
        self._opening = threading.Lock()
        self._served: dict[str, Served] = {}
        self._embedders: dict[str, Embedder] = {}
        if embedder is not None:
            self._embedders[embedder.model_id] = embedder
        self._generator = generator
        self._chats: OrderedDict[str, tuple[str, Chat]] = OrderedDict()

    # -- indexes --------------------------------------------------------------
    def names(self) -> list[str]:
        """The served indexes: those named, or every folder of ``home`` with an index."""
        if self.fixed_names:
            return list(self.fixed_names)
        if not self.home.is_dir():
            return []
        return sorted(p.name for p in self.home.iterdir()
                      if INDEX_NAME.fullmatch(p.name) and (p / "manifest.json").is_file())

    def served(self, name: str | None) -> Served:
        """The index ``name`` (None: the first served one), opened on first use."""
        if name is None:
            names = self.names()
            if not names:
                raise not_found(f"no index under {self.home}; build one with: ragmem index "
                                "PATH --index NAME")
            name = names[0]
        self._check_name(name)
        if name not in self.names():
            raise not_found(f"no index {name!r} is served here; "
                            f"served: {', '.join(self.names()) or 'none'}")
        with self._opening:
            if name not in self._served:
                self._served[name] = self._open(name)
            return self._served[name]

    def _open(self, name: str) -> Served:
        from ragmem.assistant import Assistant
        from ragmem.memory.manifest import read_manifest

        path = self.home / name
        wanted = read_manifest(path).embedder
        embedder = self._embedders.get(wanted) or next(
            (e for e in self._embedders.values() if e.model_id == wanted), None)
        assistant = Assistant.open(path, self.config, embedder=embedder,
                                   generator=self._generator)
        self._embedders.setdefault(wanted, assistant.embedder)

        def open_writer() -> Assistant:
            return Assistant.open(path, self.config, embedder=assistant.embedder,
                                  generator=assistant.generator)

        return Served(name, assistant, WriteQueue(open_writer))

    @staticmethod
    def _check_name(name: str) -> None:
        if not INDEX_NAME.fullmatch(name):
            raise not_found(f"{name!r} is not an index name (letters, digits, . _ -)")

    def warm_up(self) -> float:
        """Open every served index and load the models; then one question, so that the
        first real ask is warm. Returns the seconds it took."""
        import time

        t0 = time.perf_counter()
        for name in self.names():
            served = self.served(name)
            served.assistant.warm_up()
            self._generator = self._generator or served.assistant.generator
            if served.assistant.memory.counts()["windows"]:
                served.assistant.ask("What is this about?")
        return time.perf_counter() - t0

    def close(self) -> None:
        """Finish each index's running write, then close everything (locks released)."""
        for served in list(self._served.values()):
            served.writes.close()
            served.assistant.close()

    # -- asking -----------------------------------------------------------------
    @contextmanager
    def admitted(self) -> Iterator[None]:
        self.limit.enter()
        try:
            yield
        finally:
            self.limit.leave()

    def ask(self, request: AskRequest) -> tuple[Answer, str | None]:
        """The answer, and the conversation id it belongs to (None outside a chat)."""
        served = self.served(request.index)
        with self.lock:
            if request.conversation is None:
                reader = served.reader(request.mode, request.retrieval)
                return reader.ask(request.question, request.top_k, request.where), None
            conversation, chat = self._chat(served, request)
            return chat.ask(request.question), conversation

    def stream(self, request: AskRequest) -> Generator[tuple[str, Any], None, None]:
        """``("conversation", id)`` in a chat; ``("passages", [...])`` once retrieval
        and the working memory are done (not in a chat: its fill is the chat's own);
        ``("text", piece)`` as the answer is made; then ``("answer", Answer)``."""
        served = self.served(request.index)
        with self.lock:
            if request.conversation is not None:
                conversation, chat = self._chat(served, request)
                yield "conversation", conversation
                pieces = chat.stream(request.question)
            else:
                pipeline = served.reader(request.mode, request.retrieval).pipeline
                filled = pipeline.fill(request.question, request.top_k, request.where)
                yield "passages", {
                    "passages": [passage_dict(i, p) for i, p in
                                 enumerate(filled.buffer.passages, start=1)],
                    "timings": {"retrieve_s": filled.timings.retrieve_s,
                                "fill_s": filled.timings.fill_s}}
                pieces = pipeline.stream(filled)
            for piece in pieces:
                yield ("answer", piece) if isinstance(piece, Answer) else ("text", piece)

    def _chat(self, served: Served, request: AskRequest) -> tuple[str, Chat]:
        from ragmem.conversation import Chat

        key = request.conversation
        if key == NEW_CONVERSATION or key is None:
            key = secrets.token_urlsafe(12)
            chat = Chat(served.reader(request.mode, request.retrieval),
                        top_k=request.top_k, where=request.where)
            self._chats[key] = (served.name, chat)
            while len(self._chats) > self.config.serve.conversations:
                self._chats.popitem(last=False)
        elif key not in self._chats:
            raise not_found(f"conversation {key!r} is not known here (it expired, or the "
                            f"server restarted); send conversation \"{NEW_CONVERSATION}\"")
        index, chat = self._chats[key]
        if index != served.name:
            raise HttpError(409, f"conversation {key!r} is about index {index!r}, not "
                                 f"{served.name!r}; start a new one for {served.name!r}")
        self._chats.move_to_end(key)
        return key, chat

    # -- documents --------------------------------------------------------------
    def document(self, index: str, doc_id: str, start: int = 0,
                 end: int | None = None) -> dict[str, Any]:
        """A document's text (``start:end`` of it), its sections, and the offsets of
        the sentences that overlap that range. Found by index and id only."""
        served = self.served(index)
        memory = served.assistant.memory
        with self.lock:
            stored = next((d for d in memory.documents() if d.doc_id == doc_id), None)
            if stored is None:
                raise not_found(f"no document {doc_id!r} in {served.name!r}; list them at "
                                f"/api/indexes/{served.name}/documents")
            text = memory.document_text(doc_id)
            stop = len(text) if end is None else min(end, len(text))
            if not 0 <= start <= stop:
                raise HttpError(400, f"range {start}-{end} is outside the document "
                                     f"(0-{len(text)})")
            sentences = [[s.start, s.end] for s in memory.sentences(doc_id, 0, 1 << 30)
                         if s.end > start and s.start < stop]
            sections = memory.document_sections(doc_id)
        return {"doc_id": doc_id, "path": stored.path, "title": stored.title,
                "length": len(text), "start": start, "end": stop, "text": text[start:stop],
                "sections": sections, "sentences": sentences}


def passage_dict(number: int, p: Any) -> dict[str, Any]:
    """A passage as ``Answer.to_dict`` writes it."""
    return {"number": number, "doc_id": p.doc_id, "path": p.path, "section": p.section,
            "start": p.start, "end": p.end, "score": p.score, "text": p.text}
