"""Run the whole contract check against one target and build the report."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import httpx

from . import fuzz
from .frames import DEFAULT_FRAME
from .readings import write_calibration
from .report import SKIP, Report
from .suite import CHECKS, Check, Suite, paid_plan
from .target import BudgetExhausted, Profile, Target


def run_contract(
    base_url: str,
    token: str,
    *,
    max_paid_tasks: int | None = None,
    poll_interval: float | None = None,
    timeout: float | None = None,
    report_path: Path | None = None,
    calibration_path: Path | None = None,
    transport: httpx.BaseTransport | None = None,
    examples: int = 40,
    frame_url: str = DEFAULT_FRAME,
    other_token: str | None = None,
    schemathesis: bool = True,
    out: TextIO = sys.stdout,
) -> Report:
    """Check ``base_url`` against the documentation. ``max_paid_tasks`` None: the target profile's
    default (every paid check on mockserver, where they cost nothing; none on any other target)."""
    started = time.monotonic()

    def log(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    target = Target(
        base_url,
        token,
        max_paid_tasks=max_paid_tasks,
        poll_interval=poll_interval,
        timeout=timeout,
        transport=transport,
        log=log,
    )
    report = Report(target=target.base_url, fake=target.profile.mockserver)
    suite = Suite(target, report, frame_url=frame_url, other_token=other_token or target.profile.other_token)
    try:
        _run_checks(suite, report, target, examples, schemathesis, log)
    finally:
        target.close()
    report.paid_tasks = target.budget.used
    report.paid_units = dict(target.budget.units)
    report.seconds = time.monotonic() - started
    report.print_table(out)
    _write_outputs(report, suite, target, report_path, calibration_path, log)
    return report


def _run_checks(
    suite: Suite, report: Report, target: Target, examples: int, schemathesis: bool, log: Callable[[str], None]
) -> None:
    """The announcement, every check in order (one the budget stops is a SKIP row), then schemathesis."""
    log(f"contract check of {target.base_url} ({target.profile.name})")
    _announce(paid_plan(), target.budget.max_paid, target.profile, log)
    if schemathesis:
        log(_fuzz_announcement(target.profile))
    for check in CHECKS:
        log(f"== {check.title}" + (" (paid)" if check.tasks else ""))
        try:
            check.run(suite)
        except BudgetExhausted as exc:
            report.add(check.rule, check.doc, f"skipped: {exc}", SKIP)
    if schemathesis:
        tallies = fuzz.run(target, report, examples=examples, log=log)
        report.schemathesis_tasks = fuzz.tasks_made(tallies, target.profile)


def _write_outputs(
    report: Report,
    suite: Suite,
    target: Target,
    report_path: Path | None,
    calibration_path: Path | None,
    log: Callable[[str], None],
) -> None:
    """The JSON report and the calibration file, when asked for."""
    if report_path is not None:
        report.write_json(report_path)
        log(f"report written to {report_path}")
    if calibration_path is not None:
        calibration = suite.readings.calibration()
        write_calibration(calibration_path, calibration, target.base_url)
        shown = ", ".join(f"{k}={v}" for k, v in calibration.items()) or "nothing observed"
        log(f"calibration written to {calibration_path}: {shown}")


def _fuzz_announcement(profile: Profile) -> str:
    """What schemathesis will submit, said before it runs (it is not part of the paid budget)."""
    if profile.charges:
        return "schemathesis sends the paid operations without the key (each must be 401): it makes no task"
    return (
        "schemathesis then submits generated bodies with the key: each one accepted is a task on the target "
        "too (free here), outside the paid budget above; the report counts them"
    )


def _announce(plan: list[Check], budget: int | None, profile: Profile, log: Callable[[str], None]) -> None:
    """What the paid checks will spend, in their order, within ``budget`` tasks (None: no limit)."""
    runs: list[Check] = []
    for check in plan:
        if budget is not None and sum(c.tasks for c in runs) + check.tasks > budget:
            break
        runs.append(check)
    units: dict[str, int] = {}
    for check in runs:
        units[check.price_key] = units.get(check.price_key, 0) + check.units
    spend = ", ".join(f"{n} × {key}" for key, n in units.items()) or "nothing"
    cap = "no limit" if budget is None else f"{budget} task(s)"
    log(f"paid budget: {cap}; about to use {sum(c.tasks for c in runs)} paid task(s): {spend}")
    if profile.charges:
        log("  (refusal probes are free while the target follows its documentation; a request it should refuse")
        log("   but accepts is counted against the budget, and then no further submission is sent)")
    for check in plan[len(runs) :]:
        log(f"  skipped for the budget: {check.title}")
