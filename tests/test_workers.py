"""Several workers and restarts with a shared store; no acknowledged task is lost when a worker dies;
submissions racing on two workers never overdraw a balance, and the running totals stay the ledger's."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from uvicorn.supervisors.multiprocess import SIGNALS

from mockserver.core.accounts import account_id
from mockserver.store.redis import RedisStore
from mockserver.store.sqlite import SQLiteStore
from mockserver.testing.process import ServerProcess
from mockserver.workers import BalancedWorkers

from .helpers import blocking

pytestmark = pytest.mark.e2e
AUTH = {"Authorization": "Bearer worker-test"}
VIDEO = "/v1/midjourney/generations/video"
BODY = {"prompt": "p", "image_urls": ["https://example.com/a.png"], "batch_size": 2}


def fresh(base: str) -> httpx.Client:
    """A client without keep-alive: each request may land on any worker."""
    return httpx.Client(base_url=base, headers={**AUTH, "Connection": "close"}, timeout=10)


T = TypeVar("T")


def pid_of(client: httpx.Client) -> int:
    pid: int = client.get("/__mock__/health").json()["pid"]
    return pid


def at_once(clients: list[httpx.Client], call: Callable[[httpx.Client], T]) -> list[T]:
    """``call(client)`` for every client from its own thread, all released together."""
    barrier = threading.Barrier(len(clients))

    def run(client: httpx.Client) -> T:
        barrier.wait(timeout=30)
        return call(client)

    with ThreadPoolExecutor(len(clients)) as pool:
        return list(pool.map(run, clients))


@contextmanager
def pinned_clients(
    base: str, per_worker: int, workers: int = 2, within: float = 30.0
) -> Iterator[list[list[httpx.Client]]]:
    """``per_worker`` keep-alive clients answered by each of the ``workers`` processes, each client on one
    connection of its own. Which worker accepts a connection is the kernel's choice, so new connections are
    opened, eight at once (while a worker is busy answering, the next is accepted by another), until every
    worker has its share: within ``within`` seconds, or the test fails saying what it saw. Use them at once:
    a connection idle for uvicorn's keep-alive timeout (5 s) is closed, and its client reconnects anywhere."""
    found: dict[int, list[httpx.Client]] = {}
    spare: list[httpx.Client] = []
    deadline = time.monotonic() + within
    try:
        while len(found) < workers or min(len(c) for c in found.values()) < per_worker:
            assert time.monotonic() < deadline, f"in {within} s, connections reached workers {sorted(found)} only"
            batch = [
                httpx.Client(base_url=base, headers=AUTH, timeout=10, limits=httpx.Limits(max_connections=1))
                for _ in range(8)
            ]
            for client, pid in zip(batch, at_once(batch, pid_of), strict=True):
                (found.setdefault(pid, []) if len(found.get(pid, [])) < per_worker else spare).append(client)
        assert len(found) == workers, f"more workers than expected: {sorted(found)}"
        yield list(found.values())
    finally:
        for client in [c for clients in found.values() for c in clients] + spare:
            client.close()


def still_pinned(groups: list[list[httpx.Client]]) -> bool:
    """Every client is still on the worker it was pinned to (its connection was kept)."""
    return all(len({pid_of(c) for c in group}) == 1 for group in groups) and len({pid_of(g[0]) for g in groups}) == len(
        groups
    )


