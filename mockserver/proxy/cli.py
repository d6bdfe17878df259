"""``mockserver proxy …`` and ``mockserver calibrate …``: their arguments and what they run.

Nothing here imports httpx or the server until a command runs, so ``mockserver
serve`` starts as fast as before.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .config import ProxyConfig

COMMANDS = ("proxy", "calibrate")


def add_commands(commands: Any) -> None:
    """Add ``proxy`` and ``calibrate`` to the ``mockserver`` sub-command parsers."""
    proxy = commands.add_parser(
        "proxy",
        help="forward to the real API, checking every exchange against the spec, capping spend, recording",
        description="Forward every request to --upstream with the client's own key; check requests and answers "
        "against spec/openapi.yaml and log each divergence; refuse paid submissions beyond --max-paid-tasks "
        "(default 0) with 402; with --record DIR, write each task and refusal as JSON.",
    )
    ProxyConfig.add_arguments(proxy)
    calibrate = commands.add_parser(
        "calibrate",
        help="turn a recording (proxy --record DIR) into a settings file for serve --config",
    )
    calibrate.add_argument("directory", metavar="DIR", help="a directory written by mockserver proxy --record")
    calibrate.add_argument("--out", metavar="FILE", default="-", help="where to write the YAML settings [stdout]")


def run(args: argparse.Namespace) -> int:
    if args.command == "proxy":
        try:
            config = ProxyConfig.from_args(args)
        except ValueError as exc:
            print(f"mockserver: {exc}", file=sys.stderr)
            return 2
        return run_proxy(config)
    return run_calibrate(args.directory, args.out)


def run_proxy(config: ProxyConfig) -> int:
    try:
        import uvicorn

        from .app import create_proxy_app
    except ImportError as exc:  # pragma: no cover - httpx is an optional dependency
        print(f"mockserver proxy needs httpx ({exc}): pip install 'mockserver[testing]'", file=sys.stderr)
        return 2
    try:
        app = create_proxy_app(config)
    except (OSError, ValueError) as exc:  # a price table that cannot be read, a record dir that cannot be made
        print(f"mockserver proxy: {exc}", file=sys.stderr)
        return 2
    recording = f"recording to {config.record}" + (" (with media)" if config.record_media else "")
    print(
        f"mockserver proxy: http://{config.host}:{config.port} → {config.upstream} "
        f"(max paid tasks {config.max_paid_tasks}, strict {'on' if config.strict else 'off'}, "
        f"{recording if config.record else 'not recording'}; divergences at /__mock__/divergences)",
        flush=True,
    )
    uvicorn.run(
        app,
        host=config.host,
        port=config.port,
        log_level=config.log_level,
        access_log=config.log_level in ("info", "debug", "trace"),
        server_header=False,
        date_header=False,
    )
    return 0


def run_calibrate(directory: str, out: str) -> int:
    from .calibrate import calibrate, render

    try:
        values, notes = calibrate(directory)
    except ValueError as exc:
        print(f"mockserver calibrate: {exc}", file=sys.stderr)
        return 1
    text = render(values, notes, directory)
    if out == "-":
        sys.stdout.write(text)
    else:
        Path(out).write_text(text, encoding="utf-8")
        sys.stderr.write(text if text.endswith("\n") else text + "\n")
        print(f"mockserver calibrate: wrote {out}", file=sys.stderr)  # a line of its own, last
    return 0
