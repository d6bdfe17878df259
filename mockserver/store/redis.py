"""A store in Redis: shared by instances on several hosts behind a load balancer.

Every read-modify-write is one Redis command or one Lua script, so it is
atomic across instances. Keys live under one prefix (``mockserver:``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import redis

from ..core.faults import FaultRule
from ..core.records import TaskRecord, UploadRecord

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


class RedisStore:
    def __init__(self, url: str, journal_size: int = 10_000, prefix: str = "mockserver:") -> None:
        # redis-py types its answers as bytes | str whatever the connection says: keep them untyped here
        self.r: Any = redis.Redis.from_url(url)
        self.p = prefix
        self.journal_size = journal_size
        self._fire = self.r.register_script(FIRE_RULE)
        self._append = self.r.register_script(APPEND_JOURNAL)

    def k(self, name: str) -> str:
        return self.p + name

    # tasks

    def put_task(self, record: TaskRecord) -> None:
        pipe = self.r.pipeline()
        if not self.r.hexists(self.k("tasks"), record.id):
            pipe.rpush(self.k("task_order"), record.id)
        pipe.hset(self.k("tasks"), record.id, json.dumps(record.to_dict()))
        pipe.execute()

    def get_task(self, task_id: str) -> TaskRecord | None:
        raw = self.r.hget(self.k("tasks"), task_id)
        return TaskRecord.from_dict(json.loads(raw)) if raw else None

    def update_task(self, task_id: str, change: Callable[[TaskRecord], TaskRecord]) -> TaskRecord | None:
        result: list[TaskRecord | None] = [None]

        def attempt(pipe: Any) -> None:
            raw = pipe.hget(self.k("tasks"), task_id)
            if raw is None:
                result[0] = None
                return
            record = TaskRecord.from_dict(json.loads(raw))
            updated = change(record)
            result[0] = updated
            pipe.multi()
            if updated is not record:
                pipe.hset(self.k("tasks"), task_id, json.dumps(updated.to_dict()))

        self.r.transaction(attempt, self.k("tasks"))
        return result[0]

    def tasks(self, account: str | None = None) -> list[TaskRecord]:
        ids = [i.decode() for i in self.r.lrange(self.k("task_order"), 0, -1)]
        if not ids:
            return []
        raws = self.r.hmget(self.k("tasks"), ids)
        records = [TaskRecord.from_dict(json.loads(raw)) for raw in raws if raw]
        return [t for t in records if account is None or t.account == account]

    def evict_tasks(self, created_before: float) -> int:
        evicted: set[bytes] = set()
        while True:
            head = self.r.lindex(self.k("task_order"), 0)
            if head is None:
                break
            raw = self.r.hget(self.k("tasks"), head)
            if raw is not None and json.loads(raw)["created_at"] >= created_before:
                break
            pipe = self.r.pipeline()
            pipe.lrem(self.k("task_order"), 1, head)
            pipe.hdel(self.k("tasks"), head)
            pipe.execute()
            evicted.add(head)
        if evicted:
            stale = [f for f, task_id in self.r.hgetall(self.k("idempotency")).items() if task_id in evicted]
            if stale:
                self.r.hdel(self.k("idempotency"), *stale)
        return len(evicted)

    # idempotency

    def claim_idempotency_key(self, account: str, key: str, task_id: str) -> str:
        field = f"{account}|{key}"
        self.r.hsetnx(self.k("idempotency"), field, task_id)
        return str(self.r.hget(self.k("idempotency"), field).decode())

    def idempotent_task(self, account: str, key: str) -> str | None:
        raw = self.r.hget(self.k("idempotency"), f"{account}|{key}")
        return raw.decode() if raw else None

    # uploads

    def put_upload(self, upload: UploadRecord) -> None:
        meta = {k: getattr(upload, k) for k in ("id", "account", "filename", "content_type", "size", "created_at")}
        pipe = self.r.pipeline()
        pipe.hset(self.k("uploads"), upload.id, json.dumps(meta))
        pipe.hset(self.k("upload_data"), upload.id, upload.data)
        pipe.execute()

    def get_upload(self, upload_id: str) -> UploadRecord | None:
        meta, data = self.r.hmget(self.k("uploads"), upload_id), self.r.hget(self.k("upload_data"), upload_id)
        if not meta[0] or data is None:
            return None
        return UploadRecord(**json.loads(meta[0]), data=bytes(data))

    # journal

    def append_journal(self, entry: dict[str, Any]) -> int:
        keys = [self.k("journal"), self.k("journal_seq")]
        return int(self._append(keys=keys, args=[json.dumps(entry), self.journal_size]))

    def journal(self, since: int = 0) -> list[dict[str, Any]]:
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
        pipe.hset(self.k("rule_fired"), rule.id, 0)
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

    # the clock

    def clock_state(self) -> tuple[float, float | None]:
        raw = self.r.get(self.k("clock"))
        if raw is None:
            return 0.0, None
        offset, frozen_at = json.loads(raw)
        return float(offset), frozen_at

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
        for field in self.r.hkeys(self.k("idempotency")):
            if field.decode().startswith(account + "|"):
                self.r.hdel(self.k("idempotency"), field)
        for upload_id, meta in self.r.hgetall(self.k("uploads")).items():
            if json.loads(meta).get("account") == account:
                self.r.hdel(self.k("uploads"), upload_id)
                self.r.hdel(self.k("upload_data"), upload_id)
        for raw in self.r.lrange(self.k("journal"), 0, -1):
            if json.loads(json.loads(raw)[1]).get("account") == account:
                self.r.lrem(self.k("journal"), 0, raw)
        for key in self.r.scan_iter(match=self.k(f"window:{account}:*")):
            self.r.delete(key)
        self.r.hdel(self.k("balances"), account)