@pytest.fixture(params=["sqlite", "redis"])
def shared_state(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        url: str = request.getfixturevalue("redis_url")
        return url
    return f"sqlite:///{tmp_path}/state.db"


def open_shared(state: str) -> Any:
    """The store the server keeps its state in, as a third process sees it (blocking calls)."""
    if state.startswith("redis"):
        return blocking(RedisStore(state))
    return blocking(SQLiteStore(state.removeprefix("sqlite:///")))


def test_tasks_and_clock_are_shared_by_workers(shared_state: str) -> None:
    with (
        ServerProcess(["--workers", "2", "--state", shared_state, "--task-seconds", "30"]) as server,
        pinned_clients(server.base_url, 1) as groups,
    ):
        a, b = (group[0] for group in groups)  # two workers answer, each on its own connection
        a.post("/__mock__/reset")
        ids_a = [a.post(VIDEO, json=BODY).json()["data"][0]["task_id"] for _ in range(10)]
        ids_b = [b.post(VIDEO, json=BODY).json()["data"][0]["task_id"] for _ in range(10)]
        assert all(b.get(f"/v1/tasks/{i}").status_code == 200 for i in ids_a), "b sees a's tasks"
        assert all(a.get(f"/v1/tasks/{i}").status_code == 200 for i in ids_b), "a sees b's tasks"
        a.post("/__mock__/clock", json={"freeze": True})
        b.post("/__mock__/clock", json={"advance": 31})
        nows = {client.get("/__mock__/clock").json()["now"] for client in (a, b, a, b)}
        assert len(nows) == 1, "every worker reads the same (frozen) clock"
        assert {client.get(f"/v1/midjourney/{i}").json()["status"] for client in (a, b) for i in ids_a + ids_b} == {
            "SUCCESS"
        }
        assert len(b.get("/__mock__/tasks").json()["tasks"]) == 20
        assert still_pinned(groups)
        a.post("/__mock__/reset")  # the clock too: the next test on this Redis starts from the wall clock


ROUNDS = 20


def test_racing_submissions_on_two_workers_never_overdraw(shared_state: str) -> None:
    """Each round, 32 submissions (16 on each worker's connections) race against a balance that
    allows exactly one: exactly one is accepted, 31 get 402, and one task is charged."""
    with (
        ServerProcess(["--workers", "2", "--state", shared_state, "--task-seconds", "30"]) as server,
        pinned_clients(server.base_url, 16) as groups,
    ):
        clients = [client for group in groups for client in group]
        control = clients[0]
        control.post("/__mock__/reset")
        probe = {"Authorization": "Bearer race-probe"}
        assert control.post(VIDEO, json=BODY, headers=probe).status_code == 200
        charge = control.get("/__mock__/ledger", params={"token": "race-probe"}).json()["total_spent"]
        assert charge > 0
        for n in range(ROUNDS):
            token = f"race-{n}"
            funded = control.post("/__mock__/balances", json={"token": token, "balance": 1.5 * charge})
            assert funded.status_code == 200, f"round {n}: {funded.status_code} {funded.text}"

            def submit(client: httpx.Client, token: str = token) -> int:
                return client.post(VIDEO, json=BODY, headers={"Authorization": f"Bearer {token}"}).status_code

            statuses = at_once(clients, submit)
            assert sorted(statuses) == [200] + [402] * 31, f"round {n}: {statuses}"
            account = control.get("/__mock__/ledger", params={"token": token}).json()["accounts"][account_id(token)]
            assert (account["tasks"], account["spent"]) == (1, charge), f"round {n}"
        assert still_pinned(groups), "both workers took part in every round"


def test_running_totals_agree_with_the_ledger_across_workers(shared_state: str) -> None:
    """Concurrent submissions on two workers (some failing, so refunded; some repeating an idempotency
    key from both workers at once): the store's running totals equal the ledger's sums, and the balance
    check spends exactly what the ledger says is left."""
    token = "totals"
    account = account_id(token)
    headers = {"Authorization": f"Bearer {token}"}
    with (
        ServerProcess(["--workers", "2", "--state", shared_state, "--task-seconds", "0"]) as server,
        pinned_clients(server.base_url, 8) as groups,
    ):
        clients = [client for group in groups for client in group]
        control = clients[0]
        control.post("/__mock__/reset")
        control.post("/__mock__/balances", json={"token": token, "balance": 1e9})

        def submit(client: httpx.Client) -> list[int]:
            n = clients.index(client)
            statuses = []
            for k in range(6):
                extra: dict[str, Any] = {}
                if k % 3 == 1:
                    extra["X-Mock-Scenario"] = "fail"
                if k == 5:
                    extra["Idempotency-Key"] = f"key-{n % 4}"  # the same key from four clients, both workers
                statuses.append(client.post(VIDEO, json=BODY, headers={**headers, **extra}).status_code)
            return statuses

        statuses = [s for batch in at_once(clients, submit) for s in batch]
        assert set(statuses) <= {200, 409}, statuses  # 409: the same key still in flight on that worker
        assert still_pinned(groups)
        now = control.get("/__mock__/clock").json()["now"]
        derived = control.get("/__mock__/ledger", params={"token": token}).json()["accounts"][account]
        tasks = control.get("/__mock__/tasks", params={"token": token}).json()["total"]
        assert derived["tasks"] == tasks == 16 * 5 + 4, "one task per key"
        assert derived["refunded"] > 0
        running = open_shared(shared_state).spending(account, now)
        assert running.charged == pytest.approx(derived["charged"])
        assert running.refunded == pytest.approx(derived["refunded"])
        charge = derived["charged"] / tasks
        control.post("/__mock__/balances", json={"token": token, "balance": derived["spent"] + 1.5 * charge})
        assert [c.post(VIDEO, json=BODY, headers=headers).status_code for c in (groups[0][0], groups[1][0])] == [
            200,
            402,
        ]


def test_tasks_survive_a_restart(tmp_path: Path) -> None:
    state = f"sqlite:///{tmp_path}/state.db"
    with ServerProcess(["--state", state, "--task-seconds", "0"]) as server, fresh(server.base_url) as client:
        task_id = client.post(VIDEO, json=BODY).json()["data"][0]["task_id"]
        key = client.post(VIDEO, json=BODY, headers={"Idempotency-Key": "k"}).json()
    with ServerProcess(["--state", state, "--task-seconds", "0"]) as server, fresh(server.base_url) as client:
        task = client.get(f"/v1/midjourney/{task_id}").json()
        assert (task["status"], len(task["video_urls"])) == ("SUCCESS", 2)
        replay = client.post(VIDEO, json=BODY, headers={"Idempotency-Key": "k"})
        assert replay.json() == key and replay.headers["idempotency-replayed"] == "true"


def test_kill_a_worker_mid_load_loses_no_acknowledged_task(tmp_path: Path) -> None:
    state = f"sqlite:///{tmp_path}/state.db"
    with ServerProcess(["--workers", "2", "--state", state, "--task-seconds", "0"]) as server:
        acknowledged: list[str] = []
        errors: list[str] = []
        stop = threading.Event()

        def load() -> None:
            with fresh(server.base_url) as client:
                while not stop.is_set():
                    try:
                        response = client.post(VIDEO, json=BODY)
                    except httpx.HTTPError as exc:  # the dying worker's connections
                        errors.append(type(exc).__name__)
                        continue
                    if response.status_code == 200:
                        acknowledged.append(response.json()["data"][0]["task_id"])

        threads = [threading.Thread(target=load) for _ in range(8)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        with pinned_clients(server.base_url, 1) as groups:
            victim = pid_of(groups[0][0])
        os.kill(victim, signal.SIGKILL)
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join()
        assert len(acknowledged) > 50
        with fresh(server.base_url) as client:
            missing = [i for i in acknowledged if client.get(f"/v1/tasks/{i}").status_code != 200]
        assert missing == [], f"{len(missing)} acknowledged task(s) lost"


def kept_clients(base: str, n: int) -> list[httpx.Client]:
    """``n`` keep-alive clients, each on one connection of its own once it has asked something."""
    return [
        httpx.Client(base_url=base, headers=AUTH, timeout=5, limits=httpx.Limits(max_connections=1)) for _ in range(n)
    ]


def pids_of_connections(host: str, port: int, n: int) -> list[int]:
    """Open ``n`` connections at once, as a load generator does (all of them before any request), then ask
    on each which worker holds it (``GET /__mock__/health``)."""
    conns = [socket.create_connection((host, port), timeout=5) for _ in range(n)]
    try:
        time.sleep(0.2)  # every connection accepted by some worker before the first request
        request = f"GET /__mock__/health HTTP/1.1\r\nHost: {host}\r\nAuthorization: {AUTH['Authorization']}\r\n\r\n"
        for conn in conns:
            conn.sendall(request.encode())
        pids = []
        for conn in conns:
            answer = http.client.HTTPResponse(conn)  # the standard library reads the status, headers and body
            answer.begin()
            pids.append(int(json.loads(answer.read())["pid"]))
        return pids
    finally:
        for conn in conns:
            conn.close()


def listening_sockets(port: int) -> set[str]:
    """The inodes of the sockets listening on ``port`` on this machine (Linux's /proc/net/tcp)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # 0A: LISTEN
                    found.add(fields[9])
    return found


def test_connections_opened_at_once_are_spread_over_the_workers(tmp_path: Path) -> None:
    """Each worker listens on a socket of its own (``mockserver.workers``), so 32 connections opened at once
    reach both workers in about equal shares (each at least 5 of 32; by the kernel's hash, fewer than once
    in 50 000 runs). On one shared socket, as uvicorn's own workers listen, one worker took most of them
    in two runs of six (32/0, 28/4)."""
    with ServerProcess(["--workers", "2", "--state", f"sqlite:///{tmp_path}/state.db"]) as server:
        with pinned_clients(server.base_url, 1):
            pass  # both workers listen by now (the server is ready when the first one answers)
        assert len(listening_sockets(server.port)) == 2, "a listening socket per worker"
        shares = Counter(pids_of_connections(server.host, server.port, 32))
        assert len(shares) == 2 and min(shares.values()) >= 5, f"connections per worker: {dict(shares)}"


def test_a_worker_that_died_leaves_no_socket_behind(tmp_path: Path) -> None:
    """A killed worker is replaced, on a socket of its own, and the dead one's socket is closed with it: every
    new connection is answered (the supervisor keeping its copy open would leave about half of them
    waiting, unanswered, in a queue nobody accepts from)."""
    with ServerProcess(["--workers", "2", "--state", f"sqlite:///{tmp_path}/state.db"]) as server:
        with pinned_clients(server.base_url, 1) as groups:
            victim, survivor = (pid_of(group[0]) for group in groups)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:  # until the replacement answers
            clients = kept_clients(server.base_url, 8)
            try:
                pids = set(at_once(clients, lambda client: _pid_or_none(client)))
            finally:
                for client in clients:
                    client.close()
            if len(pids - {survivor, None}) == 1:
                break
            assert time.monotonic() < deadline, f"no replacement worker answered within 30 s (saw {pids})"
            time.sleep(0.5)
        clients = kept_clients(server.base_url, 32)
        try:
            answered = at_once(clients, pid_of)  # a connection left in a dead socket's queue: ReadTimeout
        finally:
            for client in clients:
                client.close()
        assert victim not in answered and len(set(answered)) == 2


def _pid_or_none(client: httpx.Client) -> int | None:
    try:
        return pid_of(client)
    except httpx.HTTPError:
        return None


def test_any_free_port_is_one_port_for_every_worker() -> None:
    """``--port 0``: the supervisor finds one free port, and every worker's socket is bound to it."""
    config = uvicorn.Config("mockserver.web.app:app_from_env", factory=True, host="127.0.0.1", port=0, workers=2)
    handlers = {sig: signal.getsignal(sig) for sig in SIGNALS}  # the supervisor takes them: given back below
    try:
        supervisor = BalancedWorkers(config)
        ports = {config.port} | {sock.getsockname()[1] for _ in range(3) for sock in supervisor.sockets}
        supervisor._let_go()
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert len(ports) == 1 and config.port != 0
