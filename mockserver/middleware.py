"""ASGI middleware of the fake: the request journal and the wire-level faults."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .clock import Clock
from .store import Store

CONTROL_PREFIX = "/__mock__"
WIRE_FAULTS_EXTENSION = "mockserver.wire_faults"
HIDDEN_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
log = logging.getLogger("mockserver")


class Journal:
    """Keep one entry per answered request (the control plane's own requests excepted).

    Routes add what they know (account, task id, scenario, the parsed body with
    long strings shortened) through ``provider.note``; tokens are never kept.
    """

    def __init__(self, app: ASGIApp, store: Store, clock: Clock) -> None:
        self.app = app
        self.store = store
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        at, started = self.clock.now(), time.perf_counter()
        status = 0
        size = 0

        async def counting_receive() -> Message:
            nonlocal size
            message = await receive()
            size += len(message.get("body", b""))
            return message

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, counting_receive, recording_send)
        finally:
            facts: dict[str, Any] = scope.get("state", {}).get("mock_journal", {})
            headers = {
                k.decode("latin-1"): v.decode("latin-1")
                for k, v in scope.get("headers", ())
                if k.decode("latin-1") not in HIDDEN_HEADERS
            }
            self.store.append_journal(
                {
                    "time": at,
                    "wall_time": time.time(),
                    "method": scope["method"],
                    "path": scope["path"],
                    "query": scope.get("query_string", b"").decode("latin-1"),
                    "headers": headers,
                    "body_bytes": size,
                    "status": status or 500,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                    **facts,
                }
            )


class WireFaults:
    """``drop`` and ``truncate``: break the answer on the wire, as a failing network would.

    The status line and headers go out (with ``connection: close`` and
    ``x-mock-fault``), then none (``drop``) or half (``truncate``) of the body,
    then the connection is closed. In-process transports announce the ASGI
    extension ``mockserver.wire_faults``: they get the whole answer with the
    marker and raise the exception httpx raises for a real broken connection.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        done = False

        async def faulty_send(message: Message) -> None:
            nonlocal done
            fault = scope.get("state", {}).get("mock_wire_fault")
            if fault is None:
                await send(message)
                return
            if done:
                return
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                headers += [(b"connection", b"close"), (b"x-mock-fault", fault.encode())]
                await send({**message, "headers": headers})
                return
            if WIRE_FAULTS_EXTENSION in scope.get("extensions", {}):
                await send(message)  # the in-process transport enacts the fault itself
                return
            body: bytes = message.get("body", b"")
            cut = b"" if fault == "drop" else body[: len(body) // 2]
            done = True
            log.warning(
                "mockserver: %s fault on %s: sent %d of %d body bytes, closing",
                fault,
                scope["path"],
                len(cut),
                len(body),
            )
            # The response is left unfinished on purpose: the server then closes the connection
            # (uvicorn logs "ASGI callable returned without completing response").
            await send({"type": "http.response.body", "body": cut, "more_body": True})

        await self.app(scope, receive, faulty_send)
