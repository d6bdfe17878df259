"""uvicorn's HTTP protocol with the two limits it lacks on a request's head.

uvicorn (httptools) bounds neither the size of a request line plus headers nor
the time a client may take to send them: its only timer is for idle keep-alive
connections. A client that sends a partial request line and then nothing holds a
connection (and a file descriptor) for ever, and a 20 MB header is buffered whole.
``BoundedHttpToolsProtocol`` adds both, read from the ``MOCKSERVER_*`` settings
(``mockserver serve`` exports them to every worker):

- **head size** (``max_header_bytes``): once the bytes received for the current
  request's head pass the limit and the head is still incomplete, the server answers
  431 in the provider's error body and closes the connection. At most one read
  (256 KiB) beyond the limit is ever held.
- **head time** (``header_timeout_seconds``): from the moment a connection opens, or
  a new request's first byte arrives, the head must be complete within the limit;
  otherwise the server answers 408 (or, if not a byte came, says nothing) and closes
  the connection. A request being answered is never cut: the timer waits for it.

Two costs per request are also taken off uvicorn's path:

- **one write per answer**: uvicorn writes a response's status line and headers, then
  its body, as two writes (two system calls, two TCP segments). The request cycle is
  given a transport (``OneWrite``) that holds the head until the body's first bytes (or
  the end of the answer, or a close) and writes both at once.
- **one timer per connection for each deadline**, not one per request (``Deadline``): a
  request's first byte moves the head's deadline, a finished answer the keep-alive deadline
  (uvicorn's ``timeout_keep_alive``: an idle connection is closed when it passes, as uvicorn
  does); the timer, armed when none is, re-arms itself for a later deadline. uvicorn starts
  and cancels a keep-alive timer for every answer; this saves that (the gain: docs/performance.md).

The body's own timeout is enforced by the application (``web.edge``).
``mockserver serve`` uses this protocol (``http=`` of ``uvicorn.run``) whenever
httptools is installed (it is part of ``uvicorn[standard]``); with h11 it passes
``h11_max_incomplete_event_size`` instead, and the head timeout is not enforced.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .core.clock import wake_all
from .core.errors import error_body
from .core.jsonio import dumps

__all__ = ["BoundedHttpToolsProtocol", "Deadline", "OneWrite", "head_limits"]
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@functools.cache
def head_limits() -> tuple[int, float]:
    """(max_header_bytes, header_timeout_seconds) of this process's settings."""
    from .settings import Settings

    settings = Settings.from_env()
    return settings.max_header_bytes, settings.header_timeout_seconds


def _refusal(status: int, message: str) -> bytes:
    body = dumps(error_body(status, message, "invalid_request_error"))
    head = [
        STATUS_LINE[status],
        b"content-type: application/json\r\n",
        b"content-length: %d\r\n" % len(body),
        b"connection: close\r\n\r\n",
    ]
    return b"".join(head) + body


class OneWrite:
    """The transport as uvicorn's request cycle sees it: a response's head (its first write that is
    not ``100 Continue``) is held and written together with what comes next; ``flush`` writes it
    alone (the answer ended without a body write: ``HEAD``), ``close`` flushes first."""

    __slots__ = ("expecting_head", "held", "transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.held: bytes | None = None
        self.expecting_head = False

    def write(self, data: bytes) -> None:
        if self.held is not None:
            held, self.held = self.held, None
            self.transport.write(held + data)
        elif self.expecting_head and data != CONTINUE:
            self.expecting_head = False
            self.held = data
        else:
            self.transport.write(data)

    def flush(self) -> None:
        if self.held is not None:
            held, self.held = self.held, None
            self.transport.write(held)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class Deadline:
    """A deadline that moves often, on one timer: moving it costs no timer (an armed timer that fires
    before the deadline re-arms itself for it; one that finds no deadline lapses). ``expired`` is
    called once the loop's time passes the deadline set last."""

    __slots__ = ("at", "expired", "handle", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, expired: Callable[[], None]) -> None:
        self.loop = loop
        self.expired = expired
        self.at: float | None = None
        self.handle: asyncio.TimerHandle | None = None

    def set(self, seconds: float) -> None:
        """The deadline is ``seconds`` from now."""
        self.at = self.loop.time() + seconds
        if self.handle is None:
            self.handle = self.loop.call_at(self.at, self._fire)

    def clear(self) -> None:
        """No deadline (an armed timer lapses when it fires)."""
        self.at = None

    def stop(self) -> None:
        """No deadline and no timer (the connection is gone: nothing of it is held by the loop)."""
        self.at = None
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def _fire(self) -> None:
        self.handle = None
        at = self.at
        if at is None:
            return
        if self.loop.time() < at:  # moved since the timer was armed
            self.handle = self.loop.call_at(at, self._fire)
            return
        self.at = None
        self.expired()


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_head, self.head_timeout = head_limits()
        self._reading_head = True
        self._head_bytes = 0
        self._head = Deadline(self.loop, self._head_timed_out)
        self._idle = Deadline(self.loop, self.timeout_keep_alive_handler)  # uvicorn's keep-alive timeout
        self._one_write: OneWrite | None = None

    def _head_timed_out(self) -> None:
        if self.transport.is_closing() or not self._reading_head:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self._head.set(self.head_timeout)  # an earlier request is being answered: never cut it
            return
        if self._head_bytes:
            message = f"request line and headers not received within {self.head_timeout:g} s"
            self.transport.write(_refusal(408, message))
        self.transport.close()

    # -- uvicorn's hooks ------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._one_write = OneWrite(transport)
        self._head.set(self.head_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._head.stop()
        self._idle.stop()
        super().connection_lost(exc)

    def _unset_keepalive_if_required(self) -> None:
        """uvicorn's: a byte came, or an answer ended: the connection is not idle."""
        self._idle.clear()

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._reading_head and self._head_bytes > self.max_head and not self.transport.is_closing():
            self._head.clear()
            message = f"request line and headers exceed {self.max_head} bytes"
            self.logger.warning("mockserver: %s; closing the connection", message)
            self.transport.write(_refusal(431, message))
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """A malformed request: uvicorn's 400, in the provider's error body."""
        self.transport.write(_refusal(400, msg))
        self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head = True
        self._head.set(self.head_timeout)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._head_bytes = 0
        self._head.clear()
        super().on_headers_complete()

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        """A request's cycle starts (now, or after the pipelined one before it): its answer goes out
        in one write (``OneWrite``)."""
        one = self._one_write
        if one is not None:
            one.flush()
            one.expecting_head = True
            cycle.transport = one
        super()._start_asgi_task(cycle, app)

    def shutdown(self) -> None:
        """uvicorn's (the server is stopping), after ending every latency pause: a client that asked
        for ``latency; ms=120000`` and hung up must not hold the shutdown for two minutes."""
        wake_all()
        super().shutdown()

    def on_response_complete(self) -> None:
        """uvicorn's, with the keep-alive deadline moved (``Deadline``) where uvicorn starts a timer."""
        if self._one_write is not None:
            self._one_write.flush()  # a head with no body write after it (HEAD)
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._idle.clear()
        self.flow.resume_reading()  # reads paused for a pipelined request: go on
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self._idle.set(self.timeout_keep_alive)
