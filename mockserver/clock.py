"""Clocks. The core never reads the wall clock: it is handed one of these.

``now()`` is Unix time in seconds (float). ``SystemClock`` is the wall clock;
``ShiftedClock`` is the wall clock plus an offset that tests and the control
plane move (or freeze); ``VirtualClock`` only moves when told to.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    def now(self) -> float: ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class VirtualClock:
    """A clock that stands still until ``advance`` or ``set`` moves it."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        self._now += seconds
        return self._now

    def set(self, when: float) -> float:
        if when < self._now:
            raise ValueError("a clock only moves forward")
        self._now = float(when)
        return self._now


class ShiftedClock:
    """Wall clock + offset; ``freeze()`` stops it at its current reading.

    This is the server's default clock: real time passes, and
    ``POST /__mock__/clock`` can still jump it forward or freeze it.
    """

    def __init__(self, base: Clock | None = None) -> None:
        self._base = base or SystemClock()
        self._offset = 0.0
        self._frozen_at: float | None = None

    def now(self) -> float:
        if self._frozen_at is not None:
            return self._frozen_at
        return self._base.now() + self._offset

    @property
    def frozen(self) -> bool:
        return self._frozen_at is not None

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        if self._frozen_at is not None:
            self._frozen_at += seconds
        else:
            self._offset += seconds
        return self.now()

    def set(self, when: float) -> float:
        current = self.now()
        if when < current:
            raise ValueError("a clock only moves forward")
        return self.advance(when - current)

    def freeze(self) -> float:
        self._frozen_at = self.now()
        return self._frozen_at

    def unfreeze(self) -> float:
        if self._frozen_at is not None:
            self._offset = self._frozen_at - self._base.now()
            self._frozen_at = None
        return self.now()
