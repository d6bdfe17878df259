"""The Dockerfile and the README agree, and the image's commands work when run directly.

No Docker engine runs here, so the image is not built; its entry command and
its health check are run on this machine as the image would run them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from mockserver.testing import free_port

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()
README = (ROOT / "README.md").read_text()


def instruction(name: str) -> str:
    lines = DOCKERFILE.replace("\\\n", " ").splitlines()
    found = [line.split(None, 1)[1] for line in lines if line.startswith(name + " ")]
    assert found, f"no {name} in the Dockerfile"
    return found[-1]


def test_dockerfile_shape() -> None:
    # Users get the official base; tests/test_image.py builds on a local one.
    assert instruction("ARG") == "BASE=python:3.11-slim"
    assert instruction("FROM") == "${BASE}"
    assert instruction("EXPOSE") == "8000"
    assert instruction("USER") not in ("root", "0")
    assert "/healthz" in instruction("HEALTHCHECK")  # outside the control plane: works with --no-control
    assert json.loads(instruction("CMD")) == ["mockserver", "serve"]
    assert "MOCKSERVER_PORT=8000" in instruction("ENV")


def test_readme_shows_the_dockerfile_commands() -> None:
    for command in re.findall(r"^#   (docker .+)$", DOCKERFILE, re.MULTILINE):
        assert command in README, f"the README does not show: {command}"


@pytest.mark.e2e
def test_entry_command_and_health_check_run() -> None:
    port = free_port()
    env = {**os.environ, "MOCKSERVER_HOST": "127.0.0.1", "MOCKSERVER_PORT": str(port), "MOCKSERVER_TASK_SECONDS": "2"}
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    server = subprocess.Popen(json.loads(instruction("CMD")), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        health = json.loads(instruction("HEALTHCHECK").split("CMD", 1)[1].strip())
        deadline = time.monotonic() + 20
        while True:
            check = subprocess.run([sys.executable, *health[1:]], env=env, capture_output=True, timeout=10)
            if check.returncode == 0:
                break
            assert time.monotonic() < deadline, check.stderr.decode()[-500:]
            time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=5) as response:
            assert response.status == 200
    finally:
        server.terminate()
        output = server.communicate(timeout=10)[0].decode()
    assert "task_seconds=2" in output, output
    assert shlex.split("mockserver serve") == json.loads(instruction("CMD"))
