"""Clocks. The core never reads the wall clock: it is handed one of these.

``now()`` is Unix time in seconds (float). ``SystemClock`` is the wall clock;
``ShiftedClock`` is the wall clock plus an offset that tests and the control
plane move (or freeze); ``VirtualClock`` only moves when told to.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

# The latest time a task id (a ULID: milliseconds in 48 bits) and a date can both express.
LATEST = 253_402_300_799.0  # 9999-12-31T23:59:59Z


def checked_step(now: float, seconds: float) -> float:
    """A move of ``seconds`` forward from ``now``: finite, not backwards, not past ``LATEST``."""
    if not math.isfinite(seconds):
        raise ValueError(f"a clock moves by a finite number of seconds, not {seconds!r}")
    if seconds < 0:
        raise ValueError("a clock only moves forward")
    if now + seconds > LATEST:
        raise ValueError(f"a clock cannot move past {LATEST:.0f} (9999-12-31T23:59:59Z)")
    return seconds


@runtime_checkable
class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass: real time on a real clock, virtual time on a virtual one."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class VirtualClock:
    """A clock that stands still until ``advance`` or ``set`` moves it."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self._start = self._now = float(start)

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        """No real waiting: the delay costs virtual time (a latency fault in-process)."""
        self.advance(seconds)

    def advance(self, seconds: float) -> float:
        self._now += checked_step(self._now, seconds)
        return self._now

    def set(self, when: float) -> float:
        return self.advance(when - self._now)

    def reset(self) -> float:
        """Back to where it started (a reset of the whole fake)."""
        self._now = self._start
        return self._now


class ClockState(Protocol):
    """Where a shifted clock keeps its offset, so that every worker reads the same time."""

    def clock_state(self) -> tuple[float, float | None]: ...

    def set_clock_state(self, offset: float, frozen_at: float | None) -> None: ...


class LocalClockState:
    def __init__(self) -> None:
        self._state: tuple[float, float | None] = (0.0, None)

    def clock_state(self) -> tuple[float, float | None]:
        return self._state

    def set_clock_state(self, offset: float, frozen_at: float | None) -> None:
        self._state = (offset, frozen_at)


class ShiftedClock:
    """Wall clock + offset; ``freeze()`` stops it at its current reading.

    This is the server's default clock: real time passes, and
    ``POST /__mock__/clock`` can still jump it forward or freeze it. Its state
    lives in ``state`` (``service.StoreClock``: the store), so worker processes
    share one clock. Moved from code running on an event loop, the move is
    written for the other workers by ``await Fake.save_clock()`` (the control
    routes do this); moved from plain code, at once.
    """

    def __init__(self, base: Clock | None = None, state: ClockState | None = None) -> None:
        self._base = base or SystemClock()
        self.state: ClockState = state or LocalClockState()

    def now(self) -> float:
        offset, frozen_at = self.state.clock_state()
        return frozen_at if frozen_at is not None else self._base.now() + offset

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    @property
    def frozen(self) -> bool:
        return self.state.clock_state()[1] is not None

    def advance(self, seconds: float) -> float:
        checked_step(self.now(), seconds)
        offset, frozen_at = self.state.clock_state()
        if frozen_at is not None:
            self.state.set_clock_state(offset, frozen_at + seconds)
        else:
            self.state.set_clock_state(offset + seconds, None)
        return self.now()

    def set(self, when: float) -> float:
        return self.advance(when - self.now())

    def reset(self) -> float:
        """Back to the wall clock, running (a reset of the whole fake)."""
        self.state.set_clock_state(0.0, None)
        return self.now()

    def freeze(self) -> float:
        offset, frozen_at = self.state.clock_state()
        if frozen_at is None:
            frozen_at = self._base.now() + offset
            self.state.set_clock_state(offset, frozen_at)
        return frozen_at

    def unfreeze(self) -> float:
        frozen_at = self.state.clock_state()[1]
        if frozen_at is not None:
            self.state.set_clock_state(frozen_at - self._base.now(), None)
        return self.now()


def loop_running() -> bool:
    """Whether this thread runs an event loop now (a sync call made from async code)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


# -- pauses (a latency fault's wait) ------------------------------------------------------------

# Set by the edge for each request: a wait that ends when the client hangs up (its ASGI receive,
# once the body is in). None in-process, where a pause costs virtual time only.
LEAVING: contextvars.ContextVar[Callable[[], Awaitable[Any]] | None] = contextvars.ContextVar(
    "mockserver_leaving", default=None
)
_PAUSED: set[asyncio.Future[None]] = set()


async def pause(clock: Clock, seconds: float) -> None:
    """``clock.sleep(seconds)``, cut short when the client hangs up (``LEAVING``) or the server shuts
    down (``wake_all``): an abandoned latency fault holds neither a connection's task nor a shutdown.
    Without ``LEAVING`` (in-process) it is the clock's own sleep."""
    leaving = LEAVING.get()
    if leaving is None:
        await clock.sleep(seconds)
        return
    woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    waits: set[asyncio.Future[Any]] = {sleeper, woken, asyncio.ensure_future(leaving())}
    _PAUSED.add(woken)
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        _PAUSED.discard(woken)
        for wait in waits:
            wait.cancel()
    if sleeper.done() and not sleeper.cancelled() and sleeper.exception() is not None:
        raise sleeper.exception()  # type: ignore[misc]


def wake_all() -> None:
    """Ends every pause in this process now (the server is shutting down). Safe from any thread."""
    for woken in list(_PAUSED):
        woken.get_loop().call_soon_threadsafe(_wake, woken)


def _wake(woken: asyncio.Future[None]) -> None:
    if not woken.done():
        woken.set_result(None)
