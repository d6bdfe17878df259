"""The default store: plain dicts in one process.

Read-modify-write methods hold a lock: the server runs one event loop, but the
in-process transports reach the same store from other threads.

Tasks are kept packed (flat tuples of plain values) and journal entries as JSON
text: both take less memory than objects, and the garbage collector never has
to walk them, so a store of a million tasks adds no pauses.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from ..core.faults import FaultRule
from ..core.jsonio import dumps
from ..core.records import TaskRecord, UploadRecord


class MemoryStore:
    def __init__(self, journal_size: int = 10_000) -> None:
        self._journal: deque[tuple[int, str]] = deque(maxlen=journal_size)
        self._seq = 0  # never reset: journal cursors (`since`) stay valid across resets
        self._lock = threading.Lock()
        self._clock: tuple[float, float | None] = (0.0, None)
        self._clear()

    def _clear(self) -> None:
        self._journal.clear()
        self._tasks: dict[str, tuple[Any, ...]] = {}
        self._keys: dict[tuple[str, str], str] = {}
        self._uploads: dict[str, UploadRecord] = {}
        self._rules: dict[str, FaultRule] = {}
        self._fired: dict[str, int] = {}
        self._windows: dict[str, tuple[int, int]] = {}
        self._balances: dict[str, float | None] = {}

    # tasks

    def put_task(self, record: TaskRecord) -> None:
        self._tasks[record.id] = record.pack()

    def get_task(self, task_id: str) -> TaskRecord | None:
        packed = self._tasks.get(task_id)
        return TaskRecord.unpack(packed) if packed is not None else None

    def update_task(self, task_id: str, change: Callable[[TaskRecord], TaskRecord]) -> TaskRecord | None:
        with self._lock:
            record = self.get_task(task_id)
            if record is None:
                return None
            updated = change(record)
            if updated is not record:
                self._tasks[task_id] = updated.pack()
            return updated

    def tasks(self, account: str | None = None) -> list[TaskRecord]:
        return [TaskRecord.unpack(packed) for packed in self._tasks.values() if account is None or packed[1] == account]

    def evict_tasks(self, created_before: float) -> int:
        with self._lock:
            old = []
            for task_id, packed in self._tasks.items():  # insertion order is creation order
                if packed[3] >= created_before:
                    break
                old.append(task_id)
            for task_id in old:
                del self._tasks[task_id]
            if old:
                gone = set(old)
                self._keys = {k: v for k, v in self._keys.items() if v not in gone}
            return len(old)

    # idempotency

    def claim_idempotency_key(self, account: str, key: str, task_id: str) -> str:
        with self._lock:
            return self._keys.setdefault((account, key), task_id)

    def idempotent_task(self, account: str, key: str) -> str | None:
        return self._keys.get((account, key))

    # uploads

    def put_upload(self, upload: UploadRecord) -> None:
        self._uploads[upload.id] = upload

    def get_upload(self, upload_id: str) -> UploadRecord | None:
        return self._uploads.get(upload_id)

    # journal

    def append_journal(self, entry: dict[str, Any]) -> int:
        text = dumps(entry).decode()
        with self._lock:
            self._seq += 1
            self._journal.append((self._seq, text))
            return self._seq

    def journal(self, since: int = 0) -> list[dict[str, Any]]:
        return [{**json.loads(text), "seq": seq} for seq, text in self._journal if seq > since]

    # faults

    def put_fault_rule(self, rule: FaultRule) -> None:
        self._rules[rule.id] = rule
        self._fired[rule.id] = 0

    def fault_rules(self) -> list[FaultRule]:
        return list(self._rules.values())

    def delete_fault_rule(self, rule_id: str) -> bool:
        self._fired.pop(rule_id, None)
        return self._rules.pop(rule_id, None) is not None

    def fire_fault_rule(self, rule_id: str) -> bool:
        with self._lock:
            rule = self._rules.get(rule_id)
            if rule is None:
                return False
            fired = self._fired.get(rule_id, 0)
            if rule.times is not None and fired >= rule.times:
                return False
            self._fired[rule_id] = fired + 1
            return True

    # rate limiting

    def hit(self, account: str, window: int) -> int:
        with self._lock:
            current, count = self._windows.get(account, (window, 0))
            count = count + 1 if current == window else 1
            self._windows[account] = (window, count)
            return count

    # balances

    def set_balance(self, account: str, amount: float | None) -> None:
        self._balances[account] = amount

    def balances(self) -> dict[str, float | None]:
        return dict(self._balances)

    # the clock

    def clock_state(self) -> tuple[float, float | None]:
        return self._clock

    def set_clock_state(self, offset: float, frozen_at: float | None) -> None:
        self._clock = (offset, frozen_at)

    def reset(self, account: str | None = None) -> None:
        if account is None:
            self._clear()
            return
        self._tasks = {k: v for k, v in self._tasks.items() if v[1] != account}
        self._keys = {k: v for k, v in self._keys.items() if k[0] != account}
        self._uploads = {k: v for k, v in self._uploads.items() if v.account != account}
        kept = [(seq, text) for seq, text in self._journal if json.loads(text).get("account") != account]
        self._journal = deque(kept, maxlen=self._journal.maxlen)
        self._windows.pop(account, None)
        self._balances.pop(account, None)
