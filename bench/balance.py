"""Submit throughput with a balance set: an account with 100 000 tasks against an empty one.

python -m bench.balance      → one line per store: submissions/s empty, with 100 000 tasks, the ratio

The balance check reads a running total, never the account's history, so the ratio should stay
near 1 (the target: within 10 %). A figure, not a test: timing on a shared machine is no pass/fail
(tests/store/test_conformance.py checks deterministically that a submission never reads the history).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from mockserver import Settings, VirtualClock
from mockserver.service import Fake
from tests.store.test_conformance import full_store, submit


def measure(
    kind: str, folder: Path, history: int = 100_000, rounds: int = 7, per_round: int = 150
) -> tuple[float, float]:
    fakes = {}
    for size in (0, history):
        store = full_store(kind, folder, size)
        asyncio.run(store.set_balance("acct_a", 1e12))
        fakes[size] = Fake.open(Settings(task_seconds=10.0), clock=VirtualClock(), store=store)
        submit(fakes[size], 20)  # warm up (the full store moves its due refunds once, here)
    best = {0: 0.0, history: 0.0}
    for _ in range(rounds):  # interleaved, best of each: a busy machine slows both alike
        for size, fake in fakes.items():
            started = time.perf_counter()
            submit(fake, per_round)
            best[size] = max(best[size], per_round / (time.perf_counter() - started))
    return best[0], best[history]


def main() -> None:
    for kind in ("memory", "sqlite"):
        with tempfile.TemporaryDirectory() as folder:
            empty, full = measure(kind, Path(folder))
        print(f"{kind:7s} empty {empty:8.0f}/s   100 000 tasks {full:8.0f}/s   ratio {full / empty:.2f}", flush=True)


if __name__ == "__main__":
    main()
