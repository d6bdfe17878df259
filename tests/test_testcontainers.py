"""The README's Testcontainers recipe, run as written against the image through a Docker API.

Where no Docker engine runs, podman serves its Docker-compatible API (`podman system service`)
on a socket of the test's own, and DOCKER_HOST points testcontainers-python at it. Ryuk, the
reaper container testcontainers would pull from a registry, is switched off (no registry is
reachable here; the recipe's `with` block removes the container itself).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts import image

from . import docs_examples

pytestmark = pytest.mark.e2e
RECIPES, PAGES = docs_examples.collect(docs_examples.marked("container-test"))


@pytest.fixture(scope="module")
def docker_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Docker API with the image `mockserver` in it: a Docker engine's, or podman's on a socket."""
    if image.docker_runs():
        image.build("mockserver")
        yield os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        return
    if shutil.which("podman") is None and shutil.which("apt-get") is None:
        pytest.skip("neither Docker nor podman is here (apt-get install podman runc debootstrap)")
    image.build("mockserver")
    socket = tmp_path_factory.mktemp("podman") / "podman.sock"
    service = subprocess.Popen(
        ["podman", "--runtime", "runc", "system", "service", "--time=0", f"unix://{socket}"],
        env={**os.environ, "CONTAINERS_CONF": str(image.CONF)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not socket.exists():
            assert service.poll() is None and time.monotonic() < deadline, "podman system service did not start"
            time.sleep(0.1)
        yield f"unix://{socket}"
    finally:
        service.terminate()
        service.wait(timeout=30)


def test_the_readme_has_the_recipe() -> None:
    assert PAGES == {"testcontainers": "README.md"}


def test_the_testcontainers_recipe_passes(docker_host: str, tmp_path: Path) -> None:
    (tmp_path / "test_recipe.py").write_text(RECIPES["testcontainers"])
    env = {
        **os.environ,
        "DOCKER_HOST": docker_host,
        "TESTCONTAINERS_RYUK_DISABLED": "true",
        # This machine may itself be a container: then testcontainers would look for a gateway.
        "TESTCONTAINERS_CONNECTION_MODE": "docker_host",
    }
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "test_recipe.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"\b1 passed\b", done.stdout), done.stdout
