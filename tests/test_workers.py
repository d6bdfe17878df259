"""Several workers and restarts with a shared store; no acknowledged task is lost when a worker dies."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from mockserver.testing.process import ServerProcess

pytestmark = pytest.mark.e2e
AUTH = {"Authorization": "Bearer worker-test"}
VIDEO = "/v1/midjourney/generations/video"
BODY = {"prompt": "p", "image_urls": ["https://example.com/a.png"], "batch_size": 2}


def fresh(base: str) -> httpx.Client:
    """A client without keep-alive: each request may land on any worker."""
    return httpx.Client(base_url=base, headers={**AUTH, "Connection": "close"}, timeout=10)


def worker_pids(base: str, asks: int = 60) -> set[int]:
    with fresh(base) as client:
        return {client.get("/__mock__/health").json()["pid"] for _ in range(asks)}


@pytest.fixture(params=["sqlite", "redis"])
def shared_state(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        url: str = request.getfixturevalue("redis_url")
        return url
    return f"sqlite:///{tmp_path}/state.db"


def test_tasks_and_clock_are_shared_by_workers(shared_state: str) -> None:
    with ServerProcess(["--workers", "2", "--state", shared_state, "--task-seconds", "30"]) as server:
        assert len(worker_pids(server.base_url)) == 2, "two workers answer"
        with fresh(server.base_url) as client:
            ids = [client.post(VIDEO, json=BODY).json()["data"][0]["task_id"] for _ in range(20)]
            assert all(client.get(f"/v1/tasks/{i}").status_code == 200 for i in ids)
            client.post("/__mock__/clock", json={"freeze": True})
            client.post("/__mock__/clock", json={"advance": 31})
            nows = {client.get("/__mock__/clock").json()["now"] for _ in range(10)}
            assert len(nows) == 1, "every worker reads the same (frozen) clock"
            assert {client.get(f"/v1/tasks/{i}").json()["status"] for i in ids} == {"SUCCESS"}
            assert len(client.get("/__mock__/tasks").json()["tasks"]) >= 20


def test_tasks_survive_a_restart(tmp_path: Path) -> None:
    state = f"sqlite:///{tmp_path}/state.db"
    with ServerProcess(["--state", state, "--task-seconds", "0"]) as server, fresh(server.base_url) as client:
        task_id = client.post(VIDEO, json=BODY).json()["data"][0]["task_id"]
        key = client.post(VIDEO, json=BODY, headers={"Idempotency-Key": "k"}).json()
    with ServerProcess(["--state", state, "--task-seconds", "0"]) as server, fresh(server.base_url) as client:
        task = client.get(f"/v1/tasks/{task_id}").json()
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
        victim = next(iter(worker_pids(server.base_url, 20)))
        os.kill(victim, signal.SIGKILL)
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join()
        assert len(acknowledged) > 50
        with fresh(server.base_url) as client:
            missing = [i for i in acknowledged if client.get(f"/v1/tasks/{i}").status_code != 200]
        assert missing == [], f"{len(missing)} acknowledged task(s) lost"
