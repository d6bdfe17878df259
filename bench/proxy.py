"""Median latency ``mockserver proxy`` adds on loopback: the fake direct vs the fake through the proxy.

python -m bench.proxy [--requests N] [--warmup N] [--record]

Starts the fake (``--task-seconds 0``) and the proxy in front of it, each in its
own process on a free loopback port; warms both up; then sends the same
requests alternately to each (one keep-alive client per side, one request at a
time) and prints, for polls and for submissions, the median round trip direct
and through the proxy, the latency added and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

import httpx

from mockserver.proxy.process import ProxyProcess
from mockserver.testing import ServerProcess

AUTH = {"Authorization": "Bearer bench-proxy-key"}
VIDEO = "/v1/midjourney/generations/video"
BODY = {"prompt": "the cat slowly turns its head", "image_urls": ["https://example.com/cat.png"], "batch_size": 2}


def timed(call: Callable[[], httpx.Response]) -> float:
    started = time.perf_counter()
    answer = call()
    elapsed = time.perf_counter() - started
    if answer.status_code != 200:
        raise RuntimeError(f"{answer.request.method} {answer.request.url} answered {answer.status_code}: {answer.text}")
    return elapsed


def measure(
    direct: Callable[[], httpx.Response], through: Callable[[], httpx.Response], requests: int, warmup: int
) -> tuple[float, float]:
    for _ in range(warmup):
        timed(direct)
        timed(through)
    straight: list[float] = []
    proxied: list[float] = []
    for _ in range(requests):  # interleaved: both sides see the same machine load
        straight.append(timed(direct))
        proxied.append(timed(through))
    return statistics.median(straight), statistics.median(proxied)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="measured requests per kind and side [500]")
    parser.add_argument("--warmup", type=int, default=100, help="requests per kind and side before measuring [100]")
    parser.add_argument("--record", action="store_true", help="run the proxy with --record (to a temporary dir)")
    args = parser.parse_args(argv)
    budget = 2 * (args.requests + args.warmup) + 10
    with tempfile.TemporaryDirectory() as scratch, ServerProcess(["--task-seconds", "0"]) as upstream:
        proxy_args = ["--upstream", upstream.base_url, "--max-paid-tasks", str(budget)]
        if args.record:
            proxy_args += ["--record", scratch]
        with (
            ProxyProcess(proxy_args) as proxy,
            httpx.Client(base_url=upstream.base_url, headers=AUTH, timeout=30) as direct,
            httpx.Client(base_url=proxy.base_url, headers=AUTH, timeout=30) as through,
        ):
            task_id = direct.post(VIDEO, json=BODY).json()["data"][0]["task_id"]
            path = f"/v1/tasks/{task_id}"
            figures = {
                "poll": measure(lambda: direct.get(path), lambda: through.get(path), args.requests, args.warmup),
                "submit": measure(
                    lambda: direct.post(VIDEO, json=BODY),
                    lambda: through.post(VIDEO, json=BODY),
                    args.requests,
                    args.warmup,
                ),
            }
    mode = "recording" if args.record else "not recording"
    print(
        f"mockserver proxy on loopback ({mode}), median of {args.requests} requests each, after {args.warmup} warm-up"
    )
    print(f"{'request':<8} {'direct ms':>10} {'proxied ms':>11} {'added ms':>9} {'ratio':>6}")
    for kind, (straight, proxied) in figures.items():
        print(
            f"{kind:<8} {straight * 1000:>10.2f} {proxied * 1000:>11.2f} "
            f"{(proxied - straight) * 1000:>9.2f} {proxied / straight:>6.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
