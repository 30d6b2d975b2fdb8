"""``ragmem serve``: the page and the HTTP API over the indexes, models kept warm."""

from __future__ import annotations

import socket

import click

from ragmem.config import Config


@click.command()
@click.option("--index", "names", multiple=True, metavar="NAME",
              help="Serve this index (repeatable; default: every index under RAGMEM_HOME).")
@click.option("--host", help="Address to listen on (default 127.0.0.1; any other needs "
              "a token).")
@click.option("--port", type=int, help="Port (default 8765).")
@click.option("--token", help="Require this token on every request (or set "
              "RAGMEM_SERVE_TOKEN); needed for any address but 127.0.0.1.")
@click.option("--max-asks", type=int, help="Asks running or waiting at once; more get a "
              "503 with Retry-After (default 8).")
@click.option("--open", "open_page", is_flag=True, help="Open the page in the browser once "
              "the models are warm.")
def serve(names: tuple[str, ...], host: str | None, port: int | None, token: str | None,
          max_asks: int | None, open_page: bool) -> None:
    """Serve indexes as a web page and a JSON API (documented at /docs).

    One process keeps the models warm for every question. Ctrl-C stops it; a write
    under way finishes first, and the write locks are released.

    \b
    Examples:
      ragmem serve                          # every index under RAGMEM_HOME, on 127.0.0.1:8765
      ragmem serve --index demo --open      # and open the page in the browser
      ragmem serve --index demo --port 9000
      RAGMEM_SERVE_TOKEN=s3cret ragmem serve --host 0.0.0.0
      ragmem ask demo "Who is Irene Adler?" --server http://127.0.0.1:8765
    """
    try:
        import uvicorn

        from ragmem.serve.app import create_app
    except ImportError as exc:
        raise click.ClickException(f"ragmem serve needs its extra ({exc.name} is missing): "
                                   "pip install 'ragmem[serve]'") from exc
    from ragmem.serve.service import Service

    flags = {k: v for k, v in {"host": host, "port": port, "token": token,
                               "max_asks": max_asks}.items() if v is not None}
    config = Config().with_env().with_overrides({"serve": flags})
    settings = config.serve
    service = Service(config, names=names)
    if not service.names():
        raise click.ClickException(f"no index under {service.home} to serve; build one with: "
                                   "ragmem index PATH --index NAME")
    app = create_app(service)  # refuses another address than loopback without a token
    _refuse_taken_port(settings.host, settings.port)
    click.echo(f"loading models for {', '.join(service.names())} ...", err=True)
    seconds = service.warm_up()
    url = f"http://{settings.host}:{settings.port}/"
    click.echo(f"ragmem serve: {url}{'?token=TOKEN' if settings.token else ''}  (models "
               f"warm in {seconds:.1f} s; API docs at {url}docs; Ctrl-C to stop)")
    if open_page:
        import threading
        import webbrowser

        threading.Timer(1.0, webbrowser.open, [url]).start()
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning",
                timeout_graceful_shutdown=5)


def _refuse_taken_port(host: str, port: int) -> None:
    """Fail in one line, before the models load, when the port is in use."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {host}:{port} ({exc.strerror}); "
                                       "pick another --port") from exc
