"""``mockserver serve …``: run the fake under uvicorn."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from .core.hosts import is_loopback
from .proxy import cli as proxy_cli
from .settings import Settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mockserver",
        description="A local, faithful fake of the APIMart Midjourney video API.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the fake API over HTTP")
    Settings.add_arguments(serve)
    proxy_cli.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from apimart_mockserver import clash

    problem = clash()  # another distribution's 'mockserver' package in this environment
    if problem is not None:
        print(problem, file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    if args.command in proxy_cli.COMMANDS:
        return proxy_cli.run(args)
    try:
        settings = Settings.from_args(args)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        print(f"mockserver: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return serve(settings)
    return 2  # pragma: no cover - argparse requires a command


def http_protocol(settings: Settings) -> dict[str, Any]:
    """uvicorn's ``http=`` and its head limits: with httptools (``uvicorn[standard]``), the protocol of
    ``mockserver.protocol`` (head size and head timeout); with h11, its event size limit only."""
    try:
        import httptools  # noqa: F401
    except ImportError:  # pragma: no cover - uvicorn[standard] installs it
        return {"http": "h11", "h11_max_incomplete_event_size": settings.max_header_bytes}
    return {"http": "mockserver.protocol:BoundedHttpToolsProtocol"}


def any_free_port(host: str) -> int:
    """A port of ``host`` that is free now (the server binds it a moment later)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def check_address(host: str, port: int) -> None:
    """Bind the address once, as the server will: OSError (in use, not ours, unknown host) now."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


def check_store(fake: Any) -> None:
    """The store answers (``Fake.health``, when the service has it): a Redis nobody listens on
    is found now, not at the first request."""
    import asyncio
    import inspect

    check = getattr(fake, "health", None)
    if not callable(check):
        return
    result = check()
    if inspect.isawaitable(result):
        result = asyncio.run(_awaited(result))
    if isinstance(result, dict) and result.get("status", "ok") != "ok":
        raise ValueError(f"the state store is not usable: {result}")


async def _awaited(result: Any) -> Any:
    return await result


def serve(settings: Settings) -> int:
    """Build everything the server needs, check the address, and only then announce and serve:
    a setting that cannot be used (a price, a state URL, a busy port) stops it with one line."""

    from .web.app import create_app

    if settings.port == 0:  # any free port, chosen now: the start-up line and the result URLs name it
        settings = settings.replace(port=any_free_port(settings.host))
    # Worker processes rebuild the settings from the environment.
    os.environ.update(settings.to_env())
    try:
        app = create_app(settings, listening=True)  # the spec, the store, the price table: what a worker builds
        check_store(app.state.fake)
        check_address(settings.host, settings.port)
    except (ValueError, OSError) as exc:
        print(f"mockserver: cannot serve: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a store that cannot be opened (sqlite3.Error, redis.ConnectionError, …)
        print(f"mockserver: cannot serve: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    announce(settings, app.state.fake.replay)
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "workers": settings.workers,
        "access_log": settings.log_level in ("info", "debug", "trace"),
        **http_protocol(settings),
    }
    if settings.workers > 1:
        del app  # each worker builds its own from the environment
        return run(settings, None, options)
    return run(settings, app, options)


def announce(settings: Settings, replayed: Any) -> None:
    """The start-up lines: a warning for an open control plane beyond loopback, the replay, the address."""
    if not is_loopback(settings.host) and settings.control and not settings.control_token:
        print(
            f"mockserver: WARNING: listening on {settings.host}, beyond loopback, with the control plane open: "
            "anyone who can reach this port can reset state, move the clock and read the journal. "
            "Set --control-token TOKEN (MOCKSERVER_CONTROL_TOKEN) or --no-control.",
            file=sys.stderr,
            flush=True,
        )
    if replayed is not None:
        print(f"mockserver: replaying {len(replayed)} recorded submission(s) from {settings.replay}", flush=True)
    public = settings.public_url or f"http://{settings.host}:{settings.port}"
    print(
        f"mockserver: serving on http://{settings.host}:{settings.port} "
        f"(task_seconds={settings.task_seconds:g}, batch_size_policy={settings.batch_size_policy}, "
        f"task_dialect={settings.task_dialect}, state={settings.state}, workers={settings.workers}, "
        f"results at {public}/media/…, "
        f"control plane {control_summary(settings)})",
        flush=True,
    )


def run(settings: Settings, app: Any, options: dict[str, Any]) -> int:
    """Serve ``app`` until stopped, or ``--workers`` processes that each build their app from the
    environment (``app`` is None then)."""
    import gc

    import uvicorn

    if settings.workers > 1:
        from .workers import BalancedWorkers, balanced

        if not balanced():
            uvicorn.run("mockserver.web.app:app_from_env", factory=True, **options)
            return 0
        config = uvicorn.Config("mockserver.web.app:app_from_env", factory=True, **options)
        try:
            BalancedWorkers(config).run()  # uvicorn's supervisor, a listening socket per worker
        except KeyboardInterrupt:
            pass
        except OSError as exc:  # the address was taken between the check and the first worker's socket
            print(f"mockserver: cannot serve: {exc}", file=sys.stderr)
            return 2
    else:
        gc.collect()
        gc.freeze()  # as app_from_env does: what start-up made lives as long as the process
        uvicorn.run(app, **options)
    return 0


def control_summary(settings: Settings) -> str:
    if not settings.control:
        return "off"
    return "at /__mock__/ (token required)" if settings.control_token else "at /__mock__/"
