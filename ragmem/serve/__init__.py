"""``ragmem serve``: one process keeps the models warm and serves indexes over HTTP.

    >>> app = create_app(Config().with_env())                       # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=8765)               # doctest: +SKIP

The modules, by job: ``service`` (the warm assistants, the ask limit, conversations),
``writes`` (one write queue per index: uploads and deletes, through the normal
indexer under its lock), ``uploads`` (what an upload may be, and where it is kept),
``security`` (the token, same-origin and host checks every request passes),
``errors`` (every failure as one JSON line), ``api`` (the routes), ``app`` (the
FastAPI application), ``client`` (``ragmem ask --server``), and ``static/`` (the page:
plain HTML, CSS and JS, nothing fetched from elsewhere). Needs ``pip install
'ragmem[serve]'`` (FastAPI, uvicorn); the client needs only the standard library.
"""

from __future__ import annotations

__all__ = ["create_app"]


def __getattr__(name: str) -> object:
    if name == "create_app":  # FastAPI is an extra: imported when the app is made
        from ragmem.serve.app import create_app

        return create_app
    raise AttributeError(name)
