"""mockserver: a local, faithful fake of the APIMart Midjourney video API.

The public surface is what ``__all__`` lists; every other module is internal.
Names are imported on first use, so ``mockserver serve`` never loads httpx or
respx, and the pytest plugin costs almost nothing to load.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .core.clock import Clock, ShiftedClock, SystemClock, VirtualClock
    from .settings import Settings
    from .testing import ControlError, InProcessFake, MockControl, NetworkBlocked, RunningServer, ServerProcess
    from .web.app import create_app

__version__ = "0.2.0"
__distribution__ = "apimart-mockserver"  # read by apimart_mockserver.clash(): this package is ours
_WHERE = {
    "create_app": "mockserver.web.app",
    "Settings": "mockserver.settings",
    "Clock": "mockserver.core.clock",
    "ShiftedClock": "mockserver.core.clock",
    "SystemClock": "mockserver.core.clock",
    "VirtualClock": "mockserver.core.clock",
    "InProcessFake": "mockserver.testing",
    "RunningServer": "mockserver.testing",
    "ServerProcess": "mockserver.testing",
    "MockControl": "mockserver.testing",
    "ControlError": "mockserver.testing",
    "NetworkBlocked": "mockserver.testing",
}
__all__ = [
    "Clock",
    "ControlError",
    "InProcessFake",
    "MockControl",
    "NetworkBlocked",
    "RunningServer",
    "ServerProcess",
    "Settings",
    "ShiftedClock",
    "SystemClock",
    "VirtualClock",
    "create_app",
]


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'mockserver' has no attribute {name!r}")
    value = getattr(import_module(where), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
