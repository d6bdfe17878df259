"""The cost of one upload with 0, 1 000, 5 000 and 10 000 uploads held by the account, in process.

python -m bench.uploads      → one line per store: ms per upload at 0 held, then each level's ratio to it

The quotas read running totals (``store.base``), never the uploads held, so every ratio should stay
near 1. (Before the totals, each upload summed every held one: here 10 000 held cost 30-38× 0 held.)
The uploads held are stored straight into the store (filling through HTTP would time the filling);
the timed uploads go through the app (``create_app``) over the in-process transport. Each level is
warmed up first, then timed in interleaved rounds (a busy machine slows all alike), each level's median
upload shown.
A figure, not a test (tests/store/test_upload_totals.py checks deterministically that an upload's store
calls and the records they read do not grow with the uploads held).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import struct
import tempfile
import time
import zlib
from pathlib import Path

import httpx

from mockserver import Settings, VirtualClock, create_app
from mockserver.core.records import UploadRecord
from mockserver.store import MemoryStore, Store
from mockserver.store.sqlite import SQLiteStore
from mockserver.testing.transport import SyncASGITransport

LEVELS = (0, 1_000, 5_000, 10_000)
UPLOAD = "/v1/uploads/images"


def png(width: int = 8, height: int = 8) -> bytes:
    """A small valid PNG of grey pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


PNG = png()


class Level:
    """One app whose account holds ``held`` uploads (and the few it was timed with)."""

    def __init__(self, kind: str, folder: Path, held: int) -> None:
        store: Store = MemoryStore() if kind == "memory" else SQLiteStore(folder / f"uploads-{held}.db")
        self.store = store
        self.clock = VirtualClock()
        app = create_app(Settings(), clock=self.clock, store=store)
        self.client = httpx.Client(
            transport=SyncASGITransport(app), base_url="http://testserver", headers={"Authorization": "Bearer bench"}
        )
        self.upload()  # one through the app: whose account the token is
        asyncio.run(self._hold(store, held - 1))

    async def _hold(self, store: Store, count: int) -> None:
        """``count`` more uploads of the same account, put straight into the store."""
        account = (await store.upload_records())[0].account
        now = self.clock.now()
        for n in range(count):
            await store.put_upload(UploadRecord(f"upl_held{n:06d}", account, "a.png", "image/png", len(PNG), now, PNG))

    def upload(self) -> None:
        response = self.client.post(UPLOAD, files={"file": ("a.png", PNG, "image/png")})
        assert response.status_code == 200, response.text

    def timed(self, count: int) -> list[float]:
        """The seconds each of ``count`` uploads took."""
        took = []
        for _ in range(count):
            started = time.perf_counter()
            self.upload()
            took.append(time.perf_counter() - started)
        return took

    def close(self) -> None:
        self.client.close()
        close = getattr(self.store, "close", None)
        if close is not None:
            close()


def measure(kind: str, folder: Path, rounds: int, per_round: int, warmup: int) -> dict[int, float]:
    """The median seconds per upload at each level (interleaved rounds, after a warm-up; the median,
    not the mean: SQLite's WAL checkpoints now and then make one upload of a round slow)."""
    levels = {held: Level(kind, folder, held) for held in LEVELS}
    try:
        for level in levels.values():
            level.timed(warmup)
        took: dict[int, list[float]] = {held: [] for held in LEVELS}
        for _ in range(rounds):
            for held, level in levels.items():
                took[held] += level.timed(per_round)
        return {held: statistics.median(times) for held, times in took.items()}
    finally:
        for level in levels.values():
            level.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--per-round", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=30)
    args = parser.parse_args()
    for kind in ("memory", "sqlite"):
        with tempfile.TemporaryDirectory() as folder:
            best = measure(kind, Path(folder), args.rounds, args.per_round, args.warmup)
        base = best[0]
        ratios = "   ".join(f"{held:>6,} held {best[held] / base:5.2f}×" for held in LEVELS[1:])
        print(f"{kind:7s} 0 held {base * 1000:6.2f} ms/upload   {ratios}", flush=True)


if __name__ == "__main__":
    main()
