"""The fake's one ASGI middleware, at the edge: body limits, request journal, wire faults, last resort.

One wrapper around ``receive`` and ``send`` does all of it, so a request pays
for one layer, not several:

- **body limit**: a declared ``Content-Length`` over the limit is answered 413
  at once; a streamed body is cut off (413) as soon as it passes the limit, never
  held whole.
- **body timeout**: the whole body must arrive within ``body_timeout_seconds`` of
  the first read; a client trickling it is answered 408 and the connection closed.
  A response sent before the body was read closes the connection too, so a
  client cannot keep it open by trickling a body nobody reads.
- **journal**: one entry per answered request (the control plane's own excepted);
  routes and the service add what they know (account, task id, fault, the parsed
  body) to ``http.facts(request)``. Each entry is bounded (about ``ENTRY_MAX_BYTES``):
  header values, the path, the query and the body are cut, each cut saying how big
  the original was. Credential-like headers (``authorization``, ``cookie``, any name
  with ``key``, ``token``, ``secret``, ``auth``, ``password`` or ``session`` in it,
  ``Idempotency-Key`` excepted) are never kept.
- **wire faults** (``drop``, ``truncate``): the status line and headers go out
  (with ``connection: close`` and ``x-mock-fault``), then none or half of the body,
  and the response is left unfinished so the server closes the connection.
  In-process transports announce the ASGI extension ``mockserver.wire_faults``:
  they get the whole answer with the marker and raise what httpx raises for a real
  broken connection. They are also told a latency fault's delay
  (``x-mock-latency-ms``), which cost virtual time instead of real time, so that
  they can raise the read timeout a socket would have.
- **last resort**: an exception no handler turned into an answer is logged and
  answered with a well-formed 500 in the provider's error body, and the connection
  stays usable (Starlette's own last handler re-raises after answering, which makes
  the server drop the connection under the client's next request).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.errors import SERVER, ApiError, error_body
from ..service import Fake
from .http import BodyTooLarge, JSONResponse

CONTROL_PREFIX = "/__mock__"
HEALTH_PATH = "/healthz"  # polled by health checks: not journaled either
WIRE_FAULTS_EXTENSION = "mockserver.wire_faults"
LATENCY_HEADER = b"x-mock-latency-ms"
log = logging.getLogger("mockserver")

# What one journal entry may hold (characters; an entry stays within about 16 KiB).
ENTRY_MAX_BYTES = 16 * 1024
HEADERS_BUDGET = 4096  # all kept header names and values together
HEADER_VALUE_MAX = 512
HEADER_NAME_MAX = 64
TEXT_MAX = 1024  # the path, the query, any other fact
BODY_BUDGET = 4096  # the parsed body, cut structurally
BODY_STRING_MAX = 256  # above what service.shortened leaves of a data: URL, so its note survives
SECRET_WORDS = ("key", "token", "secret", "auth", "cookie", "password", "session")
NOT_SECRET = frozenset({"idempotency-key"})


class BodyTimeout(ApiError):
    def __init__(self, seconds: float) -> None:
        super().__init__(
            408, f"request body not received within {seconds:g} s", param=None, headers={"connection": "close"}
        )


def secret_header(name: str) -> bool:
    """A header that may carry a credential: never written to the journal."""
    return name not in NOT_SECRET and any(word in name for word in SECRET_WORDS)


def cut(text: str, limit: int) -> str:
    """``text``, or its head and how long it was."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def journal_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """The request's headers for the journal: no credentials, each value cut, all within a budget."""
    kept: dict[str, str] = {}
    budget = HEADERS_BUDGET
    left_out = 0
    for name_bytes, value_bytes in raw:
        name = name_bytes.decode("latin-1").lower()
        if secret_header(name):
            continue
        if budget <= 0:
            left_out += 1
            continue
        name = cut(name, HEADER_NAME_MAX)
        value = cut(value_bytes.decode("latin-1"), min(HEADER_VALUE_MAX, max(budget, 16)))
        kept[name] = value
        budget -= len(name) + len(value)
    if left_out:
        kept["…"] = f"{left_out} more header(s) not kept"
    return kept


def clipped(value: Any, budget: int = BODY_BUDGET) -> Any:
    """A copy of a parsed body that fits the journal: strings cut, lists and objects cut
    once about ``budget`` characters are spent, each cut saying what it left out."""
    left = [budget]

    def clip(item: Any) -> Any:
        if isinstance(item, str):
            text = cut(item, min(BODY_STRING_MAX, max(left[0], 16)))
            left[0] -= len(text) + 2
            return text
        if isinstance(item, dict):
            out: dict[str, Any] = {}
            left[0] -= 2
            for n, (key, child) in enumerate(item.items()):
                if left[0] <= 0:
                    out["…"] = f"{len(item) - n} more field(s)"
                    break
                name = cut(str(key), HEADER_NAME_MAX)
                left[0] -= len(name) + 4
                out[name] = clip(child)
            return out
        if isinstance(item, list):
            items: list[Any] = []
            left[0] -= 2
            for n, child in enumerate(item):
                if left[0] <= 0:
                    items.append(f"… {len(item) - n} more item(s)")
                    break
                items.append(clip(child))
                left[0] -= 1
            return items
        left[0] -= len(repr(item))
        return item

    return clip(value)


