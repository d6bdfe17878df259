"""A store in Redis: shared by instances on several hosts behind a load balancer.

Every read-modify-write is one Redis command or one Lua script, so it is
atomic across instances: storing a task with its idempotency key, its charge
and the balance check (``PUT_ONCE``); replacing, updating or evicting a task
with its running totals (``SWAP``, a compare-and-set on the task's JSON). Keys
live under one prefix (``mockserver:``).

Every call is bounded by ``timeout`` (socket and connect timeouts; a broken
connection is retried once at once, a timeout never), and every ``Store``
method goes through ``guard.Guard``: a Redis that is down, frozen or refusing
writes raises ``StoreUnavailable``; after a call that waited out the timeout
(a frozen Redis), the calls of the next second are answered without asking.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import uuid
from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..core.canned import CannedResponse
from ..core.errors import StoreUnavailable
from ..core.faults import FaultRule
from ..core.ledger import refund_due
from ..core.records import TaskRecord, UploadRecord
from .base import (
    AccountLimit,
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
from .guard import Guard

if TYPE_CHECKING:
    from .aio import HotStore
    from .redis_hot import RedisHot

FIRE_RULE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
local fired = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local times = tonumber(ARGV[2])
if times >= 0 and fired >= times then return 0 end
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
return 1
"""
APPEND_JOURNAL = """
local seq = redis.call('INCR', KEYS[2])
redis.call('RPUSH', KEYS[1], cjson.encode({seq, ARGV[1]}))
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
return seq
"""
# Several entries at once (the hot store's batches). KEYS: journal, journal_seq; ARGV: size, entries...
APPEND_MANY = """
local n = #ARGV - 1
local last = redis.call('INCRBY', KEYS[2], n)
local items = {}
for i = 1, n do items[i] = cjson.encode({last - n + i, ARGV[i + 1]}) end
redis.call('RPUSH', KEYS[1], unpack(items))
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[1]), -1)
return last
"""
# KEYS: tasks, task_order, idempotency, idem_of, charged, refunded, refunds:<account>, balances,
#       task_order:<account> (each account's tasks in order: a page of one account's costs its size)
# ARGV: id, task JSON, key field or '', account, charge, limit or '', now, refund due or '', refund member,
#       '1' when the account's own balance (a JSON number or null in balances) comes before the limit
# A refund member is "<amount>|<task id>", scored by its due time.
PUT_ONCE = """
if ARGV[3] ~= '' then
  local bound = redis.call('HGET', KEYS[3], ARGV[3])
  if bound then return {'bound', bound} end
end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return {'bound', ARGV[1]} end
local charge = tonumber(ARGV[5])
if charge ~= 0 then
  local due = redis.call('ZRANGEBYSCORE', KEYS[7], '-inf', ARGV[7])
  if #due > 0 then
    local total = 0
    for _, member in ipairs(due) do total = total + tonumber(string.match(member, '^[^|]+')) end
    redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', ARGV[7])
    redis.call('HINCRBYFLOAT', KEYS[6], ARGV[4], string.format('%.17g', total))
  end
  local limit = ARGV[6]
  if ARGV[10] == '1' then
    local own = redis.call('HGET', KEYS[8], ARGV[4])
    if own then limit = (own == 'null') and '' or own end
  end
  if limit ~= '' then
    local spent = tonumber(redis.call('HGET', KEYS[5], ARGV[4]) or '0')
      - tonumber(redis.call('HGET', KEYS[6], ARGV[4]) or '0')
    local left = tonumber(limit) - spent
    if charge > left + 1e-9 then return {'overdraft', string.format('%.17g', left)} end
  end
  redis.call('HINCRBYFLOAT', KEYS[5], ARGV[4], ARGV[5])
  if ARGV[8] ~= '' then redis.call('ZADD', KEYS[7], ARGV[8], ARGV[9]) end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('RPUSH', KEYS[9], ARGV[1])
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[3], ARGV[3], ARGV[1])
  redis.call('HSET', KEYS[4], ARGV[1], ARGV[3])
end
return {'stored', ARGV[1]}
"""
# KEYS: tasks, task_order, idempotency, idem_of, charged, refunded, refunds:<old account>, refunds:<new account>,
#       task_order:<old account>, task_order:<new account>
# ARGV: id, expected JSON ('' = absent), new JSON ('' = delete), old account, -old charge or '' (no unbooking),
#       old refund member or '', new account, new charge or '' (no booking), new refund due or '', new member
SWAP = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if (current or '') ~= ARGV[2] then return 0 end
if ARGV[3] == '' then
  if current then
    redis.call('HDEL', KEYS[1], ARGV[1])
    redis.call('LREM', KEYS[2], 1, ARGV[1])
    redis.call('LREM', KEYS[9], 1, ARGV[1])
    local field = redis.call('HGET', KEYS[4], ARGV[1])
    if field then
      redis.call('HDEL', KEYS[3], field)
      redis.call('HDEL', KEYS[4], ARGV[1])
    end
  end
