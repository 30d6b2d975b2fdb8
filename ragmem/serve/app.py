"""The FastAPI application: the page, the API, the checks every request passes, and
failures as one JSON line.

    >>> app = create_app(Service(Config().with_env()))              # doctest: +SKIP
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ragmem import __version__
from ragmem.errors import RagmemError
from ragmem.serve.api import router
from ragmem.serve.errors import HttpError, status_and_message
from ragmem.serve.security import COOKIE, HEADERS, Guard
from ragmem.serve.service import Service

STATIC = resources.files("ragmem.serve") / "static"


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one shape of every failure: ``{"error": "..."}``."""
    return JSONResponse({"error": message}, status, headers={**HEADERS, **(headers or {})})


def create_app(service: Service, host: str | None = None) -> FastAPI:
    """The app serving ``service``, guarded for a server bound to ``host`` (default:
    the service's ``serve.host``)."""
    settings = service.config.serve
    guard = Guard(host or settings.host, settings.token, settings.max_upload_bytes)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        yield
        service.close()  # Ctrl-C: the running write finishes, the locks are released

    app = FastAPI(title="ragmem", version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None, description="Answers from your documents, with the exact "
                  "span they came from. Errors are one JSON line: {\"error\": \"...\"}.")

    @app.middleware("http")
    async def checked(request: Request, call_next: Any) -> Response:
        query_token = request.query_params.get("token") if request.url.path == "/" else None
        try:
            guard.check(request.method, request.url.path,
                        {k.lower(): v for k, v in request.headers.items()},
                        request.cookies, query_token)
        except HttpError as exc:
            return error(exc.status, str(exc), exc.headers)
        response: Response = await call_next(request)
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
            problems.append("the body is not valid JSON" if e.get("type") == "json_invalid"
                            else f"{where}: {e.get('msg', 'invalid')}")
        return error(400 if any("JSON" in p for p in problems) else 422,
                     "bad request: " + "; ".join(problems))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 404:
            message = f"nothing at {request.url.path}; the API is under /api (see /docs)"
        return error(exc.status_code, message, dict(exc.headers or {}))

    @app.exception_handler(RagmemError)  # ragmem's own: answered, not logged as a crash
    @app.exception_handler(Exception)  # anything else: answered the same, and logged
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        status, message, headers = status_and_message(exc)
        return error(status, message, headers)

    @app.get("/", include_in_schema=False)
    def page(request: Request) -> Response:
        if "token" in request.query_params:  # checked already: keep it as a cookie
            response = RedirectResponse("/", 303)
            response.set_cookie(COOKIE, request.query_params["token"], httponly=True,
                                samesite="strict")
            return response
        return FileResponse(str(STATIC / "index.html"), headers={"Cache-Control": "no-store"})

    @app.get("/docs", include_in_schema=False)
    def docs() -> Response:
        return FileResponse(str(STATIC / "docs.html"))

    app.include_router(router(service))
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app
