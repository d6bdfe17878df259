"""Where a request's time goes on the wire: microseconds per request, split, for the bare app and the fake.

    python -m bench.wire [--seconds 6] [--scenario submit|poll]

Each app (``bench/bare.py``, and the fake's app on the memory store) is served by uvicorn on the
fake's HTTP protocol (``mockserver.protocol``), so that the two differ only in the app, and
takes wrk's load (1 thread, 32 connections, after a 2 s warm-up). The server times, around the
app (``time.perf_counter``):

- **app**: the app's own code (the ASGI call, less the time inside ``send``);
- **uvicorn send**: uvicorn's ``send`` building the status line and headers, less the write;
- **write**: ``transport.write``, the system call that hands the answer to the kernel (on
  loopback it runs the TCP path to the client, and wakes it);
- **outside the app**: the rest of 1 / throughput (the server is busy all the time under this
  load): reading and parsing the request, the task uvicorn starts for it, the event loop.

Beside them, the app's microseconds per request without a socket (``bench.inprocess``'s way: the
same request, called in a loop). The ratio of the two says how much slower the same code runs
among the server's other work than alone in a loop.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.run import PROTOCOL, Load, lua, running, seed_tasks, wrk
from mockserver.testing import free_port

Totals = dict[str, float]


def serve(which: str, port: int, out: Path) -> None:
    """The app under uvicorn with the timers around it; SIGUSR1 writes the totals to ``out`` and
    starts them again."""
    import uvicorn

    import mockserver.protocol as protocol

    if which == "bare":
        from bench.bare import app as inner
    else:
        from mockserver import Settings
        from mockserver.web.app import create_app

        inner = create_app(Settings(task_seconds=0))
    clock = time.perf_counter
    totals: Totals = {"requests": 0, "app": 0.0, "send": 0.0, "write": 0.0}

    class TimedTransport:
        def __init__(self, transport: Any) -> None:
            self.transport = transport

        def write(self, data: bytes) -> None:
            started = clock()
            self.transport.write(data)
            totals["write"] += clock() - started

        def __getattr__(self, name: str) -> Any:
            return getattr(self.transport, name)

    one_write = protocol.OneWrite.__init__

    def timed_one_write(self: protocol.OneWrite, transport: Any) -> None:
        one_write(self, TimedTransport(transport))  # type: ignore[arg-type]

    protocol.OneWrite.__init__ = timed_one_write  # type: ignore[method-assign]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await inner(scope, receive, send)
            return

        async def timed_send(message: Any) -> None:
            started = clock()
            await send(message)
            totals["send"] += clock() - started

        started = clock()
        await inner(scope, receive, timed_send)
        totals["app"] += clock() - started
        totals["requests"] += 1

    def report(*_: Any) -> None:
        out.write_text(json.dumps(totals))
        totals.update(requests=0, app=0.0, send=0.0, write=0.0)

    signal.signal(signal.SIGUSR1, report)
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, http=PROTOCOL)


def measure(which: str, scenario: str, load: Load) -> dict[str, float]:
    """µs per request, split, for one app under wrk's load."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "totals.json"
        command = [sys.executable, "-m", "bench.wire", "--serve", which, "--port", str(port), "--out", str(out)]
        with running(command, base + "/v1/tasks/x") as server:
            ids = seed_tasks(base, 50) if which == "fake" and scenario == "poll" else []
            script = lua(ids, 1.0 if scenario == "submit" else 0.0)
            wrk(base, script, load.warmup, load)
            collect(server.pid, out)  # the warm-up's totals, dropped
            figure = wrk(base, script, load.seconds, load)
            totals = collect(server.pid, out)
    n = totals["requests"]
    per = {k: totals[k] / n * 1e6 for k in ("app", "send", "write")}
    total = 1e6 / figure.rps
    return {
        "req/s": figure.rps,
        "total": total,
        "app": per["app"] - per["send"],
        "uvicorn send": per["send"] - per["write"],
        "write": per["write"],
        "outside the app": total - per["app"],
    }


def collect(pid: int, out: Path) -> Totals:
    """The server's totals since the last collection (it writes them to ``out`` on SIGUSR1)."""
    out.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if out.exists():
            try:
                found: Totals = json.loads(out.read_text())
                return found
            except ValueError:  # being written
                pass
        time.sleep(0.02)
    raise RuntimeError("the server did not report its timings")


def in_process(scenario: str) -> dict[str, float]:
    """µs per request of each app without a socket (``bench.inprocess``)."""
    from bench import inprocess

    figures = asyncio.run(inprocess.run(10_000, 5))
    return {"bare": figures[f"{scenario}: bare Starlette app"], "fake": figures[f"{scenario}: the fake's app"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--scenario", choices=["submit", "poll"], default="submit")
    parser.add_argument("--serve", choices=["bare", "fake"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.out)
        return 0
    load = Load(args.seconds, 2, 32)
    print(f"{args.scenario}: wrk, 1 thread, 32 connections, {load.seconds} s after a 2 s warm-up; "
          "both apps on the fake's HTTP protocol", flush=True)  # fmt: skip
    wire = {which: measure(which, args.scenario, load) for which in ("bare", "fake")}
    print("\nwithout a socket:", flush=True)
    alone = in_process(args.scenario)
    rows = ["total", "app", "uvicorn send", "write", "outside the app"]
    print(f"\nµs per {args.scenario} on the wire {'bare':>10} {'fake':>10} {'fake − bare':>12}")
    for row in rows:
        bare, fake = wire["bare"][row], wire["fake"][row]
        print(f"  {row:<26} {bare:>10.1f} {fake:>10.1f} {fake - bare:>12.1f}")
    print(f"  {'(req/s)':<26} {wire['bare']['req/s']:>10.0f} {wire['fake']['req/s']:>10.0f}")
    print("\nthe app's own code, on the wire against alone in a loop:")
    for which in ("bare", "fake"):
        on_wire = wire[which]["app"]
        print(
            f"  {which:<6} {on_wire:6.1f} µs on the wire, {alone[which]:6.1f} µs alone (× {on_wire / alone[which]:.2f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
