"""A small asyncio Redis client (RESP2) for the store (``store``, ``link``): one connection per event loop, pipelined.

Why not redis-py's asyncio client: it takes a connection pool, an async lock and a timeout context for
every call, and the hot path makes one command per request; here every command of one turn of the loop
goes out in one write. ``Subscriber`` hands each message to its callback as soon as it is read, so a
cache it invalidates is never read stale.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import hiredis
from redis.connection import SSLConnection, parse_url

Reply = Any  # bytes | int | None | list[Reply] | ReplyError
_MORE = object()  # hiredis's answer while a reply has not all come


class ReplyError(Exception):
    """An error reply from Redis."""


class _Protocol(asyncio.Protocol):
    def __init__(self, on_reply: Callable[[Reply], None], on_lost: Callable[[BaseException | None], None]) -> None:
        self.on_reply = on_reply
        self.on_lost = on_lost
        self.reader = hiredis.Reader(protocolError=ConnectionError, replyError=ReplyError, notEnoughData=_MORE)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports only look like asyncio's

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        try:
            while (reply := self.reader.gets()) is not _MORE:
                self.on_reply(reply)
        except ConnectionError as exc:  # not RESP: nothing after it can be matched to a command
            if self.transport is not None:
                self.transport.close()
            self.on_lost(exc)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.on_lost(exc)


class Options:
    """Where and how to connect, from a ``redis://``, ``rediss://`` or ``unix://`` URL."""

    def __init__(self, url: str, timeout: float) -> None:
        found = parse_url(url)  # type: ignore[no-untyped-call]
        self.host: str | None = found.get("host")
        self.port: int = int(found.get("port") or 6379)
        self.path: str | None = found.get("path")
        self.db = int(found.get("db") or 0)
        self.username: str | None = found.get("username")
        self.password: str | None = found.get("password")
        self.ssl = found.get("connection_class") is SSLConnection
        self.timeout = timeout

    def hello(self) -> list[list[Any]]:
        """The commands a new connection sends first."""
        commands: list[list[Any]] = []
        if self.password is not None:
            commands.append(["AUTH", *([self.username] if self.username else []), self.password])
        if self.db:
            commands.append(["SELECT", self.db])
        return commands

    async def connect(self, protocol: _Protocol) -> asyncio.BaseTransport:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.timeout):
            if self.path is not None:
                transport, _ = await loop.create_unix_connection(lambda: protocol, self.path)
            else:
                context = ssl.create_default_context() if self.ssl else None
                host = self.host or "localhost"
                transport, _ = await loop.create_connection(lambda: protocol, host, self.port, ssl=context)
        return transport


