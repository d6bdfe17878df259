"""Where records are kept: one small interface, several implementations, chosen by URL."""

from .base import Store
from .memory import MemoryStore

__all__ = ["MemoryStore", "Store", "open_store"]


def open_store(url: str = "memory://", journal_size: int = 10_000) -> Store:
    """``memory://`` (one process), ``sqlite:///relative.db`` or ``sqlite:////absolute.db`` (one host,
    several workers; the SQLAlchemy convention), ``redis://host:port/db`` (several hosts)."""
    if url in ("memory://", "memory", ""):
        return MemoryStore(journal_size)
    if url.startswith("sqlite:///"):
        from .sqlite import SQLiteStore

        return SQLiteStore(url.removeprefix("sqlite:///") or ":memory:", journal_size)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from .redis import RedisStore

        return RedisStore(url, journal_size)
    raise ValueError(f"unsupported state store {url!r}: use memory://, sqlite:///FILE or redis://HOST:PORT/DB")
