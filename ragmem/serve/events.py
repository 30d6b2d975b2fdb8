"""Server-sent events out of work done on a thread: the work runs to its end (or to the
client leaving) in its own thread and releases what it holds there, whatever the client
does; the response only relays what it emits.

    event: text
    data: "the City and Suburban Bank"

"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

Emit = Callable[[str, Any], None]


def sse(event: str, data: Any) -> bytes:
    """One event: its name and its data as one line of JSON."""
    return (f"event: {event}\ndata: "
            f"{json.dumps(data, ensure_ascii=False, default=str)}\n\n").encode()


def relay(work: Callable[[Emit, Callable[[], bool]], None]) -> AsyncIterator[bytes]:
    """Start ``work(emit, gone)`` on a thread now, and return what it emits as events;
    ``gone()`` turns true once the client has left, so that the work can stop early.
    Started before the response is, so that what the work holds is released even if
    the response never begins."""
    events: queue.Queue[bytes | None] = queue.Queue()
    left = threading.Event()

    def run() -> None:
        try:
            work(lambda event, data: events.put(sse(event, data)), left.is_set)
        finally:
            events.put(None)

    threading.Thread(target=run, name="ragmem-stream", daemon=True).start()

    async def relayed() -> AsyncIterator[bytes]:
        import anyio.to_thread

        try:
            while (item := await anyio.to_thread.run_sync(events.get)) is not None:
                yield item
        finally:
            left.set()

    return relayed()
