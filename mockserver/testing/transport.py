"""In-process httpx transports for the fake: no socket is opened.

``AsyncASGITransport`` serves async clients on the caller's own event loop.
``SyncASGITransport`` lets a plain ``httpx.Client`` call the same ASGI app.
With ``at_once=True`` (an app whose store answers at once, as the memory store
does) a call from a thread with no running event loop runs the app on the
transport's own loop in the caller's thread, with no thread hop. Otherwise the
app runs on an event loop in one background thread (an anyio blocking portal),
and each request is handed to it and waited for. Either way one sync request
is in the app at a time, as on one event loop. Both turn the
fake's wire faults (``drop``, ``truncate``) into the exception httpx raises
for a real broken connection, and a latency fault longer than the request's
read timeout into the ``httpx.ReadTimeout`` a socket would have raised (the
delay itself cost virtual time, not real time).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import httpx
from anyio.from_thread import BlockingPortal
from starlette.types import ASGIApp, Receive, Scope, Send

from ..core.clock import loop_running
from ..web.edge import LATENCY_HEADER, WIRE_FAULTS_EXTENSION

CLIENT_ADDRESS = ("127.0.0.1", 50000)
T = TypeVar("T")
FAULT_HEADER = "x-mock-fault"


def raise_wire_fault(status: int, headers: httpx.Headers, request: httpx.Request) -> None:
    latency = headers.get(LATENCY_HEADER.decode())
    if latency is not None:
        del headers[LATENCY_HEADER.decode()]
        read_timeout = (request.extensions.get("timeout") or {}).get("read")
        if read_timeout is not None and float(latency) / 1000 > read_timeout:
            raise httpx.ReadTimeout(f"The read operation timed out (a {latency} ms latency fault)", request=request)
    fault = headers.get(FAULT_HEADER)
    if fault == "drop":
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
    if fault == "truncate":
        raise httpx.RemoteProtocolError(
            "peer closed connection without sending complete message body: incomplete chunked read", request=request
        )


def in_process(app: ASGIApp) -> ASGIApp:
    """The app, told through an ASGI extension that its caller enacts wire faults itself."""

    async def marked(scope: Scope, receive: Receive, send: Send) -> None:
        extensions = {**scope.get("extensions", {}), WIRE_FAULTS_EXTENSION: {}}
        await app({**scope, "extensions": extensions}, receive, send)

    return marked


class AsyncASGITransport(httpx.ASGITransport):
    def __init__(self, app: ASGIApp, root_path: str = "") -> None:
        super().__init__(app=in_process(app), raise_app_exceptions=False, client=CLIENT_ADDRESS, root_path=root_path)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        body = await response.aread()
        headers = httpx.Headers(response.headers)
        raise_wire_fault(response.status_code, headers, request)
        # A stream, not content: the client then reads and closes it itself, setting .elapsed as for a socket.
        return httpx.Response(response.status_code, headers=headers, stream=httpx.ByteStream(body))


class SyncASGITransport(httpx.BaseTransport):
    def __init__(self, app: ASGIApp, root_path: str = "", *, at_once: bool = False) -> None:
        self._inner = httpx.ASGITransport(
            app=in_process(app), raise_app_exceptions=False, client=CLIENT_ADDRESS, root_path=root_path
        )
        self._lock = threading.Lock()
        self._calls = threading.Lock()  # one sync request in the app at a time, whichever loop runs it
        self._portal: BlockingPortal | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = asyncio.new_event_loop() if at_once else None

    def run(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()`` on the caller's thread when it can be (no thread hop), else on the portal's loop."""
        with self._calls:
            if self._loop is not None and not self._loop.is_closed() and not loop_running():
                return self._loop.run_until_complete(call())
            return self._running_portal().call(call)

    def _running_portal(self) -> BlockingPortal:
        """The event loop thread, started on first use. A daemon thread: a transport
        nobody closed never keeps the interpreter from exiting."""
        with self._lock:
            if self._portal is None:
                ready: queue.Queue[BlockingPortal] = queue.Queue()

                async def serve() -> None:
                    async with BlockingPortal() as portal:
                        ready.put(portal)
                        await portal.sleep_until_stopped()

                self._thread = threading.Thread(target=anyio.run, args=(serve,), name="mockserver-asgi", daemon=True)
                self._thread.start()
                self._portal = ready.get()
            return self._portal

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        content = request.read()
        forwarded = httpx.Request(
            request.method, request.url, headers=request.headers, content=content, extensions=request.extensions
        )

        async def call() -> tuple[int, list[tuple[bytes, bytes]], bytes, dict[str, Any]]:
            response = await self._inner.handle_async_request(forwarded)
            body = await response.aread()
            return response.status_code, response.headers.raw, body, dict(response.extensions)

        status, raw_headers, body, extensions = self.run(call)
        headers = httpx.Headers(raw_headers)
        raise_wire_fault(status, headers, request)
        return httpx.Response(status, headers=headers, stream=httpx.ByteStream(body), extensions=extensions)

    def close(self) -> None:
        with self._lock:
            portal, thread = self._portal, self._thread
            self._portal = self._thread = None
        if portal is not None and thread is not None:
            portal.call(portal.stop)
            thread.join(timeout=10)
        with self._calls:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.close()
