"""Ids: monotonic ULIDs from the fake's clock, 26 characters of Crockford's base32.

The ``ulid`` package picks the bits (``LaxMonotonicPolicy``: within one millisecond each id is
the one before plus one, so ids sort in the order they were made) and writes the text. Its
``ULIDGenerator`` builds a ``ULID`` object and encodes all 26 characters for every id; within a
millisecond only the last ten bits change for 1 023 ids in 1 024, so the package's text of the
rest is kept and just the last two characters are looked up.
"""

from __future__ import annotations

import os
import threading

from ulid import LaxMonotonicPolicy, base32
from ulid.constants import MAX_TIMESTAMP, RANDOMNESS_LEN

_PAIRS = [a + b for a in base32.ENCODE for b in base32.ENCODE]  # ten bits as two characters


def _random(_ms: int) -> bytes:
    return os.urandom(RANDOMNESS_LEN)


class UlidMaker:
    """Monotonic ULIDs from a time in seconds (the fake's clock, not the wall clock); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        policy = LaxMonotonicPolicy()
        policy.prev_timestamp = -1  # so that the first id, even at time 0, has random bits (not 1)
        self._resolve = policy.resolve_randomness
        self._head = -1  # the last id but its last ten bits
        self._text = ""  # its first 24 characters

    def __call__(self, seconds: float) -> str:
        ms = min(max(int(seconds * 1000), 0), MAX_TIMESTAMP)
        with self._lock:
            value = ms << 80 | int.from_bytes(self._resolve(ms, _random))
            if value >> 10 != self._head:
                self._head, self._text = value >> 10, base32.encode(value.to_bytes(16))[:24]
            return self._text + _PAIRS[value & 1023]