else
  if not current then
    redis.call('RPUSH', KEYS[2], ARGV[1])
    redis.call('RPUSH', KEYS[10], ARGV[1])
  elseif ARGV[4] ~= ARGV[7] then
    redis.call('LREM', KEYS[9], 1, ARGV[1])
    redis.call('RPUSH', KEYS[10], ARGV[1])
  end
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
end
if ARGV[5] ~= '' then
  redis.call('HINCRBYFLOAT', KEYS[5], ARGV[4], ARGV[5])
  if ARGV[6] ~= '' and redis.call('ZREM', KEYS[7], ARGV[6]) == 0 then
    redis.call('HINCRBYFLOAT', KEYS[6], ARGV[4], ARGV[5])
  end
end
if ARGV[8] ~= '' then
  redis.call('HINCRBYFLOAT', KEYS[5], ARGV[7], ARGV[8])
  if ARGV[9] ~= '' then redis.call('ZADD', KEYS[8], ARGV[9], ARGV[10]) end
end
return 1
"""
# The uploads' scripts: each is one atomic step over the upload and the running totals of the bytes held
# (``base.py``). KEYS (all of them): uploads (id -> metadata JSON), upload_data (id -> bytes), upload_bytes
# (account -> bytes held), upload_total (bytes held in all), upload_times (ids scored by created_at, for
# expiry), upload_totals (set once the totals are kept: a Redis written before them has them summed once).
UPLOAD_KEYS = ("uploads", "upload_data", "upload_bytes", "upload_total", "upload_times", "upload_totals")
UPLOAD_PRELUDE = """
local function uncount(account, size)
  if redis.call('HINCRBY', KEYS[3], account, -size) <= 0 then redis.call('HDEL', KEYS[3], account) end
  redis.call('INCRBY', KEYS[4], -size)
end
if redis.call('EXISTS', KEYS[6]) == 0 then
  redis.call('DEL', KEYS[3], KEYS[4], KEYS[5])
  local all = redis.call('HGETALL', KEYS[1])
  local total = 0
  for i = 1, #all, 2 do
    local meta = cjson.decode(all[i + 1])
    redis.call('HINCRBY', KEYS[3], meta.account, string.format('%d', meta.size))
    redis.call('ZADD', KEYS[5], string.format('%.17g', meta.created_at), all[i])
    total = total + meta.size
  end
  redis.call('SET', KEYS[4], string.format('%d', total))
  redis.call('SET', KEYS[6], '1')
end
"""
# ARGV: id, metadata JSON, data, account, size, created_at, the account's quota or '', the server's quota or '',
#       evict_by or '' (the uploads created at or before it are evicted first)
PUT_UPLOAD = (
    UPLOAD_PRELUDE
    + """
if ARGV[9] ~= '' then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', ARGV[9])) do
    local old = redis.call('HGET', KEYS[1], id)
    if old then
      local meta = cjson.decode(old)
      uncount(meta.account, meta.size)
      redis.call('HDEL', KEYS[1], id)
      redis.call('HDEL', KEYS[2], id)
    end
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', ARGV[9])
end
local size = tonumber(ARGV[5])
local mine = tonumber(redis.call('HGET', KEYS[3], ARGV[4]) or '0')
local total = tonumber(redis.call('GET', KEYS[4]) or '0')
if ARGV[7] ~= '' and mine + size > tonumber(ARGV[7]) then return {'account', mine} end
if ARGV[8] ~= '' and total + size > tonumber(ARGV[8]) then return {'total', total} end
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local meta = cjson.decode(old)
  uncount(meta.account, meta.size)
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('HINCRBY', KEYS[3], ARGV[4], ARGV[5])
redis.call('INCRBY', KEYS[4], ARGV[5])
redis.call('ZADD', KEYS[5], ARGV[6], ARGV[1])
return {'stored', 0}
"""
)
# ARGV: id
DELETE_UPLOAD = (
    UPLOAD_PRELUDE
    + """
local old = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
if not old then return 0 end
local meta = cjson.decode(old)
uncount(meta.account, meta.size)
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
"""
)
# ARGV: account
UPLOAD_USAGE = (
    UPLOAD_PRELUDE
    + """
