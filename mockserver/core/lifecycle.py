"""What a poll shows, derived from a task record and the time: no timers, no threads.

A task is ``NOT_START`` while a ``not_start`` fault holds it (created, not yet
confirmed), then ``SUBMITTED`` for the first tenth of its duration, then
``IN_PROGRESS`` with its progress rising, then ``SUCCESS`` or ``FAILURE`` once
its duration has passed (docs/evidence.md, "statuses"). With a duration of 0
the first poll already sees the final state. A task whose outcome is ``never``
stays in progress (a fault a client must survive). In poll-count mode (as
moto's state manager) a task is final on its N-th poll instead, whatever the time.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum

from .records import CANCEL_OUTCOME, FAILURE_OUTCOME, NEVER_OUTCOME, TaskRecord

QUEUED_SHARE = 0.1


class Status(StrEnum):
    NOT_START = "NOT_START"
    SUBMITTED = "SUBMITTED"
    IN_PROGRESS = "IN_PROGRESS"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"

    @property
    def final(self) -> bool:
        return self in (Status.SUCCESS, Status.FAILURE)


# The provider's two vocabularies for the same states.
UNIFIED_STATUS = {
    Status.NOT_START: "pending",
    Status.SUBMITTED: "pending",
    Status.IN_PROGRESS: "processing",
    Status.SUCCESS: "completed",
    Status.FAILURE: "failed",
}
STATUS_ORDER = {Status.NOT_START: 0, Status.SUBMITTED: 1, Status.IN_PROGRESS: 2, Status.SUCCESS: 3, Status.FAILURE: 3}
CANCELLED = "cancelled"  # the envelope's word for a task the provider cancelled (a FAILURE, refunded)


def unified_status(record: TaskRecord, status: Status) -> str:
    """The envelope's lowercase status; a cancelled task (the ``cancel`` fault) says ``cancelled``."""
    if status is Status.FAILURE and record.outcome == CANCEL_OUTCOME:
        return CANCELLED
    return UNIFIED_STATUS[status]


@dataclass(frozen=True)
class TaskView:
    status: Status
    progress: int
    started_at: float | None
    finished_at: float | None

    @property
    def final(self) -> bool:
        return self.status.final


def view(record: TaskRecord, now: float) -> TaskView:
    """The task as a poll at ``now`` sees it."""
    if record.finish_after_polls is not None:
        return _by_polls(record)
    hold = float(record.params.get("not_start_seconds") or 0.0)
    if now < record.created_at + hold:
        return TaskView(Status.NOT_START, 0, None, None)  # created, not yet confirmed (the not_start fault)
    created = record.created_at + hold
    end = created + record.duration
    start = created + record.duration * QUEUED_SHARE
    if record.outcome == NEVER_OUTCOME:
        if now < start:
            return TaskView(Status.SUBMITTED, 0, None, None)
        return TaskView(Status.IN_PROGRESS, _progress(now, start, end), start, None)
    if now >= end:
        if record.outcome in (FAILURE_OUTCOME, CANCEL_OUTCOME):
            last = _progress(end, start, end) if record.duration > 0 else 0
            return TaskView(Status.FAILURE, last, start, end)
        return TaskView(Status.SUCCESS, 100, start, end)
    if now < start:
        return TaskView(Status.SUBMITTED, 0, None, None)
    return TaskView(Status.IN_PROGRESS, _progress(now, start, end), start, None)


def _by_polls(record: TaskRecord) -> TaskView:
    """Final once the N-th poll has been counted (``settled_at`` is when that poll came)."""
    needed = max(1, record.finish_after_polls or 1)
    if record.settled_at is not None and record.outcome != NEVER_OUTCOME:
        if record.outcome in (FAILURE_OUTCOME, CANCEL_OUTCOME):
            return TaskView(Status.FAILURE, min(99, 100 * (needed - 1) // needed), record.created_at, record.settled_at)
        return TaskView(Status.SUCCESS, 100, record.created_at, record.settled_at)
    if record.polls <= 0:
        return TaskView(Status.SUBMITTED, 0, None, None)
    return TaskView(Status.IN_PROGRESS, min(99, 100 * record.polls // needed), record.created_at, None)


def counted_poll(record: TaskRecord, now: float) -> TaskRecord:
    """The record after one more poll, in poll-count mode (unchanged otherwise)."""
    if record.finish_after_polls is None or record.settled_at is not None:
        return record
    polls = record.polls + 1
    settled = now if polls >= record.finish_after_polls else None
    return dataclasses.replace(record, polls=polls, settled_at=settled)


def _progress(now: float, start: float, end: float) -> int:
    """0..99 while running: a running task never shows 100%."""
    if end <= start:
        return 99
    share = (min(now, end) - start) / (end - start)
    return max(0, min(99, int(share * 100)))
