"""Where records are kept: one small interface, several implementations, chosen by URL."""

from .base import AccountLimit, Overdraft, Spending, StateImage, Store, UploadRefused, UploadUsage
from .memory import MemoryStore

__all__ = [
    "AccountLimit",
    "MemoryStore",
    "Overdraft",
    "Spending",
    "StateImage",
    "Store",
    "UploadRefused",
    "UploadUsage",
    "open_store",
]


def open_store(
    url: str = "memory://", journal_size: int = 10_000, journal_max_bytes: int | None = None, *, timeout: float = 2.0
) -> Store:
    """``memory://`` (one process), ``sqlite:///relative.db`` or ``sqlite:////absolute.db`` (one host,
    several workers; the SQLAlchemy convention), ``redis://host:port/db`` (several hosts).

    The journal keeps ``journal_size`` entries; the memory store also drops its oldest entries to
    stay within ``journal_max_bytes``. SQLite and Redis keep entries by count only: their journal is
    bounded by ``journal_size`` × the edge's per-entry cap (``web.edge.ENTRY_MAX_BYTES``, 16 KiB).

    ``timeout`` bounds a call to SQLite (a write waiting for the lock) or Redis (a command, or a connect):
    past it the store raises ``StoreUnavailable`` (503)."""
    if url in ("memory://", "memory", ""):
        return MemoryStore(journal_size, journal_max_bytes)
    if url.startswith("sqlite:///"):
        from .sqlite import SQLiteStore

        return SQLiteStore(url.removeprefix("sqlite:///") or ":memory:", journal_size, timeout=timeout)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from .redis import RedisStore

        return RedisStore(url, journal_size, timeout=timeout)
    raise ValueError(f"unsupported state store {url!r}: use memory://, sqlite:///FILE or redis://HOST:PORT/DB")
