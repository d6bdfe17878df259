"""Hardening: the red team's reproductions, each answered by a bounded 4xx and a server that goes on.

In-process first (the fake's ASGI app through httpx, fast), then against the real server
(``e2e``): thousands of generated cases, a concurrent load across workers, slow-loris
connections, oversize bodies and headers, a crash that must not cost the client its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
import os
import resource
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from contract import fuzz
from contract.report import Report
from contract.target import Target
from mockserver import cli
from mockserver.control import ControlPlane
from mockserver.core.clock import LATEST, VirtualClock
from mockserver.core.jsonio import MAX_DEPTH, MAX_ITEMS, dumps
from mockserver.service import Fake
from mockserver.settings import Settings
from mockserver.store import MemoryStore, Store
from mockserver.store.sqlite import SQLiteStore
from mockserver.testing.control import MockControl
from mockserver.testing.process import ServerProcess, free_port
from mockserver.testing.transport import SyncASGITransport
from mockserver.web.app import create_app
from mockserver.web.edge import ENTRY_MAX_BYTES
from tests.servers import threaded_server

from .helpers import blocking

AUTH = {"Authorization": "Bearer hardening"}
VIDEO = "/v1/midjourney/generations/video"
IMAGINE = "/v1/midjourney/generations"
FRAME = "https://example.com/a.png"
BODY = {"prompt": "p", "image_urls": [FRAME]}
START = 1_767_225_600.0  # the VirtualClock's start: 2026-01-01


@contextmanager
def in_process(store: Store | None = None, **settings: Any) -> Iterator[tuple[httpx.Client, Fake]]:
    """An httpx client of a fresh fake (virtual clock, task_seconds=0), and the fake."""
    app = create_app(Settings(**{"task_seconds": 0.0, **settings}), clock=VirtualClock(START), store=store)
    transport = SyncASGITransport(app)
    with httpx.Client(transport=transport, base_url="http://testserver", headers=AUTH) as client:
        yield client, app.state.fake
    transport.close()


def refused(response: httpx.Response, status: int = 400) -> dict[str, Any]:
    """The provider's error body with this status."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == status
    error: dict[str, Any] = body["error"]
    return error


def names(error: dict[str, Any], field: str) -> bool:
    return error["param"] == field or field in error["message"]


def submit_ok(client: httpx.Client, **fields: Any) -> str:
    response = client.post(VIDEO, json={**BODY, **fields})
    assert response.status_code == 200, response.text
    task_id: str = response.json()["data"][0]["task_id"]
    return task_id


# -- 1. a million bad array items -------------------------------------------------------------


def test_a_million_bad_array_items_are_refused_at_once() -> None:
    raw = b'{"prompt": "x", "image_urls": [' + b",".join([b"0"] * 1_000_000) + b"]}"
    assert len(raw) > 1_900_000
    with in_process() as (client, _):
        started = time.perf_counter()
        response = client.post(VIDEO, content=raw, headers={"content-type": "application/json"})
        seconds = time.perf_counter() - started
        error = refused(response)
        assert error["param"] == "image_urls", error
        one = refused(client.post(VIDEO, json={"prompt": "x", "image_urls": [0]}))
        assert (one["param"], one["message"].startswith("image_urls[0]")) == ("image_urls", True), one
    print(f"\n1 000 000 bad items ({len(raw) / 2**20:.1f} MiB) refused in {seconds:.2f} s")
    assert seconds < 2.0


# -- 2. the clock and other numbers of the control plane --------------------------------------

