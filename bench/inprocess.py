"""Where a request's time goes, without a socket: microseconds per submission and per poll.

    python -m bench.inprocess [--requests 10000] [--rounds 5]

Three layers are timed in one process, each the best of ``--rounds`` rounds after one
round of warm-up, on the memory store:

- the bare Starlette app of ``make bench`` (``bench/bare.py``), called as an ASGI app;
- the fake's ASGI app (edge, provider routes, service, store, journal), called the same way;
- the fake's service alone (``Fake.submit``, ``Fake.poll``): the rules, the record, the store.

The app is given a ``receive`` that holds the body already, as uvicorn's does, so the edge
takes the path it takes under uvicorn. What uvicorn and httptools cost per request (parsing,
the socket, the event loop) is in ``make bench``'s figures and not here: the difference
between a layer and the one inside it is that layer's own cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.bare import app as bare_app
from bench.run import BODY as WIRE_BODY
from mockserver import Settings
from mockserver.core.accounts import account_id
from mockserver.service import Fake
from mockserver.web.app import create_app
from mockserver.web.provider import VIDEO_PATH as VIDEO

BODY = WIRE_BODY.encode()  # the submission make bench sends
HEADERS = [
    (b"host", b"127.0.0.1:8000"),
    (b"authorization", b"Bearer bench"),
    (b"content-type", b"application/json"),
]


class Request:
    """One request's ``receive`` (its body in hand, as uvicorn's cycle has it) and ``send``."""

    def __init__(self, body: bytes) -> None:
        self.message = {"type": "http.request", "body": body, "more_body": False}
        self.message_event = asyncio.Event()
        self.message_event.set()
        self.answer = b""

    async def receive(self) -> dict[str, Any]:
        return self.message

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            self.answer += message.get("body", b"")


def scope(method: str, path: str, body: bytes) -> dict[str, Any]:
    headers = [*HEADERS, (b"content-length", b"%d" % len(body))] if body else list(HEADERS)
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def call(app: Any, method: str, path: str, body: bytes = b"") -> bytes:
    request = Request(body)
    await app(scope(method, path, body), request.receive, request.send)
    return request.answer


async def best(label: str, one: Callable[[], Awaitable[Any]], requests: int, rounds: int) -> float:
    """Microseconds per call, the best round of ``rounds`` after one round of warm-up."""
    for _ in range(requests):
        await one()
    fastest = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(requests):
            await one()
        fastest = min(fastest, time.perf_counter() - started)
    us = fastest / requests * 1e6
    print(f"  {label:<44} {us:6.1f} µs", flush=True)
    return us


async def run(requests: int, rounds: int) -> dict[str, float]:
    app = create_app(Settings(task_seconds=0))
    fake = Fake.open(Settings(task_seconds=0))
    account = account_id("bench")
    body = json.loads(BODY)
    task_id = json.loads(await call(app, "POST", VIDEO, BODY))["data"][0]["task_id"]
    served = (await fake.submit("video", account, dict(body))).task_id
    figures = {}
    print(f"per request, best of {rounds} rounds of {requests:,} (memory store):")
    for kind in ("submit", "poll"):
        if kind == "submit":
            layers: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
                ("bare Starlette app", lambda: call(bare_app, "POST", VIDEO, BODY)),
                ("the fake's app", lambda: call(app, "POST", VIDEO, BODY)),
                ("the fake's service (Fake.submit)", lambda: fake.submit("video", account, dict(body))),
            ]
        else:
            layers = [
                ("bare Starlette app", lambda: call(bare_app, "GET", "/v1/tasks/" + task_id)),
                ("the fake's app", lambda: call(app, "GET", "/v1/tasks/" + task_id)),
                ("the fake's service (Fake.poll)", lambda: fake.poll(account, served)),
            ]
        for label, one in layers:
            figures[f"{kind}: {label}"] = await best(f"{kind}: {label}", one, requests, rounds)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(run(args.requests, args.rounds))


if __name__ == "__main__":
    main()
