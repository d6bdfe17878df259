"""What the fake's HTTP protocol's two tricks are worth: one write per answer and one keep-alive timer
per connection (``mockserver/protocol.py``), each measured by taking it away.

The memory fake is served on four protocols in turn, each round in another order: the fake's own
(both tricks), without one write per answer, without one timer per connection, and without either
(uvicorn's own paths, the head limits kept). Every figure is printed as a ratio against "neither" of
the same round; the medians over the rounds say whether a trick earns its code.

    python -m bench.protocol [--rounds 3] [--seconds 6] [--warmup 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from mockserver.protocol import BoundedHttpToolsProtocol
from mockserver.testing import free_port

from .run import Load, measure, running, seed_tasks


class NoOneWrite(BoundedHttpToolsProtocol):
    """The head and body of an answer written as uvicorn writes them: two writes."""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._one_write = None

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        HttpToolsProtocol._start_asgi_task(self, cycle, app)


class NoOneTimer(BoundedHttpToolsProtocol):
    """uvicorn's keep-alive timer, started and cancelled for every answer."""

    def _unset_keepalive_if_required(self) -> None:
        HttpToolsProtocol._unset_keepalive_if_required(self)

    def on_response_complete(self) -> None:
        if self._one_write is not None:
            self._one_write.flush()
        HttpToolsProtocol.on_response_complete(self)


class Neither(NoOneWrite, NoOneTimer):
    """uvicorn's own paths, with the head limits."""


VARIANTS = {"both": "mockserver.protocol:BoundedHttpToolsProtocol", "no one write": "bench.protocol:NoOneWrite",
            "no one timer": "bench.protocol:NoOneTimer", "neither": "bench.protocol:Neither"}  # fmt: skip


def serve(protocol: str, port: int) -> None:
    """The memory fake on ``protocol`` (an import string), as ``mockserver serve`` runs it."""
    import uvicorn

    from mockserver.settings import Settings
    from mockserver.web.app import create_app

    app = create_app(Settings(task_seconds=0.0, port=port), listening=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, http=protocol)


def round_of(order: list[str], load: Load) -> dict[str, dict[str, float]]:
    found: dict[str, dict[str, float]] = {}
    for name in order:
        port = free_port()
        command = [sys.executable, "-m", "bench.protocol", "--serve", VARIANTS[name], "--port", str(port)]
        base = f"http://127.0.0.1:{port}"
        with running(command, base + "/__mock__/health"):
            figures = measure(f"memory fake, {name}", base, seed_tasks(base), load)
        found[name] = {scenario: figure.rps for scenario, figure in figures.items()}
    return found


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--serve")
    parser.add_argument("--port", type=int)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return 0
    load = Load(args.seconds, args.warmup, 32)
    names = list(VARIANTS)
    ratios: dict[str, dict[str, list[float]]] = {}
    for n in range(args.rounds):
        order = names[n % len(names) :] + names[: n % len(names)]
        print(f"round {n + 1}: {', '.join(order)}", flush=True)
        found = round_of(order, load)
        for name, scenarios in found.items():
            for scenario, rps in scenarios.items():
                ratios.setdefault(name, {}).setdefault(scenario, []).append(rps / found["neither"][scenario])
    print("\nreq/s as a ratio to 'neither' (uvicorn's paths) of the same round; median over the rounds")
    for name, by_scenario in ratios.items():
        shown = ", ".join(
            f"{scenario} {statistics.median(values):.3f} ({' '.join(f'{v:.3f}' for v in values)})"
            for scenario, values in by_scenario.items()
        )
        print(f"  {name:<14} {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