NON_FINITE = [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400"]
NUMBER_FIELDS = [
    ("/__mock__/clock", b'{"advance": %s}', "advance"),
    ("/__mock__/clock", b'{"set": %s}', "set"),
    ("/__mock__/balances", b'{"token": "t", "balance": %s}', "balance"),
    ("/__mock__/scenarios", b'{"scenario": "fail", "probability": %s}', "probability"),
    ("/__mock__/scenarios", b'{"scenario": "fail", "times": %s}', "times"),
]


@pytest.mark.parametrize(("path", "template", "field"), NUMBER_FIELDS)
@pytest.mark.parametrize("number", NON_FINITE)
def test_non_finite_numbers_are_refused_by_the_control_plane(
    path: str, template: bytes, field: str, number: bytes
) -> None:
    with in_process() as (client, fake):
        error = refused(client.post(path, content=template % number, headers={"content-type": "application/json"}))
        assert names(error, field), error
        assert fake.clock.now() == START
        assert blocking(ControlPlane(fake)).fault_rules() == []
        task_id = submit_ok(client)
        assert client.get(f"/v1/tasks/{task_id}").status_code == 200
        assert client.get("/__mock__/tasks").status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"set": 1e12}, "set"),
        ({"advance": 1e300}, "advance"),
        ({"set": LATEST + 1}, "set"),
        ({"advance": -1}, "advance"),
    ],
)
def test_no_clock_move_can_break_later_submissions(body: dict[str, float], field: str) -> None:
    with in_process() as (client, _):
        assert names(refused(client.post("/__mock__/clock", json=body)), field)
        task_id = submit_ok(client)
        assert client.get(f"/v1/tasks/{task_id}").status_code == 200


def test_the_latest_clock_still_makes_tasks_and_reset_brings_it_back() -> None:
    with in_process() as (client, _):
        assert client.post("/__mock__/clock", json={"set": LATEST}).json()["now"] == LATEST
        task_id = submit_ok(client)
        assert client.get(f"/v1/tasks/{task_id}").status_code == 200
        assert client.post("/__mock__/reset", json={}).status_code == 200
        assert client.get("/__mock__/clock").json()["now"] == START
        submit_ok(client)


# -- 3. the journal is bounded in bytes, and keeps no credentials ------------------------------

CREDENTIALS = {
    "x-api-key": "k-secret-1",
    "api-key": "k-secret-2",
    "cookie": "session=k-secret-3",
    "x-auth-token": "k-secret-4",
    "x-client-secret": "k-secret-5",
    "proxy-authorization": "Basic k-secret-6",
}


def journal_text(store: Store) -> str:
    return dumps(blocking(store).journal()).decode()


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_journal_entries_are_bounded_and_hold_no_credentials(kind: str, tmp_path: Path) -> None:
    store: Store = MemoryStore(10_000, 64 * 1024) if kind == "memory" else SQLiteStore(tmp_path / "j.db", 10_000)
    huge = "a" * 2_000_000
    with in_process(store, journal_max_bytes=64 * 1024) as (client, _):
        for n in range(40):
            headers = {"x-huge": huge, "idempotency-key": f"key-{n}", **CREDENTIALS}
            client.post(VIDEO, json={"prompt": "p" * 100_000, "image_urls": [FRAME] * 5000}, headers=headers)
        entries = blocking(store).journal()
        text = journal_text(store)
    assert entries, "the journal keeps the newest entries"
    for entry in entries:
        assert len(dumps(entry)) <= ENTRY_MAX_BYTES, len(dumps(entry))
        assert entry["headers"]["x-huge"].endswith("(2000000 characters)")
        assert entry["headers"]["idempotency-key"].startswith("key-")
    for name, value in CREDENTIALS.items():
        assert name not in entries[-1]["headers"]
        assert value not in text
    if kind == "memory":
        assert len(text) <= 64 * 1024 + ENTRY_MAX_BYTES  # the whole journal, not only each entry
        assert entries[-1]["headers"]["idempotency-key"] == "key-39"


def test_a_large_body_is_journaled_in_a_few_kilobytes() -> None:
    urls = [f"https://example.com/{n}/{'x' * 150}.png" for n in range(MAX_ITEMS)]
    with in_process() as (client, fake):
        refused(client.post(IMAGINE, json={"prompt": "p" * 150, "image_urls": urls, "size": "1:1"}))
        (entry,) = blocking(ControlPlane(fake)).journal()
    assert len(dumps(entry)) <= ENTRY_MAX_BYTES
    assert entry["body"]["image_urls"][-1].endswith("more item(s)")


def test_an_array_or_object_of_more_than_max_items_is_refused_before_validation() -> None:
    with in_process() as (client, fake):
        many = {str(n): n for n in range(MAX_ITEMS + 1)}
        for body in ({"prompt": "p", "image_urls": [FRAME] * (MAX_ITEMS + 1)}, {**BODY, "unknown": many}):
            error = refused(client.post(VIDEO, json=body))
            assert "more than" in error["message"] and error["param"] in ("image_urls", "unknown"), error
        assert blocking(fake.store).tasks() == []


