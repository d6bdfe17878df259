"""Resident memory of the memory store after N tasks, made by the service's own submission path.

python -m bench.memory 100000     → prints "<MiB of growth> <bytes per task>"
"""

from __future__ import annotations

import asyncio
import gc
import sys

from mockserver import Settings
from mockserver.core.accounts import account_id
from mockserver.service import Fake


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


async def fill(fake: Fake, count: int) -> None:
    body = {"prompt": "the cat slowly turns its head", "image_urls": ["https://example.com/cat.png"], "batch_size": 2}
    accounts = [account_id(f"token-{n}") for n in range(50)]
    for n in range(count):
        await fake.submit("video", accounts[n % 50], body)  # as each request does


def main(count: int) -> None:
    fake = Fake.open(Settings(task_seconds=8))
    gc.collect()
    before = rss_bytes()
    asyncio.run(fill(fake, count))
    gc.collect()
    grown = rss_bytes() - before
    print(f"{grown / 2**20:.1f} {grown / count:.0f}")


if __name__ == "__main__":
    main(int(sys.argv[1]))
