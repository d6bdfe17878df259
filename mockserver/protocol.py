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

The body's own timeout is enforced by the application (``web.edge``).
``mockserver serve`` uses this protocol (``http=`` of ``uvicorn.run``) whenever
httptools is installed (it is part of ``uvicorn[standard]``); with h11 it passes
``h11_max_incomplete_event_size`` instead, and the head timeout is not enforced.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .core.errors import error_body
from .core.jsonio import dumps

__all__ = ["BoundedHttpToolsProtocol", "head_limits"]


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


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_head, self.head_timeout = head_limits()
        self._reading_head = True
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None

    # -- the timer ------------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._reading_head:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self._arm_head_timer()  # an earlier request is being answered: never cut it
            return
        if self._head_bytes:
            message = f"request line and headers not received within {self.head_timeout:g} s"
            self.transport.write(_refusal(408, message))
        self.transport.close()

    # -- uvicorn's hooks ------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._reading_head and self._head_bytes > self.max_head and not self.transport.is_closing():
            self._cancel_head_timer()
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
        self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._head_bytes = 0
        self._cancel_head_timer()
        super().on_headers_complete()
