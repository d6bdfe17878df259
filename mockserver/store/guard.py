"""A store that cannot answer: its errors become ``StoreUnavailable`` (503), in bounded time.

Each store bounds a single call by its timeout (a Redis command or connect;
an SQLite write waiting for the lock held elsewhere). ``Guard`` turns the driver's connection,
timeout and operational errors into ``StoreUnavailable``. A failure that took
time (``slow`` seconds or more: a frozen Redis, a file locked elsewhere) also
makes it answer every call at once with the same error for ``retry_after``
seconds, instead of letting each one wait out the timeout again: a request that
makes several store calls (the clock, the fault rules, the task, the journal)
pays for one timeout at most, and the event loop is never held for long. A
failure that was quick (Redis refusing connections, a read-only or full file)
costs nothing to meet again, so the next call simply tries: reads that still
work go on working. Either way the server recovers by itself when the store
comes back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType

from ..core.errors import StoreUnavailable


class Guard:
    def __init__(
        self,
        name: str,
        errors: tuple[type[BaseException], ...],
        *,
        retry_after: float = 1.0,
        slow: float = 0.1,
        on_error: Callable[[BaseException], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.errors = errors
        self.retry_after = retry_after
        self.slow = slow
        self.on_error = on_error
        self.clock = clock
        self._lock = threading.Lock()
        self._calls = threading.local()  # per thread, the start of each guarded call (they nest)
        self._open_until = 0.0
        self._reason = ""

    @property
    def reason(self) -> str | None:
        """Why the store is answered without being asked (None while it is asked)."""
        with self._lock:
            return self._reason if self.clock() < self._open_until else None

    @property
    def has_opened(self) -> bool:
        """Whether a slow failure was ever met: until then ``check`` cannot raise, so a hot path may
        skip it (and its lock)."""
        return bool(self._open_until)

    def check(self) -> None:
        reason = self.reason
        if reason is not None:
            raise StoreUnavailable(reason)

    def failed(self, exc: BaseException, took: float) -> StoreUnavailable:
        """What to raise for ``exc``; after a slow failure, the calls of the next ``retry_after``
        seconds are answered without asking."""
        detail = str(exc).strip() or type(exc).__name__
        reason = f"{self.name}: {detail}"
        if took >= self.slow:
            with self._lock:
                self._reason = reason
                self._open_until = self.clock() + self.retry_after
        if self.on_error is not None:
            self.on_error(exc)
        return StoreUnavailable(reason)

    def __enter__(self) -> Guard:
        self.check()
        starts: list[float] = self._calls.__dict__.setdefault("starts", [])
        starts.append(self.clock())
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        started = self._calls.starts.pop()
        if exc is not None and isinstance(exc, self.errors):
            raise self.failed(exc, self.clock() - started) from exc
