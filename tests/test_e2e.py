"""The real server under uvicorn on a free loopback port, driven over the network."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from mockserver.testing.process import ServerProcess

from .helpers import AUTH, VIDEO
from .mp4 import read_clip

pytestmark = pytest.mark.e2e


def test_submit_poll_download(tmp_path: Path) -> None:
    server = ServerProcess(["--task-seconds", "1"], log=tmp_path / "server.log")
    with server, httpx.Client(base_url=server.base_url, headers=AUTH, timeout=5) as client:
        body = {"prompt": "the cat turns its head", "image_urls": ["https://example.com/cat.png"], "batch_size": 2}
        submitted = client.post(VIDEO, json=body)
        assert submitted.status_code == 200
        task_id = submitted.json()["data"][0]["task_id"]
        seen = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            task = client.get(f"/v1/midjourney/{task_id}").json()
            seen.append(task["status"])
            if task["status"] == "SUCCESS":
                break
            time.sleep(0.05)
        assert seen[-1] == "SUCCESS"
        assert "IN_PROGRESS" in seen  # a real second passed: the client saw the task running
        assert len(task["video_urls"]) == 2
        assert task["video_urls"][0].startswith(server.base_url + "/media/")
        clip = client.get(task["video_urls"][1])
        assert clip.headers["content-type"] == "video/mp4"
        assert read_clip(clip.content).codec == "avc1"
        assert client.post(VIDEO, json={"prompt": "x"}).status_code == 400
    assert server.process is None


def test_settings_from_environment(tmp_path: Path) -> None:
    env = {"MOCKSERVER_TASK_DIALECT": "unified", "MOCKSERVER_TASK_SECONDS": "0"}
    with ServerProcess(env=env) as server, httpx.Client(base_url=server.base_url, headers=AUTH) as client:
        task_id = client.post(VIDEO, json={"prompt": "p", "image_urls": ["https://e.x/a.png"]}).json()["data"][0]
        task = client.get(f"/v1/tasks/{task_id['task_id']}").json()
        assert task["code"] == 200
        assert task["data"]["status"] == "completed"


def test_flag_beats_environment_and_control_can_be_off() -> None:
    env = {"MOCKSERVER_TASK_DIALECT": "unified"}
    server = ServerProcess(["--task-dialect", "mj", "--task-seconds", "0", "--no-control"], env=env)
    with server, httpx.Client(base_url=server.base_url, headers=AUTH) as client:
        task_id = client.post(VIDEO, json={"prompt": "p", "image_urls": ["https://e.x/a.png"]}).json()["data"][0]
        assert client.get(f"/v1/tasks/{task_id['task_id']}").json()["status"] == "SUCCESS"
        assert client.get("/__mock__/health").status_code == 404


def test_bad_setting_is_refused_before_start() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mockserver", "serve", "--batch-size-policy", "lenient"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "batch-size-policy" in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "mockserver", "serve"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"MOCKSERVER_TASK_SECONDS": "soon", "PATH": ""},
    )
    assert result.returncode == 2
    assert "task_seconds" in result.stderr


@pytest.mark.e2e
def test_port_0_serves_on_a_free_port_that_the_start_up_line_and_the_result_urls_name() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "mockserver", "serve", "--port", "0", "--task-seconds", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = next(line for line in process.stdout if "serving on" in line)
        base = line.split("serving on ", 1)[1].split(" ", 1)[0]
        assert not base.endswith(":0"), line
        deadline = time.monotonic() + 20
        while True:
            try:
                submitted = httpx.post(base + VIDEO, json={"prompt": "p", "image_urls": ["https://e.com/a.png"]},
                                       headers=AUTH, timeout=5)  # fmt: skip
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the announced port never answered"
                time.sleep(0.05)
        task_id = submitted.json()["data"][0]["task_id"]
        url = httpx.get(f"{base}/v1/midjourney/{task_id}", headers=AUTH, timeout=5).json()["video_url"]
        assert url.startswith(base + "/media/"), url
    finally:
        process.terminate()
        process.wait(timeout=15)
