"""Seeded tasks: the record that shows a chosen status (and progress) at a given time.

A task's state is never stored: ``lifecycle.view`` derives it from the record's
``created_at``, ``duration`` and outcome at each poll. To seed a task "in
IN_PROGRESS at 40 % now", this module works backwards: it picks the
``created_at`` (and, for NOT_START, the hold) that makes the lifecycle show
exactly that at ``now``; from there the task runs on at its normal pace.
Pure: ``timing`` takes plain values and returns plain values.
"""

from __future__ import annotations

from dataclasses import dataclass

from .lifecycle import QUEUED_SHARE, Status
from .records import CANCEL_OUTCOME, FAILURE_OUTCOME, SUCCESS_OUTCOME

NOT_START_SECONDS = 5.0  # as the not_start fault's default

# Both vocabularies the provider uses, and what each means for a seeded task: (status, outcome).
STATUSES: dict[str, tuple[Status, str]] = {
    "NOT_START": (Status.NOT_START, SUCCESS_OUTCOME),
    "SUBMITTED": (Status.SUBMITTED, SUCCESS_OUTCOME),
    "IN_PROGRESS": (Status.IN_PROGRESS, SUCCESS_OUTCOME),
    "SUCCESS": (Status.SUCCESS, SUCCESS_OUTCOME),
    "FAILURE": (Status.FAILURE, FAILURE_OUTCOME),
    "pending": (Status.SUBMITTED, SUCCESS_OUTCOME),
    "processing": (Status.IN_PROGRESS, SUCCESS_OUTCOME),
    "completed": (Status.SUCCESS, SUCCESS_OUTCOME),
    "failed": (Status.FAILURE, FAILURE_OUTCOME),
    "cancelled": (Status.FAILURE, CANCEL_OUTCOME),
}


@dataclass(frozen=True)
class Timing:
    """When the seeded task was created, how long it takes, how long NOT_START holds it."""

    created_at: float
    duration: float
    not_start_seconds: float = 0.0


def timing(status: Status, now: float, duration: float, progress: int | None = None, ago: float = 0.0) -> Timing:
    """The timing under which ``lifecycle.view`` shows ``status`` (and ``progress``, IN_PROGRESS only)
    at ``now``. A task that is not final needs a ``duration`` above 0; a final one ended ``ago``
    seconds before ``now`` (only a final task can have ended a while ago)."""
    if progress is not None and status is not Status.IN_PROGRESS:
        raise ValueError("progress applies to IN_PROGRESS only")
    if not status.final and duration <= 0:
        raise ValueError(f"a task in {status.value} needs a duration above 0")
    if not status.final and ago:
        raise ValueError(f"a task in {status.value} cannot have ended a while ago")
    if status is Status.NOT_START:
        return Timing(now, duration, NOT_START_SECONDS)
    if status is Status.SUBMITTED:
        return Timing(now, duration)
    if status is Status.IN_PROGRESS:
        wanted = 0 if progress is None else progress
        if not 0 <= wanted <= 99:
            raise ValueError("progress must be from 0 to 99 (a running task never shows 100)")
        share = (wanted + 0.5) / 100  # the middle of the percent: rounding never shows the one below
        return Timing(now - duration * (QUEUED_SHARE + (1 - QUEUED_SHARE) * share), duration)
    return Timing(now - duration - ago, duration)  # final: ended ``ago`` seconds ago
