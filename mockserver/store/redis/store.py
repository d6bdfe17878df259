"""RedisStore: the ``Store`` in Redis, shared by instances on several hosts behind a load balancer.

Every read-modify-write is one Redis command or one Lua script (``scripts``), so it is atomic across
instances; keys live under one prefix (``mockserver:``). Its hot path is ``hot.RedisHot``.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import uuid
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ...core.canned import CannedResponse
from ...core.errors import StoreUnavailable
from ...core.faults import FaultRule
from ...core.ledger import refund_due
from ...core.records import TaskRecord, UploadRecord
from ..base import (
    Limit,
    Overdraft,
    Spending,
    StateImage,
    Store,
    UploadRefused,
    UploadUsage,
    booking,
    fill,
)
from ..guard import Guard
from .hot import RedisHot
from .scripts import (
    APPEND_JOURNAL,
    APPEND_MANY,
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
    append_many_call,
    journal_keys,
    put_once_answer,
    put_once_call,
    refund_member,
    task_keys,
)

if TYPE_CHECKING:
    from ..aio import HotStore

# The Store methods that change what every request reads (``SHARED_VERSION``): each also calls ``_changed``
# (wrapped below the class).
SHARED_CHANGES = (
    "set_clock_state",
    "put_fault_rule",
    "delete_fault_rule",
    "put_canned_response",
    "delete_canned_response",
    "set_account_settings",
    "reset",
    "replace_state",
)
UNAVAILABLE = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError,
)


class RedisStore:
    """Every method of the ``Store`` protocol runs inside ``self.guard`` (wrapped below the class).

    Every call is bounded by ``timeout`` (socket and connect timeouts; a broken connection is retried
    once at once, a timeout never), and goes through ``guard.Guard``: a Redis that is down, frozen or
    refusing writes raises ``StoreUnavailable``; after a call that waited out the timeout (a frozen
    Redis), the calls of the next second are answered without asking.
    """

    def __init__(self, url: str, journal_size: int = 10_000, prefix: str = "mockserver:", timeout: float = 2.0) -> None:
        # redis-py types its answers as bytes | str whatever the connection says: keep them untyped here
        self.r: Any = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        )
        self.url = url
        self.p = prefix
        self.journal_size = journal_size
        self.timeout = timeout
        self.guard = Guard("redis", UNAVAILABLE)
        self._last_clock: tuple[float, float | None] = (0.0, None)
        self._fire = self.r.register_script(FIRE_RULE)
        self._append = self.r.register_script(APPEND_JOURNAL)
        self._put_once = self.r.register_script(PUT_ONCE)
        self._swap_script = self.r.register_script(SWAP)
        self._append_many = self.r.register_script(APPEND_MANY)
        self._put_upload = self.r.register_script(PUT_UPLOAD)
        self._delete_upload = self.r.register_script(DELETE_UPLOAD)
        self._upload_usage = self.r.register_script(UPLOAD_USAGE)
        self._swap_state = self.r.register_script(SWAP_STATE)
        self._announces = True  # a staging view (``replace_state``) tells no worker of its changes
        self._hot: RedisHot | None = None

    def k(self, name: str) -> str:
        return self.p + name

    def hot(self) -> HotStore:
        """The hot path's calls (``store.aio``) through an asyncio client (``hot``)."""
        if self._hot is None:
            self._hot = RedisHot(self)
        return self._hot

    def _changed(self) -> None:
        """Something every request reads changed (the clock, fault rules, canned responses, accounts'
        settings): bump their version and tell every worker (``hot``), in one round trip."""
        if not self._announces:
            return
        with self.guard:
            pipe = self.r.pipeline(transaction=False)
            pipe.incr(self.k(SHARED_VERSION))
            pipe.publish(self.k(SHARED_CHANNEL), "changed")
            pipe.execute()

    def ping(self) -> None:
        self.r.ping()

    # tasks

    def put_task_once(self, record: TaskRecord, key: str | None, limit: Limit = None) -> str | Overdraft:
        keys, args = put_once_call(self.k, record, key, limit)
        return put_once_answer(self._put_once(keys=keys, args=args))

    def put_task(self, record: TaskRecord) -> None:
        while True:
            raw = self.r.hget(self.k("tasks"), record.id)
            old = TaskRecord.from_json(raw) if raw is not None else None
            if self._swap(record.id, raw, old, record):
                return

    def _swap(self, task_id: str, expected: bytes | None, old: TaskRecord | None, new: TaskRecord | None) -> bool:
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
        return bool(self._swap_script(keys=keys, args=args))

    def get_task(self, task_id: str) -> TaskRecord | None:
        raw = self.r.hget(self.k("tasks"), task_id)
        return TaskRecord.from_json(raw) if raw else None

    def update_task(self, task_id: str, change: Callable[[TaskRecord], TaskRecord]) -> TaskRecord | None:
        while True:  # compare-and-set: ``change`` runs again when another worker changed the task first
            raw = self.r.hget(self.k("tasks"), task_id)
            if raw is None:
                return None
            record = TaskRecord.from_json(raw)
            updated = change(record)
            if updated is record or self._swap(task_id, raw, record, updated):
                return updated

    def tasks(self, account: str | None = None) -> list[TaskRecord]:
        ids = [i.decode() for i in self.r.lrange(self.k("task_order"), 0, -1)]
        if not ids:
            return []
        raws = self.r.hmget(self.k("tasks"), ids)
        records = [TaskRecord.from_json(raw) for raw in raws if raw]
        return [t for t in records if account is None or t.account == account]

    def _order(self, account: str | None) -> str:
        return self.k("task_order" if account is None else f"task_order:{account}")

    def task_count(self, account: str | None = None) -> int:
        return int(self.r.llen(self._order(account)))

    def task_page(
        self, account: str | None = None, *, newest_first: bool = False, offset: int = 0, limit: int | None = None
    ) -> list[TaskRecord]:
        if limit == 0:
            return []
        last = -1 if limit is None else offset + limit - 1
        if newest_first:  # counted from the end of the list
            ids = self.r.lrange(self._order(account), -1 - last if last >= 0 else 0, -1 - offset)[::-1]
        else:
            ids = self.r.lrange(self._order(account), offset, last)
        raws = self.r.hmget(self.k("tasks"), ids) if ids else []
        return [TaskRecord.from_json(raw) for raw in raws if raw]

    def evict_tasks(self, created_before: float, limit: int | None = None) -> int:
        evicted = 0
        while evicted != limit:
            head = self.r.lindex(self.k("task_order"), 0)
            if head is None:
                break
            raw = self.r.hget(self.k("tasks"), head)
            if raw is None:  # listed, never stored (written before PUT_ONCE and SWAP kept both together)
                self.r.lrem(self.k("task_order"), 1, head)
                continue
            record = TaskRecord.from_json(raw)
            if record.created_at >= created_before:
                break
            if self._swap(record.id, raw, record, None):  # the task, its key and its totals, at once
                evicted += 1
        return evicted

    # idempotency

    def idempotent_task(self, account: str, key: str) -> str | None:
        raw = self.r.hget(self.k("idempotency"), f"{account}|{key}")
        return raw.decode() if raw else None

    # uploads

    def _upload_keys(self) -> list[str]:
        return [self.k(name) for name in UPLOAD_KEYS]

    def put_upload(
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
        status, held = self._put_upload(keys=self._upload_keys(), args=args)
        return None if status == b"stored" else UploadRefused(status.decode(), int(held))

    def upload_usage(self, account: str) -> UploadUsage:
        """The bytes of uploads held by ``account`` and by everyone (the running totals)."""
        with self.guard:
            mine, total = self._upload_usage(keys=self._upload_keys(), args=[account])
        return UploadUsage(int(mine), int(total))

    def get_upload(self, upload_id: str) -> UploadRecord | None:
        meta, data = self.r.hmget(self.k("uploads"), upload_id), self.r.hget(self.k("upload_data"), upload_id)
        if not meta[0] or data is None:
            return None
        return UploadRecord(**json.loads(meta[0]), data=bytes(data))

    def upload_records(self) -> list[UploadRecord]:
        metas = [json.loads(raw) for raw in self.r.hgetall(self.k("uploads")).values()]
        return sorted((UploadRecord(**m, data=b"") for m in metas), key=lambda u: (u.created_at, u.id))

    def delete_upload(self, upload_id: str) -> bool:
        return bool(self._delete_upload(keys=self._upload_keys(), args=[upload_id]))

    # journal

    def append_journal(self, entry: dict[str, Any]) -> int:
        keys = journal_keys(self.k)
        return int(self._append(keys=keys, args=[json.dumps(entry), self.journal_size]))

    def append_encoded(self, encoded: Sequence[bytes]) -> None:
        """Several journal entries already encoded (``Entry.encoded``: the hot store's queue), in one
        ``APPEND_MANY``, inside the guard."""
        keys, args = append_many_call(self.k, self.journal_size, encoded)
        with self.guard:
            self._append_many(keys=keys, args=args)

    def journal(self, since: int = 0) -> list[dict[str, Any]]:
        if self._hot is not None:
            self._hot.flush_journal()  # entries queued by the hot store: written before they are read
        out = []
        for raw in self.r.lrange(self.k("journal"), 0, -1):
            seq, data = json.loads(raw)
            if seq > since:
                out.append({**json.loads(data), "seq": seq})
        return out

    # faults

    def put_fault_rule(self, rule: FaultRule) -> None:
        pipe = self.r.pipeline()
        pipe.hset(self.k("rules"), rule.id, json.dumps(rule.to_dict()))
        pipe.hset(self.k("rule_fired"), rule.id, rule.fired)
        pipe.rpush(self.k("rule_order"), rule.id)
        pipe.execute()

    def fault_rules(self) -> list[FaultRule]:
        ids = [i.decode() for i in self.r.lrange(self.k("rule_order"), 0, -1)]
        raws = self.r.hmget(self.k("rules"), ids) if ids else []
        return [FaultRule.from_dict(json.loads(raw)) for raw in raws if raw]

    def delete_fault_rule(self, rule_id: str) -> bool:
        pipe = self.r.pipeline()
        pipe.hdel(self.k("rules"), rule_id)
        pipe.hdel(self.k("rule_fired"), rule_id)
        pipe.lrem(self.k("rule_order"), 0, rule_id)
        return bool(pipe.execute()[0])

    def fire_fault_rule(self, rule_id: str) -> bool:
        raw = self.r.hget(self.k("rules"), rule_id)
        if raw is None:
            return False
        times = json.loads(raw).get("times")
        keys = [self.k("rules"), self.k("rule_fired")]
        return bool(self._fire(keys=keys, args=[rule_id, -1 if times is None else times]))

    def fault_rule_counts(self) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in self.r.hgetall(self.k("rule_fired")).items()}

    # canned responses: ``canned`` (id -> JSON), ``canned_fired`` (id -> count), ``canned_order`` (ids)

    def put_canned_response(self, response: CannedResponse) -> None:
        known = self.r.hexists(self.k("canned"), response.id)  # a replaced response keeps its place
        pipe = self.r.pipeline()
        pipe.hset(self.k("canned"), response.id, json.dumps(response.to_dict()))
        pipe.hset(self.k("canned_fired"), response.id, response.fired)
        if not known:
            pipe.rpush(self.k("canned_order"), response.id)
        pipe.execute()

    def canned_responses(self) -> list[CannedResponse]:
        pipe = self.r.pipeline(transaction=False)  # one round trip, however many there are
        pipe.lrange(self.k("canned_order"), 0, -1)
        pipe.hgetall(self.k("canned"))
        pipe.hgetall(self.k("canned_fired"))
        order, raws, fired = pipe.execute()
        if not order:
            return []
        return [
            CannedResponse.from_dict({**json.loads(raws[i]), "fired": int(fired.get(i, 0))}) for i in order if i in raws
        ]

    def delete_canned_response(self, response_id: str) -> bool:
        pipe = self.r.pipeline()
        pipe.hdel(self.k("canned"), response_id)
        pipe.hdel(self.k("canned_fired"), response_id)
        pipe.lrem(self.k("canned_order"), 0, response_id)
        return bool(pipe.execute()[0])

    def fire_canned_response(self, response_id: str) -> bool:
        raw = self.r.hget(self.k("canned"), response_id)
        if raw is None:
            return False
        times = json.loads(raw).get("times")
        keys = [self.k("canned"), self.k("canned_fired")]
        return bool(self._fire(keys=keys, args=[response_id, -1 if times is None else times]))

    # per-account settings: ``account_settings`` (account -> JSON)

    def account_settings(self, account: str) -> dict[str, Any]:
        raw = self.r.hget(self.k("account_settings"), account)
        found: dict[str, Any] = json.loads(raw) if raw else {}
        return found

    def set_account_settings(self, account: str, settings: dict[str, Any]) -> None:
        if settings:
            self.r.hset(self.k("account_settings"), account, json.dumps(settings))
        else:
            self.r.hdel(self.k("account_settings"), account)

    def all_account_settings(self) -> dict[str, dict[str, Any]]:
        return {k.decode(): json.loads(v) for k, v in self.r.hgetall(self.k("account_settings")).items()}

    # rate limiting

    def hit(self, account: str, window: int) -> int:
        key = self.k(f"window:{account}:{window}")
        pipe = self.r.pipeline()
        pipe.incr(key)
        pipe.expire(key, 180)
        return int(pipe.execute()[0])

    # balances

    def set_balance(self, account: str, amount: float | None) -> None:
        self.r.hset(self.k("balances"), account, json.dumps(amount))

    def balances(self) -> dict[str, float | None]:
        return {k.decode(): json.loads(v) for k, v in self.r.hgetall(self.k("balances")).items()}

    def spending(self, account: str, now: float) -> Spending:
        pipe = self.r.pipeline()  # MULTI/EXEC: one snapshot
        pipe.hget(self.k("charged"), account)
        pipe.hget(self.k("refunded"), account)
        pipe.zrangebyscore(self.k(f"refunds:{account}"), "-inf", repr(now))
        charged, refunded, due = pipe.execute()
        queued = sum(float(member.split(b"|", 1)[0]) for member in due)
        return Spending(float(charged or 0.0), float(refunded or 0.0) + queued)

    # the clock

    def clock_state(self) -> tuple[float, float | None]:
        try:
            with self.guard:
                raw = self.r.get(self.k("clock"))
        except StoreUnavailable:
            return self._last_clock
        if raw is None:
            self._last_clock = (0.0, None)
        else:
            offset, frozen_at = json.loads(raw)
            self._last_clock = (float(offset), frozen_at)
        return self._last_clock

    def set_clock_state(self, offset: float, frozen_at: float | None) -> None:
        self.r.set(self.k("clock"), json.dumps([offset, frozen_at]))

    def reset(self, account: str | None = None) -> None:
        if account is None:
            keys = [
                k for k in self.r.scan_iter(match=self.p + "*") if not k.decode().endswith(("journal_seq", "clock"))
            ]
            if keys:
                self.r.delete(*keys)
            return
        for record in self.tasks(account):
            self.r.hdel(self.k("tasks"), record.id)
            self.r.lrem(self.k("task_order"), 0, record.id)
        for field, task_id in self.r.hgetall(self.k("idempotency")).items():
            if field.decode().startswith(account + "|"):
                self.r.hdel(self.k("idempotency"), field)
                self.r.hdel(self.k("idem_of"), task_id)
        self.r.hdel(self.k("charged"), account)
        self.r.hdel(self.k("refunded"), account)
        self.r.delete(self.k(f"refunds:{account}"))
        self.r.delete(self.k(f"task_order:{account}"))
        for upload_id, meta in self.r.hgetall(self.k("uploads")).items():
            if json.loads(meta).get("account") == account:  # each with its bytes in the totals
                self._delete_upload(keys=self._upload_keys(), args=[upload_id])
        for raw in self.r.lrange(self.k("journal"), 0, -1):
            if json.loads(json.loads(raw)[1]).get("account") == account:
                self.r.lrem(self.k("journal"), 0, raw)
        for key in self.r.scan_iter(match=self.k(f"window:{account}:*")):
            self.r.delete(key)
        self.r.hdel(self.k("balances"), account)
        self.r.hdel(self.k("account_settings"), account)

    def replace_state(self, image: StateImage) -> None:
        """Write the new state under a staging prefix (the live keys untouched meanwhile), then swap it in
        with one script (``SWAP_STATE``): a failure before the swap leaves the old state, and readers see
        the old state or the new. A failed replace's staging keys are dropped."""
        if self._hot is not None:
            self._hot.flush_journal()  # entries queued before the replace are emptied with the rest
        staging = self._staging()
        try:
            fill(staging, image)
            self._swap_state(args=[self.p, _pattern(self.p), staging.p, _pattern(staging.p), self.k(STAGING)])
        except BaseException:
            with suppress(redis.RedisError):
                self._drop(staging.p)
            raise

    def _staging(self) -> RedisStore:
        """This store's view of a fresh staging prefix: the same client, scripts and guard; no announcements."""
        staging = copy.copy(self)
        staging.p = self.k(f"{STAGING}{uuid.uuid4().hex}:")
        staging._announces = False
        staging._hot = None
        return staging

    def _drop(self, prefix: str) -> None:
        """Delete every key under ``prefix``."""
        keys = list(self.r.scan_iter(match=_pattern(prefix), count=1000))
        for start in range(0, len(keys), 1000):
            self.r.delete(*keys[start : start + 1000])


def _pattern(prefix: str) -> str:
    """A ``KEYS``/``SCAN`` pattern matching every key under ``prefix`` (its glob characters escaped)."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + "*"


def _guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: RedisStore, *args: Any, **kwargs: Any) -> Any:
        with self.guard:
            return method(self, *args, **kwargs)

    return call


# Every Store method answers StoreUnavailable for a Redis that cannot answer; the clock falls back
# to its last state instead (it guards itself).
for _name in [n for n in vars(Store) if not n.startswith("_") and n != "clock_state"]:
    if callable(getattr(RedisStore, _name, None)):
        setattr(RedisStore, _name, _guarded(getattr(RedisStore, _name)))


def _announced(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: RedisStore, *args: Any, **kwargs: Any) -> Any:
        result = method(self, *args, **kwargs)
        self._changed()
        return result

    return call


# What every request reads, changed: every worker's copy is read again (``hot``).
for _name in SHARED_CHANGES:
    setattr(RedisStore, _name, _announced(getattr(RedisStore, _name)))
