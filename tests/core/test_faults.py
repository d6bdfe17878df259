"""Every fault kind, seen from a client: what the real API would send when things go wrong."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from mockserver.core.faults import CATALOGUE, MODERATION_REASON, UPSTREAM_TIMEOUT_REASON
from mockserver.testing.control import ControlError, MockControl

from ..helpers import BODY, VIDEO

TOKEN = "fault-tester"  # the `client` fixture's token
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def submit(client: httpx.Client, body: dict[str, Any] | None = None, scenario: str | None = None) -> httpx.Response:
    headers = {"X-Mock-Scenario": scenario} if scenario is not None else None
    return client.post(VIDEO, json=body or BODY, headers=headers)


def task_id_of(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    task_id: str = response.json()["data"][0]["task_id"]
    return task_id


def assert_error_body(response: httpx.Response, status: int, kind: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], error["type"]) == (status, kind)
    assert error["message"]


# -- task outcomes -----------------------------------------------------------------------


def test_moderation_by_header_fails_and_refunds(apimart_mock: MockControl, client: httpx.Client) -> None:
    task_id = task_id_of(submit(client, scenario="moderation"))
    task = client.get(f"/v1/midjourney/{task_id}").json()
    assert (task["status"], task["fail_reason"]) == ("FAILURE", MODERATION_REASON)
    assert "video_urls" not in task
    ledger = apimart_mock.ledger.summary(token="fault-tester")
    account = next(iter(ledger["accounts"].values()))
    assert account["charged"] == 2.0
    assert account["refunded"] == 2.0
    assert account["spent"] == 0.0
    assert [e["kind"] for e in ledger["entries"]] == ["charge", "refund"]


def test_upstream_timeout_by_prompt_marker(client: httpx.Client) -> None:
    task_id = task_id_of(submit(client, {**BODY, "prompt": "a cat [mock:upstream_timeout]"}))
    task = client.get(f"/v1/midjourney/{task_id}").json()
    assert (task["status"], task["fail_reason"]) == ("FAILURE", UPSTREAM_TIMEOUT_REASON)


@pytest.mark.apimart(task_dialect="unified")
def test_failure_with_chosen_reason_in_unified_dialect(client: httpx.Client) -> None:
    task_id = task_id_of(submit(client, scenario="fail; reason=GPU_on_fire"))
    data = client.get(f"/v1/tasks/{task_id}").json()["data"]
    assert data["status"] == "failed"
    assert data["error"]["message"] == "GPU_on_fire"


@pytest.mark.apimart(task_seconds=10)
def test_never_finishes(apimart_mock: MockControl, client: httpx.Client) -> None:
    apimart_mock.faults.add("never", endpoint="video")
    task_id = task_id_of(submit(client))
    apimart_mock.clock.advance(3600)
    task = client.get(f"/v1/midjourney/{task_id}").json()
    assert (task["status"], task["progress"]) == ("IN_PROGRESS", "99%")
    assert client.get(f"/media/{task_id}/0.mp4").status_code == 404


# -- refusals -------------------------------------------------------------------------


def test_rate_limit_scenario(client: httpx.Client) -> None:
    response = submit(client, scenario="rate_limit; retry_after=7")
    assert_error_body(response, 429, "rate_limit_error")
    assert response.headers["Retry-After"] == "7"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors(apimart_mock: MockControl, client: httpx.Client, status: int) -> None:
    apimart_mock.faults.once(f"error_{status}", endpoint="poll")
    task_id = task_id_of(submit(client))
    # The endpoint pages name 502 bad_gateway; the other 5xx are server_error.
    assert_error_body(client.get(f"/v1/tasks/{task_id}"), status, "bad_gateway" if status == 502 else "server_error")
    assert client.get(f"/v1/tasks/{task_id}").status_code == 200  # fired once only


def test_refused_submission_by_fault_creates_no_task(apimart_mock: MockControl, client: httpx.Client) -> None:
    assert submit(client, scenario="error_503").status_code == 503
    assert apimart_mock.tasks() == []
    assert apimart_mock.ledger.spent() == 0


@pytest.mark.apimart(rate_limit_per_minute=3)
def test_rate_limiter_really_limits(apimart_mock: MockControl, client: httpx.Client) -> None:
    assert [submit(client).status_code for _ in range(3)] == [200, 200, 200]
    limited = client.get("/v1/tasks/task_01KV52C0TEJSYZMCG0NCS4YWKK")
    assert_error_body(limited, 429, "rate_limit_error")
    retry = int(limited.headers["Retry-After"])
    assert 1 <= retry <= 60
    other = client.get("/v1/tasks/task_x", headers={"Authorization": "Bearer someone-else"})
    assert other.status_code == 404  # limits are per account
    apimart_mock.clock.advance(retry)
    assert submit(client).status_code == 200


# -- latency and the wire ---------------------------------------------------------------------


def test_fixed_latency_costs_virtual_time_in_process(apimart_mock: MockControl, client: httpx.Client) -> None:
    apimart_mock.faults.add("latency", endpoint="poll", ms=5000)
    task_id = task_id_of(submit(client))
    before, started = apimart_mock.clock.now(), time.perf_counter()
    assert client.get(f"/v1/tasks/{task_id}").status_code == 200
    assert apimart_mock.clock.now() - before == pytest.approx(5.0)
    assert time.perf_counter() - started < 2.0  # no real waiting for the 5 s
    assert apimart_mock.journal.polls(task_id)[-1]["latency_ms"] == 5000


def test_latency_from_a_distribution(apimart_mock: MockControl, client: httpx.Client) -> None:
    apimart_mock.faults.add("latency", dist="uniform", min=50, max=80)
    before = apimart_mock.clock.now()
    assert submit(client).status_code == 200
    assert 0.05 <= apimart_mock.clock.now() - before <= 0.08


def test_latency_beyond_the_read_timeout_times_out_in_process(apimart_mock: MockControl) -> None:
    apimart_mock.faults.once("latency", endpoint="video", ms=1500)
    auth = {"Authorization": "Bearer t"}
    with httpx.Client(base_url=apimart_mock.base_url, headers=auth, timeout=0.2) as client:
        started = time.perf_counter()
        with pytest.raises(httpx.ReadTimeout):
            submit(client)
        assert time.perf_counter() - started < 1.0
        assert submit(client).status_code == 200  # the fault fired once


@pytest.mark.asyncio
async def test_latency_beyond_the_read_timeout_times_out_async(apimart_mock: MockControl) -> None:
    apimart_mock.faults.once("latency", endpoint="video", ms=1500)
    auth = {"Authorization": "Bearer t"}
    async with httpx.AsyncClient(base_url=apimart_mock.base_url, headers=auth, timeout=0.2) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(VIDEO, json=BODY)


def test_dropped_connection_in_process(apimart_mock: MockControl, client: httpx.Client) -> None:
    apimart_mock.faults.once("drop", endpoint="video")
    with pytest.raises(httpx.RemoteProtocolError):
        submit(client)
    assert submit(client).status_code == 200


@pytest.mark.asyncio
async def test_truncated_body_async_in_process(apimart_mock: MockControl) -> None:
    apimart_mock.faults.once("truncate", endpoint="poll")
    async with httpx.AsyncClient(base_url=apimart_mock.base_url, headers=HEADERS) as client:
        task_id = task_id_of(await client.post(VIDEO, json=BODY))
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(f"/v1/tasks/{task_id}")


def test_drop_and_truncate_over_a_real_socket(apimart_server: MockControl) -> None:
    with httpx.Client(base_url=apimart_server.base_url, headers=HEADERS, timeout=5) as client:
        task_id = task_id_of(submit(client))
        for scenario in ("drop", "truncate"):
            with pytest.raises(httpx.RemoteProtocolError):
                client.get(f"/v1/tasks/{task_id}", headers={"X-Mock-Scenario": scenario})
        assert client.get(f"/v1/tasks/{task_id}").status_code == 200  # the server itself is fine


def test_faults_over_a_real_socket(apimart_server: MockControl) -> None:
    apimart_server.faults.once("rate_limit", endpoint="video", retry_after=3)
    with httpx.Client(base_url=apimart_server.base_url, headers=HEADERS, timeout=5) as client:
        limited = submit(client)
        assert (limited.status_code, limited.headers["retry-after"]) == (429, "3")
        task_id = task_id_of(submit(client, scenario="moderation"))
        assert client.get(f"/v1/midjourney/{task_id}").json()["fail_reason"] == MODERATION_REASON


# -- how rules choose -----------------------------------------------------------------------


def test_rule_matches_fields_and_account(apimart_mock: MockControl, client: httpx.Client) -> None:
    apimart_mock.faults.add("error_503", endpoint="video", fields={"batch_size": 4}, token="fault-tester")
    assert submit(client, {**BODY, "batch_size": 2}).status_code == 200
    assert submit(client, {**BODY, "batch_size": 4}).status_code == 503
    other = client.post(VIDEO, json={**BODY, "batch_size": 4}, headers={"Authorization": "Bearer other"})
    assert other.status_code == 200


def test_rule_fires_n_times(apimart_mock: MockControl, client: httpx.Client) -> None:
    apimart_mock.faults.add("error_500", endpoint="video", times=2)
    assert [submit(client).status_code for _ in range(4)] == [500, 500, 200, 200]


@pytest.mark.apimart(seed=7)
def test_rule_probability(apimart_mock: MockControl, client: httpx.Client) -> None:
    apimart_mock.faults.add("error_502", endpoint="video", probability=0.5)
    codes = [submit(client).status_code for _ in range(40)]
    assert 5 < codes.count(502) < 35
    assert set(codes) == {200, 502}
    apimart_mock.faults.clear()
    apimart_mock.faults.add("error_502", endpoint="video", probability=0.0)
    assert {submit(client).status_code for _ in range(10)} == {200}


def test_header_beats_rules_and_unknown_scenarios_are_refused(apimart_mock: MockControl, client: httpx.Client) -> None:
    apimart_mock.faults.add("error_500")
    assert submit(client, scenario="error_504").status_code == 504
    bad = submit(client, scenario="meteor_strike")
    assert bad.status_code == 400
    assert "unknown fault" in bad.json()["error"]["message"]
    with pytest.raises(ControlError):
        apimart_mock.faults.add("latency", ms="soon")
    with pytest.raises(ControlError):
        apimart_mock.faults.add("rate_limit", colour="red")


def test_catalogue_lists_every_kind(apimart_mock: MockControl) -> None:
    assert {k["name"] for k in apimart_mock.faults.catalogue()} == set(CATALOGUE)
    rule = apimart_mock.faults.add("moderation", endpoint="imagine")
    assert apimart_mock.faults.rules() == [rule]
    apimart_mock.faults.remove(rule["id"])
    assert apimart_mock.faults.rules() == []
