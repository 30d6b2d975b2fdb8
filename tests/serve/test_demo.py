"""The API on the real demo index with the real models (built once per session): the
answer is the assistant's, its spans slice back out of the document the API serves,
the stream ends in the same answer, a chat follows up, and an upload and a delete go
through the real embedder."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from ragmem.serve.service import Service
from tests.serve.conftest import BASE_URL
from tests.serve.test_api import events

pytestmark = pytest.mark.slow

HEADLINE = "Which bank's cellar were the robbers tunnelling into?"


def spans(answer: dict) -> list[dict]:  # type: ignore[type-arg]
    return [*answer["citations"], *answer["suggestions"]]


def test_ask_answers_as_the_assistant_does(demo_client: TestClient,
                                           demo_service: Service) -> None:
    served = demo_client.post("/api/ask", json={"question": HEADLINE, "index": "demo"}).json()
    local = demo_service.served("demo").assistant.ask(HEADLINE).to_dict()
    drop = ("timings",)
    assert {k: v for k, v in served.items() if k not in drop} == \
        {k: v for k, v in json.loads(json.dumps(local)).items() if k not in drop}
    assert spans(served), "an answer cites its span, an abstention its closest evidence"
    for c in spans(served):
        doc = demo_client.get(f"/api/indexes/demo/documents/{c['doc_id']}",
                              params={"start": c["start"], "end": c["end"]}).json()
        assert doc["text"] == c["quote"]


def test_the_stream_ends_in_the_same_answer(demo_client: TestClient) -> None:
    whole = demo_client.post("/api/ask", json={"question": HEADLINE}).json()
    got = events(demo_client.post("/api/ask/stream", json={"question": HEADLINE}).text)
    assert got[0][0] == "passages" and got[-1][0] == "answer"
    streamed = got[-1][1]
    assert (streamed["answer"], streamed["citations"], streamed["suggestions"]) == \
        (whole["answer"], whole["citations"], whole["suggestions"])
    assert "".join(d for k, d in got if k == "text").strip() == streamed["answer"]


def test_a_chat_follows_up_on_the_demo(demo_client: TestClient) -> None:
    first = demo_client.post("/api/ask", json={"question": "Who is Irene Adler?",
                                               "conversation": "new"}).json()
    second = demo_client.post("/api/ask", json={"question": "Where did she live?",
                                                "conversation": first["conversation"]})
    assert second.status_code == 200, second.text
    assert second.json()["passages"] and second.json()["conversation"] == first["conversation"]


def test_upload_then_delete_with_the_real_embedder(demo_client: TestClient) -> None:
    text = (b"The lighthouse keeper of Skerryvore was named Alasdair Munro. "
            b"He kept the lamp lit for thirty winters.")
    r = demo_client.post("/api/indexes/demo/documents", headers={"Origin": BASE_URL},
                         files=[("files", ("skerryvore.txt", text))])
    assert r.status_code == 200 and r.json()["added"] == 1, r.text
    answer = demo_client.post("/api/ask", json={
        "question": "Who was the lighthouse keeper of Skerryvore?", "mode": "generate",
        "top_k": 3}).json()
    assert any(p["doc_id"] == "skerryvore.txt" for p in answer["passages"])
    assert demo_client.delete("/api/indexes/demo/documents/skerryvore.txt").status_code == 200
    ids = [d["doc_id"] for d in demo_client.get("/api/indexes/demo/documents").json()["documents"]]
    assert "skerryvore.txt" not in ids and len(ids) == 3
