"""Resident memory of the memory store after N tasks, built by the app's own code path.

python -m bench.memory 100000     → prints "<MiB of growth> <bytes per task>"
"""

from __future__ import annotations

import gc
import sys

from mockserver import Settings, create_app, rules
from mockserver.http import account_id
from mockserver.provider import ProviderApi


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def main(count: int) -> None:
    app = create_app(Settings(task_seconds=8))
    ctx = app.state.ctx
    api = ProviderApi(ctx)
    body = {"prompt": "the cat slowly turns its head", "image_urls": ["https://example.com/cat.png"], "batch_size": 2}
    gc.collect()
    before = rss_bytes()
    for n in range(count):
        job = rules.video_job(
            body,
            policy=ctx.settings.batch_size_policy,
            allowed_batch_sizes=ctx.batch_sizes,
            defaults=ctx.video_defaults,
            parent=None,
            max_frame_bytes=ctx.settings.max_frame_bytes,
            measure_upload=lambda url: None,
        )
        ctx.store.put_task(api.video_record(account_id(f"token-{n % 50}"), None, job))  # as each request does
    gc.collect()
    grown = rss_bytes() - before
    print(f"{grown / 2**20:.1f} {grown / count:.0f}")


if __name__ == "__main__":
    main(int(sys.argv[1]))
