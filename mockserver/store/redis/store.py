"""RedisStore: the ``Store`` in Redis, shared by instances on several hosts behind a load balancer.

Every read-modify-write is one Redis command, one ``MULTI``/``EXEC`` or one Lua script (``scripts``),
so it is atomic across instances; keys live under one prefix (``mockserver:``).

**Why an asyncio client** (``client``, through ``link.Link``), not a blocking one in a thread: a request
makes a few store calls, and a hand-off to a thread and back (two wake-ups, the GIL passed between the
threads) would cost more than the round trip itself; an asyncio client costs little per command, and
while Redis answers, the loop answers other requests. Every command of one turn of the loop goes out
in one write (pipelining across requests). Per request:

- **a submission**: one ``PUT_ONCE`` script: the idempotency key, the account's own balance (read in
  the script: no list of balances anywhere), the refunds due, the charge and the task, atomically.
- **a poll**: one ``HGET`` of the task; a counted poll, a compare-and-set (``HGET``, then ``SWAP``).
- **the journal entry**: queued, written with the others of the last few milliseconds in one
  ``APPEND_MANY`` script (``link.JournalQueue``).
- **the shared settings** (``base.Shared``): no round trip; a copy kept current through pub/sub
  (``link.SharedCopy``). Every change of them here bumps ``SHARED_VERSION`` and publishes on
  ``SHARED_CHANNEL``, in the same transaction as the change, so every worker's copy follows.
- a fault rule's or canned response's firing: one ``FIRE_RULE`` script (its ``times`` from the copy);
  a rate-limit count: one ``INCR``/``EXPIRE``.

The control plane's calls use the same client; those of several round trips (a reset, a replace, a
page of tasks) let other requests of this worker run between them, so they are not one snapshot.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from ...core.canned import CannedResponse
from ...core.faults import FaultRule
from ...core.journal import Entry
from ...core.ledger import refund_due
from ...core.records import TaskRecord, UploadRecord
from ..base import Limit, Overdraft, Shared, Spending, StateImage, UploadRefused, UploadUsage, booking, fill
from ..guard import Guard
from .link import UNAVAILABLE, Command, JournalQueue, Link, SharedCopy
from .scripts import (
    APPEND_JOURNAL,
    DELETE_UPLOAD,
    FIRE_RULE,
    PUT_ONCE,
    PUT_UPLOAD,
    SHARED_CHANNEL,
    SHARED_VERSION,
    STAGING,
    SWAP,
    SWAP_STATE,
    UPLOAD_KEYS,
    UPLOAD_USAGE,
    canned_from,
    journal_keys,
    pairs,
    put_once_answer,
    put_once_call,
    refund_member,
    rules_from,
    task_keys,
)

KEPT = ("journal_seq", "clock", SHARED_VERSION)  # what a whole reset leaves (as a replace does: ``SWAP_STATE``)


class RedisStore:
    """The ``Store`` protocol over Redis at ``url``, every key under ``prefix``.

    Every call is bounded by ``timeout`` (per command, and to connect) and fails as ``StoreUnavailable``
    through ``guard`` (``link.Link``): a Redis that is down, frozen or refusing writes; after a call that
    waited out the timeout (a frozen Redis), the calls of the next second are answered without asking.
    When it cannot answer, ``shared()`` keeps serving the last copy, so the clock keeps running.
    """

    def __init__(self, url: str, journal_size: int = 10_000, prefix: str = "mockserver:", timeout: float = 2.0) -> None:
        self.url = url
        self.p = prefix
        self.journal_size = journal_size
        self.timeout = timeout
        self.guard = Guard("redis", UNAVAILABLE)
        self.link = Link(url, timeout, self.guard)
        self.shared_copy = SharedCopy(self.link, self.k)
        self.queue = JournalQueue(self.link, self.k, journal_size)
        self._announces = True  # a staging view (``replace_state``) tells no worker of its changes

    def k(self, name: str) -> str:
        return self.p + name

    async def _change(self, *commands: Command) -> list[Any]:
        """``commands`` in one transaction, with the change of what every request reads announced: its
        version bumped and published (every worker's copy is read again; this one's at its next refresh)."""
        announce = [["INCR", self.k(SHARED_VERSION)], ["PUBLISH", self.k(SHARED_CHANNEL), "changed"]]
        replies = await self.link.transaction([*commands, *(announce if self._announces else [])])
        if self._announces:
            self.shared_copy.changed()
        return replies

    async def ping(self) -> None:
        await self.link.call("PING")

    # the shared settings

    def shared(self) -> Shared:
        return self.shared_copy.current

    async def refresh(self) -> None:
        await self.shared_copy.refresh()

    def note_clock(self, state: tuple[float, float | None]) -> None:
        self.shared_copy.note_clock(state)

    # tasks: ``tasks`` (id -> JSON), ``task_order`` and ``task_order:<account>`` (ids, oldest first)

    async def put_task_once(self, record: TaskRecord, key: str | None, limit: Limit = None) -> str | Overdraft:
        keys, args = put_once_call(self.k, record, key, limit)
        return put_once_answer(await self.link.script(PUT_ONCE, keys, args))

    async def put_task(self, record: TaskRecord) -> None:
        while True:
            raw = await self.link.call("HGET", self.k("tasks"), record.id)
            old = TaskRecord.from_json(raw) if raw is not None else None
            if await self._swap(record.id, raw, old, record):
                return

    async def _swap(self, task_id: str, expected: bytes | None, old: TaskRecord | None, new: TaskRecord | None) -> bool:
        """Replace the task stored as ``expected`` (None: absent) by ``new`` (None: delete it), moving
        the running totals from ``old`` to ``new``; False when the task changed meanwhile."""
        rebook = old is None or new is None or booking(old) != booking(new)
        unbook = rebook and old is not None and bool(old.charge)
        book = rebook and new is not None and bool(new.charge)
        new_due = refund_due(new) if new is not None and book else None
        either = old if old is not None else new
        assert either is not None
        keys = [
            *task_keys(self.k),
            self.k(f"refunds:{either.account}"),
            self.k(f"refunds:{(new or either).account}"),
            self.k(f"task_order:{either.account}"),
            self.k(f"task_order:{(new or either).account}"),
        ]
        args: list[str | bytes] = [
            task_id,
            expected or b"",
            new.to_json() if new is not None else "",
            old.account if old is not None else "",
            repr(-old.charge) if unbook and old is not None else "",
            refund_member(old) if unbook and old is not None and refund_due(old) is not None else "",
            new.account if new is not None else "",
            repr(new.charge) if book and new is not None else "",
            repr(new_due) if new_due is not None else "",
            refund_member(new) if new is not None else "",
        ]
        return bool(await self.link.script(SWAP, keys, args))

    async def get_task(self, task_id: str) -> TaskRecord | None:
        raw = await self.link.call("HGET", self.k("tasks"), task_id)
        return TaskRecord.from_json(raw) if raw else None

    async def update_task(self, task_id: str, change: Callable[[TaskRecord], TaskRecord]) -> TaskRecord | None:
        while True:  # compare-and-set: ``change`` runs again when another worker changed the task first
            raw = await self.link.call("HGET", self.k("tasks"), task_id)
            if raw is None:
                return None
            record = TaskRecord.from_json(raw)
            updated = change(record)
            if updated is record or await self._swap(task_id, raw, record, updated):
                return updated

    async def _records(self, ids: list[bytes]) -> list[TaskRecord]:
        raws = await self.link.call("HMGET", self.k("tasks"), *ids) if ids else []
        return [TaskRecord.from_json(raw) for raw in raws if raw]

    async def tasks(self, account: str | None = None) -> list[TaskRecord]:
        records = await self._records(await self.link.call("LRANGE", self.k("task_order"), 0, -1))
        return [t for t in records if account is None or t.account == account]

    def _order(self, account: str | None) -> str:
        return self.k("task_order" if account is None else f"task_order:{account}")

    async def task_count(self, account: str | None = None) -> int:
        return int(await self.link.call("LLEN", self._order(account)))

    async def task_page(
        self, account: str | None = None, *, newest_first: bool = False, offset: int = 0, limit: int | None = None
    ) -> list[TaskRecord]:
        if limit == 0:
            return []
        last = -1 if limit is None else offset + limit - 1
        if newest_first:  # counted from the end of the list
            ids = await self.link.call("LRANGE", self._order(account), -1 - last if last >= 0 else 0, -1 - offset)
            return await self._records(ids[::-1])
        return await self._records(await self.link.call("LRANGE", self._order(account), offset, last))

    async def evict_tasks(self, created_before: float, limit: int | None = None) -> int:
        evicted = 0
        while evicted != limit:
            head = await self.link.call("LINDEX", self.k("task_order"), 0)
            if head is None:
                break
            raw = await self.link.call("HGET", self.k("tasks"), head)
            if raw is None:  # listed, never stored (written before PUT_ONCE and SWAP kept both together)
                await self.link.call("LREM", self.k("task_order"), 1, head)
                continue
            record = TaskRecord.from_json(raw)
            if record.created_at >= created_before:
                break
            if await self._swap(record.id, raw, record, None):  # the task, its key and its totals, at once
                evicted += 1
        return evicted

    # idempotency: ``idempotency`` (account|key -> task id), ``idem_of`` (task id -> account|key)

    async def idempotent_task(self, account: str, key: str) -> str | None:
        raw = await self.link.call("HGET", self.k("idempotency"), f"{account}|{key}")
        return raw.decode() if raw else None

    # uploads (``scripts.UPLOAD_KEYS``)

    def _upload_keys(self) -> list[str]:
        return [self.k(name) for name in UPLOAD_KEYS]

    async def put_upload(
        self,
        upload: UploadRecord,
        *,
        account_quota: int | None = None,
        total_quota: int | None = None,
        evict_by: float | None = None,
    ) -> UploadRefused | None:
        meta = {k: getattr(upload, k) for k in ("id", "account", "filename", "content_type", "size", "created_at")}
        args: list[str | bytes] = [
            upload.id,
            json.dumps(meta),
            upload.data,
            upload.account,
            str(int(upload.size)),
            repr(float(upload.created_at)),
            "" if account_quota is None else str(int(account_quota)),
            "" if total_quota is None else str(int(total_quota)),
            "" if evict_by is None else repr(float(evict_by)),
        ]
        status, held = await self.link.script(PUT_UPLOAD, self._upload_keys(), args)
        return None if status == b"stored" else UploadRefused(status.decode(), int(held))

    async def upload_usage(self, account: str) -> UploadUsage:
        mine, total = await self.link.script(UPLOAD_USAGE, self._upload_keys(), [account])
        return UploadUsage(int(mine), int(total))

    async def get_upload(self, upload_id: str) -> UploadRecord | None:
        meta, data = await self.link.pipeline(
            [["HGET", self.k("uploads"), upload_id], ["HGET", self.k("upload_data"), upload_id]]
        )
        if not meta or data is None:
            return None
        return UploadRecord(**json.loads(meta), data=bytes(data))

    async def upload_records(self) -> list[UploadRecord]:
        metas = [json.loads(raw) for raw in pairs(await self.link.call("HGETALL", self.k("uploads"))).values()]
        return sorted((UploadRecord(**m, data=b"") for m in metas), key=lambda u: (u.created_at, u.id))

    async def delete_upload(self, upload_id: str) -> bool:
        return bool(await self.link.script(DELETE_UPLOAD, self._upload_keys(), [upload_id]))

    # journal: ``journal`` (JSON [seq, entry JSON], a ring), ``journal_seq``

    def append_entry(self, entry: Entry) -> None:
        self.queue.append(entry)

    async def append_journal(self, entry: dict[str, Any]) -> int:
        args = [json.dumps(entry), self.journal_size]
        return int(await self.link.script(APPEND_JOURNAL, journal_keys(self.k), args))

    async def journal(self, since: int = 0) -> list[dict[str, Any]]:
        await self.queue.flush()  # entries queued (by any loop): written before they are read
        out = []
        for raw in await self.link.call("LRANGE", self.k("journal"), 0, -1):
            seq, data = json.loads(raw)
            if seq > since:
                out.append({**json.loads(data), "seq": seq})
        return out

    # faults: ``rules`` (id -> JSON), ``rule_fired`` (id -> count), ``rule_order`` (ids)

    async def put_fault_rule(self, rule: FaultRule) -> None:
        k = self.k
        await self._change(
            ["HSET", k("rules"), rule.id, json.dumps(rule.to_dict())],
            ["HSET", k("rule_fired"), rule.id, rule.fired],
            ["RPUSH", k("rule_order"), rule.id],
        )

    async def fault_rules(self) -> list[FaultRule]:
        order, rules = await self.link.pipeline([["LRANGE", self.k("rule_order"), 0, -1], ["HGETALL", self.k("rules")]])
        return list(rules_from(order, pairs(rules)))

    async def delete_fault_rule(self, rule_id: str) -> bool:
        k = self.k
        replies = await self._change(
            ["HDEL", k("rules"), rule_id], ["HDEL", k("rule_fired"), rule_id], ["LREM", k("rule_order"), 0, rule_id]
        )
        return bool(replies[0])

    async def fire_fault_rule(self, rule_id: str) -> bool:
        known = next((r for r in self.shared().rules if r.id == rule_id), None)
        return await self._fire("rules", "rule_fired", rule_id, known)

    async def _fire(self, items: str, counts: str, item_id: str, known: FaultRule | CannedResponse | None) -> bool:
        """Count one firing of a rule or canned response if it has firings left (``FIRE_RULE``): its
        ``times`` as the copy of the shared settings has it (``known``), else (added since) read first."""
        if known is not None:
            times = known.times
        else:
            raw = await self.link.call("HGET", self.k(items), item_id)
            if raw is None:
                return False
            times = json.loads(raw).get("times")
        args = [item_id, -1 if times is None else times]
        return bool(await self.link.script(FIRE_RULE, [self.k(items), self.k(counts)], args))

    async def fault_rule_counts(self) -> dict[str, int]:
        found = pairs(await self.link.call("HGETALL", self.k("rule_fired")))
        return {k.decode(): int(v) for k, v in found.items()}

    # canned responses: ``canned`` (id -> JSON), ``canned_fired`` (id -> count), ``canned_order`` (ids)

    async def put_canned_response(self, response: CannedResponse) -> None:
        k = self.k
        known = await self.link.call("HEXISTS", k("canned"), response.id)  # a replaced response keeps its place
        await self._change(
            ["HSET", k("canned"), response.id, json.dumps(response.to_dict())],
            ["HSET", k("canned_fired"), response.id, response.fired],
            *([] if known else [["RPUSH", k("canned_order"), response.id]]),
        )

    async def canned_responses(self) -> list[CannedResponse]:
        k = self.k
        order, canned, fired = await self.link.pipeline(  # one round trip, however many there are
            [["LRANGE", k("canned_order"), 0, -1], ["HGETALL", k("canned")], ["HGETALL", k("canned_fired")]]
        )
        return list(canned_from(order, pairs(canned), pairs(fired))) if order else []

    async def delete_canned_response(self, response_id: str) -> bool:
        k = self.k
        replies = await self._change(
            ["HDEL", k("canned"), response_id],
            ["HDEL", k("canned_fired"), response_id],
            ["LREM", k("canned_order"), 0, response_id],
        )
        return bool(replies[0])

    async def fire_canned_response(self, response_id: str) -> bool:
        known = next((r for r in self.shared().canned if r.id == response_id), None)
        return await self._fire("canned", "canned_fired", response_id, known)

    # per-account settings: ``account_settings`` (account -> JSON)

    async def account_settings(self, account: str) -> dict[str, Any]:
        raw = await self.link.call("HGET", self.k("account_settings"), account)
        found: dict[str, Any] = json.loads(raw) if raw else {}
        return found

    async def set_account_settings(self, account: str, settings: dict[str, Any]) -> None:
        key = self.k("account_settings")
        await self._change(["HSET", key, account, json.dumps(settings)] if settings else ["HDEL", key, account])

    async def all_account_settings(self) -> dict[str, dict[str, Any]]:
        found = pairs(await self.link.call("HGETALL", self.k("account_settings")))
        return {k.decode(): json.loads(v) for k, v in found.items()}

    # rate limiting: ``window:<account>:<window>`` (a count, expiring)

    async def hit(self, account: str, window: int) -> int:
        key = self.k(f"window:{account}:{window}")
        count, _ = await self.link.pipeline([["INCR", key], ["EXPIRE", key, 180]])
        return int(count)

    # balances: ``balances`` (account -> JSON); running totals: ``charged``, ``refunded``, ``refunds:<account>``

    async def set_balance(self, account: str, amount: float | None) -> None:
        await self.link.call("HSET", self.k("balances"), account, json.dumps(amount))

    async def balances(self) -> dict[str, float | None]:
        found = pairs(await self.link.call("HGETALL", self.k("balances")))
        return {k.decode(): json.loads(v) for k, v in found.items()}

    async def spending(self, account: str, now: float) -> Spending:
        charged, refunded, due = await self.link.transaction(  # one snapshot
            [
                ["HGET", self.k("charged"), account],
                ["HGET", self.k("refunded"), account],
                ["ZRANGEBYSCORE", self.k(f"refunds:{account}"), "-inf", repr(now)],
            ]
        )
        queued = sum(float(member.split(b"|", 1)[0]) for member in due)
        return Spending(float(charged or 0.0), float(refunded or 0.0) + queued)

    # the clock: ``clock`` (JSON [offset, frozen_at])

    async def set_clock_state(self, offset: float, frozen_at: float | None) -> None:
        await self._change(["SET", self.k("clock"), json.dumps([offset, frozen_at])])
        self.note_clock((offset, frozen_at))

    # the whole state

    async def reset(self, account: str | None = None) -> None:
        await self.queue.flush()  # entries queued before the reset go with the rest
        if account is None:
            kept = {self.k(name).encode() for name in KEPT}
            await self._delete([key for key in await self.link.scan(_pattern(self.p)) if key not in kept])
        else:
            await self._reset_account(account)
        await self._change()

    async def _reset_account(self, account: str) -> None:
        """Forget the account's tasks (their keys and totals), uploads (with their bytes in the totals),
        journal entries, rate-limit windows, balance and settings."""
        k = self.k
        ids = [t.id for t in await self.tasks(account)]
        keys, uploads, journal = await self.link.pipeline(
            [["HGETALL", k("idempotency")], ["HGETALL", k("uploads")], ["LRANGE", k("journal"), 0, -1]]
        )
        commands: list[Command] = []
        for task_id in ids:
            commands += [["HDEL", k("tasks"), task_id], ["LREM", k("task_order"), 0, task_id]]
        for field, task_id in pairs(keys).items():
            if field.startswith(f"{account}|".encode()):
                commands += [["HDEL", k("idempotency"), field], ["HDEL", k("idem_of"), task_id]]
        commands += [["LREM", k("journal"), 0, raw] for raw in journal if _entry_account(raw) == account]
        commands += [["HDEL", k(name), account] for name in ("charged", "refunded", "balances", "account_settings")]
        windows = await self.link.scan(_pattern(k(f"window:{account}:")))
        commands.append(["DEL", k(f"refunds:{account}"), k(f"task_order:{account}"), *windows])
        await self.link.pipeline(commands)
        for upload_id, meta in pairs(uploads).items():
            if json.loads(meta).get("account") == account:  # each with its bytes in the totals
                await self.link.script(DELETE_UPLOAD, self._upload_keys(), [upload_id])

    async def replace_state(self, image: StateImage) -> None:
        """Write the new state under a staging prefix (the live keys untouched meanwhile), then swap it in
        with one script (``SWAP_STATE``): a failure before the swap leaves the old state, and readers see
        the old state or the new. A failed replace's staging keys are dropped."""
        await self.queue.flush()  # entries queued before the replace are emptied with the rest
        staging = copy.copy(self)  # the same link and guard, keys under a prefix of its own, no announcements
        staging.p = self.k(f"{STAGING}{uuid.uuid4().hex}:")
        staging._announces = False
        try:
            await fill(staging, image)
            args = [self.p, _pattern(self.p), staging.p, _pattern(staging.p), self.k(STAGING)]
            await self.link.script(SWAP_STATE, [], args)
        except BaseException:
            with suppress(Exception):
                await self._delete(await self.link.scan(_pattern(staging.p)))
            raise
        await self._change()

    async def _delete(self, keys: list[bytes]) -> None:
        for start in range(0, len(keys), 1000):
            await self.link.call("DEL", *keys[start : start + 1000])


def _pattern(prefix: str) -> str:
    """A ``KEYS``/``SCAN`` pattern matching every key under ``prefix`` (its glob characters escaped)."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + "*"


def _entry_account(raw: bytes) -> Any:
    """The account of a journal entry as stored (JSON [seq, entry JSON])."""
    return json.loads(json.loads(raw)[1]).get("account")
