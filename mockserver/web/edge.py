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
  body) to ``http.facts_of(request)``. Each entry is bounded (about ``ENTRY_MAX_BYTES``):
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
- **canned responses** (``POST /__mock__/responses``): a provider request one
  matches is answered as told before the route runs (``canned.Canned``); asking
  costs one cheap store read when there are none.
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
from collections.abc import Awaitable
from typing import Any, NamedTuple

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.clock import LEAVING
from ..core.errors import SERVER, ApiError, error_body
from ..core.journal import ENTRY_MAX_BYTES as ENTRY_MAX_BYTES  # what one entry may hold (tests read it here)
from ..core.journal import Entry, journal_headers
from ..core.jsonio import dumps
from ..service import Fake
from .canned import Canned
from .http import JOURNAL_FACTS, BodyTooLarge, JSONResponse
from .provider import READ, READ_HEADERS, ProviderRoutes

CONTROL_PREFIX = "/__mock__"
HEALTH_PATH = "/healthz"  # polled by health checks: not journaled either
HEADS_KEPT = 256  # distinct lists of request headers remembered (``Edge._heads``)
WIRE_FAULTS_EXTENSION = "mockserver.wire_faults"
LATENCY_HEADER = b"x-mock-latency-ms"
log = logging.getLogger("mockserver")


class BodyTimeout(ApiError):
    def __init__(self, seconds: float) -> None:
        super().__init__(
            408, f"request body not received within {seconds:g} s", param=None, headers={"connection": "close"}
        )


def _ready(receive: Receive) -> bool:
    """Whether ``receive`` answers without waiting: uvicorn's request cycle holds body bytes already
    (its ``message_event`` is set), so no timer is needed for this read. Any other server: False."""
    event = getattr(getattr(receive, "__self__", None), "message_event", None)
    return isinstance(event, asyncio.Event) and event.is_set()


def _deadline(scope: Scope, seconds: float) -> float:
    """When the body must be in, on the event loop's clock; never for an in-process caller (its
    body is in memory already) or on a loop other than asyncio's (trio, through anyio)."""
    if WIRE_FAULTS_EXTENSION in (scope.get("extensions") or {}):
        return math.inf
    try:
        return asyncio.get_running_loop().time() + seconds
    except RuntimeError:
        return math.inf


class Heads(NamedTuple):
    """What the edge reads of a request's headers, in one pass over them."""

    too_large: bool  # a declared Content-Length over the body limit: answered 413 at once
    has_body: bool  # a Content-Length above 0, or a Transfer-Encoding
    read: dict[bytes, str]  # the headers the provider's routes read (``provider.READ``), the first of each
    journal: dict[str, str]  # the headers as the journal keeps them (``journal_headers``)
    journal_size: int  # their encoded length

    @classmethod
    def of(cls, raw: list[tuple[bytes, bytes]], limit: int) -> Heads:
        too_large = has_body = False
        read: dict[bytes, str] = {}
        for name, value in raw:
            if name == b"content-length":
                digits = value.strip()
                if digits.isdigit():  # (more significant digits than the limit has is over it: no int() of those)
                    significant = digits.lstrip(b"0")
                    too_large = too_large or len(significant) > len(str(limit)) or int(significant or b"0") > limit
                has_body = has_body or digits not in (b"", b"0")
            elif name == b"transfer-encoding":
                has_body = True
            elif name in READ and name not in read:
                read[name] = value.decode("latin-1")
        journal = journal_headers(raw)
        return cls(too_large, has_body, read, journal, len(dumps(journal)))


