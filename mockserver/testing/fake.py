"""Test doubles built on the fake: in-process (respx) and as a real server.

``InProcessFake`` routes every httpx call for one base URL to the fake's ASGI
app, sync and async clients alike, without opening a socket; calls to other
hosts go through untouched (with ``block_network=True``, only to loopback and
the base URL's host: any other raises ``NetworkBlocked``). ``RunningServer`` is
the fake under uvicorn on a free loopback port. Both expose the same ``MockControl``.
"""

from __future__ import annotations

import contextvars
import ipaddress
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx
import respx
from respx.models import AllMockedAssertionError

from ..control import ControlPlane
from ..core.clock import VirtualClock
from ..settings import Settings
from ..web.app import create_app
from .control import MockControl, short
from .process import ServerProcess
from .transport import AsyncASGITransport, SyncASGITransport

DEFAULT_BASE_URL = "https://api.apimart.ai"
CONTROL_HOST = "http://mockserver.testing.control"
_IN_ASYNC = contextvars.ContextVar("mockserver_in_async", default=False)


class NetworkBlocked(httpx.ConnectError):
    """httpx's error for a request ``block_network`` kept from leaving: its host is neither the
    fake's base URL host nor loopback (a client pointed at the real API by mistake, say)."""


def loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Router(respx.MockRouter):
    """respx's router for the fake's base URL, composed with any other respx router.

    respx asks its active routers in turn; the first to answer (or to pass a request through)
    wins, and one that does not know a request declines (``AllMockedAssertionError``). This
    router puts itself first and answers its base URL. For any other URL it steps aside when
    another router comes after it (``respx_mock``, a ``respx.mock()`` block, another in-process
    fake, in whatever order they started): that router decides, answering, passing through or
    refusing as it was told to. Only the last router lets a URL nobody knows go out to the
    network, and only when it is a fake's: a user's router keeps its own rule for those.

    It also tells the side effect whether an async client is asking.
    """

    def __init__(self, base_url: str, *, block_network: bool = False) -> None:
        super().__init__(assert_all_called=False, assert_all_mocked=True)
        self.prefix = base_url + "/"
        self.host = urlsplit(base_url).hostname or ""
        self.block_network = block_network
        self.blocked: list[str] = []  # what block_network refused, for the fixture's teardown

    def elsewhere(self, request: httpx.Request) -> httpx.Request:
        """A request for another URL nobody after this router decides: it goes out (passes through)
        unless ``block_network`` is on and its host is neither the base URL's nor loopback."""
        host = request.url.host
        if not self.block_network or host == self.host or loopback(host):
            return request  # a side effect that returns the request passes it through
        self.blocked.append(f"{request.method} {request.url}")
        raise NetworkBlocked(
            f"mockserver: block_network kept {request.method} {request.url} from leaving the process: only "
            f"{self.host} (the fake's base URL {self.prefix.rstrip('/')}) and loopback may be reached. Is the "
            "client's base URL the fake's?",
            request=request,
        )

    def start(self) -> None:
        super().start()
        routers: list[Any] | None = getattr(self.Mocker, "routers", None)
        if routers and routers[0] is not self:
            routers.remove(self)
            routers.insert(0, self)

    def _step_aside(self, request: httpx.Request) -> None:
        if str(request.url).startswith(self.prefix):
            return
        routers: list[Any] = getattr(self.Mocker, "routers", None) or []
        if self in routers and routers.index(self) < len(routers) - 1:  # a later router decides
            raise AllMockedAssertionError(f"RESPX: {request!r} is not for the fake; another router decides")

    def resolve(self, request: httpx.Request) -> Any:
        self._step_aside(request)
        return super().resolve(request)

    async def aresolve(self, request: httpx.Request) -> Any:
        self._step_aside(request)
        token = _IN_ASYNC.set(True)
        try:
            return await super().aresolve(request)
        finally:
            _IN_ASYNC.reset(token)


class InProcessFake:
    """The fake in-process: ``with InProcessFake(task_seconds=0) as mock: …``."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        start: float | None = None,
        block_network: bool = False,
        **settings: Any,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.clock = VirtualClock(start=time.time() if start is None else start)
        self.app = create_app(Settings(**{"task_seconds": 0.0, **settings}), clock=self.clock)
        root_path = urlsplit(self.base_url).path  # a base URL with a path prefix: the app is mounted there
        at_once = self.app.state.fake.settings.state.startswith("memory:")  # no store callbacks to run later
        self._sync = SyncASGITransport(self.app, root_path, at_once=at_once)
        self._async = AsyncASGITransport(self.app, root_path)
        self.router = _Router(self.base_url, block_network=block_network)
        self.router.route(url__startswith=self.router.prefix).mock(side_effect=self._handle)
        self.router.route().mock(side_effect=self.router.elsewhere)
        control_url = CONTROL_HOST + root_path + "/__mock__"
        token = self.app.state.fake.settings.control_token
        headers = {"Authorization": f"Bearer {token}"} if token else None
        self.control = MockControl(
            httpx.Client(transport=self._sync, base_url=control_url, headers=headers), self.base_url
        )
        self.control.blocked = self.router.blocked

    @property
    def short_counts(self) -> tuple[Callable[[], list[dict[str, Any]]], Callable[[], list[dict[str, Any]]]]:
        """The fault rules and the canned responses added with ``times=N`` that fired fewer than N
        times, read from the service itself (``faults.unfired`` and ``responses.unused`` without a request)."""
        service = ControlPlane(self.app.state.fake)

        def rules() -> list[dict[str, Any]]:
            listing = self._sync.run(service.rule_listing)
            return [r for r in (rule.to_dict() for rule in listing) if short(r, check_probability=True)]

        def responses() -> list[dict[str, Any]]:
            return [r for r in (canned.to_dict() for canned in self._sync.run(service.canned_listing)) if short(r)]

        return rules, responses

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


def network_guard(base_url: str) -> _Router:
    """A respx router (use it as a context manager) that lets httpx reach only ``base_url``'s host and
    loopback: any other request raises ``NetworkBlocked`` (``apimart_server``'s ``block_network``)."""
    guard = _Router(base_url.rstrip("/"), block_network=True)
    guard.route(url__startswith=guard.prefix).pass_through()
    guard.route().mock(side_effect=guard.elsewhere)
    return guard


def control_token_of(args: Sequence[str]) -> str | None:
    """The ``--control-token`` among ``mockserver serve`` flags, if any."""
    found = None
    for n, arg in enumerate(args):
        if arg == "--control-token" and n + 1 < len(args):
            found = args[n + 1]
        elif arg.startswith("--control-token="):
            found = arg.partition("=")[2]
    return found


class RunningServer:
    """The fake under uvicorn on a free loopback port, with its control object.

    The control object sends the server's control token: ``control_token``, or the one
    ``--control-token`` gives among ``args``.
    """

    def __init__(
        self,
        args: Sequence[str] = ("--task-seconds", "0"),
        *,
        log: Path | None = None,
        control_token: str | None = None,
    ) -> None:
        args = list(args)
        if control_token is not None and control_token_of(args) is None:
            args += ["--control-token", control_token]
        self.control_token = control_token or control_token_of(args)
        self.process = ServerProcess(args, log=log)
        self.control: MockControl | None = None

    def __enter__(self) -> MockControl:
        self.process.start()
        self.control = MockControl.connect(self.process.base_url, control_token=self.control_token)
        return self.control

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self.control is not None:
            self.control.close()
        self.process.stop()
