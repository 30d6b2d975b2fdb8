"""Many readers and one writer: asks go on while an upload is indexed, two uploads to
one index queue, asks past the limit get a 503 with Retry-After, and a failure inside
the pipeline reaches the client as one line, never a traceback."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi.testclient import TestClient

from ragmem.serve.app import create_app
from tests.conftest import ECHO, EchoGenerator
from tests.serve.conftest import BASE_URL, GatedEmbedder, fake_service
from tests.serve.test_api import QUESTION, events


def upload(client: TestClient, name: str, text: bytes):  # type: ignore[no-untyped-def]
    return client.post("/api/indexes/notes/documents", files=[("files", (name, text))],
                       headers={"Origin": BASE_URL})


def test_asks_go_on_while_an_upload_is_indexed(home: Path) -> None:
    embedder = GatedEmbedder("Quaoar")  # the upload waits in its embedder, lock held
    service = fake_service(home, embedder=embedder)
    client = TestClient(create_app(service), base_url=BASE_URL)
    with ThreadPoolExecutor(2) as pool:
        pending = pool.submit(upload, client, "quaoar.txt", b"Quaoar is a dwarf planet.")
        assert embedder.waiting.wait(30)
        assert (home / "notes/write.lock").exists()
        r = client.post("/api/ask", json={"question": QUESTION})  # while it writes
        assert r.status_code == 200 and r.json()["citations"], r.text
        assert service.served("notes").writes.running is not None
        embedder.gate.set()
        assert pending.result().json()["added"] == 1
    r = client.post("/api/ask", json={"question": "Which dwarf planet is Quaoar?"})
    assert r.json()["citations"][0]["doc_id"] == "quaoar.txt"  # readers see the write
    service.close()


def test_two_uploads_to_one_index_queue(home: Path) -> None:
    embedder = GatedEmbedder("Quaoar")
    service = fake_service(home, embedder=embedder)
    client = TestClient(create_app(service), base_url=BASE_URL)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(upload, client, "quaoar.txt", b"Quaoar is a dwarf planet.")
        assert embedder.waiting.wait(30)
        queued = service.served("notes").writes.submit("index", [])  # behind the first
        assert queued.events[0].data == {"ahead": 1}
        later = pool.submit(upload, client, "sedna.txt", b"Sedna is far away.")
        embedder.gate.set()
        assert first.result().status_code == 200 and later.result().status_code == 200
        assert queued.result().kind == "done"
    ids = {d["doc_id"] for d in client.get("/api/indexes/notes/documents").json()["documents"]}
    assert {"quaoar.txt", "sedna.txt"} <= ids
    service.close()


def test_asks_past_the_limit_get_503_with_retry_after(home: Path) -> None:
    embedder = GatedEmbedder("Quaoar")  # an ask about Quaoar waits in its embedder
    config = ECHO.with_overrides({"serve": {"max_asks": 2, "retry_after_s": 7}})
    service = fake_service(home, config, embedder=embedder)
    client = TestClient(create_app(service), base_url=BASE_URL)
    with ThreadPoolExecutor(2) as pool:
        held = [pool.submit(client.post, "/api/ask", json={"question": "Where is Quaoar?"})
                for _ in range(2)]
        assert embedder.waiting.wait(30)
        while service.limit.active < 2:
            threading.Event().wait(0.01)
        for r in (client.post("/api/ask", json={"question": QUESTION}),
                  client.post("/api/ask/stream", json={"question": QUESTION})):
            assert r.status_code == 503 and r.headers["retry-after"] == "7"
            assert "limit is 2" in r.json()["error"]
        embedder.gate.set()
        assert [f.result().status_code for f in held] == [200, 200]
    assert service.limit.active == 0
    assert client.post("/api/ask", json={"question": QUESTION}).status_code == 200
    service.close()


class BrokenGenerator(EchoGenerator):
    def generate(self, prompt: str, max_new_tokens: int) -> str:
        raise RuntimeError("the model fell over\n  File \"x.py\", line 1")


def test_a_failure_is_one_line_never_a_traceback(home: Path) -> None:
    service = fake_service(home)
    service._generator = BrokenGenerator()
    client = TestClient(create_app(service), base_url=BASE_URL, raise_server_exceptions=False)
    r = client.post("/api/ask", json={"question": QUESTION})
    assert r.status_code == 500 and list(r.json()) == ["error"]
    assert r.json()["error"].startswith("unexpected RuntimeError: the model fell over")
    assert "\n" not in r.json()["error"] and "Traceback" not in r.text
    got = events(client.post("/api/ask/stream", json={"question": QUESTION}).text)
    assert got[-1][0] == "error" and got[-1][1]["status"] == 500
    assert service.limit.active == 0  # the failed asks gave their places back
    service.close()


def test_close_releases_the_write_lock(home: Path) -> None:
    service = fake_service(home)
    client = TestClient(create_app(service), base_url=BASE_URL)
    assert upload(client, "a.txt", b"Alpha.").status_code == 200
    service.close()
    from ragmem.memory.folder import write_lock

    with write_lock(home / "notes"):  # free: nobody holds it any more
        pass
