"""The control plane's token, and the health check that lives outside the control plane."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from mockserver.core.clock import VirtualClock
from mockserver.core.hosts import is_loopback
from mockserver.settings import Settings
from mockserver.testing import InProcessFake, RunningServer, ServerProcess, free_port
from mockserver.testing.fake import control_token_of
from mockserver.testing.transport import SyncASGITransport
from mockserver.web.app import create_app

TOKEN = "control-s3cret"
VIDEO = "/v1/midjourney/generations/video"
BODY = {"prompt": "p", "image_urls": ["https://example.com/a.png"]}
PROVIDER_AUTH = {"Authorization": "Bearer user"}

# Every control route, and a body it accepts.
CONTROL_CALLS = [
    ("GET", "/__mock__/health", None),
    ("GET", "/__mock__/openapi.json", None),
    ("POST", "/__mock__/reset", {}),
    ("GET", "/__mock__/clock", None),
    ("POST", "/__mock__/clock", {"advance": 1}),
    ("GET", "/__mock__/scenarios", None),
    ("POST", "/__mock__/scenarios", {"scenario": "fail"}),
    ("DELETE", "/__mock__/scenarios", None),
    ("DELETE", "/__mock__/scenarios/rule_x", None),
    ("GET", "/__mock__/requests", None),
    ("GET", "/__mock__/ledger", None),
    ("POST", "/__mock__/balances", {"token": "t", "balance": 5}),
    ("GET", "/__mock__/tasks", None),
    ("GET", "/__mock__/tasks/task_x", None),
]


def client_of(**settings: object) -> httpx.Client:
    app = create_app(Settings(task_seconds=0.0, **settings), clock=VirtualClock())  # type: ignore[arg-type]
    return httpx.Client(transport=SyncASGITransport(app), base_url="http://testserver")


@pytest.mark.parametrize(("method", "path", "body"), CONTROL_CALLS)
def test_every_control_route_needs_the_token(method: str, path: str, body: object) -> None:
    with client_of(control_token=TOKEN) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, PROVIDER_AUTH):
            response = client.request(method, path, json=body, headers=headers)
            assert response.status_code == 401, (headers, response.text)
            error = response.json()["error"]
            assert error["type"] == "authentication_error" and error["code"] == 401
            assert response.headers["www-authenticate"].startswith("Bearer")
        allowed = client.request(method, path, json=body, headers={"Authorization": f"Bearer {TOKEN}"})
        assert allowed.status_code in (200, 404), allowed.text


def test_a_refused_control_request_changes_nothing() -> None:
    with client_of(control_token=TOKEN) as client:
        assert client.post("/__mock__/clock", json={"advance": 3600}).status_code == 401
        assert client.post("/__mock__/scenarios", json={"scenario": "error_500"}).status_code == 401
        assert client.post(VIDEO, json=BODY, headers=PROVIDER_AUTH).status_code == 200
        clock = client.get("/__mock__/clock", headers={"Authorization": f"Bearer {TOKEN}"}).json()
        assert clock["now"] == VirtualClock().now()


def test_the_dashboard_page_loads_without_the_token_and_reads_it_from_the_address() -> None:
    with client_of(control_token=TOKEN) as client:
        page = client.get("/__mock__/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        script = client.get("/__mock__/dashboard/app.js")
        assert script.status_code == 200
        assert client.post("/__mock__/", json={}).status_code == 401  # only the page itself is open


def test_without_a_token_the_control_plane_is_open() -> None:
    with client_of() as client:
        for method, path, body in CONTROL_CALLS:
            assert client.request(method, path, json=body).status_code in (200, 404)


def test_the_provider_api_never_needs_the_control_token() -> None:
    with client_of(control_token=TOKEN) as client:
        task_id = client.post(VIDEO, json=BODY, headers=PROVIDER_AUTH).json()["data"][0]["task_id"]
        assert client.get(f"/v1/tasks/{task_id}", headers=PROVIDER_AUTH).status_code == 200
        assert client.get("/openapi.json").status_code == 200


def test_healthz_answers_outside_the_control_plane() -> None:
    for settings in ({}, {"control": False}, {"control_token": TOKEN}):
        with client_of(**settings) as client:
            response = client.get("/healthz")
            assert response.status_code == 200, settings
            assert response.json()["status"] == "ok"
            assert client.head("/healthz").status_code == 200
            if settings.get("control") is False:
                assert client.get("/__mock__/health").status_code == 404
            entries = client.get("/__mock__/requests", headers={"Authorization": f"Bearer {TOKEN}"})
            if entries.status_code == 200:
                assert all(e["path"] != "/healthz" for e in entries.json()["requests"])


def test_the_in_process_fake_sends_its_token() -> None:
    with InProcessFake(control_token=TOKEN) as control, httpx.Client(base_url=control.base_url) as client:
        control.faults.once("error_503", endpoint="video")
        assert client.post(VIDEO, json=BODY, headers=PROVIDER_AUTH).status_code == 503
        assert control.journal.entries()[0]["status"] == 503
        control.clock.advance(10)
        control.reset()


@pytest.mark.apimart(control_token=TOKEN)
def test_the_apimart_mock_fixture_takes_the_token_from_its_marker(apimart_mock: object) -> None:
    from mockserver.testing.control import MockControl

    assert isinstance(apimart_mock, MockControl)
    assert apimart_mock.http.get("/clock").status_code == 200
    assert apimart_mock.http.get("/clock", headers={"Authorization": "Bearer no"}).status_code == 401


def test_control_token_of_reads_the_flags() -> None:
    assert control_token_of(["--task-seconds", "0"]) is None
    assert control_token_of(["--control-token", "a"]) == "a"
    assert control_token_of(["--control-token=b c"]) == "b c"


@pytest.mark.e2e
def test_a_running_server_with_a_token() -> None:
    for server in (
        RunningServer(["--task-seconds", "0", "--control-token", TOKEN]),
        RunningServer(control_token=TOKEN),
    ):
        with server as control:
            with httpx.Client(base_url=control.base_url, timeout=5) as client:
                assert client.get("/__mock__/clock").status_code == 401
                assert client.get("/healthz").json()["status"] == "ok"
            control.clock.freeze()
            control.faults.once("error_503")
            control.reset()
            assert control.tasks() == []


@pytest.mark.e2e
def test_healthz_with_the_control_plane_off() -> None:
    with ServerProcess(["--no-control"]) as server, httpx.Client(base_url=server.base_url, timeout=5) as client:
        assert client.get("/healthz").json()["status"] == "ok"
        assert client.get("/__mock__/health").status_code == 404


def test_the_dockerfile_checks_healthz() -> None:
    dockerfile = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()
    healthcheck = dockerfile[dockerfile.index("HEALTHCHECK") :]
    assert "/healthz" in healthcheck
    assert "/__mock__/" not in healthcheck


# -- the warning at start ------------------------------------------------------------------------


def serve_output(flags: list[str], env: dict[str, str] | None = None) -> str:
    """What ``mockserver serve`` prints before it answers (stopped as soon as it does)."""
    port = free_port()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("MOCKSERVER_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "mockserver", "serve", "--port", str(port), *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**base_env, **(env or {})},
    )
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=10)
    return out.decode()


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("flags", "env", "warned"),
    [
        (["--host", "0.0.0.0"], None, True),
        (["--host", "0.0.0.0", "--control-token", TOKEN], None, False),
        (["--host", "0.0.0.0"], {"MOCKSERVER_CONTROL_TOKEN": TOKEN}, False),
        (["--host", "0.0.0.0", "--no-control"], None, False),
        (["--host", "127.0.0.1"], None, False),
    ],
)
def test_serving_beyond_loopback_without_a_token_warns(
    flags: list[str], env: dict[str, str] | None, warned: bool
) -> None:
    out = serve_output(flags, env)
    assert "serving on" in out
    assert ("WARNING" in out and "--control-token" in out) is warned, out


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                                ("127.0.0.2", True), ("0.0.0.0", False), ("::", False),
                                                ("192.168.1.4", False), ("example.com", False)])  # fmt: skip
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
