"""The container image, built from the repository's Dockerfile and run as a user runs it.

Builds with podman on a locally made base (scripts/image.py) where no Docker engine runs.
Host networking is the only kind these machines give a container, so the server listens on
a free loopback port chosen here instead of a published one.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from mockserver.testing import free_port
from scripts import image

pytestmark = pytest.mark.e2e
TAG = "localhost/mockserver-test"


@pytest.fixture(scope="module")
def built() -> Iterator[str]:
    """The image, built for this module and removed after it (its cached layers stay for the next build)."""
    if image.docker_runs():
        pytest.skip("a Docker engine runs here: this test drives podman")
    if shutil.which("podman") is None and shutil.which("apt-get") is None:
        pytest.skip("podman is not installed and cannot be (apt-get install podman runc debootstrap)")
    image.build(TAG)
    yield TAG
    image.podman("rmi", "-f", TAG, check=False, capture=True)


def start(tag: str, port: int, *env: str, volume: str | None = None) -> str:
    name = f"mockserver-test-{uuid.uuid4().hex[:8]}"
    args = ["run", "-d", "--name", name, "--network", "host", "-e", f"MOCKSERVER_PORT={port}"]
    for item in ("MOCKSERVER_TASK_SECONDS=1", *env):
        args += ["-e", item]
    if volume:
        args += ["-v", f"{volume}:/data"]
    image.podman(*args, tag, capture=True)
    return name


def wait_healthy(name: str) -> None:
    """Run the image's own HEALTHCHECK until it passes (podman runs it on request without systemd)."""
    deadline = time.monotonic() + 60
    while image.podman("healthcheck", "run", name, check=False, capture=True).returncode != 0:
        assert time.monotonic() < deadline, image.podman("logs", name, capture=True).stdout
        time.sleep(0.5)


@pytest.fixture
def containers() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        image.podman("rm", "-f", "-t", "0", name, check=False, capture=True)


def call(port: int, path: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    sent = {"Authorization": "Bearer t", "Content-Type": "application/json", **(headers or {})}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, headers=sent)
    with urllib.request.urlopen(request, timeout=10) as answer:
        raw = answer.read()
    return json.loads(raw) if path.startswith(("/v1", "/__mock__")) else raw


def submit(port: int) -> str:
    body = {"prompt": "a cat", "image_urls": ["https://example.com/cat.png"]}
    task_id: str = call(port, "/v1/midjourney/generations/video", body)["data"][0]["task_id"]
    return task_id


def test_the_image_serves_a_clip_as_a_non_root_user(built: str, containers: list[str]) -> None:
    port = free_port()
    containers.append(name := start(built, port))
    wait_healthy(name)
    task_id = submit(port)
    deadline = time.monotonic() + 30
    while (task := call(port, f"/v1/tasks/{task_id}")["data"])["status"] != "completed":
        assert time.monotonic() < deadline, task
        time.sleep(0.3)
    clip = call(port, task["result"]["videos"][0]["url"][0].split(str(port), 1)[1])
    assert clip[4:8] == b"ftyp"
    status = image.podman("exec", name, "cat", "/proc/1/status", capture=True).stdout
    uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
    assert uid == "10001"


def test_a_task_survives_a_restart_on_the_data_volume(built: str, containers: list[str]) -> None:
    volume = f"mockserver-test-{uuid.uuid4().hex[:8]}"
    state = "MOCKSERVER_STATE=sqlite:////data/state.db"
    try:
        port = free_port()
        containers.append(first := start(built, port, state, volume=volume))
        wait_healthy(first)
        task_id = submit(port)
        image.podman("rm", "-f", "-t", "5", first, capture=True)
        containers.append(second := start(built, port, state, volume=volume))
        wait_healthy(second)
        assert call(port, f"/v1/tasks/{task_id}")["data"]["id"] == task_id
    finally:
        for name in containers:
            image.podman("rm", "-f", "-t", "0", name, check=False, capture=True)
        image.podman("volume", "rm", "-f", volume, check=False, capture=True)


def test_the_control_token_guards_the_control_plane(built: str, containers: list[str]) -> None:
    port = free_port()
    containers.append(name := start(built, port, "MOCKSERVER_CONTROL_TOKEN=s3cret"))
    wait_healthy(name)
    with pytest.raises(urllib.error.HTTPError) as refused:
        call(port, "/__mock__/state")
    assert refused.value.code in (401, 403)
    assert "tasks" in call(port, "/__mock__/state", headers={"Authorization": "Bearer s3cret"})
