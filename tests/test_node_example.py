"""The Node example (examples/node) against the real server: the fake is language-agnostic."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mockserver.testing import RunningServer

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "node"
NODE = shutil.which("node")


def _text(output: str | bytes | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


@pytest.mark.skipif(NODE is None, reason="node is not on PATH (apt-get install nodejs: Node 18+ is needed for fetch)")
def test_node_client_against_the_real_server(tmp_path: Path) -> None:
    assert NODE is not None
    # --task-dialect is explicit so the example keeps reading the unified envelope whatever the default
    with RunningServer(["--task-seconds", "0", "--task-dialect", "unified"], log=tmp_path / "server.log") as mock:
        env = {**os.environ, "MOCKSERVER_URL": mock.base_url, "NO_COLOR": "1"}
        try:
            done = subprocess.run(
                [NODE, "--test", "--test-reporter=tap", str(EXAMPLE / "client.test.mjs")],
                cwd=EXAMPLE,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"node --test did not finish within {exc.timeout} s:\n{_text(exc.stdout)}\n{_text(exc.stderr)}")
    log = tmp_path / "server.log"
    server_log = log.read_text(errors="replace") if log.exists() else ""
    output = f"{done.stdout}\n{done.stderr}\n--- server log ---\n{server_log}"
    assert done.returncode == 0, f"node --test exited with {done.returncode}:\n{output}"
    assert "# fail 0" in done.stdout, output
    assert "# skipped 0" in done.stdout, output  # the server tests ran: MOCKSERVER_URL reached them
