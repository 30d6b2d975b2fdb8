"""The HTTP API's routes (the JSON shapes are ``Answer.to_dict``'s and the memory's own;
``/docs`` lists them from the OpenAPI schema).

    POST   /api/ask                                 the Answer JSON of ``ragmem ask --json``
    POST   /api/ask/stream, GET /api/ask/stream     the same as server-sent events
    GET    /api/indexes                             served indexes and their counts
    GET    /api/indexes/{name}                      ``ragmem info``'s figures
    GET    /api/indexes/{name}/documents            the documents
    GET    /api/indexes/{name}/documents/{doc_id}   text (?start=&end=), sections, sentences
    POST   /api/indexes/{name}/documents            upload files (multipart ``files``): the
                                                    counts, ``names`` and stored ``doc_ids``
    DELETE /api/indexes/{name}/documents/{doc_id}   remove a document
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ragmem.serve.errors import HttpError, not_found, status_and_message
from ragmem.serve.events import Emit, relay
from ragmem.serve.service import AskRequest, Service
from ragmem.serve.uploads import safe_name, save, uploaded_file
from ragmem.types import Answer, Filter

MAX_FILES = 100  # files in one upload


class AskBody(BaseModel):
    """A question to one index (``index``: the first served one when left out)."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=4000)
    index: str | None = None
    top_k: int | None = Field(default=None, ge=1, le=100)
    mode: Literal["auto", "extract", "generate"] | None = Field(
        default=None, description="answer mode: extract (a verbatim span or 'not found'), "
                                  "generate (the generator's words), auto")
    retrieval: Literal["dense", "lexical", "hybrid"] | None = None
    doc_ids: list[str] | None = Field(default=None, description="only these documents")
    path: str | None = Field(default=None, description="only documents whose id or path "
                                                       "matches this glob")
    where: dict[str, str | int | float | bool] | None = Field(
        default=None, description="only documents whose metadata equals these values")
    conversation: str | None = Field(
        default=None, description="'new' starts a conversation; its id (returned as "
                                  "'conversation') asks a follow-up in it")

    def request(self) -> AskRequest:
        where = None
        if self.doc_ids or self.path or self.where:
            where = Filter(doc_ids=tuple(self.doc_ids) if self.doc_ids else None,
                           path_glob=self.path, metadata=dict(self.where or {}))
        return AskRequest(self.question, self.index, self.top_k, self.mode, self.retrieval,
                          where, self.conversation)


def answer_json(answer: Answer, conversation: str | None) -> dict[str, Any]:
    data = answer.to_dict()
    if conversation is not None:
        data["conversation"] = conversation
    return data


