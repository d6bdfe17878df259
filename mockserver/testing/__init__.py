"""What a client's test suite uses: the fake in-process or as a real server, and its control object.

``InProcessFake`` routes every httpx call for one base URL to the fake's ASGI
app, sync and async clients alike, without opening a socket. ``RunningServer``
is the fake under uvicorn on a free loopback port (``ServerProcess`` the bare
child process). Both expose the same ``MockControl``.
"""

from .control import (
    AccountControl,
    ClockControl,
    ControlError,
    FaultControl,
    JournalControl,
    LedgerControl,
    MockControl,
    ResponseControl,
)
from .fake import DEFAULT_BASE_URL, InProcessFake, NetworkBlocked, RunningServer, network_guard
from .process import ServerProcess, free_port

__all__ = [
    "DEFAULT_BASE_URL",
    "AccountControl",
    "ClockControl",
    "ControlError",
    "FaultControl",
    "InProcessFake",
    "JournalControl",
    "LedgerControl",
    "MockControl",
    "NetworkBlocked",
    "ResponseControl",
    "RunningServer",
    "ServerProcess",
    "free_port",
    "network_guard",
]