# -- 4. inputs that answered 500, or poisoned what came after ----------------------------------

DEEP = 1000


def nested(depth: int, kind: str) -> str:
    return "[" * depth + "]" * depth if kind == "list" else '{"a":' * depth + "1" + "}" * depth


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 500, 900, DEEP, 5000])
@pytest.mark.parametrize("kind", ["list", "object"])
@pytest.mark.parametrize("field", ["prompt", "image_urls", "end_url", "task_id", "batch_size", "unknown"])
def test_deep_nesting_in_any_field_is_a_400(depth: int, kind: str, field: str) -> None:
    raw = f'{{"prompt": "p", "image_urls": ["{FRAME}"], "{field}": {nested(depth, kind)}}}'
    with in_process() as (client, _):
        for path in (VIDEO, IMAGINE):
            refused(client.post(path, content=raw.encode(), headers={"content-type": "application/json"}))
        assert client.get("/__mock__/requests").status_code == 200


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 900, 5000])
@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/__mock__/scenarios", '{"scenario": "fail", "fields": {"a": %s}}'),
        ("/__mock__/scenarios", '{"scenario": "fail", "params": {"a": %s}}'),
        ("/__mock__/reset", '{"token": %s}'),
        ("/__mock__/balances", '{"token": %s, "balance": 1}'),
        ("/__mock__/clock", '{"advance": %s}'),
    ],
)
def test_deep_nesting_in_the_control_plane_is_a_400(depth: int, path: str, template: str) -> None:
    with in_process() as (client, _):
        json_type = {"Content-Type": "application/json"}
        refused(client.post(path, content=(template % nested(depth, "list")).encode(), headers=json_type))
        assert client.get("/__mock__/scenarios").status_code == 200


LONE = "\\ud800"  # a JSON escape of a lone surrogate: Python reads it, no JSON encoder writes it back


@pytest.mark.parametrize(
    ("path", "raw", "field"),
    [
        (VIDEO, f'{{"prompt": "p", "image_urls": ["https://example.com/{LONE}.png"]}}', "image_urls"),
        (VIDEO, f'{{"prompt": "p{LONE}", "image_urls": ["{FRAME}"]}}', "prompt"),
        (VIDEO, f'{{"prompt": "p", "image_urls": ["{FRAME}"], "end_url": "{LONE}"}}', "end_url"),
        (VIDEO, f'{{"task_id": "task_{LONE}"}}', "task_id"),
        (VIDEO, f'{{"prompt": "[mock:fail reason={LONE}]", "image_urls": ["{FRAME}"]}}', "prompt"),
        (IMAGINE, '{"prompt": "a fox \\udfff"}', "prompt"),
        (IMAGINE, f'{{"prompt": "a fox", "{LONE}": 1}}', "body"),
        ("/__mock__/scenarios", f'{{"scenario": "fail", "params": {{"reason": "{LONE}"}}}}', "params.reason"),
        ("/__mock__/scenarios", f'{{"scenario": "fail", "fields": {{"prompt": "{LONE}"}}}}', "fields.prompt"),
        ("/__mock__/balances", f'{{"token": "{LONE}", "balance": 1}}', "token"),
    ],
)
def test_lone_surrogates_are_refused_where_they_enter(path: str, raw: str, field: str) -> None:
    with in_process() as (client, fake):
        error = refused(client.post(path, content=raw.encode(), headers={"content-type": "application/json"}))
        assert names(error, field), error
        assert blocking(fake.store).tasks() == []
        assert blocking(ControlPlane(fake)).fault_rules() == []
        assert client.get("/__mock__/tasks").status_code == 200
        assert client.get("/__mock__/requests").status_code == 200
        assert client.get("/__mock__/scenarios").status_code == 200


def test_every_stored_task_stays_readable_after_odd_but_valid_text() -> None:
    odd = "emoji 🐈 \u2028 nul \x00 bidi \u202e high \U0010ffff"
    with in_process() as (client, _):
        task_id = submit_ok(client, prompt=odd)
        assert client.get(f"/v1/tasks/{task_id}").status_code == 200
        assert client.get(f"/v1/midjourney/{task_id}").json()["prompt"] == odd
        assert client.get("/__mock__/tasks").status_code == 200
        assert client.get(f"/__mock__/tasks/{task_id}").status_code == 200