def router(service: Service) -> APIRouter:
    api = APIRouter(prefix="/api")

    @api.post("/ask", summary="Ask a question; the Answer JSON of `ragmem ask --json`")
    def ask(body: AskBody) -> dict[str, Any]:
        with service.admitted():
            answer, conversation = service.ask(body.request())
        return answer_json(answer, conversation)

    @api.post("/ask/stream", summary="Ask, answered as server-sent events: passages, "
              "text pieces, then the Answer")
    def ask_stream_post(body: AskBody) -> StreamingResponse:
        return _stream(service, body.request())

    @api.get("/ask/stream", summary="The same, for EventSource (no conversation)")
    def ask_stream_get(question: Annotated[str, Query(min_length=1, max_length=4000)],
                       index: str | None = None,
                       top_k: Annotated[int | None, Query(ge=1, le=100)] = None,
                       mode: Literal["auto", "extract", "generate"] | None = None,
                       retrieval: Literal["dense", "lexical", "hybrid"] | None = None,
                       path: str | None = None) -> StreamingResponse:
        return _stream(service, AskBody(question=question, index=index, top_k=top_k,
                                        mode=mode, retrieval=retrieval, path=path).request())

    @api.get("/indexes", summary="The served indexes, with their counts")
    def indexes() -> dict[str, Any]:
        out = []
        for name in service.names():
            memory = service.served(name).assistant.memory
            with service.lock:
                out.append({"name": name, **memory.counts()})
        return {"indexes": out}

    @api.get("/indexes/{name}", summary="An index's figures (`ragmem info`)")
    def index_info(name: str) -> dict[str, Any]:
        served = service.served(name)
        with service.lock:
            info = asdict(served.assistant.memory.info())
        return {"name": name, **info, "writing": served.writes.running is not None}

    @api.get("/indexes/{name}/documents", summary="An index's documents")
    def documents(name: str) -> dict[str, Any]:
        memory = service.served(name).assistant.memory
        with service.lock:
            return {"documents": [asdict(d) for d in memory.documents()]}

    @api.get("/indexes/{name}/documents/{doc_id:path}",
             summary="A document's text (or ?start=&end= of it), sections and sentences")
    def document(name: str, doc_id: str, start: Annotated[int, Query(ge=0)] = 0,
                 end: Annotated[int | None, Query(ge=0)] = None) -> dict[str, Any]:
        return service.document(name, doc_id, start, end)

    @api.delete("/indexes/{name}/documents/{doc_id:path}", summary="Remove a document")
    def delete(name: str, doc_id: str) -> dict[str, Any]:
        served = service.served(name)
        with service.lock:
            stored = next((d for d in served.assistant.memory.documents()
                           if d.doc_id == doc_id), None)
        if stored is None:
            raise not_found(f"no document {doc_id!r} in {name!r}")
        result = served.writes.submit("remove", [doc_id]).result()
        if result.kind == "error":
            raise HttpError(result.data["status"], result.data["error"])
        upload = uploaded_file(served.uploads, stored.path)
        if upload is not None:
            upload.unlink(missing_ok=True)
        return {"removed": doc_id, "windows": result.data["removed"]}

    @api.post("/indexes/{name}/documents", summary="Upload files to index (multipart "
              "'files'); with Accept: text/event-stream, progress events")
    async def upload(name: str, request: Request) -> Any:
        served = await run_in_threadpool(service.served, name)
        limit = service.config.serve.max_upload_bytes
        form = await request.form(max_files=MAX_FILES, max_fields=MAX_FILES)
        files = [f for f in form.getlist("files") if not isinstance(f, str)]
        if not files:
            raise HttpError(400, "no files: send them as multipart form field 'files'")
        names = [safe_name(f.filename or "") for f in files]  # all checked, none saved yet
        total = sum(f.size or 0 for f in files)
        if total > limit:
            raise HttpError(413, f"the files are {total:,} bytes, over the {limit:,}-byte "
                                 "limit (RAGMEM_SERVE_MAX_UPLOAD_BYTES)")
        paths = [await run_in_threadpool(save, served.uploads, n, f.file)
                 for n, f in zip(names, files, strict=True)]
        job = served.writes.submit("index", paths)
        if "text/event-stream" in request.headers.get("accept", ""):
            def follow(emit: Emit, gone: Any) -> None:
                for event in job.follow():
                    emit(event.kind, event.data)
            return StreamingResponse(relay(follow), media_type="text/event-stream")
        result = await run_in_threadpool(job.result)
        if result.kind == "error":
            return JSONResponse({"error": result.data["error"]}, result.data["status"])
        return {"index": name, **result.data, "names": names}

    return api


def _stream(service: Service, request: AskRequest) -> StreamingResponse:
    service.served(request.index)  # an unknown index, or the limit, refused now with
    service.limit.enter()          # its status, not as an event inside the stream

    def work(emit: Emit, gone: Any) -> None:
        conversation = None
        try:
            with contextlib.closing(service.stream(request)) as events:
                for kind, value in events:
                    if gone():
                        return
                    if kind == "conversation":
                        conversation = value
                        emit(kind, {"conversation": value})
                    elif kind == "answer":
                        emit(kind, answer_json(value, conversation))
                    else:
                        emit(kind, value)
        except Exception as exc:  # the stream has begun: the error is its last event
            status, message, _ = status_and_message(exc)
            emit("error", {"status": status, "error": message})
        finally:
            service.limit.leave()

    return StreamingResponse(relay(work), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store"})
