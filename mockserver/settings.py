"""Every knob of the fake in one frozen dataclass.

Each field is a command-line flag (``--task-seconds``) and an environment
variable (``MOCKSERVER_TASK_SECONDS``); the flag wins over the variable, the
variable over the default. The documentation's open points are settings here,
each with the default the README explains.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

MiB = 1024 * 1024
ENV_PREFIX = "MOCKSERVER_"


def _opt(default: Any, help: str, choices: Sequence[str] | None = None) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices})


ACCOUNT_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")  # a --shared-accounts name: never a key's text


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
        "unified",
        "body of GET /v1/tasks/{id}: 'unified' (the envelope the provider's own clients read) or 'mj' "
        "(the video page's Midjourney-style body, always served at GET /v1/midjourney/{id})",
        ("unified", "mj"),
    )
    unified_url_shape: str = _opt(
        "list",
        "in the unified dialect, result.*[].url as a 'list' or a 'string' (the tasks page shows both)",
        ("list", "string"),
    )
    unified_video_items: str = _opt(
        "per-clip",
        "in the unified dialect, result.videos as one item per clip ('per-clip') or one item whose url lists "
        "every clip ('single')",
        ("per-clip", "single"),
    )
    public_url: str | None = _opt(None, "base URL for result links (default: the request's own scheme and host)")
    max_body_bytes: int = _opt(40 * MiB, "largest request body accepted; larger ones get 413 before being read")
    max_header_bytes: int = _opt(
        64 * 1024, "largest request line plus headers; a larger head gets 431 and the connection is closed"
    )
    header_timeout_seconds: float = _opt(
        10.0, "seconds a client has to send a request's line and headers; then the connection is closed (408)"
    )
    body_timeout_seconds: float = _opt(
        30.0, "seconds a client has to send a request's whole body once the headers are in; then 408 and close"
    )
    max_frame_bytes: int = _opt(
        12 * MiB, "largest start or end frame (data: URLs and this server's uploads are measured)"
    )
    task_retention_seconds: float = _opt(
        3 * 86400.0, "how long a task can be polled after submission; then 404 (the provider keeps 3 days)"
    )
    media_ttl_seconds: float = _opt(
        3 * 86400.0, "how long result files stay downloadable (expires_at; 72 h), counted as --media-clock says"
    )
    media_clock: str = _opt(
        "record",
        "when the media lifetime starts: 'record' when the task's record is dropped (the media outlive the "
        "404, as the tasks page says), 'end' when the task ends",
        ("record", "end"),
    )
    max_upload_bytes: int = _opt(
        20 * MiB,
        "largest image upload; larger ones get 413 (20 MiB: the uploads page's '20MB'; 20000000 reads it as decimal)",
    )
    upload_ttl_seconds: float = _opt(3 * 86400.0, "how long an upload URL serves its file; then 410 (72 h)")
    conflict_code: str = _opt(
        "status",
        "the code of a 409 for an Idempotency-Key: the HTTP 'status', as every other error body, or its "
        "'reason' (idempotency_key_reused, idempotency_in_progress), as the idempotency notes write it",
        ("status", "reason"),
    )
    data_url_frames: str = _opt(
        "accept",
        "a frame sent as a base64 data: URL: 'accept' it (the imagine page: 'URLs or base64') or 'refuse' it "
        "with a 400 (the uploads page: generation APIs no longer accept base64)",
        ("accept", "refuse"),
    )
    dead_uploads: str = _opt(
        "refuse",
        "a frame linking to an upload this server no longer serves (unknown, or past its 72 h): 'refuse' it "
        "with a 400, as the real API cannot fetch it, or 'accept' it unfetched",
        ("refuse", "accept"),
    )
    upload_quota_bytes: int = _opt(
        512 * MiB, "upload bytes one account may keep at a time (older uploads count until they expire)"
    )
    upload_total_bytes: int = _opt(2048 * MiB, "upload bytes the whole server keeps at a time")
    finish_after_polls: int | None = _opt(
        None, "poll-count mode: a task is final on its N-th poll, whatever the time (as moto's state manager)"
    )
    rate_limit_per_minute: int = _opt(0, "requests per minute per account before 429 rate_limit_error (0 = no limit)")
    default_balance: float | None = _opt(
        None, "each account's credit balance; a submission that would overdraw it gets 402 (default: unlimited)"
    )
    usd_per_credit: float = _opt(0.1, "US dollars per credit, for the ledger's and the spend report's USD figures")
    api_keys: str | None = _opt(
        None, "KEY[,KEY…]: only these API keys are accepted (each its own account); unset: any non-empty key"
    )
    shared_accounts: str | None = _opt(
        None,
        "NAME=KEY+KEY[,NAME=KEY…]: API keys that share one account (its tasks, uploads and balance); "
        "/v1/balance then answers what the key spent, /v1/user/balance the account's",
    )
    idempotency_conflicts: bool = _opt(
        True,
        "answer 409 idempotency_key_reused / idempotency_in_progress (documented for the provider's generation "
        "routes, unverified on the Midjourney ones); off: the first answer is replayed whatever the body",
    )
    price_table: str | None = _opt(None, "YAML/JSON file of unit prices per price key, over the packaged defaults")
    prices: str | None = _opt(None, "unit price overrides: KEY=VALUE,KEY=VALUE (e.g. midjourney@video=0.2)")
    replay: str | None = _opt(
        None,
        "directory of recordings (mockserver proxy --record DIR): a recorded submission replays its task's statuses, "
        "pace, outcome and clip count (scaled to --task-seconds when that is set); others follow the fake's rules",
    )
    journal_size: int = _opt(10_000, "requests kept in the journal (a ring: the oldest fall out)")
    journal_max_bytes: int = _opt(
        64 * MiB,
        "bytes the journal may hold (memory://: the oldest entries fall out; sqlite/redis: bounded by "
        "journal_size × the per-entry cap of 16 KiB)",
    )
    seed: int = _opt(0, "seed of the random draws of faults (probabilities, latency distributions)")
    state: str = _opt(
        "memory://",
        "where state is kept: memory://, sqlite:///FILE (survives restarts; workers) or redis://HOST:PORT/DB",
    )
    store_timeout_seconds: float = _opt(
        2.0,
        "longest wait for the state store (a Redis command; an SQLite write waiting for the lock); "
        "past it the request gets 503 server_error with Retry-After",
    )
    workers: int = _opt(1, "worker processes (needs a shared --state: sqlite:/// or redis://)")
    control: bool = _opt(True, "serve the control plane under /__mock__/ (--no-control switches it off)")
    control_token: str | None = _opt(
        None, "when set, every /__mock__/ request needs 'Authorization: Bearer TOKEN' (the dashboard page: #token=)"
    )
    balance_unit: str = _opt(
        "credits",
        "unit of GET /v1/balance and /v1/user/balance: 'credits' (the ledger's) or 'usd' (× usd_per_credit); "
        "the provider's pages say it depends on the system's configuration",
        ("credits", "usd"),
    )
    max_latency_ms: float = _opt(
        120_000.0, "longest wait a latency fault may add; a longer one (ms=, or a draw) is cut to it"
    )
    allowed_hosts: str = _opt(
        "",
        "Host names the control plane answers besides loopback ones, comma-separated ('*': any); "
        "checked only while the server listens on loopback",
    )
    log_level: str = _opt("warning", "uvicorn log level", ("critical", "error", "warning", "info", "debug", "trace"))

    def accepted_keys(self) -> frozenset[str] | None:
        """The API keys ``--api-keys`` accepts, or None (any non-empty key)."""
        if self.api_keys is None:
            return None
        return frozenset(k.strip() for k in self.api_keys.split(",") if k.strip()) | self.key_accounts().keys()

    def key_accounts(self) -> dict[str, str]:
        """Each key ``--shared-accounts`` names -> the name of the account it shares."""
        found: dict[str, str] = {}
        groups = [g for g in (self.shared_accounts or "").split(",") if g.strip()]
        for number, group in enumerate(groups, 1):
            name, sep, keys = group.partition("=")
            named = [k.strip() for k in keys.split("+") if k.strip()]
            if not sep or not ACCOUNT_NAME.fullmatch(name.strip()) or not named:  # never repeated: keys are secrets
                raise ValueError(
                    f"shared_accounts: account {number} is not NAME=KEY+KEY "
                    "(NAME: at most 64 letters, digits, '.', '_' or '-')"
                )
            for key in named:
                if found.setdefault(key, name.strip()) != name.strip():
                    raise ValueError(f"shared_accounts: a key of account {name.strip()!r} is named by another")
        return found

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, base: Mapping[str, Any] | None = None) -> Settings:
        """Settings from ``MOCKSERVER_*`` variables over ``base`` (a config file's values) over the defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = dict(base or {})
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _convert(f, raw)
        return cls(**values).validated()

    @classmethod
    def file_values(cls, path: str | os.PathLike[str]) -> dict[str, Any]:
        """A YAML (or JSON) mapping of setting names to values, as ``--config FILE`` and
        ``python -m contract --write-calibration`` write it; unknown names are refused. Only a
        regular file of at most 1 MiB is read, and YAML aliases are refused (a "billion laughs")."""
        import stat

        import yaml

        max_bytes = 1 << 20  # a config file is a few lines; bounded so a huge one cannot stall startup

        class NoAliases(yaml.SafeLoader):
            """A safe loader that refuses aliases: a few hundred bytes of them expand to gigabytes."""

            def compose_node(self, parent: Any, index: Any) -> Any:
                if self.check_event(yaml.AliasEvent):
                    raise ValueError(f"config {path}: YAML aliases (*name) are not allowed")
                return super().compose_node(parent, index)

        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
            with os.fdopen(fd, "rb") as handle:
                info = os.fstat(handle.fileno())
                if not stat.S_ISREG(info.st_mode):
                    raise ValueError(f"config {path}: not a regular file")
                raw = handle.read(max_bytes + 1)
            if len(raw) > max_bytes:
                raise ValueError(f"config {path}: larger than {max_bytes} bytes")
            data = yaml.load(raw.decode("utf-8"), Loader=NoAliases) or {}  # noqa: S506 - a safe loader
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ValueError(f"config {path}: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"config {path}: expected a mapping of setting names to values")
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in data.items():
            name = str(key).replace("-", "_")
            if name not in known:
                raise ValueError(f"config {path}: unknown setting {key!r} (known: {', '.join(sorted(known))})")
            values[name] = (
                None
                if value is None
                else _convert(known[name], str(value).lower() if isinstance(value, bool) else str(value))
            )
        return values

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
        for name in (
            "task_seconds",
            "task_retention_seconds",
            "media_ttl_seconds",
            "upload_ttl_seconds",
            "usd_per_credit",
        ):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0 (got {value!r})")
        if self.default_balance is not None and not (math.isfinite(self.default_balance) and self.default_balance >= 0):
            raise ValueError(f"default_balance must be a finite number >= 0 (got {self.default_balance!r})")
        if self.max_upload_bytes <= 0 or self.upload_quota_bytes <= 0 or self.upload_total_bytes <= 0:
            raise ValueError("upload limits must be positive")
        if self.api_keys is not None and not self.accepted_keys():
            raise ValueError("api_keys names no key (KEY[,KEY…])")
        if self.shared_accounts is not None and not self.key_accounts():
            raise ValueError("shared_accounts names no account (NAME=KEY+KEY[,NAME=KEY…])")
        if self.max_body_bytes <= 0 or self.max_frame_bytes <= 0 or self.journal_size <= 0:
            raise ValueError("size limits must be positive")
        if self.journal_max_bytes < 64 * 1024:
            raise ValueError(f"journal_max_bytes must be at least 65536 (got {self.journal_max_bytes})")
        if self.max_header_bytes < 1024:
            raise ValueError(f"max_header_bytes must be at least 1024 (got {self.max_header_bytes})")
        for name in ("header_timeout_seconds", "body_timeout_seconds"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0 (got {value!r})")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be from 0 to 65535 (got {self.port})")
        if self.public_url is not None and not self.public_url.startswith(("http://", "https://")):
            raise ValueError(f"public_url must start with http:// or https:// (got {self.public_url!r})")
        if self.control_token is not None and not self.control_token.strip():
            raise ValueError("control_token must not be blank")
        if self.price_table is not None or self.prices is not None:
            from .core.ledger import load_prices  # the table is read now, before anything is announced

            load_prices(self.price_table, self.prices)
        if self.finish_after_polls is not None and self.finish_after_polls < 1:
            raise ValueError("finish_after_polls must be >= 1")
        if self.rate_limit_per_minute < 0:
            raise ValueError("rate_limit_per_minute must be >= 0")
        if self.replay is not None and not os.path.isdir(self.replay):
            raise ValueError(f"replay must be a directory of recordings (got {self.replay!r})")
        if self.workers < 1:
            raise ValueError("workers must be >= 1")
        if not (0 <= self.max_latency_ms <= 3_600_000):
            raise ValueError(f"max_latency_ms must be >= 0 and <= 3600000 (got {self.max_latency_ms})")
        if not (0 < self.store_timeout_seconds <= 3600):
            raise ValueError(f"store_timeout_seconds must be > 0 and <= 3600 (got {self.store_timeout_seconds})")
        if self.workers > 1 and self.state.startswith("memory"):
            raise ValueError("several workers cannot share memory:// state: use --state sqlite:///FILE or redis://…")
        return self

    # -- command line ---------------------------------------------------------------

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--config",
            metavar="FILE",
            default=None,
            help="settings from a YAML file (setting names as keys, e.g. a contract calibration); "
            "variables and flags still win",
        )
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
        """Flags over ``MOCKSERVER_*`` variables over ``--config FILE`` over the defaults."""
        config = getattr(args, "config", None)
        base = cls.from_env(environ, base=cls.file_values(config) if config else None)
        given = {f.name: getattr(args, f.name) for f in fields(cls) if getattr(args, f.name, None) is not None}
        return base.replace(**given).validated()


def _converter(f: dataclasses.Field[Any]) -> Callable[[str], Any]:
    def convert(raw: str) -> Any:
        return _convert(f, raw)

    return convert


def _convert(f: dataclasses.Field[Any], raw: str) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    kind = kind.removesuffix(" | None")
    choices = f.metadata.get("choices")
    if choices and raw.strip().lower() in choices:
        return raw.strip().lower()  # enumerations are read case-insensitively (MOCKSERVER_LOG_LEVEL=INFO)
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
