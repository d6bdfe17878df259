"""The control plane: journal, ledger and balances, reset, clock, internals, its own spec."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate

from mockserver.core.ledger import NEVER_CHARGED, load_prices
from mockserver.core.spec import CONTROL, load_document, spec_path
from mockserver.testing.control import ControlError, MockControl
from mockserver.testing.process import ServerProcess

from ..helpers import BODY, VIDEO

TOKEN = "journal-user"  # the `client` fixture's token
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def submit(client: httpx.Client, **fields: object) -> str:
    response = client.post(VIDEO, json={**BODY, **fields})
    assert response.status_code == 200, response.text
    task_id: str = response.json()["data"][0]["task_id"]
    return task_id


# -- journal ---------------------------------------------------------------------------------


def test_journal_records_requests_without_the_token(apimart_mock: MockControl, client: httpx.Client) -> None:
    task_id = submit(client, batch_size=4)
    client.get(f"/v1/tasks/{task_id}")
    client.post(VIDEO, json={"prompt": "no frame"})
    entries = apimart_mock.journal.entries()
    assert [(e["method"], e["path"], e["status"]) for e in entries] == [
        ("POST", VIDEO, 200),
        ("GET", f"/v1/tasks/{task_id}", 200),
        ("POST", VIDEO, 400),
    ]
    first = entries[0]
    assert first["task_id"] == task_id
    assert first["body"] == {**BODY, "batch_size": 4}
    assert first["account"].startswith("acct_")
    assert "authorization" not in first["headers"]
    assert "journal-user" not in str(entries)
    assert [e["seq"] for e in entries] == sorted(e["seq"] for e in entries)


def test_journal_shortens_data_urls(apimart_mock: MockControl, client: httpx.Client) -> None:
    frame = "data:image/png;base64," + base64.b64encode(b"\x00" * 30_000).decode()
    submit(client, image_urls=[frame])
    stored = apimart_mock.journal.entries()[0]["body"]["image_urls"][0]
    assert len(stored) < 300
    assert stored.endswith(f"({len(frame)} characters)")


def test_assert_submitted(apimart_mock: MockControl, client: httpx.Client) -> None:
    submit(client, batch_size=4)
    submit(client, batch_size=4)
    submit(client, batch_size=1)
    client.post(VIDEO, json={**BODY, "batch_size": 3})  # refused: not counted
    apimart_mock.journal.assert_submitted(2, batch_size=4)
    apimart_mock.journal.assert_submitted(3)
    with pytest.raises(AssertionError, match="expected 1"):
        apimart_mock.journal.assert_submitted(1, batch_size=4)


def test_journal_filters_and_cursor(apimart_mock: MockControl, client: httpx.Client) -> None:
    submit(client)
    mark = apimart_mock.journal.mark()
    task_id = submit(client)
    client.get(f"/v1/tasks/{task_id}")
    client.get("/v1/tasks/task_x", headers={"Authorization": "Bearer someone-else"})
    assert len(apimart_mock.journal.entries(since=mark)) == 3
    assert len(apimart_mock.journal.entries(method="GET")) == 2
    assert len(apimart_mock.journal.entries(path="/v1/tasks/")) == 2
    assert len(apimart_mock.journal.entries(token="journal-user")) == 3
    assert len(apimart_mock.journal.entries(limit=1)) == 1


@pytest.mark.apimart(task_seconds=20)
def test_poll_interval_assertion(apimart_mock: MockControl, client: httpx.Client) -> None:
    task_id = submit(client)
    for _ in range(3):
        client.get(f"/v1/tasks/{task_id}")
        apimart_mock.clock.advance(3)
    apimart_mock.journal.assert_poll_interval_at_least(3)
    client.get(f"/v1/tasks/{task_id}")
    client.get(f"/v1/tasks/{task_id}")  # an impatient client
    with pytest.raises(AssertionError, match="polled"):
        apimart_mock.journal.assert_poll_interval_at_least(3)


@pytest.mark.apimart(journal_size=5)
def test_journal_is_a_bounded_ring(apimart_mock: MockControl, client: httpx.Client) -> None:
    for _ in range(12):
        client.get("/v1/tasks/task_x")
    entries = apimart_mock.journal.entries()
    assert len(entries) == 5
    assert entries[-1]["seq"] == 12


# -- ledger -------------------------------------------------------------------------------------


def test_ledger_charges_by_price_key_and_batch(apimart_mock: MockControl, client: httpx.Client) -> None:
    submit(client, batch_size=4)
    submit(client, batch_size=2, video_type="vid_1.1_i2v_720")
    client.post("/v1/midjourney/generations", json={"prompt": "fox", "speed": "fast"})
    summary = apimart_mock.ledger.summary()
    account = summary["accounts"][summary["entries"][0]["account"]]
    assert account["by_price_key"] == {
        "midjourney@video": 4 * 2.0,  # 2 credits a clip
        "midjourney@video-720p": 2 * 4.0,  # 4 credits a clip
        "midjourney@imagine-fast": 0.5504,
    }
    assert summary["total_spent"] == apimart_mock.ledger.spent() == pytest.approx(16.5504)
    assert summary["total_spent_usd"] == pytest.approx(1.65504)
    assert apimart_mock.ledger.spent(token="journal-user") == pytest.approx(16.5504)
    assert apimart_mock.ledger.spent(token="nobody") == 0.0
    assert account["balance"] is None


def test_balance_gives_402_and_refunds_free_it(apimart_mock: MockControl, client: httpx.Client) -> None:
    apimart_mock.ledger.set_balance("journal-user", 5)
    submit(client)  # 2 spent, 3 left
    too_big = client.post(VIDEO, json={**BODY, "batch_size": 2})  # 4 > 3
    assert too_big.status_code == 402
    failing = client.post(VIDEO, json={**BODY, "prompt": "x [mock:moderation]"})  # 2, refunded as it fails
    assert failing.status_code == 200
    submit(client)  # the refund made room: 1 left
    broke = client.post(VIDEO, json=BODY)
    assert broke.status_code == 402
    error = broke.json()["error"]
    assert error["type"] == "payment_required"
    assert "insufficient balance" in error["message"]
    assert len(apimart_mock.tasks()) == 3
    other = client.post(VIDEO, json=BODY, headers={"Authorization": "Bearer rich"})
    assert other.status_code == 200  # other accounts are unlimited


@pytest.mark.apimart(default_balance=10, prices="midjourney@video=2.5")
def test_default_balance_and_price_overrides(apimart_mock: MockControl, client: httpx.Client) -> None:
    assert [client.post(VIDEO, json=BODY).status_code for _ in range(5)] == [200, 200, 200, 200, 402]
    assert apimart_mock.ledger.spent() == 10.0


def test_price_table_file(tmp_path: Path) -> None:
    table = tmp_path / "prices.yaml"
    table.write_text("midjourney@video: 0.25\nmidjourney@video-fast: 9\n")
    prices = load_prices(table, "midjourney@video-720p=0.5")
    assert prices["midjourney@video"] == 0.25
    assert prices["midjourney@video-720p"] == 0.5
    assert all(prices[key] == 0 for key in NEVER_CHARGED)  # never charged, whatever the table says
    with pytest.raises(ValueError, match="not a number"):
        load_prices(None, "midjourney@video=cheap")


@pytest.mark.e2e
def test_server_prints_the_cost_when_it_stops(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with ServerProcess(["--task-seconds", "0"], log=log) as server, httpx.Client(base_url=server.base_url) as client:
        for _ in range(3):
            client.post(VIDEO, json={**BODY, "batch_size": 2}, headers=HEADERS)
    output = server.stop() or log.read_text()
    assert "3 task(s) from 1 account(s); on the real API this run would have cost 12 credits ($1.20)" in output


# -- reset, clock, internals ---------------------------------------------------------------------


def test_reset_one_account_or_all(apimart_mock: MockControl, client: httpx.Client) -> None:
    submit(client)
    client.post(VIDEO, json=BODY, headers={"Authorization": "Bearer other"})
    apimart_mock.faults.add("error_500", endpoint="imagine")
    apimart_mock.reset(token="other")
    assert len(apimart_mock.tasks()) == 1
    assert len(apimart_mock.faults.rules()) == 1
    apimart_mock.reset()
    assert apimart_mock.tasks() == []
    assert apimart_mock.faults.rules() == []
    assert apimart_mock.journal.entries() == []


def test_clock_moves_only_forward(apimart_mock: MockControl) -> None:
    start = apimart_mock.clock.now()
    assert apimart_mock.clock.advance(90) == start + 90
    assert apimart_mock.clock.set(start + 100) == start + 100
    with pytest.raises(ControlError, match="only moves forward"):
        apimart_mock.clock.set(start)


def test_task_internals(apimart_mock: MockControl, client: httpx.Client) -> None:
    task_id = submit(client, end_url="https://example.com/end.png", batch_size=2, index=1)
    internal = apimart_mock.task(task_id)
    record = internal["record"]
    assert record["video_type"] == "vid_1.1_i2v_start_end_480"
    assert (record["price_key"], record["quantity"], record["charge"]) == ("midjourney@video", 2, 4.0)
    assert any("index ignored" in n for n in record["params"]["notes"])
    assert internal["view"]["status"] == "SUCCESS"


def test_control_plane_spec(client: httpx.Client, apimart_mock: MockControl) -> None:
    document = load_document(spec_path(CONTROL))
    validate(document)
    served = apimart_mock.http.get("/openapi.json").json()
    assert served == document
    provider = load_document()
    assert not any(path.startswith("/__mock__") for path in provider["paths"])
    assert apimart_mock.http.post("/clock", json={"advance": -5}).status_code == 400
    assert apimart_mock.http.post("/scenarios", json={"scenario": "drop", "times": 0}).status_code == 400


def test_control_plane_never_answers_provider_paths(apimart_mock: MockControl, client: httpx.Client) -> None:
    """Under /__mock__/ the provider's paths are unknown routes (the control plane's own 404 body),
    while the same paths at the root are the provider's (401 without a key, not 404)."""
    for path in ("/v1/tasks/x", "/v1/midjourney/x"):
        answer = apimart_mock.http.get(path)
        assert answer.status_code == 404
        assert answer.json()["error"]["message"] == f"no route for GET /__mock__{path}"
        assert client.get(path, headers={"Authorization": ""}).status_code == 401
    posted = apimart_mock.http.post("/v1/midjourney/generations/video", json=BODY)
    assert posted.json()["error"]["message"] == "no route for POST /__mock__/v1/midjourney/generations/video"
    assert client.post("/v1/midjourney/generations/video", json=BODY).status_code == 200


def test_journal_as_har(apimart_mock: MockControl, client: httpx.Client) -> None:
    task_id = submit(client)
    client.get(f"/v1/tasks/{task_id}")
    client.post(VIDEO, json={"prompt": "x"})
    har = apimart_mock.journal.har()["log"]
    assert (har["version"], har["creator"]["name"]) == ("1.2", "mockserver")
    submitted, polled, refused = har["entries"]
    assert submitted["request"]["method"] == "POST"
    assert submitted["request"]["url"].endswith(VIDEO)
    assert json.loads(submitted["request"]["postData"]["text"]) == BODY
    assert {h["name"] for h in submitted["request"]["headers"]}.isdisjoint({"authorization"})
    assert polled["response"]["status"] == 200
    assert refused["response"]["status"] == 400
    assert json.loads(refused["response"]["content"]["text"])["error"]["param"] == "image_urls"
    for item in har["entries"]:
        assert item["startedDateTime"].endswith("Z") and item["time"] >= 0
        assert set(item) >= {"startedDateTime", "time", "request", "response", "cache", "timings"}
