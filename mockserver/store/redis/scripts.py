"""The Redis store's Lua scripts, with the keys and arguments they take and the parsing of their answers.

Every read-modify-write is one script, so it is atomic across instances. What a call of one needs
(``put_once_call``, ``put_once_answer``, ``append_many_call``) is built here, and so is what reads of
the rules and canned responses make of Redis's replies (``rules_from``, ``canned_from``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from ...core.canned import CannedResponse
from ...core.faults import FaultRule
from ...core.ledger import refund_due
from ...core.records import TaskRecord
from ..base import AccountLimit, Limit, Overdraft

Keys = Callable[[str], str]  # a store's key of a name (its prefix + the name: ``RedisStore.k``)

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
# Several entries at once (the journal queue's batches). KEYS: journal, journal_seq; ARGV: size, entries...
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
SHARED_CHANNEL = "shared_changed"  # and announced here (``link.SharedCopy`` subscribes)


def refund_member(record: TaskRecord) -> str:
    """A queued refund: its amount and its task, so that the queue alone sums what is due."""
    return f"{record.charge!r}|{record.id}"


def task_keys(k: Keys) -> list[str]:
    """The first keys of ``PUT_ONCE`` and ``SWAP``: the tasks and their indexes and running totals."""
    return [k(n) for n in ("tasks", "task_order", "idempotency", "idem_of", "charged", "refunded")]


def journal_keys(k: Keys) -> list[str]:
    """The keys of ``APPEND_JOURNAL`` and ``APPEND_MANY``."""
    return [k("journal"), k("journal_seq")]


def put_once_call(k: Keys, record: TaskRecord, key: str | None, limit: Limit) -> tuple[list[str], list[str]]:
    """``PUT_ONCE``'s keys and arguments."""
    due = refund_due(record)
    own = isinstance(limit, AccountLimit)
    if isinstance(limit, AccountLimit):
        limit = limit.default
    keys = [
        *task_keys(k),
        k(f"refunds:{record.account}"),
        k("balances"),
        k(f"task_order:{record.account}"),
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
        refund_member(record),
        "1" if own else "",
    ]
    return keys, args


def put_once_answer(reply: Any) -> str | Overdraft:
    """``PUT_ONCE``'s answer: the task's id (stored, or bound to the key already), or the overdraft."""
    status, value = reply
    if status == b"overdraft":
        return Overdraft(float(value))
    return str(value.decode())


def append_many_call(k: Keys, journal_size: int, encoded: Sequence[bytes]) -> tuple[list[str], list[Any]]:
    """``APPEND_MANY``'s keys and arguments, for entries already encoded (``Entry.encoded``)."""
    return journal_keys(k), [journal_size, *encoded]


def pairs(reply: Any) -> dict[bytes, Any]:
    """A ``HGETALL`` reply (a flat list of field, value, …) as a mapping."""
    items = reply if isinstance(reply, list) else []
    return dict(zip(items[::2], items[1::2], strict=False))


def rules_from(order: Sequence[bytes], rules: Mapping[bytes, bytes]) -> Iterator[FaultRule]:
    """The fault rules in ``order`` (``rule_order``) of those stored (``rules``: id -> JSON)."""
    return (FaultRule.from_dict(json.loads(rules[i])) for i in order if i in rules)


def canned_from(
    order: Sequence[bytes], canned: Mapping[bytes, bytes], fired: Mapping[bytes, bytes]
) -> Iterator[CannedResponse]:
    """The canned responses in ``order`` (``canned_order``), each with its count (``canned_fired``)."""
    return (
        CannedResponse.from_dict({**json.loads(canned[i]), "fired": int(fired.get(i, 0))}) for i in order if i in canned
    )
