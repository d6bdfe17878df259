"""RedisHot: the Redis store's ``HotStore`` (``aio``): one round trip per request, and the event loop
never waits for Redis. It talks to Redis through ``client`` (asyncio), runs the same scripts as the
store (``scripts``), and knows the store only as ``SyncStore``, what it uses of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

from ...core.canned import CannedResponse
from ...core.errors import StoreUnavailable
from ...core.faults import FaultRule
from ...core.journal import Entry
from ...core.records import TaskRecord, UploadRecord
from ..aio import Shared
from ..base import Limit, Overdraft
from ..guard import Guard
from .client import Client, Options, ReplyError, Subscriber
from .scripts import (
    APPEND_MANY,
    FIRE_RULE,
    PUT_ONCE,
    SHARED_CHANNEL,
    SHARED_VERSION,
    append_many_call,
    put_once_answer,
    put_once_call,
)

T = TypeVar("T")
JOURNAL_DELAY = 0.02  # seconds a journal entry may wait to be written with others
JOURNAL_BATCH = 500  # entries written at once, whatever the delay
UNAVAILABLE_REPLIES = ("READONLY", "OOM", "LOADING", "MASTERDOWN", "BUSY ")


class SyncStore(Protocol):
    """What the hot store uses of the Redis store (``RedisStore``): its keys, where and how to connect,
    its guard, the journal's size and batch append, and the calls it hands to it in a thread."""

    @property
    def url(self) -> str: ...

    @property
    def timeout(self) -> float: ...

    @property
    def journal_size(self) -> int: ...

    @property
    def guard(self) -> Guard: ...

    def k(self, name: str) -> str: ...

    def append_encoded(self, encoded: Sequence[bytes]) -> None: ...

    def fire_fault_rule(self, rule_id: str) -> bool: ...

    def fire_canned_response(self, response_id: str) -> bool: ...

    def update_task(self, task_id: str, change: Callable[[TaskRecord], TaskRecord]) -> TaskRecord | None: ...

    def evict_tasks(self, created_before: float, limit: int | None = None) -> int: ...


