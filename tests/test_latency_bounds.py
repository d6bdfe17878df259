"""A latency fault never outlives its use: it is cut to ``--max-latency-ms``, it ends when the
client hangs up, and a shutdown ends every one still waiting (``core.clock.pause``)."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from mockserver import Settings
from mockserver.core import faults
from mockserver.core.faults import Fault
from mockserver.testing import ServerProcess

VIDEO = "/v1/midjourney/generations/video"
BODY = json.dumps({"prompt": "p", "image_urls": ["https://example.com/a.png"]}).encode()


def test_the_setting_bounds_every_draw() -> None:
    import random

    rng = random.Random(0)
    assert faults.delay_seconds(Fault("latency", {"ms": "120000"}), rng, most=0.05) == 0.05
    assert faults.delay_seconds(Fault("latency", {"dist": "normal", "mean": "9e9"}), rng, most=2.0) == 2.0
    with pytest.raises(ValueError, match="max_latency_ms"):
        Settings(max_latency_ms=-1).validated()


def hang_up_during_latency(port: int, ms: int = 120_000) -> None:
    """A submission asking for ``ms`` of latency, sent whole; then the client goes away."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        head = (
            f"POST {VIDEO} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer hang-up\r\n"
            f"Content-Type: application/json\r\nX-Mock-Scenario: latency; ms={ms}\r\n"
            f"Content-Length: {len(BODY)}\r\n\r\n"
        )
        sock.sendall(head.encode() + BODY)
        time.sleep(0.3)  # the server has the request and is waiting


@pytest.mark.e2e
def test_e2e_max_latency_ms_cuts_a_long_latency() -> None:
    with ServerProcess(["--max-latency-ms", "50", "--task-seconds", "0"]) as server:
        headers = {"Authorization": "Bearer t", "X-Mock-Scenario": "latency; ms=120000"}
        started = time.monotonic()
        answer = httpx.post(server.base_url + VIDEO, content=BODY, headers=headers, timeout=30)
        assert answer.status_code == 200 and time.monotonic() - started < 5


@pytest.mark.e2e
def test_e2e_a_hang_up_ends_the_wait() -> None:
    with ServerProcess(["--task-seconds", "0"]) as server:
        hang_up_during_latency(server.port)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            journal = httpx.get(server.base_url + "/__mock__/requests", timeout=5).json()["requests"]
            if any(entry["path"] == VIDEO for entry in journal):
                break  # the request finished (the journal is written when it does)
            time.sleep(0.05)
        else:
            raise AssertionError("the abandoned latency was still waiting 10 s after the client left")


@pytest.mark.e2e
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_e2e_a_shutdown_does_not_wait_for_latency_still_pending(tmp_path: Path, sig: signal.Signals) -> None:
    server = ServerProcess(["--task-seconds", "0"], log=tmp_path / "server.log").start()
    process = server.process
    assert process is not None
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            head = (
                f"POST {VIDEO} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer wait\r\n"
                f"Content-Type: application/json\r\nX-Mock-Scenario: latency; ms=120000\r\n"
                f"Content-Length: {len(BODY)}\r\n\r\n"
            )
            sock.sendall(head.encode() + BODY)  # still connected, still waiting
            time.sleep(0.3)
            started = time.monotonic()
            process.send_signal(sig)
            process.wait(timeout=20)
            assert time.monotonic() - started < 10
    finally:
        server.stop()
