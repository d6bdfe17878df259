"""The fake's one ASGI middleware, at the edge: body limit, request journal, wire faults.

One wrapper around ``receive`` and ``send`` does all three, so a request pays
for one layer, not three:

- **body limit**: a declared ``Content-Length`` over the limit is answered 413
  at once; a streamed body is cut off (413) as soon as it passes the limit, never
  held whole.
- **journal**: one entry per answered request (the control plane's own excepted);
  routes and the service add what they know (account, task id, fault, the parsed
  body with long strings shortened) to ``http.facts(request)``; tokens are never kept.
- **wire faults** (``drop``, ``truncate``): the status line and headers go out
  (with ``connection: close`` and ``x-mock-fault``), then none or half of the body,
  and the response is left unfinished so the server closes the connection.
  In-process transports announce the ASGI extension ``mockserver.wire_faults``:
  they get the whole answer with the marker and raise what httpx raises for a real
  broken connection. They are also told a latency fault's delay
  (``x-mock-latency-ms``), which cost virtual time instead of real time, so that
  they can raise the read timeout a socket would have.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..service import Fake
from .http import BodyTooLarge, JSONResponse

CONTROL_PREFIX = "/__mock__"
WIRE_FAULTS_EXTENSION = "mockserver.wire_faults"
HIDDEN_HEADERS = frozenset({b"authorization", b"cookie", b"proxy-authorization"})
log = logging.getLogger("mockserver")


LATENCY_HEADER = b"x-mock-latency-ms"


class Edge:
    def __init__(self, app: ASGIApp, fake: Fake) -> None:
        self.app = app
        self.fake = fake
        self.clock = fake.clock
        self.limit = fake.settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                error = BodyTooLarge(self.limit)
                await JSONResponse(error.body(), 413, headers={"connection": "close"})(scope, receive, send)
                return
        journaled = not scope["path"].startswith(CONTROL_PREFIX)
        at, started = self.clock.now(), time.perf_counter()
        limit = self.limit
        size = 0
        status = 0
        cut = False

        async def edge_receive() -> Message:
            nonlocal size
            message = await receive()
            size += len(message.get("body", b""))
            if size > limit:
                raise BodyTooLarge(limit)
            return message

        async def edge_send(message: Message) -> None:
            nonlocal status, cut
            facts = scope.get("state", {}).get("mock_journal", {})
            fault = facts.get("wire_fault")
            in_process = WIRE_FAULTS_EXTENSION in (scope.get("extensions") or {})
            if message["type"] == "http.response.start":
                status = message["status"]
                if fault is not None:
                    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                    headers += [(b"connection", b"close"), (b"x-mock-fault", fault.encode())]
                    message = {**message, "headers": headers}
                if in_process and "latency_ms" in facts:
                    latency = (LATENCY_HEADER, str(facts["latency_ms"]).encode())
                    message = {**message, "headers": [*message.get("headers", []), latency]}
                await send(message)
                return
            if fault is None or in_process:
                await send(message)
                return
            if cut:
                return
            cut = True
            body: bytes = message.get("body", b"")
            sent = b"" if fault == "drop" else body[: len(body) // 2]
            log.warning("mockserver: %s fault on %s: sent %d of %d body bytes, closing", fault, scope["path"],
                        len(sent), len(body))  # fmt: skip
            # Left unfinished on purpose: the server closes the connection
            # (uvicorn logs "ASGI callable returned without completing response").
            await send({"type": "http.response.body", "body": sent, "more_body": True})

        try:
            await self.app(scope, edge_receive, edge_send)
        finally:
            if journaled:
                self._journal(scope, at, started, size, status)

    def _journal(self, scope: Scope, at: float, started: float, size: int, status: int) -> None:
        facts: dict[str, Any] = dict(scope.get("state", {}).get("mock_journal", {}))
        facts.pop("wire_fault", None)  # already named by "scenario"
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k not in HIDDEN_HEADERS}
        self.fake.record_request(
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
