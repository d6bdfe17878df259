"""In-process httpx transports for the fake: no socket is opened.

``AsyncASGITransport`` serves async clients on the caller's own event loop.
``SyncASGITransport`` lets a plain ``httpx.Client`` call the same ASGI app:
the app runs on an event loop in one background thread (an anyio blocking
portal), and each request is handed to it and waited for. Both turn the
fake's wire faults (``drop``, ``truncate``) into the exception httpx raises
for a real broken connection.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from typing import Any

import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal
from starlette.types import ASGIApp, Receive, Scope, Send

from .middleware import WIRE_FAULTS_EXTENSION

CLIENT_ADDRESS = ("127.0.0.1", 50000)
FAULT_HEADER = "x-mock-fault"


def raise_wire_fault(status: int, headers: httpx.Headers, request: httpx.Request) -> None:
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
        raise_wire_fault(response.status_code, response.headers, request)
        return httpx.Response(response.status_code, headers=response.headers, content=body, request=request)


class SyncASGITransport(httpx.BaseTransport):
    def __init__(self, app: ASGIApp, root_path: str = "") -> None:
        self._inner = httpx.ASGITransport(
            app=in_process(app), raise_app_exceptions=False, client=CLIENT_ADDRESS, root_path=root_path
        )
        self._lock = threading.Lock()
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._portal: BlockingPortal | None = None

    def _running_portal(self) -> BlockingPortal:
        with self._lock:
            if self._portal is None:
                self._portal_cm = start_blocking_portal()
                self._portal = self._portal_cm.__enter__()
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

        status, headers, body, extensions = self._running_portal().call(call)
        raise_wire_fault(status, httpx.Headers(headers), request)
        return httpx.Response(status, headers=headers, content=body, extensions=extensions, request=request)

    def close(self) -> None:
        with self._lock:
            if self._portal_cm is not None:
                self._portal_cm.__exit__(None, None, None)
            self._portal_cm = None
            self._portal = None
