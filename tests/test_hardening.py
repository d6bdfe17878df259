"""Hardening against the real server: thousands of generated cases, a concurrent load across
workers, slow-loris connections and oversize bodies."""

from __future__ import annotations

import asyncio
import io
import socket
import time
from pathlib import Path

import httpx
import pytest

from contract import fuzz
from contract.report import Report
from contract.target import Target
from mockserver.testing.process import ServerProcess

pytestmark = pytest.mark.e2e
AUTH = {"Authorization": "Bearer hardening"}
VIDEO = "/v1/midjourney/generations/video"
BODY = {"prompt": "p", "image_urls": ["https://example.com/a.png"]}


def test_thousands_of_generated_cases_and_no_server_error() -> None:
    with ServerProcess(["--task-seconds", "0"]) as server:
        target = Target(server.base_url, "fuzzer", max_paid_tasks=10**6)
        report = Report(server.base_url, target.fake)
        try:
            tallies = fuzz.run(target, report, examples=400)
        finally:
            target.close()
    cases = sum(t.cases for t in tallies.values())
    server_errors = sum(n for t in tallies.values() for status, n in t.statuses.items() if status >= 500)
    print(f"\nschemathesis against the real server: {cases} cases, {server_errors} answered 5xx")
    assert cases >= 5000
    assert server_errors == 0
    assert report.failed == [], [f"{f.rule}: {f.observed}" for f in report.failed]


def test_ten_thousand_submissions_from_64_clients_across_two_workers(tmp_path: Path) -> None:
    total, clients = 10_000, 64
    state = f"sqlite:///{tmp_path}/load.db"
    with ServerProcess(["--workers", "2", "--state", state, "--task-seconds", "0"]) as server:

        async def client_loop(k: int, n: int, acked: list[str], failures: list[int]) -> None:
            limits = httpx.Limits(max_connections=1)
            async with httpx.AsyncClient(base_url=server.base_url, headers=AUTH, limits=limits, timeout=30) as c:
                for i in range(n):
                    response = await c.post(VIDEO, json=BODY, headers={"Idempotency-Key": f"client{k}-{i}"})
                    if response.status_code == 200:
                        acked.append(response.json()["data"][0]["task_id"])
                    else:
                        failures.append(response.status_code)

        async def load() -> tuple[list[str], list[int], float]:
            acked: list[str] = []
            failures: list[int] = []
            started = time.perf_counter()
            per_client = total // clients
            jobs = [
                client_loop(k, per_client + (1 if k < total % clients else 0), acked, failures) for k in range(clients)
            ]
            await asyncio.gather(*jobs)
            return acked, failures, time.perf_counter() - started

        acked, failures, seconds = asyncio.run(load())
        print(f"\n{total} submissions from {clients} clients over 2 workers (SQLite): {seconds:.1f} s")
        assert failures == []
        assert len(acked) == total
        assert len(set(acked)) == total
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            stored = {t["record"]["id"] for t in client.get("/__mock__/tasks").json()["tasks"]}
            journal = client.get("/__mock__/requests", params={"path": VIDEO}).json()["requests"]
        assert stored == set(acked), "every acknowledged task is stored, and nothing else"
        assert len(journal) == min(total, 10_000)


def slow_socket(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST /v1/midjourney/generations/video HTTP/1.1\r\nHost: x\r\n")  # headers never finish
    return sock


def test_slow_loris_and_oversize_bodies_do_not_stall_others() -> None:
    with ServerProcess(["--task-seconds", "0"]) as server:
        port = server.port
        lorises = [slow_socket(port) for _ in range(50)]
        trickle = socket.create_connection(("127.0.0.1", port))
        trickle.sendall(
            b"POST /v1/midjourney/generations/video HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b" " * 65536
        for _ in range(16):  # a slow, large body: 1 MiB so far, more to come
            trickle.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        try:
            with httpx.Client(base_url=server.base_url, headers=AUTH, timeout=5) as client:
                worst = 0.0
                for _ in range(20):
                    started = time.perf_counter()
                    assert client.post(VIDEO, json=BODY).status_code == 200
                    worst = max(worst, time.perf_counter() - started)
                big = client.post(VIDEO, content=io.BytesIO(b" " * (41 * 1024 * 1024)).read(),
                                  headers={"Content-Type": "application/json"})  # fmt: skip
                assert big.status_code == 413
                started = time.perf_counter()
                assert client.get("/v1/tasks/task_x").status_code == 404
                worst = max(worst, time.perf_counter() - started)
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                raw.sendall(
                    b"POST /v1/midjourney/generations/video HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 999999999\r\n\r\n"
                )
                answer = raw.recv(4096)  # at once, before a byte of the body is sent
            assert answer.startswith(b"HTTP/1.1 413")
            print(f"\nworst latency beside 50 slow-loris sockets and a trickled body: {worst * 1000:.1f} ms")
            assert worst < 2.0
        finally:
            for sock in [*lorises, trickle]:
                sock.close()
