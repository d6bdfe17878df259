"""Test doubles built on the fake: in-process (respx) and as a real server.

``InProcessFake`` routes every httpx call for one base URL to the fake's ASGI
app, sync and async clients alike, without opening a socket; calls to other
hosts go through untouched. ``RunningServer`` is the fake under uvicorn on a
free loopback port. Both expose the same ``MockControl``.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx
import respx

from ..core.clock import VirtualClock
from ..settings import Settings
from ..web.app import create_app
from .control import MockControl
from .process import ServerProcess
from .transport import AsyncASGITransport, SyncASGITransport

DEFAULT_BASE_URL = "https://api.apimart.ai"
CONTROL_HOST = "http://mockserver.testing.control"
_IN_ASYNC = contextvars.ContextVar("mockserver_in_async", default=False)


class _Router(respx.MockRouter):
    """respx's router, telling the side effect whether an async client is asking."""

    async def aresolve(self, request: httpx.Request) -> Any:
        token = _IN_ASYNC.set(True)
        try:
            return await super().aresolve(request)
        finally:
            _IN_ASYNC.reset(token)


class InProcessFake:
    """The fake in-process: ``with InProcessFake(task_seconds=0) as mock: …``."""

    def __init__(self, base_url: str = DEFAULT_BASE_URL, *, start: float | None = None, **settings: Any) -> None:
        self.base_url = base_url.rstrip("/")
        self.clock = VirtualClock(start=time.time() if start is None else start)
        self.app = create_app(Settings(**{"task_seconds": 0.0, **settings}), clock=self.clock)
        root_path = urlsplit(self.base_url).path  # a base URL with a path prefix: the app is mounted there
        self._sync = SyncASGITransport(self.app, root_path)
        self._async = AsyncASGITransport(self.app, root_path)
        self.router = _Router(assert_all_called=False)
        self.router.route(url__startswith=self.base_url + "/").mock(side_effect=self._handle)
        self.router.route().pass_through()
        control_url = CONTROL_HOST + root_path + "/__mock__"
        self.control = MockControl(httpx.Client(transport=self._sync, base_url=control_url), self.base_url)

    def _handle(self, request: httpx.Request) -> Any:
        if _IN_ASYNC.get():
            return self._async.handle_async_request(request)
        return self._sync.handle_request(request)

    def __enter__(self) -> MockControl:
        self.router.__enter__()
        return self.control

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.router.__exit__(kind, value, traceback)
        self.control.close()
        self._sync.close()


class RunningServer:
    """The fake under uvicorn on a free loopback port, with its control object."""

    def __init__(self, args: Sequence[str] = ("--task-seconds", "0"), *, log: Path | None = None) -> None:
        self.process = ServerProcess(args, log=log)
        self.control: MockControl | None = None

    def __enter__(self) -> MockControl:
        self.process.start()
        base = self.process.base_url
        self.control = MockControl(httpx.Client(base_url=base + "/__mock__", timeout=10), base)
        return self.control

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self.control is not None:
            self.control.close()
        self.process.stop()
