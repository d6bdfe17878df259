"""In-process httpx transports for the fake: no socket is opened.

``httpx.ASGITransport`` only serves async clients. ``SyncASGITransport`` lets a
plain ``httpx.Client`` call the same ASGI app: the app runs on an event loop
in one background thread (an anyio blocking portal), and each request is
handed to it and waited for.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from typing import Any

import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal
from starlette.types import ASGIApp

CLIENT_ADDRESS = ("127.0.0.1", 50000)


def async_transport(app: ASGIApp) -> httpx.ASGITransport:
    return httpx.ASGITransport(app=app, raise_app_exceptions=False, client=CLIENT_ADDRESS)


class SyncASGITransport(httpx.BaseTransport):
    def __init__(self, app: ASGIApp) -> None:
        self._inner = async_transport(app)
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
        return httpx.Response(status, headers=headers, content=body, extensions=extensions, request=request)

    def close(self) -> None:
        with self._lock:
            if self._portal_cm is not None:
                self._portal_cm.__exit__(None, None, None)
            self._portal_cm = None
            self._portal = None
