"""The Ray cluster an engine runs on: ``RAY_ADDRESS``'s, or a local Ray started here
(and made to die with this process: ``ragmem.distributed.reaper``); Ray Data set for a
command line; errors of ours raised on a worker brought back as themselves.
"""

from __future__ import annotations

import copy
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from ragmem.distributed.reaper import LocalRay
from ragmem.errors import EngineError, RagmemError

INSTALL = "pip install 'ragmem[scale]'"
CONNECT_TIMEOUT_S = 5.0  # ray.init retries an unreachable address for minutes


def import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as error:
        raise EngineError(f"--engine ray needs Ray, which is not installed; {INSTALL}") \
            from error
    return ray


@contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Ray as it is when already started here (left running), else connected to
    ``address`` or ``$RAY_ADDRESS``, else a local Ray; one started here is shut down,
    and dies with this process however it ends (``reaper.LocalRay``)."""
    ray = import_ray()
    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        _reachable(address)
    with LocalRay() if address is None else nullcontext() as local:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
        except Exception as error:  # Ray raises ConnectionError, RuntimeError, ValueError...
            where = f"the Ray cluster at {address}" if address else "a local Ray"
            raise EngineError(f"could not start {where} ({_first_line(error)}); check "
                              "RAY_ADDRESS (unset it for a local Ray) or use --engine local") \
                from error
        finally:
            if local is not None:
                local.started()
        try:
            yield
        finally:
            ray.shutdown()


def _reachable(address: str) -> None:
    """Fail in seconds, not minutes, when nothing listens at ``address``."""
    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except (OSError, ValueError) as error:
        raise EngineError(f"cannot reach the Ray cluster at {address} ({_first_line(error)});"
                          " start it (ray start --head), fix RAY_ADDRESS, or unset it for a "
                          "local Ray") from error


@contextmanager
def data_context(ray: Any) -> Iterator[None]:
    """Ray Data set for a command line: no progress bars or logs of its own (the CLI
    draws its bar), and an error of ours raised in a task comes back as itself, not as a
    ``UserCodeException``. The caller's settings are put back after the run."""
    context = ray.data.DataContext.get_current()
    settings = {"enable_progress_bars": False, "raise_original_map_exception": True}
    before = {k: getattr(context, k) for k in settings}
    logger = logging.getLogger("ray.data")
    level = logger.level
    for key, value in settings.items():
        setattr(context, key, value)
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for key, value in before.items():
            setattr(context, key, value)
        logger.setLevel(level)


@contextmanager
def errors_unwrapped() -> Iterator[None]:
    """A ragmem error raised in a task or actor (a model that will not load, say) comes
    out as itself, one line, not as Ray's wrapper with the worker's traceback."""
    try:
        yield
    except Exception as error:
        cause = _ragmem_cause(error)
        if cause is None or cause is error:
            raise
        raise cause from error


def _ragmem_cause(error: BaseException) -> RagmemError | None:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        inner = getattr(current, "cause", None)  # a RayTaskError keeps the original here
        if isinstance(inner, BaseException):
            current = inner
        elif isinstance(current, RagmemError):
            return _plain(current)
        else:
            current = current.__cause__
    return None


def _plain(error: RagmemError) -> RagmemError:
    """``error`` with its own message: Ray Data appends its retry advice to the one it
    carried back."""
    plain = copy.copy(error)
    plain.args = (f"{error.problem}; {error.fix.in_python()}" if error.fix else error.problem,)
    return plain


def _first_line(error: BaseException) -> str:
    text = " ".join(str(error).split("\n")[0].split())
    return text[:200] or type(error).__name__
