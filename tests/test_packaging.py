"""The built wheel, installed as a user would: the server alone, then the fixtures, then beside
MockServer's client (which installs a package of the same name)."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
import venv
from email.parser import Parser
from pathlib import Path
from zipfile import ZipFile

import pytest

from mockserver.testing import ServerProcess

from .docs_examples import EXAMPLES

ROOT = Path(__file__).resolve().parent.parent
HEAVY = {"schemathesis", "hypothesis", "respx", "redis", "httpx", "jsonschema", "referencing"}
USER_TEST = """
import httpx


def test_the_fixture_works(apimart_mock):
    with httpx.Client(base_url=apimart_mock.base_url, headers={"Authorization": "Bearer t"}) as client:
        task = client.post("/v1/midjourney/generations/video", json={"prompt": "p", "image_urls": ["https://e.x/a.png"]})
        assert client.get(f"/v1/tasks/{task.json()['data'][0]['task_id']}").json()["data"]["status"] == "completed"
"""

pytestmark = pytest.mark.e2e


def run(*command: str | Path, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "MOCKSERVER_", "VIRTUAL_ENV"))}
    done = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check and done.returncode != 0:
        raise AssertionError(f"{command} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", out, ROOT)
    (built,) = out.glob("apimart_mockserver-*.whl")
    return built


def requirements(wheel: Path) -> list[str]:
    with ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(name).decode())
    return [r for r in metadata.get_all("Requires-Dist") or [] if "extra ==" not in r]


def test_the_server_alone_installs_nothing_heavy(wheel: Path) -> None:
    names = {r.split(";")[0].split("[")[0].split(">")[0].split("=")[0].strip().lower() for r in requirements(wheel)}
    assert names, "the wheel names its dependencies"
    assert not names & HEAVY, names & HEAVY
    with ZipFile(wheel) as archive:
        files = set(archive.namelist())
    assert {"apimart_mockserver.py", "mockserver/_spec/openapi.yaml", "contract/_spec/openapi.yaml"} <= files


def test_installed_as_a_user_would(wheel: Path, tmp_path: Path) -> None:
    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", wheel)
    # the server alone: no httpx, no respx
    assert run(python, "-c", "import httpx", check=False).returncode != 0
    server = ServerProcess(["--task-seconds", "0"])
    server.command = lambda: [str(env / "bin" / "mockserver"), "serve", "--port", str(server.port)]  # type: ignore[method-assign]
    with server, urllib.request.urlopen(f"{server.base_url}/openapi.json", timeout=5) as answer:
        assert answer.status == 200
    # the fixtures, in a user's own test suite
    run(python, "-m", "pip", "install", "--quiet", f"{wheel}[testing]", "pytest", "requests")
    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "test_user.py").write_text(USER_TEST)
    for name, code in EXAMPLES.items():  # the examples of the README and docs/*.md, pasted into the user's suite
        (tmp_path / "suite" / f"test_docs_{name}.py").write_text(code)
    (tmp_path / "suite" / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    passed = run(python, "-m", "pytest", "-v", "-p", "no:cacheprovider", cwd=tmp_path / "suite", check=False)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    for name in EXAMPLES:
        assert f"test_docs_{name}.py::" in passed.stdout and " FAILED" not in passed.stdout, passed.stdout
    assert f"{len(EXAMPLES) + 1} passed" in passed.stdout, passed.stdout
    # beside MockServer's client: one sentence, not a traceback
    run(python, "-m", "pip", "install", "--quiet", "--no-deps", "mockserver-client")
    clashed = run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=tmp_path / "suite", check=False)
    output = clashed.stdout + clashed.stderr
    assert clashed.returncode != 0
    assert "mockserver-client" in output and "pip uninstall mockserver-client" in output, output
    assert "Traceback" not in output, output
    serve = run(env / "bin" / "mockserver", "serve", "--port", "1", check=False)
    assert serve.returncode == 2
    assert "pip uninstall mockserver-client" in serve.stderr