return {tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0'), tonumber(redis.call('GET', KEYS[4]) or '0')}
"""
)
# A replace of the whole state (``replace_state``): the new state is written under a staging prefix of
# its own, then put in place of the live keys by this one script (atomic: readers see the old keys or the
# new). Every live key goes but those a reset keeps (the clock, the journal's sequence, the shared version);
# each staged key is renamed to its live name. The keys are found by prefix: one Redis, as ``reset`` assumes.
# ARGV: live prefix, its KEYS pattern, staging prefix, its pattern, the prefix of every replace's staging keys
SWAP_STATE = """
local live, staged, staging = ARGV[1], ARGV[3], ARGV[5]
local kept = {[live .. 'journal_seq'] = true, [live .. 'clock'] = true, [live .. 'shared_version'] = true}
for _, key in ipairs(redis.call('KEYS', ARGV[2])) do
  if not kept[key] and string.sub(key, 1, #staging) ~= staging then redis.call('DEL', key) end
end
local moved = 0
for _, key in ipairs(redis.call('KEYS', ARGV[4])) do
  local name = live .. string.sub(key, #staged + 1)
  if kept[name] then redis.call('DEL', key) else redis.call('RENAME', key, name); moved = moved + 1 end
end
return moved
"""
STAGING = "~replace:"  # under the store's prefix: where a replace writes its new state (no live key starts so)
SHARED_VERSION = "shared_version"  # bumped by every change of what every request reads
SHARED_CHANNEL = "shared_changed"  # and announced here (``redis_hot`` subscribes)
# The Store methods that change it: each also calls ``_changed`` (wrapped below the class).
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


def _member(record: TaskRecord) -> str:
    """A queued refund: its amount and its task, so that the queue alone sums what is due."""
    return f"{record.charge!r}|{record.id}"


class RedisStore:
    """Every method of the ``Store`` protocol runs inside ``self._guard`` (wrapped below the class)."""

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
        self._guard = Guard("redis", UNAVAILABLE)
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
        """The hot path's calls (``store.aio``) through an asyncio client (``redis_hot``)."""
        if self._hot is None:
            from .redis_hot import RedisHot

            self._hot = RedisHot(self)
        return self._hot

    def _changed(self) -> None:
        """Something every request reads changed (the clock, fault rules, canned responses, accounts'
        settings): bump their version and tell every worker (``redis_hot``), in one round trip."""
        if not self._announces:
            return
        with self._guard:
            pipe = self.r.pipeline(transaction=False)
            pipe.incr(self.k(SHARED_VERSION))
            pipe.publish(self.k(SHARED_CHANNEL), "changed")
            pipe.execute()

    def ping(self) -> None:
        self.r.ping()

    # tasks

    def put_task_once(self, record: TaskRecord, key: str | None, limit: Limit = None) -> str | Overdraft:
        keys, args = self._put_once_call(record, key, limit)
        return _put_once_answer(self._put_once(keys=keys, args=args))

    def _put_once_call(self, record: TaskRecord, key: str | None, limit: Limit) -> tuple[list[str], list[str]]:
        """``PUT_ONCE``'s keys and arguments (the hot store runs the same script)."""
        due = refund_due(record)
        own = isinstance(limit, AccountLimit)
        if isinstance(limit, AccountLimit):
            limit = limit.default
        keys = [
            *self._task_keys(),
            self.k(f"refunds:{record.account}"),
            self.k("balances"),
            self.k(f"task_order:{record.account}"),
        ]
        args = [
            record.id,
            record.to_json(),
            "" if key is None else f"{record.account}|{key}",
            record.account,
            repr(record.charge),
            "" if limit is None else repr(float(limit)),
            repr(record.created_at),
            "" if due is None else repr(due),
            _member(record),
            "1" if own else "",
        ]
        return keys, args

    def put_task(self, record: TaskRecord) -> None:
        while True:
            raw = self.r.hget(self.k("tasks"), record.id)
            old = TaskRecord.from_json(raw) if raw is not None else None
            if self._swap(record.id, raw, old, record):
                return

    def _task_keys(self) -> list[str]:
        return [self.k(n) for n in ("tasks", "task_order", "idempotency", "idem_of", "charged", "refunded")]

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
            *self._task_keys(),
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
            _member(old) if unbook and old is not None and refund_due(old) is not None else "",
            new.account if new is not None else "",
            repr(new.charge) if book and new is not None else "",
            repr(new_due) if new_due is not None else "",
            _member(new) if new is not None else "",
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
        with self._guard:
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
        keys = [self.k("journal"), self.k("journal_seq")]
        return int(self._append(keys=keys, args=[json.dumps(entry), self.journal_size]))

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
            with self._guard:
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


def _put_once_answer(reply: Any) -> str | Overdraft:
    status, value = reply
    if status == b"overdraft":
        return Overdraft(float(value))
    return str(value.decode())


def _guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: RedisStore, *args: Any, **kwargs: Any) -> Any:
        with self._guard:
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


# What every request reads, changed: every worker's copy is read again (``redis_hot``).
for _name in SHARED_CHANGES:
    setattr(RedisStore, _name, _announced(getattr(RedisStore, _name)))
