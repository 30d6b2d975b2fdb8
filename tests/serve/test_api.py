"""The API over the hand-written corpus with the fakes: every route, and the answers
are the assistant's own (the server runs the same pipeline, it does not make one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from ragmem.assistant import Assistant
from ragmem.conversation import HISTORY_HEADER
from ragmem.serve.service import Service
from tests.conftest import ECHO, EchoGenerator, KeywordEmbedder

QUESTION = "When did Neil Armstrong walk on the Moon?"


def events(body: str) -> list[tuple[str, Any]]:
    out = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_ask_returns_the_answer_json_of_the_assistant(client: TestClient, home: Path) -> None:
    r = client.post("/api/ask", json={"question": QUESTION, "index": "notes"})
    assert r.status_code == 200, r.text
    with Assistant.open(home / "notes", ECHO, embedder=KeywordEmbedder(),
                        generator=EchoGenerator()) as assistant:
        local = assistant.ask(QUESTION).to_dict()
    served = r.json()
    assert served.keys() == local.keys()
    assert {k: v for k, v in served.items() if k != "timings"} == \
        {k: v for k, v in json.loads(json.dumps(local)).items() if k != "timings"}
    assert served["citations"][0]["doc_id"] == "space/moon.txt"


def test_the_first_served_index_is_the_default(client: TestClient) -> None:
    assert client.post("/api/ask", json={"question": QUESTION}).json()["citations"]


def test_filters_mode_and_top_k_reach_the_pipeline(client: TestClient) -> None:
    r = client.post("/api/ask", json={"question": "Moon", "path": "cats*", "top_k": 1,
                                      "retrieval": "dense", "mode": "generate"})
    assert r.status_code == 200, r.text
    assert {p["doc_id"] for p in r.json()["passages"]} == {"cats.txt"}


def test_stream_sends_passages_then_text_then_the_answer(client: TestClient) -> None:
    for r in (client.post("/api/ask/stream", json={"question": QUESTION}),
              client.get("/api/ask/stream", params={"question": QUESTION})):
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        got = events(r.text)
        kinds = [k for k, _ in got]
        assert kinds[0] == "passages" and kinds[-1] == "answer"
        assert set(kinds[1:-1]) == {"text"}
        answer = got[-1][1]
        assert "".join(d for k, d in got if k == "text").strip() == answer["answer"]
        assert got[0][1]["passages"] == answer["passages"]


def test_a_conversation_carries_follow_ups(client: TestClient, service: Service) -> None:
    first = client.post("/api/ask", json={"question": QUESTION, "conversation": "new"}).json()
    conversation = first["conversation"]
    second = client.post("/api/ask/stream", json={"question": "And what orbits the Earth?",
                                                  "conversation": conversation})
    got = events(second.text)
    assert got[0] == ("conversation", {"conversation": conversation})
    follow_up = client.post("/api/ask", json={"question": "What about it?",
                                              "conversation": conversation}).json()
    assert follow_up["conversation"] == conversation
    _, chat = service._chats[conversation]
    assert len(chat.turns) == 3  # the same Chat as ragmem chat: every turn kept
    assert HISTORY_HEADER in chat.turns[-1].answer.prompt  # earlier turns in its prompt
    assert chat.turns[-1].query != "What about it?"  # condensed with the last turn's terms
    fresh = client.post("/api/ask", json={"question": QUESTION, "conversation": "new"}).json()
    assert fresh["conversation"] != conversation


def test_an_unknown_conversation_is_404(client: TestClient) -> None:
    r = client.post("/api/ask", json={"question": QUESTION, "conversation": "nope"})
    assert r.status_code == 404 and "new" in r.json()["error"]


def test_indexes_info_and_documents(client: TestClient, home: Path) -> None:
    with Assistant.open(home / "notes", ECHO, embedder=KeywordEmbedder(),
                        generator=EchoGenerator()) as assistant:
        counts = assistant.memory.counts()
    assert counts["documents"] == 3
    assert client.get("/api/indexes").json() == {"indexes": [{"name": "notes", **counts}]}
    info = client.get("/api/indexes/notes").json()
    assert (info["name"], info["documents"], info["embedder"]) == ("notes", 3, "keyword-test")
    ids = [d["doc_id"] for d in client.get("/api/indexes/notes/documents").json()["documents"]]
    assert ids == ["cats.txt", "space/mars.md", "space/moon.txt"]


def test_a_document_and_a_range_of_it(client: TestClient, corpus_dir: Path) -> None:
    text = (corpus_dir / "space/mars.md").read_text()
    whole = client.get("/api/indexes/notes/documents/space/mars.md").json()
    assert (whole["text"], whole["length"]) == (text, len(text))
    assert whole["sections"] == [[0, "Mars"]]
    for start, end in whole["sentences"]:  # offsets slice back to the sentences
        assert text[start:end].strip() == text[start:end] and text[start:end]
    part = client.get("/api/indexes/notes/documents/space%2Fmars.md",
                      params={"start": 20, "end": 60}).json()
    assert part["text"] == text[20:60] and (part["start"], part["end"]) == (20, 60)
    assert part["sentences"] and all(s < 60 and e > 20 for s, e in part["sentences"])
    r = client.get("/api/indexes/notes/documents/space/mars.md", params={"start": 999})
    assert r.status_code == 400 and "outside" in r.json()["error"]


def test_upload_indexes_the_files_and_delete_removes_them(client: TestClient,
                                                          home: Path) -> None:
    r = client.post("/api/indexes/notes/documents", headers={"Origin": BASE},
                    files=[("files", ("../../venus notes.txt", b"Venus is the hottest "
                                      b"planet. Its clouds are sulphuric acid.")),
                           ("files", ("ceres.md", b"# Ceres\n\nCeres is a dwarf planet."))])
    assert r.status_code == 200, r.text
    stats = r.json()
    assert (stats["names"], stats["added"], stats["failed"]) == \
        (["venus notes.txt", "ceres.md"], 2, [])
    assert stats["doc_ids"] == ["venus notes.txt", "ceres.md"]  # ids free: the names
    assert (home / "notes/uploads/venus notes.txt").is_file()
    assert not (home / "venus notes.txt").exists()  # the name was sanitised, not followed
    answer = client.post("/api/ask", json={"question": "Which planet is the hottest?"}).json()
    assert answer["citations"][0]["doc_id"] == "venus notes.txt"

    r = client.delete("/api/indexes/notes/documents/venus notes.txt")
    assert r.status_code == 200 and r.json()["removed"] == "venus notes.txt"
    assert not (home / "notes/uploads/venus notes.txt").exists()
    ids = [d["doc_id"] for d in client.get("/api/indexes/notes/documents").json()["documents"]]
    assert "venus notes.txt" not in ids and "ceres.md" in ids
    assert client.delete("/api/indexes/notes/documents/venus notes.txt").status_code == 404


def test_an_upload_whose_name_a_file_holds_returns_its_longer_id(
        client: TestClient, home: Path) -> None:
    r = client.post("/api/indexes/notes/documents", headers={"Origin": BASE},
                    files=[("files", ("cats.txt", b"Tigers are big cats. They swim.")),
                           ("files", ("more.jsonl", b'{"id": "r2", "text": "Two."}\n'
                                                    b'{"id": "r1", "text": "One."}\n'))])
    assert r.status_code == 200, r.text
    stats = r.json()
    # cats.txt is the corpus file's id: the upload is stored under a longer one.
    assert (stats["names"], stats["doc_ids"]) == \
        (["cats.txt", "more.jsonl"], ["uploads/cats.txt", "r1", "r2"])
    assert (stats["added"], stats["unchanged"], stats["moved"]) == (3, 0, 0)
    doc = client.get("/api/indexes/notes/documents/uploads/cats.txt").json()
    assert doc["text"] == "Tigers are big cats. They swim."
    assert client.get("/api/indexes/notes/documents/cats.txt").json()["text"] != doc["text"]
    again = client.post("/api/indexes/notes/documents",  # the same file again, streamed
                        headers={"Origin": BASE, "Accept": "text/event-stream"},
                        files=[("files", ("cats.txt", b"Tigers are big cats. They swim."))])
    done = dict(events(again.text))["done"]
    assert (done["doc_ids"], done["unchanged"]) == (["uploads/cats.txt"], 1)
    r = client.delete("/api/indexes/notes/documents/uploads/cats.txt")
    assert r.status_code == 200 and not (home / "notes/uploads/cats.txt").exists()
    assert (home / "notes/uploads/more.jsonl").is_file()


def test_upload_progress_events(client: TestClient) -> None:
    r = client.post("/api/indexes/notes/documents",
                    headers={"Origin": BASE, "Accept": "text/event-stream"},
                    files=[("files", ("a.txt", b"Alpha is first. Beta is second."))])
    kinds = [k for k, _ in events(r.text)]
    assert kinds[:2] == ["queued", "started"] and kinds[-1] == "done"
    assert "progress" in kinds


BASE = "http://127.0.0.1:8765"


def test_the_page_and_its_files_fetch_nothing_from_elsewhere(client: TestClient) -> None:
    from ragmem.serve.app import STATIC

    page = client.get("/")
    assert page.status_code == 200 and "<title>ragmem</title>" in page.text
    names = sorted(p.name for p in STATIC.iterdir())
    assert names == ["app.css", "app.js", "docs.html", "docs.js", "index.html"]
    for name in names:
        r = client.get(f"/static/{name}")
        assert r.status_code == 200
        assert "http://" not in r.text and "https://" not in r.text and "//cdn" not in r.text
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_the_api_is_documented(client: TestClient) -> None:
    assert "docs.js" in client.get("/docs").text
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/ask", "/api/ask/stream", "/api/indexes", "/api/indexes/{name}",
            "/api/indexes/{name}/documents", "/api/indexes/{name}/documents/{doc_id}"} <= set(paths)
    assert set(paths["/api/indexes/{name}/documents"]) == {"get", "post"}
