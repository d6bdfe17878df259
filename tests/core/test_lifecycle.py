"""Task state is a pure function of the record and the time."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from mockserver.core.lifecycle import STATUS_ORDER, Status, view
from mockserver.core.records import FAILURE_OUTCOME, NEVER_OUTCOME, SUCCESS_OUTCOME, TaskRecord

T0 = 1_767_225_600.0


def record(duration: float = 10.0, outcome: str = SUCCESS_OUTCOME) -> TaskRecord:
    return TaskRecord(
        id="task_X",
        account="a",
        action="VIDEO",
        created_at=T0,
        duration=duration,
        prompt="p",
        mode="FAST",
        clips=1,
        price_key="midjourney@video",
        quantity=1,
        outcome=outcome,
        fail_reason="Banned prompt detected" if outcome == FAILURE_OUTCOME else "",
    )


def test_submitted_then_in_progress_then_success() -> None:
    r = record(10)
    assert view(r, T0).status is Status.SUBMITTED
    assert view(r, T0 + 0.5).progress == 0
    middle = view(r, T0 + 5.5)
    assert middle.status is Status.IN_PROGRESS
    assert middle.progress == 50
    assert middle.started_at == T0 + 1
    done = view(r, T0 + 10)
    assert done.status is Status.SUCCESS
    assert done.progress == 100
    assert done.finished_at == T0 + 10


def test_running_task_never_shows_100() -> None:
    assert view(record(10), T0 + 9.999).progress == 99


def test_zero_seconds_is_final_on_first_poll() -> None:
    done = view(record(0), T0)
    assert done.status is Status.SUCCESS
    assert done.progress == 100


def test_failure_at_the_end() -> None:
    r = record(10, FAILURE_OUTCOME)
    assert view(r, T0 + 5).status is Status.IN_PROGRESS
    failed = view(r, T0 + 10)
    assert failed.status is Status.FAILURE
    assert failed.progress == 99
    assert failed.final


def test_never_finishes() -> None:
    r = record(10, NEVER_OUTCOME)
    late = view(r, T0 + 1e6)
    assert late.status is Status.IN_PROGRESS
    assert late.progress == 99
    assert late.finished_at is None


@given(
    duration=st.floats(min_value=0, max_value=600),
    outcome=st.sampled_from([SUCCESS_OUTCOME, FAILURE_OUTCOME, NEVER_OUTCOME]),
    times=st.lists(st.floats(min_value=0, max_value=1200), min_size=2, max_size=20),
)
def test_status_and_progress_only_move_forward(duration: float, outcome: str, times: list[float]) -> None:
    r = record(duration, outcome)
    seen = [view(r, T0 + t) for t in sorted(times)]
    for before, after in itertools.pairwise(seen):
        assert STATUS_ORDER[after.status] >= STATUS_ORDER[before.status]
        assert after.progress >= before.progress
        if before.final:
            assert after == before
    for v in seen:
        assert 0 <= v.progress <= 100
        assert (v.progress == 100) == (v.status is Status.SUCCESS)
