"""Run the whole contract check against one target and build the report."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

import httpx

from . import fuzz
from .report import Report
from .suite import DEFAULT_FRAME, Suite
from .target import Target


def run_contract(
    base_url: str,
    token: str,
    *,
    max_paid_tasks: int | None = None,
    poll_interval: float | None = None,
    timeout: float | None = None,
    report_path: Path | None = None,
    transport: httpx.BaseTransport | None = None,
    examples: int = 40,
    frame_url: str = DEFAULT_FRAME,
    other_token: str | None = None,
    schemathesis: bool = True,
    out: TextIO = sys.stdout,
) -> Report:
    """Check ``base_url`` against the documentation. ``max_paid_tasks`` None: all paid checks on
    mockserver (they cost nothing there), none on any other target."""
    started = time.monotonic()

    def log(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    target = Target(base_url, token, poll_interval=poll_interval, timeout=timeout, transport=transport, log=log)
    report = Report(target=target.base_url, fake=target.fake)
    suite = Suite(target, report, frame_url=frame_url, other_token=other_token, log=log)
    plan = suite.plan()
    budget = max_paid_tasks if max_paid_tasks is not None else (len(plan) if target.fake else 0)
    target.budget.max_paid = budget
    try:
        log(
            f"contract check of {target.base_url} ({'mockserver: paid checks cost nothing' if target.fake else 'live'})"
        )
        _announce(plan, budget, target.fake, log)
        suite.refusals()
        suite.lifecycle(1)
        suite.reuse()
        suite.lifecycle(2)
        suite.lifecycle(4)
        suite.batch_size_policy()
        suite.open_points()
        if schemathesis:
            fuzz.run(target, report, examples=examples, log=log)
    finally:
        target.close()
    report.paid_tasks = target.budget.used
    report.paid_units = dict(target.budget.units)
    report.seconds = time.monotonic() - started
    report.print_table(out)
    if report_path is not None:
        report.write_json(report_path)
        log(f"report written to {report_path}")
    return report


def _announce(plan: list[tuple[str, int, str, int]], budget: int, fake: bool, log: object) -> None:
    assert callable(log)
    runs = plan[:budget]
    units: dict[str, int] = {}
    for _, _, key, n in runs:
        units[key] = units.get(key, 0) + n
    spend = ", ".join(f"{n} × {key}" for key, n in units.items()) or "nothing"
    log(f"paid budget: {budget} task(s); about to use {len(runs)} paid task(s): {spend}")
    if not fake:
        log("  (refusal probes are free while the target follows its documentation; a request it should refuse")
        log("   but accepts is counted against the budget, and then no further submission is sent)")
    for what, *_ in plan[budget:]:
        log(f"  skipped for the budget: {what}")
