"""Where records are kept: one small interface, several implementations."""

from .base import Store
from .memory import MemoryStore

__all__ = ["MemoryStore", "Store", "open_store"]


def open_store(url: str = "memory://") -> Store:
    """A store from a URL: ``memory://`` (the default)."""
    if url in ("memory://", "memory", ""):
        return MemoryStore()
    raise ValueError(f"unsupported state store {url!r}: use memory://")