class RedisHot:
    """The hot path's calls (``aio.HotStore``) of one ``RedisStore``, through an asyncio client.

    **Why an asyncio client** (``client``), not store calls in a thread: a request makes one call on
    the hot path, so a hand-off to a thread and back (two wake-ups, and the GIL passed between the
    threads, at each of which the loop may hold it for up to its switch interval) would cost more
    than the round trip itself; an asyncio client costs little per command, and while Redis
    answers, the loop answers other requests. Every command of one turn of the loop goes out
    in one write (pipelining across requests).

    Per request:

    - **a submission**: one ``PUT_ONCE`` script: the idempotency key, the account's own balance
      (read in the script: no list of balances anywhere), the refunds due, the charge and the task,
      atomically.
    - **a poll**: one ``HGET`` of the task.
    - **the journal entry**: queued, and written with the others of the last ``JOURNAL_DELAY``
      seconds in one ``APPEND_MANY`` script.
    - **the shared settings** (the clock's offset, fault rules, canned responses, accounts'
      settings: ``aio.Shared``): no round trip. Each worker keeps a copy and subscribes to
      ``SHARED_CHANNEL``; every change (announced by the store, in any worker) is published
      there, and the copy is read again (one ``MULTI``/``EXEC`` round trip) by the first request
      after it. A message is read as soon as it arrives, in the same turn of the loop as any
      request that came with it, so a request sent after a change was acknowledged never sees the
      copy from before it. While the subscription is not live (connecting, lost), the copy is read
      by every request.

    Rarer calls: a fault rule's or canned response's firing is one script (its ``times`` from the
    copy); a rate-limit count one pipelined ``INCR``/``EXPIRE``; a poll-count update and eviction
    (several round trips) run the store's own methods in a thread.

    Failures: a refused or broken connection, a timeout (the store's, per command) and the replies
    of a Redis that cannot write (``READONLY``, ``OOM``, ``LOADING``, ``MASTERDOWN``) raise
    ``StoreUnavailable`` through the store's guard (after a timeout, the calls of the next second
    are answered at once); the client connects again by itself.
    """

    def __init__(self, store: SyncStore) -> None:
        self.store = store
        self.k = store.k
        self.options = Options(store.url, store.timeout)
        self._clients: dict[asyncio.AbstractEventLoop, Client] = {}
        self._shared = Shared(None, (0.0, None), (), (), {})
        self._subscriber: Subscriber | None = None
        self._subscribed_in: int | None = None  # the thread whose loop holds the live subscription
        self._changes = 0  # changes announced (or possibly missed) so far
        self._loaded = -1  # ``_changes`` when the copy was last read
        self._journal: list[Entry] = []
        self._journal_lock = threading.Lock()
        self._flush: asyncio.TimerHandle | asyncio.Handle | None = None

    # -- the connection ---------------------------------------------------------------------------

    def _client(self) -> Client:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            for old in [old for old in self._clients if old.is_closed()]:
                del self._clients[old]
            client = self._clients[loop] = Client(self.options)
        return client

    async def _ask(self, answer: Awaitable[T]) -> T:
        """``answer``, with the client's failures as the store's ``StoreUnavailable`` (``guard.Guard``)."""
        guard = self.store.guard
        if guard.has_opened:
            guard.check()
        started = time.monotonic()
        try:
            return await answer
        except (ConnectionError, OSError, TimeoutError) as exc:
            raise guard.failed(exc, time.monotonic() - started) from exc
        except ReplyError as exc:
            if str(exc).startswith(UNAVAILABLE_REPLIES):
                raise guard.failed(exc, time.monotonic() - started) from exc
            raise

    # -- shared settings -------------------------------------------------------------------------------

    def shared(self) -> Shared:
        return self._shared

    def note_clock(self, state: tuple[float, float | None]) -> None:
        self._shared = self._shared._replace(clock=state)

    async def refresh(self) -> None:
        subscriber = self._subscriber
        if subscriber is not None and subscriber.loop.is_closed():  # its loop is gone (a test's): subscribe anew
            subscriber = self._subscriber = self._subscribed_in = None
        if subscriber is not None and self._subscribed_in == threading.get_ident() and self._loaded == self._changes:
            return  # subscribed, and nothing announced since the copy was read
        if subscriber is None:
            channel = self.k(SHARED_CHANNEL)
            self._subscriber = Subscriber(self.options, channel, self._announced, self._live)
        await self._load()

    def _announced(self, message: bytes) -> None:
        self._changes += 1

    def _live(self, live: bool) -> None:
        self._changes += 1  # messages may have been missed while it was not: read the copy again
        self._subscribed_in = threading.get_ident() if live else None

    async def _load(self) -> None:
        seen = self._changes
        k = self.k
        replies = await self._ask(
            self._client().pipeline(
                [
                    ["MULTI"],
                    ["GET", k(SHARED_VERSION)],
                    ["GET", k("clock")],
                    ["LRANGE", k("rule_order"), 0, -1],
                    ["HGETALL", k("rules")],
                    ["LRANGE", k("canned_order"), 0, -1],
                    ["HGETALL", k("canned")],
                    ["HGETALL", k("canned_fired")],
                    ["HGETALL", k("account_settings")],
                    ["EXEC"],
                ]
            )
        )
        found = replies[-1]
        if not isinstance(found, list):
            raise self.store.guard.failed(ConnectionError(f"Redis did not run the transaction: {found}"), 0.0)
        version, clock, rule_order, rules, canned_order, canned, canned_fired, accounts = found
        rules_by_id, canned_by_id, fired = _pairs(rules), _pairs(canned), _pairs(canned_fired)
        offset, frozen_at = json.loads(clock) if clock else (0.0, None)
        self._shared = Shared(
            version,
            (float(offset), frozen_at),
            tuple(FaultRule.from_dict(json.loads(rules_by_id[i])) for i in rule_order if i in rules_by_id),
            tuple(
                CannedResponse.from_dict({**json.loads(canned_by_id[i]), "fired": int(fired.get(i, 0))})
                for i in canned_order
                if i in canned_by_id
            ),
            {account.decode(): json.loads(data) for account, data in _pairs(accounts).items()},
        )
        self._loaded = seen

    # -- reads -------------------------------------------------------------------------------------------

    async def get_task(self, task_id: str) -> TaskRecord | None:
        raw = await self._ask(self._client().call("HGET", self.k("tasks"), task_id))
        return TaskRecord.from_json(raw) if raw else None

    async def idempotent_task(self, account: str, key: str) -> str | None:
        raw = await self._ask(self._client().call("HGET", self.k("idempotency"), f"{account}|{key}"))
        return raw.decode() if raw else None

    async def get_upload(self, upload_id: str) -> UploadRecord | None:
        meta, data = await self._ask(
            self._client().pipeline(
                [["HGET", self.k("uploads"), upload_id], ["HGET", self.k("upload_data"), upload_id]]
            )
        )
        if not meta or data is None or isinstance(meta, ReplyError) or isinstance(data, ReplyError):
            return None
        return UploadRecord(**json.loads(meta), data=bytes(data))

    # -- writes --------------------------------------------------------------------------------------------

    async def put_task_once(self, record: TaskRecord, key: str | None, limit: Limit = None) -> str | Overdraft:
        keys, args = put_once_call(self.k, record, key, limit)
        return put_once_answer(await self._ask(self._client().script(PUT_ONCE, keys, args)))

    async def fire_fault_rule(self, rule_id: str) -> bool:
        rule = next((r for r in self._shared.rules if r.id == rule_id), None)
        if rule is None:  # not in the copy (added since): the store's own way
            return await self._in_thread(self.store.fire_fault_rule, rule_id)
        keys = [self.k("rules"), self.k("rule_fired")]
        times = -1 if rule.times is None else rule.times
        return bool(await self._ask(self._client().script(FIRE_RULE, keys, [rule_id, times])))

    async def fire_canned_response(self, response_id: str) -> bool:
        response = next((r for r in self._shared.canned if r.id == response_id), None)
        if response is None:
            return await self._in_thread(self.store.fire_canned_response, response_id)
        keys = [self.k("canned"), self.k("canned_fired")]
        times = -1 if response.times is None else response.times
        return bool(await self._ask(self._client().script(FIRE_RULE, keys, [response_id, times])))

    async def hit(self, account: str, window: int) -> int:
        key = self.k(f"window:{account}:{window}")
        count, _ = await self._ask(self._client().pipeline([["INCR", key], ["EXPIRE", key, 180]]))
        if isinstance(count, ReplyError):
            raise count
        return int(count)

    async def update_task(self, task_id: str, change: Callable[[TaskRecord], TaskRecord]) -> TaskRecord | None:
        return await self._in_thread(self.store.update_task, task_id, change)

    async def evict_tasks(self, created_before: float, limit: int | None = None) -> int:
        return await self._in_thread(self.store.evict_tasks, created_before, limit)

    @staticmethod
    async def _in_thread(call: Callable[..., T], *args: Any) -> T:
        """A call of the store's own (several round trips), off the loop."""
        return await asyncio.get_running_loop().run_in_executor(None, call, *args)

    # -- the journal -------------------------------------------------------------------------------------------

    def append_entry(self, entry: Entry) -> None:
        with self._journal_lock:
            self._journal.append(entry)
            queued = len(self._journal)
        if 1 < queued < JOURNAL_BATCH:
            return  # a write is due already
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush_journal()
            return
        if queued == 1:
            self._flush = loop.call_later(JOURNAL_DELAY, self._write_journal)
        else:
            if self._flush is not None:
                self._flush.cancel()
            self._flush = loop.call_soon(self._write_journal)

    def _take_journal(self) -> list[Entry]:
        with self._journal_lock:
            entries, self._journal = self._journal, []
        return entries

    def _write_journal(self) -> None:
        self._flush = None
        entries = self._take_journal()
        if entries:
            asyncio.get_running_loop().create_task(self._append(entries))

    async def _append(self, entries: list[Entry]) -> None:
        keys, args = append_many_call(self.k, self.store.journal_size, [entry.encoded() for entry in entries])
        with contextlib.suppress(StoreUnavailable, ReplyError):  # the answers went out: entries lost, not answers
            await self._ask(self._client().script(APPEND_MANY, keys, args))

    def flush_journal(self) -> None:
        """Write what is queued now, with the store's own client (before the journal is read)."""
        entries = self._take_journal()
        for client in list(self._clients.values()):
            if not client.loop.is_closed() and client.loop is _running_loop():
                client.flush()  # what this loop sent already goes out before the read
        if entries:
            with contextlib.suppress(StoreUnavailable):
                self.store.append_encoded([entry.encoded() for entry in entries])


def _pairs(reply: Any) -> dict[bytes, Any]:
    """A ``HGETALL`` reply (a flat list of field, value, …) as a mapping."""
    items = reply if isinstance(reply, list) else []
    return dict(zip(items[::2], items[1::2], strict=False))


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