@pytest.mark.parametrize("name", ["².mp4", "①.png", "٣.mp4", "0" * 5000 + ".mp4", "9" * 5000 + ".png", "-1.mp4"])
def test_media_names_that_are_not_small_ascii_numbers_are_404(name: str) -> None:
    with in_process() as (client, _):
        video = submit_ok(client)
        imagine = client.post(IMAGINE, json={"prompt": "a fox"}).json()["data"][0]["task_id"]
        assert client.get(f"/media/{video}/0.mp4").status_code == 200
        for task_id in (video, imagine):
            response = client.get(f"/media/{task_id}/{name}")
            assert response.status_code == 404, (name, response.status_code, response.text[:200])


# -- 4. a crash must not cost the client its connection ---------------------------------------


def client_port(response: httpx.Response) -> int:
    port: int = response.extensions["network_stream"].get_extra_info("client_addr")[1]
    return port


@pytest.mark.e2e
@pytest.mark.parametrize("where", ["provider", "control"])
def test_an_unhandled_error_is_a_500_and_the_connection_stays_usable(
    where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(Settings(task_seconds=0.0), clock=VirtualClock(START))
    fake: Fake = app.state.fake

    async def broken_poll(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    def broken_task(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(fake, "poll", broken_poll)
    monkeypatch.setattr(ControlPlane, "task", broken_task)
    crashing = "/v1/tasks/task_x" if where == "provider" else "/__mock__/tasks/task_x"
    with threaded_server(app) as base, httpx.Client(base_url=base, headers=AUTH, timeout=5) as client:
        first = client.get(crashing)
        error = refused(first, 500)
        assert error["type"] == "server_error"
        assert first.headers.get("connection") != "close"
        second = client.post(VIDEO, json=BODY)
        assert second.status_code == 200
        assert client_port(second) == client_port(first), "the connection was closed after the 500"
        assert client.get(crashing).status_code == 500
        assert client.get("/openapi.json").status_code == 200


# -- 9. control plane token: tests/web/test_control_token.py ---------------------------------------

# -- 14. a failure reason with a space, through every route a fault is chosen by ---------------


def failed_reason(client: httpx.Client, control: MockControl, task_id: str) -> str:
    task = client.get(f"/v1/midjourney/{task_id}").json()
    assert task["status"] == "FAILURE", task
    assert control.task(task_id)["record"]["fail_reason"] == task["fail_reason"]
    reason: str = task["fail_reason"]
    return reason


REASON = "GPU on fire"


def test_a_fail_reason_with_spaces_through_the_control_object(apimart_mock: MockControl) -> None:
    apimart_mock.faults.once("fail", endpoint="video", reason=REASON)
    with httpx.Client(base_url=apimart_mock.base_url, headers=AUTH) as client:
        assert failed_reason(client, apimart_mock, submit_ok(client)) == REASON


def test_a_fail_reason_with_spaces_through_the_scenarios_route(apimart_mock: MockControl) -> None:
    rule = apimart_mock.http.post("/scenarios", json={"scenario": "fail", "params": {"reason": REASON}, "times": 1})
    assert rule.status_code == 200, rule.text
    with httpx.Client(base_url=apimart_mock.base_url, headers=AUTH) as client:
        assert failed_reason(client, apimart_mock, submit_ok(client)) == REASON


@pytest.mark.parametrize("header", [f'fail; reason="{REASON}"', f"fail; reason='{REASON}'", f'fail reason="{REASON}"'])
def test_a_fail_reason_with_spaces_through_the_header(apimart_mock: MockControl, header: str) -> None:
    with httpx.Client(base_url=apimart_mock.base_url, headers=AUTH) as client:
        response = client.post(VIDEO, json=BODY, headers={"X-Mock-Scenario": header})
        assert response.status_code == 200, response.text
        assert failed_reason(client, apimart_mock, response.json()["data"][0]["task_id"]) == REASON


def test_a_fail_reason_with_spaces_through_a_prompt_marker(apimart_mock: MockControl) -> None:
    with httpx.Client(base_url=apimart_mock.base_url, headers=AUTH) as client:
        task_id = submit_ok(client, prompt=f'a cat [mock:fail reason="{REASON}"]')
        assert failed_reason(client, apimart_mock, task_id) == REASON


# -- 16. the command line refuses what it cannot use, before announcing anything ----------------


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--prices", "midjourney@video=abc"], "not a number"),
        (["--prices", "midjourny@video=1"], "unknown price key 'midjourny@video'"),
        (["--prices", "midjourney@video=nan"], "finite"),
        (["--prices", "midjourney@video"], "KEY=VALUE"),
        (["--price-table", "/no/such/prices.yaml"], "No such file"),
        (["--state", "nosuch://x"], "unsupported state store"),
        (["--port", "99999"], "port"),
        (["--public-url", "api.example.com"], "public_url"),
        (["--body-timeout-seconds", "0"], "body_timeout_seconds"),
        (["--header-timeout-seconds", "inf"], "header_timeout_seconds"),
        (["--journal-max-bytes", "10"], "journal_max_bytes"),
    ],
)
def test_the_command_line_refuses_what_it_cannot_use(
    flags: list[str], words: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("MOCKSERVER_"):
            monkeypatch.delenv(name)
    assert cli.main(["serve", "--port", str(free_port()), *flags]) == 2
    out, err = capsys.readouterr()
    assert "serving on" not in out
    assert words in err


def test_a_price_table_with_a_misspelt_key_is_refused(tmp_path: Path) -> None:
    table = tmp_path / "prices.yaml"
    table.write_text("midjourney@video: 2\nmidjourney@vidoe-720p: 4\n")
    with pytest.raises(ValueError, match="unknown price key 'midjourney@vidoe-720p'"):
        Settings(price_table=str(table)).validated()


def test_a_busy_port_is_refused_before_serving(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["serve", "--port", str(port)]) == 2
    out, err = capsys.readouterr()
    assert "serving on" not in out
    assert "cannot serve" in err


# -- against the real server -------------------------------------------------------------------


@pytest.mark.e2e
def test_thousands_of_generated_cases_and_no_server_error() -> None:
    with ServerProcess(["--task-seconds", "0"]) as server:
        target = Target(server.base_url, "fuzzer", max_paid_tasks=10**6)
        report = Report(server.base_url, target.fake)
        try:
            tallies = fuzz.run(target, report, examples=250)
        finally:
            target.close()
    cases = sum(t.cases for t in tallies.values())
    server_errors = sum(n for t in tallies.values() for status, n in t.statuses.items() if status >= 500)
    print(f"\nschemathesis against the real server: {cases} cases, {server_errors} answered 5xx")
    assert cases >= 4000
    assert server_errors == 0
    assert report.failed == [], [f"{f.rule}: {f.observed}" for f in report.failed]


@pytest.mark.e2e
def test_ten_thousand_submissions_from_64_clients_across_two_workers(tmp_path: Path) -> None:
    total, clients = 10_000, 64
    state = f"sqlite:///{tmp_path}/load.db"
    with ServerProcess(["--workers", "2", "--state", state, "--task-seconds", "0"]) as server:

        async def client_loop(k: int, n: int, acked: list[str], failures: list[int]) -> None:
            limits = httpx.Limits(max_connections=1)
            async with httpx.AsyncClient(base_url=server.base_url, headers=AUTH, limits=limits, timeout=30) as c:
                for i in range(n):
                    response = await c.post(VIDEO, json=BODY, headers={"Idempotency-Key": f"client{k}-{i}"})
                    if response.status_code == 200:
                        acked.append(response.json()["data"][0]["task_id"])
                    else:
                        failures.append(response.status_code)

        async def load() -> tuple[list[str], list[int], float]:
            acked: list[str] = []
            failures: list[int] = []
            started = time.perf_counter()
            per_client = total // clients
            jobs = [
                client_loop(k, per_client + (1 if k < total % clients else 0), acked, failures) for k in range(clients)
            ]
            await asyncio.gather(*jobs)
            return acked, failures, time.perf_counter() - started

        acked, failures, seconds = asyncio.run(load())
        print(f"\n{total} submissions from {clients} clients over 2 workers (SQLite): {seconds:.1f} s")
        assert failures == []
        assert len(acked) == total
        assert len(set(acked)) == total
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            stored = {t["record"]["id"] for t in client.get("/__mock__/tasks").json()["tasks"]}
            journal = client.get("/__mock__/requests", params={"path": VIDEO}).json()["requests"]
        assert stored == set(acked), "every acknowledged task is stored, and nothing else"
        assert len(journal) == min(total, 10_000)


def slow_socket(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST /v1/midjourney/generations/video HTTP/1.1\r\nHost: x\r\n")  # headers never finish
    return sock


@pytest.mark.e2e
def test_slow_loris_and_oversize_bodies_do_not_stall_others() -> None:
    with ServerProcess(["--task-seconds", "0"]) as server:
        port = server.port
        lorises = [slow_socket(port) for _ in range(50)]
        trickle = socket.create_connection(("127.0.0.1", port))
        trickle.sendall(
            b"POST /v1/midjourney/generations/video HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b" " * 65536
        for _ in range(16):  # a slow, large body: 1 MiB so far, more to come
            trickle.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        try:
            with httpx.Client(base_url=server.base_url, headers=AUTH, timeout=5) as client:
                worst = 0.0
                for _ in range(20):
                    started = time.perf_counter()
                    assert client.post(VIDEO, json=BODY).status_code == 200
                    worst = max(worst, time.perf_counter() - started)
                big = client.post(VIDEO, content=io.BytesIO(b" " * (41 * 1024 * 1024)).read(),
                                  headers={"Content-Type": "application/json"})  # fmt: skip
                assert big.status_code == 413
                started = time.perf_counter()
                assert client.get("/v1/tasks/task_x").status_code == 404
                worst = max(worst, time.perf_counter() - started)
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                raw.sendall(
                    b"POST /v1/midjourney/generations/video HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 999999999\r\n\r\n"
                )
                answer = raw.recv(4096)  # at once, before a byte of the body is sent
            assert answer.startswith(b"HTTP/1.1 413")
            print(f"\nworst latency beside 50 slow-loris sockets and a trickled body: {worst * 1000:.1f} ms")
            assert worst < 2.0
        finally:
            for sock in [*lorises, trickle]:
                sock.close()


def read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    sock.settimeout(limit)
    started, data = time.perf_counter(), b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data, time.perf_counter() - started


@pytest.mark.e2e
def test_slow_clients_are_timed_out() -> None:
    """A partial request line, a silent connection, headers that never end and a trickled body:
    each is closed within its timeout, a partial request with a 408 in the provider's body."""
    flags = ["--task-seconds", "0", "--header-timeout-seconds", "1", "--body-timeout-seconds", "1"]
    with ServerProcess(flags) as server:
        port = server.port
        partial_line = socket.create_connection(("127.0.0.1", port))
        partial_line.sendall(b"POST /v1/midjourney/gener")
        silent = socket.create_connection(("127.0.0.1", port))
        endless_headers = socket.create_connection(("127.0.0.1", port))
        endless_headers.sendall(b"GET /v1/tasks/x HTTP/1.1\r\nHost: x\r\n")
        trickled_body = socket.create_connection(("127.0.0.1", port))
        trickled_body.sendall(
            b"POST /v1/midjourney/generations/video HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        started = time.perf_counter()
        for sock, byte in ((partial_line, b"a"), (endless_headers, b"X"), (trickled_body, b" ")):
            sock.sendall(byte)  # a byte now and then does not reset the clock
        results = {}
        for name, sock in [("partial_line", partial_line), ("silent", silent),
                           ("endless_headers", endless_headers), ("trickled_body", trickled_body)]:  # fmt: skip
            results[name] = read_until_closed(sock, 10)
            sock.close()
        elapsed = time.perf_counter() - started
        for name in ("partial_line", "endless_headers", "trickled_body"):
            answer = results[name][0]
            assert answer.startswith(b"HTTP/1.1 408"), (name, answer[:200])
            assert b'"code":408' in answer
        assert results["silent"][0] == b""
        print(f"\nfour slow clients closed after {elapsed:.2f} s (timeouts 1 s)")
        assert elapsed < 4.0
        with httpx.Client(base_url=server.base_url, headers=AUTH, timeout=5) as client:
            assert client.post(VIDEO, json=BODY).status_code == 200


class LimitedServer(ServerProcess):
    """The server with at most ``files`` open file descriptors (RLIMIT_NOFILE), as on many hosts."""

    def __init__(self, args: list[str], files: int) -> None:
        super().__init__(args)
        self.files = files

    def command(self) -> list[str]:
        launcher = (
            "import resource, runpy, sys; "
            f"resource.setrlimit(resource.RLIMIT_NOFILE, ({self.files}, {self.files})); "
            "sys.argv = ['mockserver', *sys.argv[1:]]; runpy.run_module('mockserver', run_name='__main__')"
        )
        return [sys.executable, "-c", launcher, *super().command()[3:]]


@pytest.mark.e2e
def test_more_slow_loris_connections_than_descriptors_do_not_stop_normal_traffic() -> None:
    files, lorises_count = 1024, 1050
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < lorises_count + 100:
        pytest.skip("this test process cannot hold 1 150 sockets")
    with LimitedServer(["--task-seconds", "0", "--header-timeout-seconds", "2"], files) as server:
        lorises = []
        try:
            for _ in range(lorises_count):
                sock = socket.socket()
                sock.setblocking(False)
                sock.connect_ex(("127.0.0.1", server.port))
                lorises.append(sock)
            time.sleep(0.2)
            for sock in lorises:
                with contextlib.suppress(OSError):  # not accepted yet: it waits in the backlog
                    sock.send(b"POST /v1/midjourney/gen")
            # Out of descriptors, the server sheds new connections (libuv accepts and closes them):
            # a client retries, as it would against any overloaded server, until the slow ones are cut.
            started, response = time.perf_counter(), None
            while response is None and time.perf_counter() - started < 10:
                try:
                    with httpx.Client(base_url=server.base_url, headers=AUTH, timeout=5) as client:
                        response = client.post(VIDEO, json=BODY)
                except httpx.TransportError:
                    time.sleep(0.1)
            waited = time.perf_counter() - started
        finally:
            for sock in lorises:
                sock.close()
        print(
            f"\n{lorises_count} slow-loris sockets against {files} descriptors: a normal request waited {waited:.2f} s"
        )
        assert response is not None and response.status_code == 200
        assert waited < 6.0


@pytest.mark.e2e
def test_a_20_mb_header_is_refused_by_the_server() -> None:
    with ServerProcess(["--task-seconds", "0"]) as server:
        rss_before = rss_kib(server)
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # refused before it was all sent
                    raw.sendall(b"GET /v1/tasks/x HTTP/1.1\r\nHost: x\r\nX-Huge: " + b"a" * 20_000_000 + b"\r\n\r\n")
                answer, _ = read_until_closed(raw, 10)
            assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
        grown = rss_kib(server) - rss_before
        with httpx.Client(base_url=server.base_url, headers=AUTH, timeout=5) as client:
            assert client.post(VIDEO, json=BODY).status_code == 200
            assert client.get("/__mock__/requests").status_code == 200
        print(f"\nfive 20 MB headers refused; the server grew {grown / 1024:.1f} MiB")
        assert grown < 50 * 1024


def rss_kib(server: ServerProcess) -> int:
    assert server.process is not None
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")  # pragma: no cover


@pytest.mark.e2e
def test_the_clock_cannot_break_the_real_server() -> None:
    with ServerProcess(["--task-seconds", "0"]) as server, httpx.Client(base_url=server.base_url, timeout=5) as client:
        for raw in (b'{"set": 1e12}', b'{"advance": 1e400}', b'{"advance": NaN}', b'{"set": -Infinity}'):
            response = client.post("/__mock__/clock", content=raw, headers={"content-type": "application/json"})
            assert response.status_code == 400, response.text
        client.post("/__mock__/clock", json={"advance": 10**6})
        submitted = client.post(VIDEO, json=BODY, headers=AUTH)
        assert submitted.status_code == 200
        assert client.get(f"/v1/tasks/{submitted.json()['data'][0]['task_id']}", headers=AUTH).status_code == 200
        assert client.post("/__mock__/reset", json={}).status_code == 200
        assert math.isclose(client.get("/__mock__/clock").json()["now"], time.time(), abs_tol=60)
