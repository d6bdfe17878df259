"""The control plane under ``/__mock__/`` and the Python object that drives it."""

from .client import ClockControl, ControlError, FaultControl, JournalControl, LedgerControl, MockControl
from .routes import control_app

__all__ = [
    "ClockControl",
    "ControlError",
    "FaultControl",
    "JournalControl",
    "LedgerControl",
    "MockControl",
    "control_app",
]
