"""``ragmem ask --server URL`` (or ``RAGMEM_SERVER``): the question goes to a running
``ragmem serve``, whose models are warm, instead of loading them in this process. Only
the standard library: the client needs no extra.

    >>> answer, data = ask("http://127.0.0.1:8765", {"index": "demo",
    ...                    "question": "Who is Irene Adler?"})          # doctest: +SKIP

The ``Answer`` is rebuilt from the server's JSON, each cited passage with the sentence
its span stands in (fetched from the document), so that it prints as a local one does.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

from ragmem.errors import RagmemError
from ragmem.types import Answer, Citation, Passage, Sentence, Timings

TIMEOUT_S = 600.0


def _request(url: str, path: str, body: dict[str, Any] | None = None,
             accept: str = "application/json") -> Any:
    headers = {"Accept": accept}
    token = os.environ.get("RAGMEM_SERVE_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url.rstrip("/") + path, data=data, headers=headers,
                                     method="POST" if body is not None else "GET")
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read() or b"{}").get("error") or exc.reason
        except ValueError:
            message = exc.reason
        raise RagmemError(f"the server at {url} answered {exc.code}: {message}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RagmemError(f"no ragmem server at {url} ({reason}); start one with: ragmem "
                          "serve, or ask without --server") from exc


def ask(url: str, body: dict[str, Any]) -> tuple[Answer, dict[str, Any]]:
    """``POST /api/ask``: the answer, and the server's JSON as it came."""
    with _request(url, "/api/ask", body) as response:
        data = json.load(response)
    return rebuild(url, body.get("index"), data), data


def stream(url: str, body: dict[str, Any]) -> Iterator[str | Answer]:
    """``POST /api/ask/stream``: the answer's text as it comes, then the ``Answer``."""
    with _request(url, "/api/ask/stream", body, "text/event-stream") as response:
        event = ""
        for raw in response:
            line = raw.decode("utf-8").rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                if event == "text":
                    yield data
                elif event == "answer":
                    yield rebuild(url, body.get("index"), data)
                elif event == "error":
                    raise RagmemError(f"the server at {url} failed: {data['error']}")


def rebuild(url: str, index: str | None, data: dict[str, Any]) -> Answer:
    """An ``Answer`` from its JSON; the passages a citation stands in get its sentence."""
    citations = tuple(Citation(**c) for c in data["citations"])
    passages = []
    for p in data["passages"]:
        cited = [c for c in citations if c.number == p["number"]]
        sentences = _sentences(url, index, cited[0]) if cited and index else ()
        passages.append(Passage(p["doc_id"], p["path"], p["start"], p["end"], p["score"],
                                sentences or (Sentence(p["doc_id"], 0, p["start"], p["end"],
                                                       p["text"]),)))
    return Answer(question=data["question"], text=data["answer"], citations=citations,
                  passages=tuple(passages), prompt="", dropped=tuple(data["dropped"]),
                  timings=Timings(**data["timings"]), tokens_used=data["tokens_used"],
                  token_budget=data["token_budget"], mode=data["mode"],
                  abstained=data["abstained"], confidence=data["confidence"],
                  suggestions=tuple(Citation(**c) for c in data["suggestions"]))


def _sentences(url: str, index: str, c: Citation) -> tuple[Sentence, ...]:
    """The sentence holding the span of ``c``, read from the server's document."""
    query = urllib.parse.urlencode({"start": max(0, c.start - 2000), "end": c.end + 2000})
    path = (f"/api/indexes/{urllib.parse.quote(index, safe='')}/documents/"
            f"{urllib.parse.quote(c.doc_id, safe='')}?{query}")
    with _request(url, path) as response:
        doc = json.load(response)
    for start, end in doc["sentences"]:
        if start <= c.start and c.end <= end and start >= doc["start"] and end <= doc["end"]:
            text = doc["text"][start - doc["start"]:end - doc["start"]]
            return (Sentence(c.doc_id, 0, start, end, text),)
    return ()
