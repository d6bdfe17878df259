"""The ``Store`` protocol: everything the fake keeps goes through these methods.

Tasks, idempotency keys and uploads; the request journal (a bounded ring);
fault rules; rate-limit windows; account balances. Implementations must make
``update_task``, ``claim_idempotency_key``, ``fire_fault_rule`` and ``hit`` atomic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ..core.faults import FaultRule
from ..core.records import TaskRecord, UploadRecord


class Store(Protocol):
    # tasks
    def put_task(self, record: TaskRecord) -> None: ...

    def get_task(self, task_id: str) -> TaskRecord | None: ...

    def update_task(self, task_id: str, change: Callable[[TaskRecord], TaskRecord]) -> TaskRecord | None: ...

    def tasks(self, account: str | None = None) -> list[TaskRecord]: ...

    def evict_tasks(self, created_before: float) -> int:
        """Forget tasks created before this time (and their idempotency keys); return how many."""
        ...

    # idempotency
    def claim_idempotency_key(self, account: str, key: str, task_id: str) -> str:
        """Bind ``key`` to ``task_id`` unless it is bound already; return the bound task id."""
        ...

    def idempotent_task(self, account: str, key: str) -> str | None: ...

    # uploads
    def put_upload(self, upload: UploadRecord) -> None: ...

    def get_upload(self, upload_id: str) -> UploadRecord | None: ...

    # journal
    def append_journal(self, entry: dict[str, Any]) -> int:
        """Keep ``entry`` (the oldest falls out past the ring's size); return its sequence number."""
        ...

    def journal(self, since: int = 0) -> list[dict[str, Any]]: ...

    # faults
    def put_fault_rule(self, rule: FaultRule) -> None: ...

    def fault_rules(self) -> list[FaultRule]: ...

    def delete_fault_rule(self, rule_id: str) -> bool: ...

    def fire_fault_rule(self, rule_id: str) -> bool:
        """Count one firing of the rule if it has firings left; False when spent or gone."""
        ...

    # rate limiting
    def hit(self, account: str, window: int) -> int:
        """Count one request of ``account`` in time window ``window``; return the count so far."""
        ...

    # balances
    def set_balance(self, account: str, amount: float | None) -> None: ...

    def balances(self) -> dict[str, float | None]: ...

    # the clock's offset, shared by every worker (``clock.ShiftedClock``)
    def clock_state(self) -> tuple[float, float | None]: ...

    def set_clock_state(self, offset: float, frozen_at: float | None) -> None: ...

    def reset(self, account: str | None = None) -> None: ...
