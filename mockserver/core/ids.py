"""Ids: ULIDs (a 48-bit millisecond time, 80 random bits; 26 characters of Crockford's base32).

Within one millisecond each new id is the previous one plus one, as the ``ulid`` package's
default generator makes them, so ids sort in the order they were made. The text is made
ten bits at a time from a table of character pairs, and the time's ten characters once
per millisecond: a fifth of the package's cost, which built three objects per id.
"""

from __future__ import annotations

import os
import threading

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32
_PAIRS = [a + b for a in ALPHABET for b in ALPHABET]  # ten bits -> two characters
_RANDOM_BITS = 80
_MAX_RANDOM = (1 << _RANDOM_BITS) - 1
_MAX_MS = (1 << 48) - 1


def _time_text(ms: int) -> str:
    """48 bits of milliseconds as ten characters (50 bits, the first two zero)."""
    p = _PAIRS
    return p[ms >> 40] + p[(ms >> 30) & 1023] + p[(ms >> 20) & 1023] + p[(ms >> 10) & 1023] + p[ms & 1023]


def _random_text(r: int) -> str:
    """80 random bits as sixteen characters."""
    p = _PAIRS
    return (
        p[r >> 70] + p[(r >> 60) & 1023] + p[(r >> 50) & 1023] + p[(r >> 40) & 1023]
        + p[(r >> 30) & 1023] + p[(r >> 20) & 1023] + p[(r >> 10) & 1023] + p[r & 1023]
    )  # fmt: skip


def encode(value: int) -> str:
    """A 128-bit value as 26 characters of Crockford's base32 (ULID's text form)."""
    return _time_text(value >> _RANDOM_BITS) + _random_text(value & _MAX_RANDOM)


class UlidMaker:
    """Monotonic ULIDs from a time in seconds (the fake's clock, not the wall clock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ms = -1
        self._random = 0
        self._time = ""
        self._entropy = b""  # os.urandom read 16 ids' worth at a time (one system call, not one per millisecond)
        self._prefix = ""  # the last id but its last two characters: within a millisecond, mostly all that stays

    def __call__(self, seconds: float) -> str:
        ms = int(seconds * 1000)
        if not 0 <= ms <= _MAX_MS:
            ms = min(max(ms, 0), _MAX_MS)
        with self._lock:
            if ms == self._ms:
                r = self._random + 1
                if r <= _MAX_RANDOM:
                    self._random = r
                    low = r & 1023
                    if low:  # only the last ten bits changed
                        return self._prefix + _PAIRS[low]
                    self._prefix = self._time + _random_text(r)[:14]
                    return self._prefix + _PAIRS[0]
            if ms != self._ms:
                self._ms, self._time = ms, _time_text(ms)
            if not self._entropy:
                self._entropy = os.urandom(160)
            r = self._random = int.from_bytes(self._entropy[:10], "big")
            self._entropy = self._entropy[10:]
            text = self._time + _random_text(r)
            self._prefix = text[:24]
            return text