class Edge:
    def __init__(self, app: ASGIApp, fake: Fake) -> None:
        self.app = app
        self.fake = fake
        self.clock = fake.clock
        self.limit = fake.settings.max_body_bytes
        self.body_timeout = fake.settings.body_timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        has_body = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) > self.limit:
                    error = BodyTooLarge(self.limit)
                    await JSONResponse(error.body(), 413, headers={"connection": "close"})(scope, receive, send)
                    return
                has_body = has_body or value.strip() not in (b"", b"0")
            elif name == b"transfer-encoding":
                has_body = True
        journaled = not scope["path"].startswith(CONTROL_PREFIX) and scope["path"] != HEALTH_PATH
        at, started = self.clock.now(), time.perf_counter()
        limit, body_timeout = self.limit, self.body_timeout
        size = 0
        status = 0
        cut_off = False
        body_done = not has_body
        response_started = response_complete = False
        deadline: float | None = None

        async def edge_receive() -> Message:
            nonlocal size, body_done, deadline
            if body_done:  # the body is in: only a disconnect can come, whenever it comes
                return await receive()
            if deadline is None:
                deadline = self._deadline(scope, body_timeout)
            if deadline == math.inf:
                message = await receive()
            else:
                try:
                    async with asyncio.timeout_at(deadline):
                        message = await receive()
                except TimeoutError:
                    raise BodyTimeout(body_timeout) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            size += len(message.get("body", b""))
            if size > limit:
                raise BodyTooLarge(limit)
            return message

        async def edge_send(message: Message) -> None:
            nonlocal status, cut_off, response_started, response_complete
            facts = scope.get("state", {}).get("mock_journal", {})
            fault = facts.get("wire_fault")
            in_process = WIRE_FAULTS_EXTENSION in (scope.get("extensions") or {})
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                headers = list(message.get("headers", []))
                if fault is not None or not body_done:
                    # A wire fault closes the connection; so does an answer sent before the body was
                    # read (the rest of it would otherwise hold the connection open, trickling in).
                    headers = [(k, v) for k, v in headers if k.lower() != b"connection"]
                    headers.append((b"connection", b"close"))
                if fault is not None:
                    headers.append((b"x-mock-fault", fault.encode()))
                if in_process and "latency_ms" in facts:
                    headers.append((LATENCY_HEADER, str(facts["latency_ms"]).encode()))
                await send({**message, "headers": headers})
                return
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                response_complete = True
            if fault is None or in_process:
                await send(message)
                return
            if cut_off:
                return
            cut_off = True
            body: bytes = message.get("body", b"")
            sent = b"" if fault == "drop" else body[: len(body) // 2]
            log.warning("mockserver: %s fault on %s: sent %d of %d body bytes, closing", fault, scope["path"],
                        len(sent), len(body))  # fmt: skip
            # Left unfinished on purpose: the server closes the connection
            # (uvicorn logs "ASGI callable returned without completing response").
            await send({"type": "http.response.body", "body": sent, "more_body": True})

        try:
            await self.app(scope, edge_receive, edge_send)
        except Exception as exc:
            if response_started and not response_complete:
                raise  # half an answer is out: only closing the connection can tell the client
            log.exception("mockserver: unhandled error on %s %s", scope["method"], scope["path"])
            if not response_started:
                body = error_body(500, f"internal error: {type(exc).__name__}", SERVER)
                await JSONResponse(body, 500)(scope, edge_receive, edge_send)
        finally:
            if journaled:
                self._journal(scope, at, started, size, status)

    @staticmethod
    def _deadline(scope: Scope, seconds: float) -> float:
        """When the body must be in, on the event loop's clock; never for an in-process caller (its
        body is in memory already) or on a loop other than asyncio's (trio, through anyio)."""
        if WIRE_FAULTS_EXTENSION in (scope.get("extensions") or {}):
            return math.inf
        try:
            return asyncio.get_running_loop().time() + seconds
        except RuntimeError:
            return math.inf

    def _journal(self, scope: Scope, at: float, started: float, size: int, status: int) -> None:
        facts: dict[str, Any] = dict(scope.get("state", {}).get("mock_journal", {}))
        facts.pop("wire_fault", None)  # already named by "scenario"
        for name, value in facts.items():
            if name == "body":
                facts[name] = clipped(value)
            elif isinstance(value, str):
                facts[name] = cut(value, TEXT_MAX)
        self.fake.record_request(
            {
                "time": at,
                "wall_time": time.time(),
                "method": scope["method"],
                "path": cut(scope["path"], TEXT_MAX),
                "query": cut(scope.get("query_string", b"").decode("latin-1"), TEXT_MAX),
                "headers": journal_headers(scope["headers"]),
                "body_bytes": size,
                "status": status or 500,
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                **facts,
            }
        )
