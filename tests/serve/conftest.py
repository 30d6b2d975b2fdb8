"""Servers for the serve tests: a fast one over the hand-written corpus with the fakes
(``KeywordEmbedder``, ``EchoGenerator``: generate mode), and, for the slow tests, one
over the real demo index with the real models, built once per session."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="ragmem[serve] is not installed: pip install "
                                      "'ragmem[serve]'")

from fastapi.testclient import TestClient  # noqa: E402

from ragmem.assistant import Assistant  # noqa: E402
from ragmem.config import Config  # noqa: E402
from ragmem.serve.app import create_app  # noqa: E402
from ragmem.serve.service import Service  # noqa: E402
from tests.conftest import ECHO, EchoGenerator, KeywordEmbedder  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DEMO_CORPUS = ROOT / "ragmem/demo/corpus"
BASE_URL = "http://127.0.0.1:8765"


class GatedEmbedder(KeywordEmbedder):
    """The keyword embedder, held at ``gate`` whenever it embeds text that holds
    ``word``: a write (or an ask) that waits exactly where the test wants it to."""

    def __init__(self, word: str) -> None:
        self.word = word
        self.gate = threading.Event()
        self.waiting = threading.Event()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if any(self.word in t for t in texts):
            self.waiting.set()
            assert self.gate.wait(30), "the test never opened the gate"
        return super().embed(texts)


def build(home: Path, corpus: Path, name: str = "notes",
          embedder: KeywordEmbedder | None = None) -> None:
    with Assistant.create(home / name, ECHO, embedder=embedder or KeywordEmbedder(),
                          generator=EchoGenerator()) as assistant:
        assistant.index([corpus])


def fake_service(home: Path, config: Config = ECHO,
                 embedder: KeywordEmbedder | None = None) -> Service:
    return Service(config, home, embedder=embedder or KeywordEmbedder(),
                   generator=EchoGenerator())


@pytest.fixture
def home(tmp_path: Path, corpus_dir: Path) -> Path:
    home = tmp_path / "served"
    build(home, corpus_dir)
    return home


@pytest.fixture
def service(home: Path) -> Iterator[Service]:
    service = fake_service(home)
    yield service
    service.close()


@pytest.fixture
def client(service: Service) -> Iterator[TestClient]:
    # Not entered: the app's lifespan would close the service, which its fixture does.
    yield TestClient(create_app(service), base_url=BASE_URL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn on a free localhost port, in a thread; its URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo corpus indexed with the real embedder, once per session."""
    home = tmp_path_factory.mktemp("served-demo")
    with Assistant.create(home / "demo", Config()) as assistant:
        assistant.index([DEMO_CORPUS])
    return home


@pytest.fixture(scope="session")
def demo_service(demo_home: Path) -> Iterator[Service]:
    """The real models, warm, over the demo index (one per session)."""
    service = Service(Config(), demo_home)
    service.warm_up()
    yield service
    service.close()


@pytest.fixture
def demo_client(demo_service: Service) -> Iterator[TestClient]:
    yield TestClient(create_app(demo_service), base_url=BASE_URL)
