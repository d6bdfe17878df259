"""``python -m contract`` / ``mockserver-contract``: check a target against the documentation."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .frames import DEFAULT_FRAME
from .runner import run_contract


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mockserver-contract",
        description="Check an implementation of the APIMart Midjourney video API (the real one or mockserver) "
        "against its documentation, and report where it differs.",
    )
    parser.add_argument("--base-url", required=True, help="e.g. https://api.apimart.ai or http://127.0.0.1:8000")
    parser.add_argument("--token", help="bearer token (default: $APIMART_TOKEN); never printed or written")
    parser.add_argument(
        "--max-paid-tasks",
        type=int,
        default=None,
        help="hard cap on tasks that cost money (default: 0 on a live API; all checks on mockserver)",
    )
    parser.add_argument("--poll-interval", type=float, default=None, help="seconds between polls (default adapts)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds to wait for one task (default 900 live)")
    parser.add_argument("--report", type=Path, default=None, help="also write the report as JSON here")
    parser.add_argument(
        "--write-calibration",
        type=Path,
        default=None,
        metavar="FILE",
        help="write the readings observed (task dialect, URL shape, batch policy, task time) as mockserver "
        "settings in YAML, for `mockserver serve --config FILE`",
    )
    parser.add_argument("--examples", type=int, default=40, help="schemathesis cases per operation and mode")
    parser.add_argument("--frame-url", default=DEFAULT_FRAME, help="start frame for paid checks (a real image URL)")
    parser.add_argument("--other-token", default=os.environ.get("APIMART_OTHER_TOKEN"), help="a second account")
    parser.add_argument("--no-schemathesis", action="store_true", help="skip the schemathesis phase")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    token = args.token or os.environ.get("APIMART_TOKEN")
    if not token:
        print("mockserver-contract: give --token or set APIMART_TOKEN", file=sys.stderr)
        return 2
    if args.max_paid_tasks is not None and args.max_paid_tasks < 0:
        print("mockserver-contract: --max-paid-tasks must be >= 0", file=sys.stderr)
        return 2
    report = run_contract(
        args.base_url,
        token,
        max_paid_tasks=args.max_paid_tasks,
        poll_interval=args.poll_interval,
        timeout=args.timeout,
        report_path=args.report,
        calibration_path=args.write_calibration,
        examples=args.examples,
        frame_url=args.frame_url,
        other_token=args.other_token,
        schemathesis=not args.no_schemathesis,
    )
    return 1 if report.failed else 0