class Exchange:
    """One request on its way through the edge: the ``receive`` and ``send`` the app is given, and
    what they have seen so far (the body's size, the status, whether the body is in and the answer
    started or finished). The journal entry and the last resort read it after the app returns."""

    __slots__ = ("body_done", "complete", "cut_off", "deadline", "facts", "in_process", "limit", "scope",
                 "size", "started", "status", "timeout", "upstream_receive", "upstream_send")  # fmt: skip

    def __init__(
        self, scope: Scope, receive: Receive, send: Send, facts: dict[str, Any], edge: Edge, has_body: bool
    ) -> None:
        self.scope, self.upstream_receive, self.upstream_send, self.facts = scope, receive, send, facts
        self.in_process = WIRE_FAULTS_EXTENSION in (scope.get("extensions") or {})
        self.limit, self.timeout = edge.limit, edge.body_timeout
        self.size = self.status = 0
        self.body_done = not has_body
        self.cut_off = self.started = self.complete = False
        self.deadline: float | None = None

    async def receive(self) -> Message:
        """The next message, counted against the body limit (413) and timed (408) while the body is
        still coming; once it is in, only a disconnect can come, whenever it comes."""
        if self.body_done:
            return await self.upstream_receive()
        if self.in_process or (self.deadline is None and _ready(self.upstream_receive)):
            message = await self.upstream_receive()  # in hand already: no timer
        else:
            message = await self.timed_receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.body_done = True
        self.size += len(message.get("body", b""))
        if self.size > self.limit:
            raise BodyTooLarge(self.limit)
        return message

    async def timed_receive(self) -> Message:
        """A read that may have to wait: within ``body_timeout_seconds`` of the first such read."""
        if self.deadline is None:
            self.deadline = _deadline(self.scope, self.timeout)
        if self.deadline == math.inf:
            return await self.upstream_receive()
        try:
            async with asyncio.timeout_at(self.deadline):
                return await self.upstream_receive()
        except TimeoutError:
            raise BodyTimeout(self.timeout) from None

    def leaving(self) -> Awaitable[Any]:
        """What ends when the client hangs up (``core.clock.LEAVING``): its next message once the
        body is in; before that, nothing (the body's own reads would take it)."""
        return self.upstream_receive() if self.body_done else asyncio.Event().wait()

    async def send(self, message: Message) -> None:
        """The route's answer on its way out: as written, or marked and cut by a wire fault."""
        fault = self.facts.get("wire_fault")
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.started = True
            if fault is None and self.body_done and not (self.in_process and "latency_ms" in self.facts):
                await self.upstream_send(message)  # the common case: the answer as the route wrote it
            else:
                await self.upstream_send({**message, "headers": self.marked(message, fault)})
            return
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self.complete = True
        if fault is None or self.in_process:
            await self.upstream_send(message)
        elif not self.cut_off:
            await self.cut(message, fault)

    def marked(self, start: Message, fault: str | None) -> list[tuple[bytes, bytes]]:
        """The start's headers with what the edge adds: ``connection: close``, the fault's name, the
        latency an in-process transport is to act out."""
        headers = list(start.get("headers", []))
        if fault is not None or not self.body_done:
            # A wire fault closes the connection; so does an answer sent before the body was
            # read (the rest of it would otherwise hold the connection open, trickling in).
            headers = [(k, v) for k, v in headers if k.lower() != b"connection"]
            headers.append((b"connection", b"close"))
        if fault is not None:
            headers.append((b"x-mock-fault", fault.encode()))
        if self.in_process and "latency_ms" in self.facts:
            headers.append((LATENCY_HEADER, str(self.facts["latency_ms"]).encode()))
        return headers

    async def cut(self, message: Message, fault: str) -> None:
        """A wire fault's body: none of it (``drop``) or half (``truncate``), then nothing more."""
        self.cut_off = True
        body: bytes = message.get("body", b"")
        sent = b"" if fault == "drop" else body[: len(body) // 2]
        log.warning("mockserver: %s fault on %s: sent %d of %d body bytes, closing", fault, self.scope["path"],
                    len(sent), len(body))  # fmt: skip
        # Left unfinished on purpose: the server closes the connection
        # (uvicorn logs "ASGI callable returned without completing response").
        await self.upstream_send({"type": "http.response.body", "body": sent, "more_body": True})


class Edge:
    """The middleware this module describes: each HTTP request gets an ``Exchange`` (its wrapped
    ``receive`` and ``send``), is answered by a canned response or its route, and is journaled."""

    def __init__(self, app: ASGIApp, fake: Fake, routes: ProviderRoutes | None = None) -> None:
        self.app = app
        self.fake = fake
        self.routes = routes  # the provider's hot routes, dispatched here without Starlette's router
        self._seen: dict[tuple[tuple[bytes, bytes], ...], Heads] = {}  # see _heads
        self.clock = fake.clock
        self.append_entry = fake.append_entry
        self.limit = fake.settings.max_body_bytes
        self.body_timeout = fake.settings.body_timeout_seconds
        self.canned = Canned(fake)  # canned responses answer before the route: one cheap read when none

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        heads = self._heads(scope["headers"])
        if heads.too_large:
            error = BodyTooLarge(self.limit)
            await JSONResponse(error.body(), 413, headers={"connection": "close"})(scope, receive, send)
            return
        scope[READ_HEADERS] = heads.read
        journaled = not scope["path"].startswith(CONTROL_PREFIX) and scope["path"] != HEALTH_PATH
        await self.fake.begin()  # a store that keeps a copy of the shared settings makes it current, once
        at, started = self.clock.now(), time.perf_counter()
        facts: dict[str, Any] = {}  # what the journal entry will say: routes and the service add to it
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state[JOURNAL_FACTS] = facts
        exchange = Exchange(scope, receive, send, facts, self, heads.has_body)
        if not exchange.in_process:
            LEAVING.set(exchange.leaving)  # see core.clock.pause
        try:
            await self._answer(scope, exchange, journaled)
        except Exception as exc:
            if exchange.started and not exchange.complete:
                raise  # half an answer is out: only closing the connection can tell the client
            await self._last_resort(scope, exchange, exc)
        finally:
            if journaled:
                self._journal(scope, heads, facts, at, started, exchange.size, exchange.status)

    async def _answer(self, scope: Scope, exchange: Exchange, journaled: bool) -> None:
        """A canned response if one matches (provider requests only), else the route."""
        asked = journaled and self.fake.canned_possible()  # none kept (the usual case): nothing to ask
        canned, app_receive = await self.canned(scope, exchange.receive) if asked else (None, exchange.receive)
        await (canned or self._route(scope))(scope, app_receive, exchange.send)

    @staticmethod
    async def _last_resort(scope: Scope, exchange: Exchange, exc: Exception) -> None:
        """An error no handler answered: logged, and a 500 in the provider's error body unless an
        answer had started (and finished) already."""
        log.exception("mockserver: unhandled error on %s %s", scope["method"], scope["path"], exc_info=exc)
        if not exchange.started:
            body = error_body(500, f"internal error: {type(exc).__name__}", SERVER)
            await JSONResponse(body, 500)(scope, exchange.receive, exchange.send)

    def _route(self, scope: Scope) -> ASGIApp:
        """A provider hot route straight from the path table, else Starlette's router."""
        if self.routes is not None and not scope.get("root_path"):
            found = self.routes.find(scope["method"], scope["path"])
            if found is not None:
                handler, task_id = found
                if task_id is not None:
                    scope["path_params"] = {"task_id": task_id}
                return handler
        return self.app

    def _heads(self, raw: list[tuple[bytes, bytes]]) -> Heads:
        """What the edge reads of a request's headers (``Heads``), made once per distinct list of
        headers: a client sends the same ones request after request (nothing changes what is kept)."""
        try:
            key = tuple(raw)
            found = self._seen.get(key)
        except TypeError:  # a server that gives headers as lists
            return Heads.of(raw, self.limit)
        if found is None:
            if len(self._seen) >= HEADS_KEPT:
                self._seen.clear()
            found = self._seen[key] = Heads.of(raw, self.limit)
        return found

    def _journal(
        self, scope: Scope, heads: Heads, facts: dict[str, Any], at: float, started: float, size: int, status: int
    ) -> None:
        """The request's entry (``core.journal.Entry``: made into its final form when read), from
        ``facts``, the request's own mapping (done with now)."""
        duration = time.perf_counter() - started
        path, query, method = scope["path"], scope.get("query_string") or b"", scope["method"]
        entry = Entry(
            at, time.time(), method, path, query, heads.journal, heads.journal_size, size, status, duration, facts
        )
        self.append_entry(entry)
