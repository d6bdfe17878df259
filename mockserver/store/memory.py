"""The default store: plain dicts in one process.

Read-modify-write methods hold a lock: the server runs one event loop, but the
in-process transports reach the same store from other threads.

Tasks are kept packed (each one JSON array, as bytes) and journal entries as JSON
text (or as the edge's ``Entry``, made into text when first read): both take less
memory than objects, and the garbage collector never walks bytes or a dict of them,
so a store of a million tasks adds no pauses. Each account's task ids are kept in
the order they came (a dict of ids), so a page of one account's tasks costs its
size, not the store's.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import json
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from ..core.canned import CannedResponse
from ..core.faults import FaultRule
from ..core.journal import Entry
from ..core.jsonio import dumps
from ..core.ledger import refund_due
from ..core.records import TaskRecord, UploadRecord
from .base import (
    EPSILON,
    AccountLimit,
    Limit,
    Overdraft,
    Shared,
    Spending,
    StateImage,
    UploadRefused,
    UploadUsage,
    booking,
    fill,
    upload_refusal,
)


class MemoryStore:
    def __init__(self, journal_size: int = 10_000, journal_max_bytes: int | None = None) -> None:
        # (sequence number, size, the entry): its JSON text, or an ``Entry`` made into text when first read
        self._journal: deque[tuple[int, int, str | Entry]] = deque(maxlen=journal_size)
        self._journal_max_bytes = journal_max_bytes  # None: bounded by entries only
        self._journal_bytes = 0  # the characters of every kept entry's text (an Entry: at most its size)
        self._seq = 0  # never reset: journal cursors (`since`) stay valid across resets
        self._lock = threading.Lock()
        self._clock: tuple[float, float | None] = (0.0, None)
        self._shared: Shared | None = None  # the shared settings' copy, made again when next read
        self._changes = 0  # bumped by every change of what the copy holds
        self._clear()

    def _clear(self) -> None:
        self._journal.clear()
        self._journal_bytes = 0
        self._tasks: dict[str, bytes] = {}  # in the order they were stored
        self._of_account: dict[str, dict[str, None]] = {}  # account -> its task ids, in order
        self._keys: dict[tuple[str, str], str] = {}
        self._key_of: dict[str, tuple[str, str]] = {}  # task id -> the key bound to it
        # running totals (base.py): account -> [charged, refunded]; queued refunds by task id,
        # (account, due, amount); per account a heap of (due, task id), stale entries skipped
        self._spend: dict[str, list[float]] = {}
        self._refunds: dict[str, tuple[str, float, float]] = {}
        self._due: dict[str, list[tuple[float, str]]] = {}
        self._uploads: dict[str, UploadRecord] = {}
        # running totals of the uploads' bytes (base.py): per account, and in all; a heap of
        # (created_at, upload id) for expiry, oldest first (entries of uploads gone or replaced skipped)
        self._upload_bytes: dict[str, int] = {}
        self._upload_total = 0
        self._upload_times: list[tuple[float, str]] = []
        self._rules: dict[str, FaultRule] = {}
        self._fired: dict[str, int] = {}
        self._windows: dict[str, tuple[int, int]] = {}
        self._balances: dict[str, float | None] = {}
        self._canned: dict[str, CannedResponse] = {}
        self._canned_fired: dict[str, int] = {}
        self._account_settings: dict[str, dict[str, Any]] = {}
        self._stale()  # last: a copy made meanwhile from the old fields is not kept

    # tasks

    async def put_task_once(self, record: TaskRecord, key: str | None, limit: Limit = None) -> str | Overdraft:
        account, task_id, charge = record.account, record.id, record.charge
        with self._lock:
            if key is not None:
                bound = self._keys.get((account, key))
                if bound is not None:
                    return bound
            if task_id in self._tasks:
                return task_id
            if charge:
                if isinstance(limit, AccountLimit):
                    limit = self._balances.get(account, limit.default)
                charged, refunded = self._settle(account, record.created_at)
                left = None if limit is None else limit - (charged - refunded)
                if left is not None and charge > left + EPSILON:
                    return Overdraft(left)
            self._tasks[task_id] = record.pack()
            ids = self._of_account.get(account)
            if ids is None:
                ids = self._of_account[account] = {}
            ids[task_id] = None
            self._book(record)
            if key is not None:
                self._keys[(account, key)] = task_id
                self._key_of[task_id] = (account, key)
            return task_id

    async def put_task(self, record: TaskRecord) -> None:
        with self._lock:
            packed = self._tasks.get(record.id)
            old = TaskRecord.unpack(packed) if packed is not None else None
            if old is not None and old.account != record.account:
                self._of_account.get(old.account, {}).pop(record.id, None)
            self._tasks[record.id] = record.pack()
            self._of_account.setdefault(record.account, {})[record.id] = None
            self._rebook(old, record)

    # running totals (under the lock)

    def _book(self, record: TaskRecord) -> None:
        charge = record.charge
        if not charge:
            return
        (self._spend.get(record.account) or self._spend.setdefault(record.account, [0.0, 0.0]))[0] += charge
        due = refund_due(record)
        if due is not None:
            self._refunds[record.id] = (record.account, due, charge)
            heapq.heappush(self._due.setdefault(record.account, []), (due, record.id))

    def _unbook(self, record: TaskRecord) -> None:
        if not record.charge:
            return
        spend = self._spend.setdefault(record.account, [0.0, 0.0])
        spend[0] -= record.charge
        if self._refunds.pop(record.id, None) is None and refund_due(record) is not None:
            spend[1] -= record.charge  # its refund was moved already

    def _rebook(self, old: TaskRecord | None, new: TaskRecord | None) -> None:
        if old is not None and new is not None and booking(old) == booking(new):
            return
        if old is not None:
            self._unbook(old)
        if new is not None:
            self._book(new)

    def _settle(self, account: str, now: float) -> list[float]:
        """Move the account's refunds due by ``now`` out of the queue; its [charged, refunded]."""
        spend = self._spend.get(account) or self._spend.setdefault(account, [0.0, 0.0])
        heap = self._due.get(account)
        while heap and heap[0][0] <= now:
            due, task_id = heapq.heappop(heap)
            queued = self._refunds.get(task_id)
            if queued is not None and queued[1] == due:
                del self._refunds[task_id]
                spend[1] += queued[2]
        return spend

    async def get_task(self, task_id: str) -> TaskRecord | None:
        return self._task(task_id)

    def _task(self, task_id: str) -> TaskRecord | None:
        packed = self._tasks.get(task_id)
        return TaskRecord.unpack(packed) if packed is not None else None

    async def update_task(self, task_id: str, change: Callable[[TaskRecord], TaskRecord]) -> TaskRecord | None:
        with self._lock:
            record = self._task(task_id)
            if record is None:
                return None
            updated = change(record)
            if updated is not record:
                self._tasks[task_id] = updated.pack()
                self._rebook(record, updated)
            return updated

    async def tasks(self, account: str | None = None) -> list[TaskRecord]:
        return [TaskRecord.unpack(self._tasks[i]) for i in list(self._ids(account))]

    def _ids(self, account: str | None) -> dict[str, Any]:
        return self._tasks if account is None else self._of_account.get(account, {})

    async def task_count(self, account: str | None = None) -> int:
        return len(self._ids(account))

    async def task_page(
        self, account: str | None = None, *, newest_first: bool = False, offset: int = 0, limit: int | None = None
    ) -> list[TaskRecord]:
        ids = self._ids(account)
        with self._lock:
            order = reversed(ids) if newest_first else iter(ids)
            chosen = list(itertools.islice(order, offset, None if limit is None else offset + limit))
        return [TaskRecord.unpack(self._tasks[i]) for i in chosen if i in self._tasks]

    async def evict_tasks(self, created_before: float, limit: int | None = None) -> int:
        with self._lock:
            old: list[TaskRecord] = []
            for packed in self._tasks.values():  # insertion order is creation order
                if len(old) == limit:
                    break
                record = TaskRecord.unpack(packed)
                if record.created_at >= created_before:
                    break
                old.append(record)
            for record in old:
                del self._tasks[record.id]
                self._of_account.get(record.account, {}).pop(record.id, None)
                self._unbook(record)
                key = self._key_of.pop(record.id, None)
                if key is not None:
                    self._keys.pop(key, None)
            return len(old)

    # idempotency

    async def idempotent_task(self, account: str, key: str) -> str | None:
        return self._keys.get((account, key))

    # uploads

    async def put_upload(
        self,
        upload: UploadRecord,
        *,
        account_quota: int | None = None,
        total_quota: int | None = None,
        evict_by: float | None = None,
    ) -> UploadRefused | None:
        with self._lock:
            if evict_by is not None:
                self._evict_uploads(evict_by)
            if account_quota is not None or total_quota is not None:
                usage = UploadUsage(self._upload_bytes.get(upload.account, 0), self._upload_total)
                refused = upload_refusal(usage, upload.size, account_quota, total_quota)
                if refused is not None:
                    return refused
            old = self._uploads.get(upload.id)
            if old is not None:
                self._uncount_upload(old)
            self._uploads[upload.id] = upload
            self._upload_bytes[upload.account] = self._upload_bytes.get(upload.account, 0) + upload.size
            self._upload_total += upload.size
            if old is None or old.created_at != upload.created_at:
                heapq.heappush(self._upload_times, (upload.created_at, upload.id))
            return None

    def _uncount_upload(self, upload: UploadRecord) -> None:
        """Take a stored upload's bytes out of the running totals (under the lock)."""
        left = self._upload_bytes.get(upload.account, 0) - upload.size
        if left:
            self._upload_bytes[upload.account] = left
        else:
            self._upload_bytes.pop(upload.account, None)
        self._upload_total -= upload.size

    async def upload_usage(self, account: str) -> UploadUsage:
        """The bytes of uploads held by ``account`` and by everyone (the running totals)."""
        with self._lock:
            return UploadUsage(self._upload_bytes.get(account, 0), self._upload_total)

    def _evict_uploads(self, created_by: float) -> int:
        """Forget the uploads created at or before ``created_by``, oldest first (under the lock)."""
        evicted = 0
        times = self._upload_times
        while times and times[0][0] <= created_by:
            created_at, upload_id = heapq.heappop(times)
            upload = self._uploads.get(upload_id)
            if upload is not None and upload.created_at == created_at:
                del self._uploads[upload_id]
                self._uncount_upload(upload)
                evicted += 1
        return evicted

    async def get_upload(self, upload_id: str) -> UploadRecord | None:
        return self._uploads.get(upload_id)

    async def upload_records(self) -> list[UploadRecord]:
        return [dataclasses.replace(u, data=b"") for u in list(self._uploads.values())]

    async def delete_upload(self, upload_id: str) -> bool:
        with self._lock:
            upload = self._uploads.pop(upload_id, None)
            if upload is None:
                return False
            self._uncount_upload(upload)  # its entry in the heap is skipped when its time comes
            return True

    # journal

    async def append_journal(self, entry: dict[str, Any]) -> int:
        text = dumps(entry).decode()
        return self._append(text, len(text))

    def append_entry(self, entry: Entry) -> None:
        """An edge's ``Entry``: kept as it is, made into text when first read."""
        self._append(entry, entry.size)

    def _append(self, item: str | Entry, size: int) -> int:
        with self._lock:
            self._seq += 1
            journal = self._journal
            if len(journal) == journal.maxlen:
                self._journal_bytes -= journal.popleft()[1]
            journal.append((self._seq, size, item))
            self._journal_bytes += size
            limit = self._journal_max_bytes
            while limit is not None and self._journal_bytes > limit and len(journal) > 1:
                self._journal_bytes -= journal.popleft()[1]  # oldest first, as the ring does
            return self._seq

    async def journal(self, since: int = 0) -> list[dict[str, Any]]:
        return [{**_entry(item), "seq": seq} for seq, _, item in list(self._journal) if seq > since]

    # faults

    async def put_fault_rule(self, rule: FaultRule) -> None:
        self._rules[rule.id] = rule
        self._fired[rule.id] = rule.fired
        self._stale()

    async def fault_rules(self) -> list[FaultRule]:
        return list(self._rules.values())

    async def delete_fault_rule(self, rule_id: str) -> bool:
        self._fired.pop(rule_id, None)
        found = self._rules.pop(rule_id, None) is not None
        self._stale()
        return found

    async def fire_fault_rule(self, rule_id: str) -> bool:
        with self._lock:
            rule = self._rules.get(rule_id)
            if rule is None:
                return False
            fired = self._fired.get(rule_id, 0)
            if rule.times is not None and fired >= rule.times:
                return False
            self._fired[rule_id] = fired + 1
            return True

    async def fault_rule_counts(self) -> dict[str, int]:
        return dict(self._fired)

    # canned responses

    async def put_canned_response(self, response: CannedResponse) -> None:
        with self._lock:
            self._canned[response.id] = response
            self._canned_fired[response.id] = response.fired
            self._stale()

    async def canned_responses(self) -> list[CannedResponse]:
        return list(self.shared().canned)  # each with its current count: the copy is made again at a firing

    async def delete_canned_response(self, response_id: str) -> bool:
        with self._lock:
            self._canned_fired.pop(response_id, None)
            found = self._canned.pop(response_id, None) is not None
            self._stale()
            return found

    async def fire_canned_response(self, response_id: str) -> bool:
        with self._lock:
            response = self._canned.get(response_id)
            if response is None:
                return False
            fired = self._canned_fired.get(response_id, 0)
            if response.times is not None and fired >= response.times:
                return False
            self._canned_fired[response_id] = fired + 1
            self._stale()  # a spent response is skipped by the next request
            return True

    # per-account settings

    async def account_settings(self, account: str) -> dict[str, Any]:
        return dict(self._account_settings.get(account) or {})

    async def set_account_settings(self, account: str, settings: dict[str, Any]) -> None:
        if settings:
            self._account_settings[account] = dict(settings)
        else:
            self._account_settings.pop(account, None)
        self._stale()

    async def all_account_settings(self) -> dict[str, dict[str, Any]]:
        return {account: dict(values) for account, values in self._account_settings.items()}

    # rate limiting

    async def hit(self, account: str, window: int) -> int:
        with self._lock:
            current, count = self._windows.get(account, (window, 0))
            count = count + 1 if current == window else 1
            self._windows[account] = (window, count)
            return count

    # balances

    async def set_balance(self, account: str, amount: float | None) -> None:
        self._balances[account] = amount

    async def balances(self) -> dict[str, float | None]:
        return dict(self._balances)

    async def spending(self, account: str, now: float) -> Spending:
        with self._lock:
            charged, refunded = self._spend.get(account, (0.0, 0.0))
            due = {task_id for at, task_id in self._due.get(account, ()) if at <= now}
            for task_id in due:
                queued = self._refunds.get(task_id)
                if queued is not None and queued[1] <= now:
                    refunded += queued[2]
            return Spending(charged, refunded)

    # the clock

    async def set_clock_state(self, offset: float, frozen_at: float | None) -> None:
        self.note_clock((offset, frozen_at))

    # the shared settings: read live (``shared()`` is made again after any change), nothing to refresh

    def _stale(self) -> None:
        self._changes += 1
        self._shared = None

    def shared(self) -> Shared:
        found = self._shared
        if found is None:
            changes = self._changes
            fired, canned = self._canned_fired, list(self._canned.values())
            found = Shared(
                None,
                self._clock,
                tuple(self._rules.values()),
                tuple(dataclasses.replace(r, fired=fired.get(r.id, 0)) for r in canned),
                self._account_settings,
            )
            with self._lock:
                if changes == self._changes:  # nothing changed while it was made: kept
                    self._shared = found
        return found

    async def refresh(self) -> None:
        return None

    def note_clock(self, state: tuple[float, float | None]) -> None:
        self._clock = state
        self._stale()

    async def reset(self, account: str | None = None) -> None:
        if account is None:
            self._clear()
            return
        for task_id in self._of_account.pop(account, {}):
            self._tasks.pop(task_id, None)
        self._keys = {k: v for k, v in self._keys.items() if k[0] != account}
        self._key_of = {k: v for k, v in self._key_of.items() if v[0] != account}
        self._refunds = {k: v for k, v in self._refunds.items() if v[0] != account}
        self._spend.pop(account, None)
        self._due.pop(account, None)
        with self._lock:
            self._uploads = {k: v for k, v in self._uploads.items() if v.account != account}
            self._upload_total -= self._upload_bytes.pop(account, 0)
            self._upload_times = [(u.created_at, u.id) for u in self._uploads.values()]
            heapq.heapify(self._upload_times)
        kept = [kept for kept in self._journal if _account_of(kept[2]) != account]
        self._journal = deque(kept, maxlen=self._journal.maxlen)
        self._journal_bytes = sum(size for _, size, _ in kept)
        self._windows.pop(account, None)
        self._balances.pop(account, None)
        self._account_settings.pop(account, None)
        self._stale()

    async def replace_state(self, image: StateImage) -> None:
        """Build the new state in a store of its own (a failure there leaves this one alone), then take
        its fields in one ``dict.update`` under the lock: a reader sees the old state or the new."""
        built = MemoryStore(self._journal.maxlen or 0, self._journal_max_bytes)
        await fill(built, image)
        fresh = {name: value for name, value in vars(built).items() if name not in KEPT}
        with self._lock:
            self.__dict__.update(fresh)
            self._stale()

    async def ping(self) -> None:
        return None


KEPT = frozenset({"_seq", "_lock", "_clock", "_journal_max_bytes", "_changes"})  # what a replace leaves as it was


def _entry(item: str | Entry) -> dict[str, Any]:
    return json.loads(item) if isinstance(item, str) else item.to_dict()


def _account_of(item: str | Entry) -> Any:
    return json.loads(item).get("account") if isinstance(item, str) else item.account