class Client:
    """One pipelined connection, on the loop it was first used on.

    Every command of one turn of the loop goes out in one write, and the replies (read by
    ``hiredis.Reader``) are matched in order. A command not answered within ``timeout`` fails with
    ``TimeoutError``, as does every one behind it, and the connection is closed (late replies would
    answer the wrong commands); a broken or refused connection, or bytes that are not RESP, fail them
    with ``ConnectionError``; the next command connects again. An error reply is a ``ReplyError``
    (Redis's text, e.g. ``READONLY …``), never a ``ConnectionError``: the caller decides which mean
    Redis is unavailable.
    """

    def __init__(self, options: Options) -> None:
        self.options = options
        self.loop = asyncio.get_running_loop()
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[None] | None = None
        self._waiting: deque[tuple[asyncio.Future[Reply], float]] = deque()
        self._out: list[bytes] = []
        self._watchdog: asyncio.TimerHandle | None = None
        self._shas: dict[str, str] = {}

    # -- the connection ----------------------------------------------------------------------

    async def _ready(self) -> _Protocol:
        protocol = self._protocol
        if protocol is not None and protocol.transport is not None and not protocol.transport.is_closing():
            return protocol
        if self._connecting is None:
            self._connecting = self.loop.create_future()
            try:
                protocol = _Protocol(self._on_reply, self._on_lost)
                await self.options.connect(protocol)
                self._protocol = protocol
                hello = self.options.hello()
                if hello:
                    for reply in await self._send(hello, protocol):
                        if isinstance(reply, ReplyError):
                            raise ConnectionError(f"Redis refused the connection: {reply}")
            except BaseException as exc:
                self._protocol = None
                self._connecting.set_exception(exc if isinstance(exc, Exception) else ConnectionError(str(exc)))
                self._connecting.exception()  # retrieved: whoever waits on it raises it
                self._connecting = None
                raise
            self._connecting.set_result(None)
            self._connecting = None
            return protocol
        await asyncio.shield(self._connecting)
        return await self._ready()

    def _on_reply(self, reply: Reply) -> None:
        if not self._waiting:
            return  # a reply to a command already failed by a timeout (the connection is being closed)
        future, _ = self._waiting.popleft()
        if not future.done():
            future.set_result(reply)

    def _on_lost(self, exc: BaseException | None) -> None:
        self._protocol = None
        self._fail(ConnectionError(f"connection to Redis lost{f': {exc}' if exc else ''}"))

    def _fail(self, exc: BaseException) -> None:
        waiting, self._waiting = self._waiting, deque()
        self._out = []
        for future, _ in waiting:
            if not future.done():
                future.set_exception(exc)

    def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
        self._fail(ConnectionError("connection to Redis closed"))

    # -- commands ----------------------------------------------------------------------------

    async def _send(self, commands: Sequence[Sequence[Any]], protocol: _Protocol) -> list[Reply]:
        now = time.monotonic()
        futures = []
        for command in commands:
            future: asyncio.Future[Reply] = self.loop.create_future()
            self._waiting.append((future, now))
            futures.append(future)
            self._out.append(hiredis.pack_command(tuple(command)))
        if len(self._out) == len(commands):  # the first of this turn: written when the turn ends
            self.loop.call_soon(self.flush)
        if self._watchdog is None:
            self._watchdog = self.loop.call_at(self.loop.time() + self.options.timeout, self._check)
        return [await future for future in futures]

    def flush(self) -> None:
        """Write the commands sent so far (done by itself when the turn of the loop ends; called, at once)."""
        out, self._out = self._out, []
        protocol = self._protocol
        if not out:
            return
        if protocol is None or protocol.transport is None or protocol.transport.is_closing():
            self._fail(ConnectionError("connection to Redis lost"))  # nothing to write on: fail now, not at the timeout
            return
        protocol.transport.write(b"".join(out))

    def _check(self) -> None:
        """The oldest command waiting: past its timeout, every waiting command fails and the connection goes."""
        self._watchdog = None
        if not self._waiting:
            return
        started = self._waiting[0][1]
        left = started + self.options.timeout - time.monotonic()
        if left > 0:
            self._watchdog = self.loop.call_at(self.loop.time() + left, self._check)
            return
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
        self._fail(TimeoutError(f"Timeout: Redis did not answer within {self.options.timeout:g} s"))

    async def call(self, *args: Any) -> Reply:
        """One command's reply (an error reply raises ``ReplyError``)."""
        (reply,) = await self.pipeline([args])
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    async def pipeline(self, commands: Sequence[Sequence[Any]]) -> list[Reply]:
        """Several commands in one round trip; their replies (error replies as ``ReplyError`` values)."""
        protocol = await self._ready()
        return await self._send(commands, protocol)

    async def script(self, source: str, keys: Sequence[Any], args: Sequence[Any]) -> Reply:
        """``EVALSHA`` of a Lua script, ``EVAL`` when Redis does not have it yet."""
        sha = self._shas.get(source)
        if sha is None:
            sha = self._shas[source] = hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 - Redis's own name for it
        reply = (await self.pipeline([["EVALSHA", sha, len(keys), *keys, *args]]))[0]
        if isinstance(reply, ReplyError) and str(reply).startswith("NOSCRIPT"):
            reply = (await self.pipeline([["EVAL", source, len(keys), *keys, *args]]))[0]
        if isinstance(reply, ReplyError):
            raise reply
        return reply


class Subscriber:
    """A connection in subscribe mode: ``on_message(data)`` for each message on ``channel``, at once (in
    the same turn of the loop as any request that came with it); ``on_state(live)`` when the
    subscription is confirmed (True) or lost (False). It connects again by itself (every ``retry``
    seconds) while ``close`` was not called."""

    def __init__(
        self,
        options: Options,
        channel: str,
        on_message: Callable[[bytes], None],
        on_state: Callable[[bool], None],
        retry: float = 0.5,
    ) -> None:
        self.options = options
        self.channel = channel.encode()
        self.on_message = on_message
        self.on_state = on_state
        self.retry = retry
        self.loop = asyncio.get_running_loop()
        self._transport: asyncio.BaseTransport | None = None
        self._closed = False
        self._task: asyncio.Task[None] | None = self.loop.create_task(self._connect())

    async def _connect(self) -> None:
        while not self._closed:
            try:
                protocol = _Protocol(self._on_reply, self._on_lost)
                self._transport = await self.options.connect(protocol)
                assert protocol.transport is not None
                commands = [*self.options.hello(), ["SUBSCRIBE", self.channel]]
                protocol.transport.write(b"".join(hiredis.pack_command(tuple(command)) for command in commands))
                return
            except (OSError, TimeoutError, ConnectionError):
                await asyncio.sleep(self.retry)

    def _on_reply(self, reply: Reply) -> None:
        if isinstance(reply, list) and len(reply) >= 3:
            kind = reply[0]
            if kind == b"message" and reply[1] == self.channel:
                self.on_message(reply[2] if isinstance(reply[2], bytes) else b"")
            elif kind == b"subscribe" and reply[1] == self.channel:
                self.on_state(True)
        elif isinstance(reply, ReplyError) and self._transport is not None:
            self._transport.close()

    def _on_lost(self, exc: BaseException | None) -> None:
        self._transport = None
        self.on_state(False)
        if not self._closed and not self.loop.is_closed():
            self.loop.call_later(self.retry, self._again)

    def _again(self) -> None:
        if not self._closed and self._transport is None and (self._task is None or self._task.done()):
            self._task = self.loop.create_task(self._connect())

    def close(self) -> None:
        self._closed = True
        if self._transport is not None:
            self._transport.close()
        if self._task is not None:
            self._task.cancel()
