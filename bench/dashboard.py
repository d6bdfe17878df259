"""How fast the dashboard draws its first page of tasks when the fake holds many.

Seeds ``--tasks`` tasks (10 000 by default) through the provider API with ``--task-seconds 0``,
opens /__mock__/ in headless Chromium (the system's, through Playwright) and reads what the
page measured with performance.now() around its first task list: the fetch of the first page,
the render (DOM built and laid out), and both together. Each figure is the median of
``--loads`` fresh page loads.

    python -m bench.dashboard [--tasks 10000] [--loads 5] [--base-url http://127.0.0.1:8000]

With ``--base-url`` the tasks are seeded into (and the page opened on) a server you started
yourself; without it a server is started on a free loopback port and stopped afterwards.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx

from tests.browser import browser, page, why_no_browser

VIDEO = "/v1/midjourney/generations/video"
BODY = {"prompt": "a cat", "image_urls": ["https://example.com/cat.png"], "batch_size": 2}


@contextmanager
def server(base_url: str | None) -> Iterator[str]:
    if base_url:
        yield base_url.rstrip("/")
        return
    from mockserver.testing import RunningServer

    with RunningServer(["--task-seconds", "0"]) as control:
        yield str(control.base_url).rstrip("/")


def seed(base_url: str, count: int, threads: int = 4) -> float:
    """Submit ``count`` video tasks over ``threads`` keep-alive connections; the seconds it took."""
    started = time.perf_counter()
    per_thread = [count // threads + (1 if i < count % threads else 0) for i in range(threads)]

    def run(n: int, worker: int) -> None:
        headers = {"Authorization": f"Bearer bench-{worker % 2}"}  # two accounts
        with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
            for _ in range(n):
                r = client.post(VIDEO, json=BODY)
                if r.status_code != 200:
                    raise RuntimeError(f"seeding refused: {r.status_code} {r.text[:200]}")

    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(run, n, i) for i, n in enumerate(per_thread)]:
            future.result()
    return time.perf_counter() - started


def first_render(base_url: str, loads: int) -> list[dict[str, Any]]:
    figures = []
    with browser() as instance:
        for _ in range(loads):
            with page(instance) as tab:
                tab.goto(f"{base_url}/__mock__/#tasks")
                tab.wait_for_function("() => window.dashboardTimings !== null", timeout=120_000)
                figures.append(tab.evaluate("window.dashboardTimings"))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks to seed (default 10000)")
    parser.add_argument("--loads", type=int, default=5, help="fresh page loads to take the median of")
    parser.add_argument("--base-url", help="an already running server (default: start one)")
    args = parser.parse_args(argv)
    reason = why_no_browser()
    if reason:
        print(f"bench.dashboard: {reason}", file=sys.stderr)
        return 2
    with server(args.base_url) as base_url:
        seconds = seed(base_url, args.tasks)
        total = len(httpx.get(f"{base_url}/__mock__/tasks", params={"limit": 1}, timeout=60).json()["tasks"])
        print(f"seeded {args.tasks} tasks in {seconds:.1f} s ({args.tasks / seconds:.0f} tasks/s)")
        figures = first_render(base_url, args.loads)
    median = {k: statistics.median(f[k] for f in figures) for k in ("fetch_ms", "render_ms", "first_page_ms")}
    paged = "server-side" if figures[0]["server_paged"] else f"client-side (the server answered {total} tasks)"
    print(f"first page of the task list: {figures[0]['rows']} rows of {figures[0]['total']}, paged {paged}")
    each = ", ".join(f"{f['first_page_ms']:.0f}" for f in figures)
    print(
        f"  fetch {median['fetch_ms']:.1f} ms + render {median['render_ms']:.1f} ms"
        f" = {median['first_page_ms']:.1f} ms (median of {len(figures)} loads; each: {each} ms)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
