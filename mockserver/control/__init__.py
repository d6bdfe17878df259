"""The control plane under ``/__mock__/`` and the Python object that drives it.

The client side (``MockControl`` and friends) needs httpx, which the server
itself never does: it is imported on first use, keeping the server's start-up short.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .routes import control_app

if TYPE_CHECKING:
    from .client import ClockControl, ControlError, FaultControl, JournalControl, LedgerControl, MockControl

__all__ = [
    "ClockControl",
    "ControlError",
    "FaultControl",
    "JournalControl",
    "LedgerControl",
    "MockControl",
    "control_app",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
