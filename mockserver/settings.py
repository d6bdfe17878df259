"""Every knob of the fake in one frozen dataclass.

Each field is a command-line flag (``--task-seconds``) and an environment
variable (``MOCKSERVER_TASK_SECONDS``); the flag wins over the variable, the
variable over the default. The documentation's open points are settings here,
each with the default the README explains.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

MiB = 1024 * 1024
ENV_PREFIX = "MOCKSERVER_"


def _opt(default: Any, help: str, choices: Sequence[str] | None = None) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class Settings:
    host: str = _opt("127.0.0.1", "address to listen on")
    port: int = _opt(8000, "port to listen on")
    task_seconds: float = _opt(
        8.0, "seconds a task takes from submission to its final state; 0 = final on the first poll"
    )
    batch_size_policy: str = _opt(
        "strict",
        "batch_size other than 1/2/4: 'strict' refuses it with a 400, 'coerce' treats it as 1 (the doc says both)",
        ("strict", "coerce"),
    )
    task_dialect: str = _opt(
        "mj",
        "body of GET /v1/tasks/{id}: 'mj' (the video page's shape) or 'unified' (the tasks page's envelope)",
        ("mj", "unified"),
    )
    unified_url_shape: str = _opt(
        "list",
        "in the unified dialect, result.*[].url as a 'list' or a 'string' (the tasks page shows both)",
        ("list", "string"),
    )
    public_url: str | None = _opt(None, "base URL for result links (default: the request's own scheme and host)")
    max_body_bytes: int = _opt(40 * MiB, "largest request body accepted; larger ones get 413 before being read")
    max_frame_bytes: int = _opt(
        12 * MiB, "largest start or end frame (data: URLs and this server's uploads are measured)"
    )
    task_retention_seconds: float = _opt(
        3 * 86400.0, "how long a task can be polled after submission; then 404 (the provider keeps 3 days)"
    )
    media_ttl_seconds: float = _opt(
        86400.0, "how long result files stay downloadable after the task ends; then 410 (expires_at)"
    )
    finish_after_polls: int | None = _opt(
        None, "poll-count mode: a task is final on its N-th poll, whatever the time (as moto's state manager)"
    )
    rate_limit_per_minute: int = _opt(0, "requests per minute per account before 429 rate_limit_error (0 = no limit)")
    default_balance: float | None = _opt(
        None, "each account's credit balance; a submission that would overdraw it gets 402 (default: unlimited)"
    )
    price_table: str | None = _opt(None, "YAML/JSON file of unit prices per price key, over the packaged defaults")
    prices: str | None = _opt(None, "unit price overrides: KEY=VALUE,KEY=VALUE (e.g. midjourney@video=0.2)")
    journal_size: int = _opt(10_000, "requests kept in the journal (a ring: the oldest fall out)")
    seed: int = _opt(0, "seed of the random draws of faults (probabilities, latency distributions)")
    state: str = _opt(
        "memory://",
        "where state is kept: memory://, sqlite:///FILE (survives restarts; workers) or redis://HOST:PORT/DB",
    )
    workers: int = _opt(1, "worker processes (needs a shared --state: sqlite:/// or redis://)")
    control: bool = _opt(True, "serve the control plane under /__mock__/ (--no-control switches it off)")
    log_level: str = _opt("warning", "uvicorn log level", ("critical", "error", "warning", "info", "debug", "trace"))

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _convert(f, raw)
        return cls(**values).validated()

    def to_env(self) -> dict[str, str]:
        """The environment that reproduces these settings (for worker processes)."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            out[ENV_PREFIX + f.name.upper()] = ("1" if value else "0") if isinstance(value, bool) else str(value)
        return out

    def validated(self) -> Settings:
        for f in fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ValueError(f"{f.name} must be one of {', '.join(choices)} (got {getattr(self, f.name)!r})")
        if self.task_seconds < 0:
            raise ValueError("task_seconds must be >= 0")
        if self.max_body_bytes <= 0 or self.max_frame_bytes <= 0 or self.journal_size <= 0:
            raise ValueError("size limits must be positive")
        if self.finish_after_polls is not None and self.finish_after_polls < 1:
            raise ValueError("finish_after_polls must be >= 1")
        if self.rate_limit_per_minute < 0:
            raise ValueError("rate_limit_per_minute must be >= 0")
        if self.workers < 1:
            raise ValueError("workers must be >= 1")
        if self.workers > 1 and self.state.startswith("memory"):
            raise ValueError("several workers cannot share memory:// state: use --state sqlite:///FILE or redis://…")
        return self

    # -- command line ---------------------------------------------------------------

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        for f in fields(cls):
            flag = "--" + f.name.replace("_", "-")
            env = ENV_PREFIX + f.name.upper()
            help_text = f"{f.metadata['help']} [env {env}; default {f.default}]"
            if f.type in (bool, "bool"):
                parser.add_argument(
                    flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text
                )
            else:
                parser.add_argument(
                    flag,
                    dest=f.name,
                    default=None,
                    metavar=f.name.split("_")[-1].upper(),
                    choices=f.metadata.get("choices"),
                    type=_converter(f),
                    help=help_text,
                )

    @classmethod
    def from_args(cls, args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Settings:
        base = cls.from_env(environ)
        given = {f.name: getattr(args, f.name) for f in fields(cls) if getattr(args, f.name, None) is not None}
        return base.replace(**given).validated()


def _converter(f: dataclasses.Field[Any]) -> Callable[[str], Any]:
    def convert(raw: str) -> Any:
        return _convert(f, raw)

    return convert


def _convert(f: dataclasses.Field[Any], raw: str) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    kind = kind.removesuffix(" | None")
    try:
        if kind == "bool":
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{f.name}: cannot read {raw!r} as {kind}") from None
    return raw
