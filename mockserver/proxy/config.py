"""The proxy's knobs: ``mockserver proxy --upstream URL --max-paid-tasks N --record DIR …``."""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlsplit

DEFAULT_UPSTREAM = "https://api.apimart.ai"
MiB = 1024 * 1024
DEFAULT_MAX_ANSWER_BYTES = 16 * MiB  # an API answer (JSON), decoded, relayed at most
DEFAULT_MAX_MEDIA_BYTES = 2048 * MiB  # a result file kept by --record-media at most
_UNITS = {"": 1, "k": 1024, "kib": 1024, "m": MiB, "mib": MiB, "g": 1024 * MiB, "gib": 1024 * MiB}


def byte_count(text: str) -> int:
    """A size given on the command line: ``16777216``, ``16MiB``, ``512k``, ``2G`` (powers of 1024)."""
    match = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size in bytes (e.g. 16777216, 16MiB, 512k): {text!r}")
    return int(match.group(1)) * _UNITS[unit]


@dataclass(frozen=True)
class ProxyConfig:
    upstream: str = DEFAULT_UPSTREAM
    host: str = "127.0.0.1"
    port: int = 8000
    strict: bool = False
    max_paid_tasks: int = 0
    record: str | None = None
    record_media: bool = False
    price_table: str | None = None
    prices: str | None = None
    usd_per_credit: float = 0.1
    timeout: float = 120.0
    max_connections: int = 100
    max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES
    max_media_bytes: int = DEFAULT_MAX_MEDIA_BYTES
    log_level: str = "warning"

    def replace(self, **changes: Any) -> ProxyConfig:
        return dataclasses.replace(self, **changes)

    def validated(self) -> ProxyConfig:
        parts = urlsplit(self.upstream)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"--upstream must be an http(s) URL (got {self.upstream!r})")
        if parts.query or parts.fragment:
            raise ValueError("--upstream takes a base URL without a query or fragment")
        if self.max_paid_tasks < 0:
            raise ValueError("--max-paid-tasks must be >= 0")
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ValueError("--timeout must be a positive number of seconds")
        if not (math.isfinite(self.usd_per_credit) and self.usd_per_credit >= 0):
            raise ValueError("--usd-per-credit must be >= 0")
        if self.max_connections < 1:
            raise ValueError("--max-connections must be >= 1")
        if self.max_answer_bytes < 1:
            raise ValueError("--max-answer-bytes must be >= 1")
        if self.max_media_bytes < 1:
            raise ValueError("--max-media-bytes must be >= 1")
        if self.record_media and not self.record:
            raise ValueError("--record-media needs --record DIR")
        return self

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        add = parser.add_argument
        add("--upstream", default=DEFAULT_UPSTREAM, metavar="URL", help=f"the API to forward to [{DEFAULT_UPSTREAM}]")
        add("--host", default="127.0.0.1", help="address to listen on [127.0.0.1]")
        add("--port", type=int, default=8000, help="port to listen on [8000]")
        add(
            "--strict",
            action="store_true",
            help="replace a divergent answer by 502 bad_gateway naming the rule (default: answers pass unchanged)",
        )
        add(
            "--max-paid-tasks",
            type=int,
            default=0,
            metavar="N",
            help="paid submissions forwarded at most (counted before forwarding); more get 402 locally [0]",
        )
        add("--record", default=None, metavar="DIR", help="write every task and refusal as JSON files under DIR")
        add("--record-media", action="store_true", help="with --record: also keep the result files themselves")
        add("--price-table", default=None, metavar="FILE", help="unit prices per price key (YAML/JSON)")
        add("--prices", default=None, metavar="K=V,…", help="unit price overrides, e.g. midjourney@video=2")
        add("--usd-per-credit", type=float, default=0.1, metavar="USD", help="US dollars per credit [0.1]")
        add("--timeout", type=float, default=120.0, metavar="S", help="seconds to wait for the upstream [120]")
        add("--max-connections", type=int, default=100, metavar="N", help="connections to the upstream at most [100]")
        add(
            "--max-answer-bytes",
            type=byte_count,
            default=DEFAULT_MAX_ANSWER_BYTES,
            metavar="SIZE",
            help="an API answer (decoded) relayed at most; a longer one is a 502 bad_gateway [16MiB]",
        )
        add(
            "--max-media-bytes",
            type=byte_count,
            default=DEFAULT_MAX_MEDIA_BYTES,
            metavar="SIZE",
            help="with --record-media: a result file kept at most; a longer one is skipped [2GiB]",
        )
        add(
            "--log-level",
            default="warning",
            choices=("critical", "error", "warning", "info", "debug", "trace"),
            help="uvicorn log level [warning]",
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ProxyConfig:
        values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
        return cls(**values).validated()
