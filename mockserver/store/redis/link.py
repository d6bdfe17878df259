"""What the Redis store's calls go through, and what it keeps between them.

- ``Link``: the asyncio client (``client.Client``) of each event loop, and the guard its failures go
  through. One client per loop: a connection belongs to the loop it was opened on, and the server, an
  in-process HTTP transport and the tests each run their own loop (in threads of their own).
- ``SharedCopy``: this process's copy of the shared settings (``base.Shared``), kept current through
  pub/sub (``client.Subscriber``).
- ``JournalQueue``: journal entries, queued and written in batches with one ``APPEND_MANY`` script.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import threading
import time
from collections.abc import Awaitable, Sequence
from typing import Any

from ...core.errors import StoreUnavailable
from ...core.journal import Entry
from ..base import Shared
from ..guard import Guard
from .client import Client, Options, Reply, ReplyError, Subscriber
from .scripts import APPEND_MANY, SHARED_CHANNEL, SHARED_VERSION, Keys, append_many_call, canned_from, pairs, rules_from

Command = Sequence[Any]
UNAVAILABLE = (ConnectionError, OSError, TimeoutError)  # the client's failures: Redis down, refusing, frozen
UNAVAILABLE_REPLIES = ("READONLY", "OOM", "LOADING", "MASTERDOWN", "BUSY ")  # a Redis that cannot write
JOURNAL_DELAY = 0.02  # seconds a journal entry may wait to be written with others
FLUSH_WAIT = 0.25  # seconds a journal read waits for the batches other loops are writing
JOURNAL_BATCH = 500  # entries written at once, whatever the delay


class Link:
    """Commands to Redis from any event loop, their failures raised as ``StoreUnavailable``.

    A refused or broken connection, a timeout (per command: ``Options.timeout``) and the replies of a
    Redis that cannot write (``READONLY``, ``OOM``, ``LOADING``, ``MASTERDOWN``, ``BUSY``) go through
    ``guard``: after a failure that waited out the timeout, the calls of the next second are answered
    at once. Any other error reply (a bug) is raised as the client's ``ReplyError``. The client connects
    again by itself.
    """

    def __init__(self, url: str, timeout: float, guard: Guard) -> None:
        self.options = Options(url, timeout)
        self.guard = guard
        self._clients: dict[asyncio.AbstractEventLoop, Client] = {}
        self._lock = threading.Lock()

    def client(self) -> Client:
        """This loop's client (made on first use; those of closed loops are dropped then), unless the
        guard answers at once (``StoreUnavailable``)."""
        if self.guard.has_opened:  # until a slow failure, ``check`` cannot raise: skip its lock
            self.guard.check()
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            with self._lock:
                for old in [old for old in self._clients if old.is_closed()]:
                    del self._clients[old]
                client = self._clients[loop] = Client(self.options)
        return client

    async def _ask(self, answer: Awaitable[Reply]) -> Reply:
        """``answer``'s reply; an error reply in it (in a pipeline, a transaction) is raised."""
        guard = self.guard
        started = time.monotonic()
        try:
            reply = await answer
            error = _error_in(reply)
            if error is not None:
                raise error
            return reply
        except UNAVAILABLE as exc:
            raise guard.failed(exc, time.monotonic() - started) from exc
        except ReplyError as exc:
            if str(exc).startswith(UNAVAILABLE_REPLIES):
                raise guard.failed(exc, time.monotonic() - started) from exc
            raise

    async def call(self, *command: Any) -> Reply:
        return await self._ask(self.client().call(*command))

    async def pipeline(self, commands: Sequence[Command]) -> list[Reply]:
        """Several commands in one round trip (not atomic); their replies."""
        replies: list[Reply] = await self._ask(self.client().pipeline(commands))
        return replies

    async def transaction(self, commands: Sequence[Command]) -> list[Reply]:
        """Several commands in one ``MULTI``/``EXEC`` (atomic, one round trip); their replies."""
        found = (await self.pipeline([["MULTI"], *commands, ["EXEC"]]))[-1]
        if not isinstance(found, list):
            raise self.guard.failed(ConnectionError(f"Redis did not run the transaction: {found}"), 0.0)
        return found

    async def script(self, source: str, keys: Sequence[Any], args: Sequence[Any]) -> Reply:
        return await self._ask(self.client().script(source, keys, args))

    async def scan(self, pattern: str) -> list[bytes]:
        """Every key matching ``pattern`` (``SCAN``: Redis is never held for long)."""
        found: dict[bytes, None] = {}
        cursor: Any = b"0"
        while True:
            cursor, keys = await self.call("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
            found.update(dict.fromkeys(keys))
            if cursor == b"0":
                return list(found)


def _error_in(reply: Reply) -> ReplyError | None:
    """The first error reply in ``reply`` (a pipeline's replies, a transaction's inside them)."""
    if isinstance(reply, ReplyError):
        return reply
    if isinstance(reply, list):
        for item in reply:
            if isinstance(item, ReplyError | list) and (error := _error_in(item)) is not None:
                return error
    return None


class SharedCopy:
    """The shared settings as this process last read them, read again only after a change.

    Each process subscribes to ``SHARED_CHANNEL``; every change (``RedisStore`` announces them, in
    any worker) is published there, and the copy is read again (one ``MULTI``/``EXEC``) by the first
    ``refresh`` after it. A message is read as soon as it arrives, in the same turn of the loop as
    any request that came with it, so a request sent after a change was acknowledged never sees the
    copy from before it. While the subscription is not live (connecting, lost) or lives on another
    loop's thread, every ``refresh`` reads the copy.
    """

    def __init__(self, link: Link, k: Keys) -> None:
        self.link = link
        self.k = k
        self.current = Shared(None, (0.0, None), (), (), {})
        self._subscriber: Subscriber | None = None
        self._subscribed_in: int | None = None  # the thread whose loop holds the live subscription
        self._changes = 0  # changes announced (or possibly missed) so far
        self._loaded = -1  # ``_changes`` when the copy was last read

    @property
    def live(self) -> bool:
        """Whether the subscription is confirmed (changes are heard of without asking)."""
        return self._subscribed_in is not None

    def changed(self) -> None:
        """A change was made (or may have been missed): the next ``refresh`` reads the copy again."""
        self._changes += 1

    def note_clock(self, state: tuple[float, float | None]) -> None:
        self.current = self.current._replace(clock=state)

    async def refresh(self) -> None:
        subscriber = self._subscriber
        if subscriber is not None and subscriber.loop.is_closed():  # its loop is gone (a test's): subscribe anew
            subscriber = self._subscriber = self._subscribed_in = None
        if subscriber is not None and self._subscribed_in == threading.get_ident() and self._loaded == self._changes:
            return  # subscribed here, and nothing announced since the copy was read
        if subscriber is None:
            self._subscriber = Subscriber(self.link.options, self.k(SHARED_CHANNEL), self._heard, self._live)
        await self._load()

    def _heard(self, _message: bytes) -> None:
        self.changed()

    def _live(self, live: bool) -> None:
        self.changed()  # messages may have been missed while it was not live
        self._subscribed_in = threading.get_ident() if live else None

    async def _load(self) -> None:
        seen = self._changes
        k = self.k
        version, clock, rule_order, rules, canned_order, canned, canned_fired, accounts = await self.link.transaction(
            [
                ["GET", k(SHARED_VERSION)],
                ["GET", k("clock")],
                ["LRANGE", k("rule_order"), 0, -1],
                ["HGETALL", k("rules")],
                ["LRANGE", k("canned_order"), 0, -1],
                ["HGETALL", k("canned")],
                ["HGETALL", k("canned_fired")],
                ["HGETALL", k("account_settings")],
            ]
        )
        offset, frozen_at = json.loads(clock) if clock else (0.0, None)
        self.current = Shared(
            version,
            (float(offset), frozen_at),
            tuple(rules_from(rule_order, pairs(rules))),
            tuple(canned_from(canned_order, pairs(canned), pairs(canned_fired))),
            {account.decode(): json.loads(data) for account, data in pairs(accounts).items()},
        )
        self._loaded = seen


Batch = tuple[list[Entry], "concurrent.futures.Future[None]"]


class JournalQueue:
    """Journal entries (``Entry``: encoded only when written), written together: those of the last
    ``JOURNAL_DELAY`` seconds, or ``JOURNAL_BATCH`` at once, in one ``APPEND_MANY``. Entries that
    cannot be written are lost (their answers went out). ``flush`` writes what is queued and waits for
    the batches being written, from any loop: what the journal is read after."""

    def __init__(self, link: Link, k: Keys, size: int) -> None:
        self.link = link
        self.k = k
        self.size = size
        self._entries: list[Entry] = []
        self._due_on: asyncio.AbstractEventLoop | None = None  # the loop a write of the queue is due on
        self._writing: dict[concurrent.futures.Future[None], asyncio.AbstractEventLoop] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = threading.Lock()

    def append(self, entry: Entry) -> None:
        """Queue ``entry``; a write is due on this loop (none running: the next ``flush`` writes it)."""
        with self._lock:
            self._entries.append(entry)
            full = len(self._entries) >= JOURNAL_BATCH
            due = self._due_on
            if not full and due is not None and not due.is_closed():
                return  # a write is due already
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._due_on = loop
        if full:
            loop.call_soon(self._write)
        else:
            loop.call_later(JOURNAL_DELAY, self._write)

    def _take(self) -> Batch | None:
        """What is queued, and the future its write sets (waited for by ``flush``)."""
        with self._lock:
            entries, self._entries, self._due_on = self._entries, [], None
            if not entries:
                return None
            done: concurrent.futures.Future[None] = concurrent.futures.Future()
            self._writing[done] = asyncio.get_running_loop()
        return entries, done

    def _write(self) -> None:
        batch = self._take()
        if batch is not None:
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: Batch) -> None:
        entries, done = batch
        keys, args = append_many_call(self.k, self.size, [entry.encoded() for entry in entries])
        try:
            with contextlib.suppress(StoreUnavailable, ReplyError):
                await self.link.script(APPEND_MANY, keys, args)
        finally:
            with self._lock:
                self._writing.pop(done, None)
            done.set_result(None)

    async def flush(self) -> None:
        """Write what is queued now, and wait (within the timeout) for the batches other calls write."""
        with self._lock:
            for done in [done for done, loop in self._writing.items() if loop.is_closed()]:
                del self._writing[done]  # a loop closed while writing: nothing left to wait for
            writing = list(self._writing)
        batch = self._take()
        if batch is not None:
            await self._send(batch)
        if writing:
            # (a short wait: a loop whose thread is blocked waiting for this very read cannot finish its batch)
            await asyncio.wait([asyncio.wrap_future(done) for done in writing], timeout=FLUSH_WAIT)
