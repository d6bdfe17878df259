"""``mockserver serve …``: run the fake under uvicorn."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .settings import Settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mockserver",
        description="A local, faithful fake of the APIMart Midjourney video API.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the fake API over HTTP")
    Settings.add_arguments(serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_args(args)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        print(f"mockserver: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return serve(settings)
    return 2  # pragma: no cover - argparse requires a command


def serve(settings: Settings) -> int:
    import uvicorn

    # Worker processes rebuild the settings from the environment.
    os.environ.update(settings.to_env())
    public = settings.public_url or f"http://{settings.host}:{settings.port}"
    print(
        f"mockserver: serving on http://{settings.host}:{settings.port} "
        f"(task_seconds={settings.task_seconds:g}, batch_size_policy={settings.batch_size_policy}, "
        f"task_dialect={settings.task_dialect}, state={settings.state}, workers={settings.workers}, "
        f"results at {public}/media/…, "
        f"control plane {'at /__mock__/' if settings.control else 'off'})",
        flush=True,
    )
    uvicorn.run(
        "mockserver.web.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        workers=settings.workers,
        access_log=settings.log_level in ("info", "debug", "trace"),
    )
    return 0
