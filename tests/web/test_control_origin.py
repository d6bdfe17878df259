"""The control plane answers its own dashboard and programs, never another web page
(``mockserver/web/origin.py``): JSON writes only, its own Origin only, loopback Host names only."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from mockserver import Settings, create_app
from mockserver.core.clock import VirtualClock
from mockserver.testing import ServerProcess
from mockserver.testing.transport import SyncASGITransport

from ..browser import browser, page, why_no_browser
from ..servers import threaded_server

RICH = "rich-account"


@contextmanager
def client(*, listening: bool = False, base: str = "http://127.0.0.1:8000", **settings: Any) -> Iterator[httpx.Client]:
    app = create_app(Settings(**settings), clock=VirtualClock(), listening=listening)
    transport = SyncASGITransport(app)
    with httpx.Client(transport=transport, base_url=base) as c:
        yield c
    transport.close()


def error_of(answer: httpx.Response, status: int) -> str:
    assert answer.status_code == status, answer.text
    message: str = answer.json()["error"]["message"]
    return message


@pytest.mark.parametrize("kind", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; b=x"])
def test_a_write_that_is_not_json_is_a_415_and_changes_nothing(kind: str) -> None:
    with client() as c:
        c.post("/__mock__/balances", json={"token": RICH, "balance": 7})
        for path in ("/__mock__/reset", "/__mock__/clock", "/__mock__/scenarios"):
            assert "application/json" in error_of(c.post(path, content=b"{}", headers={"Content-Type": kind}), 415)
        assert c.get("/__mock__/scenarios").json()["rules"] == []
        assert c.get("/__mock__/ledger", params={"token": RICH}).json()["accounts"] != {}


def test_json_writes_and_bodiless_posts_still_work() -> None:
    with client() as c:
        assert c.post("/__mock__/reset").status_code == 200  # curl -X POST …/reset
        assert c.post("/__mock__/clock", json={"advance": 5}).status_code == 200
        typed = {"Content-Type": "application/json; charset=utf-8"}
        assert c.post("/__mock__/clock", content=b'{"advance": 1}', headers=typed).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://attacker.example"},
        {"Origin": "http://127.0.0.1:3000"},  # another port is another origin
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
    ],
)
def test_another_page_is_refused_on_reads_and_writes(headers: dict[str, str]) -> None:
    with client() as c:
        assert "another web page" in error_of(c.post("/__mock__/reset", json={}, headers=headers), 403)
        assert error_of(c.get("/__mock__/state", headers=headers), 403)


def test_the_dashboard_itself_and_its_own_origin_pass() -> None:
    with client() as c:
        own = {"Origin": "http://127.0.0.1:8000", "Sec-Fetch-Site": "same-origin"}
        assert c.post("/__mock__/clock", json={"advance": 1}, headers=own).status_code == 200
        linked = {"Sec-Fetch-Site": "cross-site"}  # a link to the dashboard from another page
        assert c.get("/__mock__/", headers=linked).status_code == 200
        assert c.get("/__mock__/dashboard/app.js", headers=linked).status_code == 200


def test_behind_a_public_url_its_origin_is_the_fakes_own() -> None:
    with client(public_url="https://fake.example.com") as c:
        own = {"Origin": "https://fake.example.com"}
        assert c.post("/__mock__/clock", json={"advance": 1}, headers=own).status_code == 200


@pytest.mark.parametrize("host", ["attacker.example", "127.0.0.1.attacker.example", "10.0.0.5:8000"])
def test_a_listening_server_answers_only_loopback_host_names(host: str) -> None:
    with client(listening=True) as c:
        assert "DNS rebinding" in error_of(c.get("/__mock__/state", headers={"Host": host}), 403)
        assert c.get("/healthz", headers={"Host": host}).status_code == 200  # the provider's side is not guarded


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost", "app.localhost:9", "[::1]:8000"])
def test_loopback_names_pass(host: str) -> None:
    with client(listening=True) as c:
        assert c.get("/__mock__/clock", headers={"Host": host}).status_code == 200


def test_allowed_hosts_and_beyond_loopback_open_the_host_check() -> None:
    with client(listening=True, allowed_hosts="fake.test, other.test") as c:
        assert c.get("/__mock__/clock", headers={"Host": "fake.test:8000"}).status_code == 200
        assert c.get("/__mock__/clock", headers={"Host": "third.test"}).status_code == 403
    with client(listening=True, allowed_hosts="*") as c:
        assert c.get("/__mock__/clock", headers={"Host": "any.test"}).status_code == 200
    with client(listening=True, host="0.0.0.0") as c:  # in a container: reached by any name
        assert c.get("/__mock__/clock", headers={"Host": "mockserver:8000"}).status_code == 200
    with client() as c:  # in-process (no socket, no DNS): any name
        assert c.get("/__mock__/clock", headers={"Host": "api.apimart.ai"}).status_code == 200


def raw_get(base_url: str, path: str, host: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", int(base_url.rsplit(":", 1)[1]), timeout=10)
    try:
        connection.request("GET", path, headers={"Host": host})
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.mark.e2e
def test_e2e_the_server_refuses_a_rebound_host_and_takes_allowed_hosts() -> None:
    with ServerProcess(["--allowed-hosts", "fake.test"]) as server:
        assert raw_get(server.base_url, "/__mock__/state", "attacker.example") == 403
        assert raw_get(server.base_url, "/__mock__/state", "fake.test") == 200
        assert raw_get(server.base_url, "/__mock__/state", "localhost:1") == 200


ATTACK = """<!doctype html><script>
const fake = new URLSearchParams(location.search).get("fake");
const hit = (path, body, headers) =>
  fetch(fake + path, {method: "POST", mode: "no-cors", body, headers}).catch(() => null);
window.done = Promise.all([
  hit("/__mock__/reset", "{}"),
  hit("/__mock__/scenarios", JSON.stringify({scenario: "error_500"})),
  hit("/__mock__/clock", JSON.stringify({advance: 1000000})),
  hit("/__mock__/reset"),
  fetch(fake + "/__mock__/reset", {method: "POST", body: "{}", headers: {"Content-Type": "application/json"}})
    .catch(() => null),
]).then(() => true);
</script>"""


@pytest.mark.e2e
@pytest.mark.skipif(why_no_browser() is not None, reason=f"browser tests: {why_no_browser()}")
def test_e2e_a_page_on_another_origin_cannot_drive_the_control_plane() -> None:
    """The attack as it was found: no-cors fetches from another origin in Chromium, no token set."""
    attacker = Starlette(routes=[Route("/", lambda request: HTMLResponse(ATTACK))])
    with ServerProcess([]) as server, threaded_server(attacker) as evil, browser() as chromium:
        api = httpx.Client(base_url=server.base_url, timeout=10)
        api.post("/__mock__/balances", json={"token": RICH, "balance": 7})
        before = api.get("/__mock__/clock").json()["now"]
        with page(chromium) as tab:
            tab.goto(f"{evil.replace('127.0.0.1', 'localhost')}/?fake={server.base_url}")
            assert tab.evaluate("window.done") is True
        assert api.get("/__mock__/scenarios").json()["rules"] == []
        assert api.get("/__mock__/clock").json()["now"] - before < 1000
        ledger = api.get("/__mock__/ledger", params={"token": RICH}).json()
        assert [account["balance"] for account in ledger["accounts"].values()] == [7], "nothing was reset"
        api.close()
