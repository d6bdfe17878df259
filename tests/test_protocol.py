"""The server's HTTP protocol (``mockserver.protocol``): one timer per connection for each deadline,
and uvicorn's keep-alive timeout kept."""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import socket
import textwrap
import time
from collections.abc import Callable
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from mockserver.protocol import BoundedHttpToolsProtocol, Deadline
from mockserver.testing.process import ServerProcess
from tests.servers import threaded_server


class Handle:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when, self.callback, self.cancelled = when, callback, False

    def cancel(self) -> None:
        self.cancelled = True


class ManualLoop:
    """The two calls ``Deadline`` makes of a loop, on a clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0
        self.armed: list[Handle] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> Handle:
        handle = Handle(when, callback)
        self.armed.append(handle)
        return handle

    def run_until(self, now: float) -> None:
        """Fire every timer due by ``now``, in order (those a firing arms included)."""
        while True:
            due = [h for h in self.armed if not h.cancelled and h.when <= now]
            if not due:
                break
            first = min(due, key=lambda h: h.when)
            self.armed.remove(first)
            self.now = first.when
            first.callback()
        self.now = now


def deadline(loop: ManualLoop) -> tuple[Deadline, list[float]]:
    fired: list[float] = []
    return Deadline(loop, lambda: fired.append(loop.now)), fired  # type: ignore[arg-type]


def test_moving_a_deadline_arms_no_timer() -> None:
    loop = ManualLoop()
    timer, fired = deadline(loop)
    for step in range(1000):
        loop.now = step * 0.001
        timer.set(5.0)
    assert len(loop.armed) == 1, "one timer for a thousand moves"
    loop.run_until(5.0)  # the first timer fires early: it re-arms once, for the deadline set last
    assert fired == []
    assert len([h for h in loop.armed if not h.cancelled]) == 1
    loop.run_until(6.0)
    assert fired == [pytest.approx(0.999 + 5.0)]
    loop.run_until(100.0)
    assert fired == [pytest.approx(5.999)], "expires once"


def test_a_cleared_deadline_lapses_and_a_stopped_one_holds_no_timer() -> None:
    loop = ManualLoop()
    timer, fired = deadline(loop)
    timer.set(1.0)
    timer.clear()
    loop.run_until(10.0)
    assert fired == [] and loop.armed == [], "the timer fired, found no deadline, and was not armed again"
    timer.set(1.0)
    assert len(loop.armed) == 1
    timer.stop()
    assert loop.armed[0].cancelled and timer.handle is None
    loop.run_until(20.0)
    assert fired == []


class CountingLoop(asyncio.SelectorEventLoop):
    """An event loop that counts the timers started on it."""

    timers = 0

    def call_at(  # type: ignore[override]
        self, when: float, callback: Callable[..., object], *args: Any, context: Any = None
    ) -> asyncio.TimerHandle:
        self.timers += 1
        return super().call_at(when, callback, *args, context=context)


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.sent = b""
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.sent += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def hello(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def test_a_busy_connection_starts_no_timer_per_answer() -> None:
    """uvicorn's own protocol starts (and cancels) a keep-alive timer for every answer; this one moves
    the connection's deadlines instead: 200 requests on one connection start at most two timers."""
    loop = CountingLoop()
    try:
        config = uvicorn.Config(hello, log_level="critical", timeout_keep_alive=5)
        config.load()
        protocol = BoundedHttpToolsProtocol(config=config, server_state=ServerState(), app_state={}, _loop=loop)
        transport = Transport()
        protocol.connection_made(transport)
        for _ in range(200):
            protocol.data_received(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
            loop.run_until_complete(asyncio.sleep(0))  # the request's task runs and answers
        assert transport.sent.count(b"HTTP/1.1 200 OK") == 200
        assert loop.timers <= 2, f"{loop.timers} timers for 200 answers"
        protocol.connection_lost(None)
        assert protocol._head.handle is None and protocol._idle.handle is None
    finally:
        loop.close()


def closed_within(sock: socket.socket, limit: float) -> float | None:
    """Seconds until the server closes ``sock`` (reading what it sends), None if it is open after ``limit``."""
    sock.settimeout(0.05)
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        try:
            if sock.recv(65536) == b"":
                return time.perf_counter() - started
        except TimeoutError:
            continue
        except ConnectionResetError:
            return time.perf_counter() - started
    return None


REQUEST = b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.e2e
def test_the_keep_alive_timeout_closes_an_idle_connection_and_only_an_idle_one() -> None:
    http = BoundedHttpToolsProtocol
    with threaded_server(hello, http=http, timeout_keep_alive=1.0, lifespan="off") as base:
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as busy:
            started = time.perf_counter()
            while time.perf_counter() - started < 3.0:  # three keep-alive timeouts, never idle for one
                busy.sendall(REQUEST)
                assert busy.recv(65536).startswith(b"HTTP/1.1 200"), "the busy connection was closed"
                time.sleep(0.1)
            idle_for = closed_within(busy, 5.0)  # now idle: closed after the timeout
        assert idle_for is not None, "an idle connection was kept past the keep-alive timeout"
        assert 0.7 < idle_for < 4.0, idle_for


# -- what protocol.py takes from uvicorn's internals (pyproject.toml pins uvicorn's minor for them) ----

HOOKS = (  # HttpToolsProtocol's methods BoundedHttpToolsProtocol overrides or calls: the private ones first
    "_unset_keepalive_if_required",
    "_start_asgi_task",
    "on_response_complete",
    "timeout_keep_alive_handler",
    "send_400_response",
    "shutdown",
    "on_message_begin",
    "on_headers_complete",
    "data_received",
    "connection_made",
    "connection_lost",
)
CALLED = {  # where uvicorn calls a hook: were it to stop, the override would be dead without a sound
    "data_received": {"_unset_keepalive_if_required", "send_400_response"},
    "on_headers_complete": {"_start_asgi_task", "on_response_complete"},
}
STATE = ("loop", "logger", "transport", "cycle", "flow", "pipeline", "server_state", "timeout_keep_alive")
# What uvicorn's on_response_complete touches: BoundedHttpToolsProtocol.on_response_complete is a copy of it.
ON_RESPONSE_COMPLETE = {
    "server_state", "total_requests", "transport", "is_closing", "_unset_keepalive_if_required", "flow",
    "resume_reading", "pipeline", "pop", "_start_asgi_task", "loop", "call_later", "timeout_keep_alive",
    "timeout_keep_alive_task", "timeout_keep_alive_handler",
}  # fmt: skip


def attributes_used(function: Callable[..., Any]) -> set[str]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    return {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}


def test_uvicorn_still_has_what_protocol_py_overrides_and_copies() -> None:
    """An upgrade of uvicorn that renames or drops one of these breaks this test, not the server in silence."""
    version = f"uvicorn {uvicorn.__version__}"
    advice = "mockserver/protocol.py relies on this: compare it with uvicorn's, then move the pin in pyproject.toml"
    missing = [name for name in HOOKS if not callable(getattr(HttpToolsProtocol, name, None))]
    assert not missing, f"{version}: HttpToolsProtocol has no {', '.join(missing)}; {advice}"
    assert isinstance(getattr(httptools_impl, "STATUS_LINE", None), dict), f"{version}: no STATUS_LINE; {advice}"
    for caller, hooks in CALLED.items():
        gone = sorted(hooks - attributes_used(getattr(HttpToolsProtocol, caller)))
        assert not gone, f"{version}: HttpToolsProtocol.{caller} no longer calls {', '.join(gone)}; {advice}"
    used = attributes_used(HttpToolsProtocol.on_response_complete)
    assert used == ON_RESPONSE_COMPLETE, (
        f"{version}: HttpToolsProtocol.on_response_complete changed (now also {sorted(used - ON_RESPONSE_COMPLETE)}, "
        f"no longer {sorted(ON_RESPONSE_COMPLETE - used)}); BoundedHttpToolsProtocol's is a copy of it; {advice}"
    )
    loop = asyncio.new_event_loop()
    try:
        config = uvicorn.Config(hello, log_level="critical")
        protocol = HttpToolsProtocol(config=config, server_state=ServerState(), app_state={}, _loop=loop)
        protocol.connection_made(Transport())
        protocol.data_received(REQUEST)
        loop.run_until_complete(asyncio.sleep(0))  # the request's task runs and answers
        missing = [name for name in STATE if not hasattr(protocol, name)]
        missing += [f"cycle.{name}" for name in ("response_complete", "transport") if not hasattr(protocol.cycle, name)]
        assert not missing, f"{version}: HttpToolsProtocol has no {', '.join(missing)}; {advice}"
        protocol.connection_lost(None)
    finally:
        loop.close()


BODY = {"prompt": "p", "image_urls": ["https://example.com/a.png"]}


# -- one write per answer ------------------------------------------------------------------------------


@pytest.mark.e2e
def test_each_answer_is_whole_and_in_order_on_one_connection() -> None:
    """Pipelined requests, HEAD, a body sent after ``100 Continue``: each answer complete, in order."""
    with ServerProcess(["--task-seconds", "0"]) as server:
        port = int(server.base_url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            body = json.dumps(BODY).encode()
            submit = (
                b"POST /v1/midjourney/generations/video HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            head = b"HEAD /v1/tasks/task_nope HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\r\n"
            sock.sendall(submit + head + submit)
            data = b""
            while data.count(b"HTTP/1.1 ") < 3 or not data.endswith(b"}]}"):
                chunk = sock.recv(65536)
                assert chunk, data
                data += chunk
            parts = data.split(b"HTTP/1.1 ")[1:]
            assert [p[:3] for p in parts] == [b"200", b"404", b"200"]
            assert parts[1].endswith(b"\r\n\r\n"), "HEAD: the head alone"
            sock.sendall(submit.replace(b"Content-Type", b"Expect: 100-continue\r\nContent-Type", 1)[: -len(body)])
            assert sock.recv(65536).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
            sock.sendall(body)
            answer = b""
            while not answer.endswith(b"}]}"):
                answer += sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200 OK")
