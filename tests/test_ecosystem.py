"""Fitting the ecosystem, as a user's test suite meets it.

Verification and strictness as pytest-httpx and WireMock users expect (``assert_called``, near
misses, refusals, fault rules that must fire, a blocked network); seeding and snapshots as moto
and LocalStack users expect; canned responses as an escape hatch; per-account settings; and a
Python API whose every helper says how to use it.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Mount, Route
from starlette.types import Message

from mockserver import NetworkBlocked, Settings, VirtualClock, create_app
from mockserver.control import ControlPlane
from mockserver.core import lifecycle, matching, seeding
from mockserver.core.records import TaskRecord
from mockserver.core.spec import CONTROL, load_document, spec_path
from mockserver.testing import control as control_module
from mockserver.testing.control import MockControl
from mockserver.testing.transport import SyncASGITransport

from .conftest import MakeApi, MakeStore
from .helpers import blocking, tiny_png

pytest_plugins = ["pytester"]

TOKEN = "eco-user"  # the `client` fixture's token
VIDEO = "/v1/midjourney/generations/video"
IMAGINE = "/v1/midjourney/generations"
FRAME = "https://example.com/cat.png"
BODY = {"prompt": "the cat turns", "image_urls": [FRAME]}
INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"  # a user's suite, in pytester


def submit(client: httpx.Client, **fields: Any) -> str:
    response = client.post(VIDEO, json={**BODY, **fields})
    assert response.status_code == 200, response.text
    task_id: str = response.json()["data"][0]["task_id"]
    return task_id


# -- verification, as pytest-httpx and WireMock users expect ---------------------------------------


def test_assert_called_with_times_and_json_contains(apimart_mock: MockControl, client: httpx.Client) -> None:
    task_id = submit(client, batch_size=2)
    submit(client)
    client.get(f"/v1/tasks/{task_id}")
    journal = apimart_mock.journal
    assert journal.assert_called("POST", VIDEO, times=2) == [1, 2]
    journal.assert_called("POST", VIDEO, times=1, json_contains={"batch_size": 2, "image_urls": [FRAME]})
    journal.assert_called("GET", "/v1/tasks/*")  # at least once
    journal.assert_called(path="/v1/**", times=3)
    journal.assert_called("post", VIDEO, token=TOKEN, status=200, times=2)
    journal.assert_not_called("POST", IMAGINE)
    journal.assert_not_called("GET", "/v1/tasks/*", token="someone-else")
    mark = journal.mark()
    journal.assert_not_called("POST", VIDEO, since=mark)


def test_a_failed_assertion_lists_the_near_misses(apimart_mock: MockControl, client: httpx.Client) -> None:
    submit(client, batch_size=2)
    client.post(VIDEO, json={**BODY, "batch_size": 3})  # refused
    client.get("/v1/tasks/task_unknown")
    client.post(IMAGINE, json={"prompt": "a fox"})
    with pytest.raises(AssertionError) as failed:
        apimart_mock.journal.assert_called("POST", VIDEO, times=1, json_contains={"batch_size": 4})
    message = str(failed.value)
    assert message.startswith(f'expected POST {VIDEO} with a body containing {{"batch_size": 4}} 1 time(s), saw 0')
    near = message.split("near misses (closest first):\n")[1].splitlines()
    assert near[0].startswith(f"  #2 POST {VIDEO} → 400: body.batch_size is 3, wanted 4")  # newest of the closest
    assert near[1].startswith(f"  #1 POST {VIDEO} → 200: body.batch_size is 2, wanted 4")
    assert any(line.startswith(f"  #4 POST {IMAGINE} → 200") for line in near)  # same method, another path
    assert not any("#3 GET" in line for line in near)  # neither the method nor a path prefix: not near


def test_assert_not_called_names_what_came(apimart_mock: MockControl, client: httpx.Client) -> None:
    submit(client, batch_size=4)
    with pytest.raises(AssertionError, match=r"expected POST .* never, saw 1 \(#1\)"):
        apimart_mock.journal.assert_not_called("POST", VIDEO, json_contains={"batch_size": 4})


def test_verification_over_http(apimart_mock: MockControl, client: httpx.Client) -> None:
    """Any language can verify: one POST, the verdict in the body."""
    submit(client)
    verdict = apimart_mock.http.post("/requests/verify", json={"method": "GET", "path": "/v1/tasks/*"}).json()
    assert (verdict["ok"], verdict["matched"], verdict["expected"]) == (False, 0, None)
    assert "saw 0" in verdict["message"]
    assert verdict["near_misses"] == []  # a POST to another path is not near a GET of /v1/tasks/*
    verdict = apimart_mock.http.post("/requests/verify", json={"path": VIDEO, "times": 1}).json()
    assert (verdict["ok"], verdict["matches"]) == (True, [1])
    assert apimart_mock.http.post("/requests/verify", json={"times": -1}).status_code == 400
    assert apimart_mock.http.post("/requests/verify", json={"paths": "/"}).status_code == 400


def test_refusals_say_which_rule_and_field(apimart_mock: MockControl, client: httpx.Client) -> None:
    submit(client)
    client.post(VIDEO, json={**BODY, "task_id": "task_1"})
    client.post(VIDEO, json=BODY, headers={"Authorization": ""})
    client.get("/v1/tasks/task_unknown")
    refusals = apimart_mock.journal.refusals()
    found = [(r["seq"], r["status"], r["param"]) for r in refusals]
    assert found == [(2, 400, "task_id"), (3, 401, None), (4, 404, "task_id")]
    assert refusals[0]["message"] == "image_urls and task_id cannot both be set"
    assert refusals[0]["type"] == "invalid_request_error"
    assert refusals[1]["type"] == "apimart_error"
    entry = apimart_mock.journal.entries(refused=True)[0]
    assert entry["error"] == {
        "message": "image_urls and task_id cannot both be set",
        "type": "invalid_request_error",
        "code": 400,
        "param": "task_id",
    }
    assert [e["seq"] for e in apimart_mock.journal.entries(refused=False)] == [1]
    assert apimart_mock.journal.refusals(since=3) == refusals[2:]


def test_rules_count_their_firings(apimart_mock: MockControl, client: httpx.Client) -> None:
    apimart_mock.faults.add("error_503", endpoint="video", times=2)
    always = apimart_mock.faults.add("latency", endpoint="poll", ms=5)
    assert always["fired"] == 0
    assert [client.post(VIDEO, json=BODY).status_code for _ in range(3)] == [503, 503, 200]
    client.get("/v1/tasks/task_x")
    listed = apimart_mock.http.get("/scenarios").json()["rules"]
    assert [(r["scenario"], r["times"], r["fired"]) for r in listed] == [("error_503", 2, 2), ("latency", None, 1)]
    assert apimart_mock.faults.unfired() == []
    apimart_mock.faults.assert_all_fired()


def test_assert_all_fired_names_the_rules_left(apimart_mock: MockControl) -> None:
    rule = apimart_mock.faults.once("rate_limit", endpoint="imagine")
    apimart_mock.faults.add("error_500", times=3, probability=0.5)  # left to chance: never checked
    with pytest.raises(AssertionError, match=rf"rate_limit on imagine \(rule {rule['id']}\): fired 0 of 1"):
        apimart_mock.faults.assert_all_fired()
    apimart_mock.faults.clear()


TEARDOWN_TESTS = """
import httpx
import pytest

BODY = {"prompt": "p", "image_urls": ["https://example.com/a.png"]}


def test_rule_never_fired(apimart_mock):
    apimart_mock.faults.once("error_503", endpoint="video")


def test_canned_response_never_used(apimart_mock):
    apimart_mock.respond("POST", "/v1/midjourney/generations/video", status=500, times=2)
    with httpx.Client(base_url=apimart_mock.base_url, headers={"Authorization": "Bearer t"}) as client:
        assert client.post("/v1/midjourney/generations/video", json=BODY).status_code == 500


@pytest.mark.apimart(assert_all_faults_fired=False)
def test_opted_out(apimart_mock):
    apimart_mock.faults.once("error_503", endpoint="video")


def test_rule_fired(apimart_mock):
    apimart_mock.faults.once("error_503", endpoint="video")
    with httpx.Client(base_url=apimart_mock.base_url, headers={"Authorization": "Bearer t"}) as client:
        assert client.post("/v1/midjourney/generations/video", json=BODY).status_code == 503


def test_failing_on_its_own(apimart_mock):
    apimart_mock.faults.once("error_503", endpoint="video")
    assert False, "the test's own failure"


@pytest.mark.apimart(block_network=True)
def test_swallowed_block(apimart_mock):
    try:
        httpx.get("https://api.example.com/v1/charge")
    except httpx.HTTPError:
        pass  # a client that retries quietly


@pytest.mark.apimart(block_network=True)
def test_expected_block(apimart_mock):
    with pytest.raises(httpx.ConnectError, match="block_network kept GET https://api.example.com/"):
        httpx.get("https://api.example.com/v1/charge")
    apimart_mock.blocked.clear()
"""


def test_teardown_checks_in_a_users_suite(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(TEARDOWN_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=6, failed=1, errors=3)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_rule_never_fired*",
            "*the fault rule error_503 on video (rule_*) was added with times=1 but fired 0 time(s)*",
            "*assert_all_faults_fired=False*",
        ]
    )
    result.stdout.fnmatch_lines(
        ["*the canned response for POST /v1/midjourney/generations/video (resp_*) was added with times=2 but *"]
    )
    result.stdout.fnmatch_lines(["*block_network kept these requests*", "*GET https://api.example.com/v1/charge*"])
    assert "ERROR at teardown of test_failing_on_its_own" not in result.stdout.str()
    assert "ERROR at teardown of test_expected_block" not in result.stdout.str()


def test_ini_defaults_for_the_teardown_checks_and_the_network(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI + "apimart_assert_all_faults_fired = false\napimart_block_network = true\n")
    pytester.makepyfile(
        """
        import httpx
        import pytest


        def test_unfired_rule_is_fine(apimart_mock):
            apimart_mock.faults.once("error_503")


        def test_network_blocked_by_the_ini(apimart_mock):
            with pytest.raises(httpx.ConnectError, match="block_network"):
                httpx.get("https://example.org/")
            apimart_mock.blocked.clear()


        @pytest.mark.apimart(block_network=False)
        def test_marker_wins(apimart_mock):
            with pytest.raises(httpx.ConnectError) as failed:
                httpx.get("http://127.0.0.1:9/")  # loopback: never blocked; nothing listens there
            assert "block_network" not in str(failed.value)
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=3)


@pytest.mark.apimart(block_network=True)
def test_block_network_keeps_a_misconfigured_client_from_the_real_api(apimart_mock: MockControl) -> None:
    with httpx.Client(headers={"Authorization": "Bearer real-key"}) as client:
        assert client.post(apimart_mock.base_url + VIDEO, json=BODY).status_code == 200  # the fake answers
        with pytest.raises(NetworkBlocked, match=r"only api\.apimart\.ai .* and loopback may be reached"):
            client.post("https://api.apimart.example/v1/midjourney/generations/video", json=BODY)
        with pytest.raises(httpx.ConnectError) as failed:
            client.get("http://localhost:9/")  # loopback goes out (nothing listens on port 9)
        assert not isinstance(failed.value, NetworkBlocked)
    assert apimart_mock.blocked == ["POST https://api.apimart.example/v1/midjourney/generations/video"]
    apimart_mock.blocked.clear()


@pytest.mark.asyncio
@pytest.mark.apimart(block_network=True)
async def test_block_network_with_an_async_client(apimart_mock: MockControl) -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(NetworkBlocked):
            await client.get("https://example.com/")
    apimart_mock.blocked.clear()


@pytest.mark.e2e
def test_apimart_server_blocks_the_network_too(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        """
        import httpx
        import pytest
        from mockserver import NetworkBlocked


        @pytest.mark.apimart(block_network=True)
        def test_server(apimart_server):
            assert httpx.get(apimart_server.base_url + "/healthz").status_code == 200
            with pytest.raises(NetworkBlocked):
                httpx.get("https://example.com/")
            apimart_server.blocked.clear()
        """
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


# -- seeding, as moto and LocalStack users expect --------------------------------------------------


def test_a_seeded_imagine_task_is_reused_at_once(apimart_mock: MockControl, client: httpx.Client) -> None:
    parent = apimart_mock.seed_task(TOKEN, action="IMAGINE", prompt="a red fox")
    imagine = client.get(f"/v1/midjourney/{parent}").json()
    assert (imagine["action"], imagine["status"], len(imagine["image_urls"])) == ("IMAGINE", "SUCCESS", 4)
    reuse = client.post(VIDEO, json={"prompt": "", "task_id": parent, "index": 2})
    assert reuse.status_code == 200, reuse.text
    task_id = reuse.json()["data"][0]["task_id"]
    assert apimart_mock.task(task_id)["record"]["prompt"] == "a red fox"  # inherited
    assert apimart_mock.ledger.spent() == 2  # the video only: a seeded task costs nothing
    apimart_mock.journal.assert_called("POST", VIDEO, times=1, json_contains={"task_id": parent, "index": 2})


@pytest.mark.apimart(task_seconds=0)
def test_a_seeded_video_task_at_40_percent_runs_on(apimart_mock: MockControl, client: httpx.Client) -> None:
    task_id = apimart_mock.seed_task(TOKEN, status="IN_PROGRESS", progress=40, task_seconds=100, batch_size=2)
    task = client.get(f"/v1/tasks/{task_id}").json()["data"]
    assert (task["status"], task["progress"]) == ("processing", 40)
    apimart_mock.clock.advance(45)  # 40 % of 90 s running is 36 s in; 45 s more is 90 %
    assert client.get(f"/v1/tasks/{task_id}").json()["data"]["progress"] == 90
    apimart_mock.clock.advance(10)
    done = client.get(f"/v1/midjourney/{task_id}").json()
    assert (done["status"], len(done["video_urls"])) == ("SUCCESS", 2)
    assert client.get(done["video_urls"][1]).headers["content-type"] == "video/mp4"


@pytest.mark.parametrize(
    ("options", "unified", "mj"),
    [
        ({"status": "NOT_START"}, "pending", "NOT_START"),
        ({"status": "SUBMITTED"}, "pending", "SUBMITTED"),
        ({"status": "processing"}, "processing", "IN_PROGRESS"),
        ({"status": "SUCCESS"}, "completed", "SUCCESS"),
        ({"status": "FAILURE", "fail_reason": "GPU on fire"}, "failed", "FAILURE"),
        ({"status": "cancelled"}, "cancelled", "FAILURE"),
    ],
)
def test_seed_any_state(
    apimart_mock: MockControl, client: httpx.Client, options: dict[str, Any], unified: str, mj: str
) -> None:
    task_id = apimart_mock.seed_task(TOKEN, **options)
    assert client.get(f"/v1/tasks/{task_id}").json()["data"]["status"] == unified
    task = client.get(f"/v1/midjourney/{task_id}").json()
    assert task["status"] == mj
    if "fail_reason" in options:
        assert task["fail_reason"] == "GPU on fire"


def test_seeded_tasks_past_retention_other_accounts_and_charges(
    apimart_mock: MockControl, client: httpx.Client
) -> None:
    gone = apimart_mock.seed_task(TOKEN, expired=True)
    assert client.get(f"/v1/tasks/{gone}").status_code == 404
    theirs = apimart_mock.seed_task("someone-else", status="SUCCESS")
    assert client.get(f"/v1/tasks/{theirs}").status_code == 403
    apimart_mock.seed_task(TOKEN, batch_size=4, video_type="vid_1.1_i2v_720", charged=True)
    assert apimart_mock.ledger.spent(token=TOKEN) == 4 * 4
    own = apimart_mock.seed_task(TOKEN, id="task_fixed_id_1")
    assert own == "task_fixed_id_1"


@pytest.mark.apimart(media_ttl_seconds=3600, media_clock="end")
def test_a_seeded_task_that_ended_a_while_ago(apimart_mock: MockControl, client: httpx.Client) -> None:
    fresh = apimart_mock.seed_task(TOKEN, ended_seconds_ago=3599)
    stale = apimart_mock.seed_task(TOKEN, ended_seconds_ago=3601)
    assert client.get(client.get(f"/v1/midjourney/{fresh}").json()["video_url"]).status_code == 200
    assert client.get(client.get(f"/v1/midjourney/{stale}").json()["video_url"]).status_code == 410


def test_seeding_refuses_what_cannot_be(apimart_mock: MockControl) -> None:
    http = apimart_mock.http
    cases = [
        ({"token": "t", "status": "SUCCESS", "progress": 40}, 400, "progress"),
        ({"token": "t", "status": "IN_PROGRESS", "expired": True}, 400, "expired"),
        ({"token": "t", "status": "SUCCESS", "fail_reason": "x"}, 400, "fail_reason"),
        ({"token": "t", "video_type": "vid_1.1_extend"}, 400, "video_type"),
        ({"token": "t", "batch_size": 3}, 400, "batch_size"),
        ({"token": "t", "status": "DONE"}, 400, "status"),
        ({"status": "SUCCESS"}, 400, "token"),
        ({"token": "t", "progress": 100, "status": "IN_PROGRESS"}, 400, "progress"),
    ]
    for body, status, param in cases:
        answer = http.post("/tasks", json=body)
        assert (answer.status_code, answer.json()["error"]["param"]) == (status, param), body
    apimart_mock.seed_task("t", id="task_taken")
    assert http.post("/tasks", json={"token": "t", "id": "task_taken"}).status_code == 409


def test_seeding_timing_is_exact_for_every_progress() -> None:
    for now in (1_767_225_600.0, 4_102_444_800.25):
        for duration in (0.5, 8.0, 60.0, 7 * 3600.0):
            for progress in range(100):
                timing = seeding.timing(lifecycle.Status.IN_PROGRESS, now, duration, progress)
                record = TaskRecord("t", "a", "VIDEO", timing.created_at, timing.duration, "", "FAST", 1, "k", 1)
                view = lifecycle.view(record, now)
                assert (view.status, view.progress) == (lifecycle.Status.IN_PROGRESS, progress)
    with pytest.raises(ValueError, match="duration above 0"):
        seeding.timing(lifecycle.Status.SUBMITTED, 0.0, 0.0)


# -- snapshots ---------------------------------------------------------------------------------------


def build_state(control: MockControl, client: httpx.Client) -> dict[str, str]:
    """Some of everything the state holds."""
    ids = {
        "imagine": control.seed_task(TOKEN, action="IMAGINE"),
        "running": control.seed_task(TOKEN, status="IN_PROGRESS", progress=25, task_seconds=200),
        "failed": control.seed_task(TOKEN, status="FAILURE", fail_reason="GPU on fire"),
        "submitted": submit(client, batch_size=2),
    }
    upload = client.post("/v1/uploads/images", files={"file": ("a.png", tiny_png(24, 16), "image/png")})
    ids["upload"] = upload.json()["url"]
    control.ledger.set_balance(TOKEN, 50)
    control.faults.once("error_500", endpoint="imagine")
    control.respond("GET", "/v1/tasks/task_busy", status=503, text="busy")
    control.account("legacy").configure(task_dialect="mj")
    assert client.post(IMAGINE, json={"prompt": "fox"}).status_code == 500  # the rule fires
    return ids


def statuses(client: httpx.Client, ids: dict[str, str]) -> dict[str, Any]:
    return {
        name: (task["status"], task["progress"])
        for name, task_id in ids.items()
        if name != "upload"
        for task in [client.get(f"/v1/tasks/{task_id}").json()["data"]]
    }


def test_export_and_import_the_whole_state(apimart_mock: MockControl, client: httpx.Client, tmp_path: Path) -> None:
    ids = build_state(apimart_mock, client)
    before = statuses(client, ids)
    saved = apimart_mock.save_state(tmp_path / "snapshot.json", upload_data=True)
    assert saved["version"] == 1 and saved["clock"]["frozen"] is True
    assert [r["fired"] for r in saved["fault_rules"]] == [1]
    assert saved["account_settings"] == {apimart_mock.account("legacy").id: {"task_dialect": "mj"}}
    assert saved["uploads"][0]["size"] == len(tiny_png(24, 16)) and "data" in saved["uploads"][0]

    apimart_mock.reset()
    assert apimart_mock.tasks() == []
    imported = apimart_mock.load_state(tmp_path / "snapshot.json")
    assert (imported["tasks"], imported["uploads"], imported["fault_rules"], imported["canned_responses"]) == (
        4, 1, 1, 1
    )  # fmt: skip
    assert statuses(client, ids) == before
    assert apimart_mock.export_state(upload_data=True) == {**saved, "clock": apimart_mock.export_state()["clock"]}
    assert client.get(ids["upload"]).content == tiny_png(24, 16)
    assert client.get("/v1/tasks/task_busy").text == "busy"
    assert apimart_mock.faults.rules()[0]["fired"] == 1
    assert apimart_mock.ledger.summary(token=TOKEN)["accounts"] != {}
    legacy = httpx.Client(base_url=apimart_mock.base_url, headers={"Authorization": "Bearer legacy"})
    assert "action" in legacy.get(f"/v1/tasks/{apimart_mock.seed_task('legacy')}").json()  # the mj body
    apimart_mock.journal.assert_not_called("POST")  # the journal began afresh: only this test's polls since


def test_a_snapshot_shows_the_same_states_whenever_it_is_loaded(
    apimart_mock: MockControl, client: httpx.Client
) -> None:
    ids = build_state(apimart_mock, client)
    before = statuses(client, ids)
    snapshot = apimart_mock.export_state()
    apimart_mock.clock.advance(3600)  # the clock cannot go back to the snapshot's time
    assert statuses(client, ids) != before
    imported = apimart_mock.load_state(snapshot)
    assert imported["shifted_by"] == 3600
    assert statuses(client, ids) == before
    later = dict(snapshot, clock={"now": apimart_mock.clock.now() + 50, "frozen": True})
    assert apimart_mock.load_state(later)["shifted_by"] == 0  # a snapshot from later: the clock moves to it
    assert apimart_mock.clock.now() == later["clock"]["now"]


def test_importing_refuses_a_broken_document(apimart_mock: MockControl) -> None:
    http = apimart_mock.http
    assert http.put("/state", json={"version": 2}).status_code == 400
    assert http.put("/state", json={"tasks": [{"id": "task_1"}]}).json()["error"]["param"] == "tasks[0].account"
    bad_rule: dict[str, Any] = {
        "id": "r",
        "scenario": "nope",
        "params": {},
        "endpoint": "any",
        "times": None,
        "probability": 1,
    }
    assert http.put("/state", json={"fault_rules": [bad_rule]}).status_code == 400
    upload = {"id": "upl_1", "account": "acct_0000000000000000", "filename": "a.png", "content_type": "image/png",
              "size": 3, "created_at": 1.0, "data": "***"}  # fmt: skip
    assert http.put("/state", json={"uploads": [upload]}).json()["error"]["param"] == "uploads[0].data"
    assert http.put("/state", json={"unknown": 1}).status_code == 400


SNAPSHOT_TESTS = """
import httpx
import pytest


@pytest.mark.apimart(snapshot="data/snapshot.json")
def test_starts_from_the_snapshot(apimart_mock):
    with httpx.Client(base_url=apimart_mock.base_url, headers={"Authorization": "Bearer t"}) as client:
        r = client.post("/v1/midjourney/generations/video", json={"prompt": "", "task_id": "task_parent_1", "index": 0})
        assert r.status_code == 200, r.text
    assert [t["record"]["id"] for t in apimart_mock.tasks()][0] == "task_parent_1"
"""


def test_a_test_starts_from_a_snapshot_file(pytester: pytest.Pytester, apimart_mock: MockControl) -> None:
    apimart_mock.seed_task("t", action="IMAGINE", id="task_parent_1")
    pytester.makeini(INI)
    (pytester.path / "data").mkdir()
    apimart_mock.save_state(pytester.path / "data" / "snapshot.json")
    pytester.makepyfile(SNAPSHOT_TESTS)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


@pytest.mark.all_stores
def test_state_moves_between_stores(make_api: MakeApi) -> None:
    source, target = make_api(), make_api()
    control = source.client.base_url.join("/__mock__/")
    seeded = source.client.post(control.join("tasks"), json={"token": "t", "status": "IN_PROGRESS", "progress": 30})
    task_id = seeded.json()["task_id"]
    source.client.post(control.join("responses"), json={"path": "/media/**", "status": 404, "times": 2})
    source.client.post(control.join("accounts/t"), json={"task_dialect": "mj"})
    document = source.client.get(control.join("state")).json()
    assert target.client.put(control.join("state"), json=document).status_code == 200
    assert target.client.get(control.join("state")).json() == document
    headers = {"Authorization": "Bearer t"}
    polled = target.client.get(f"/v1/tasks/{task_id}", headers=headers).json()
    assert (polled["status"], polled["progress"]) == ("IN_PROGRESS", "30%")  # the account's mj dialect


# -- canned responses: the escape hatch ----------------------------------------------------------------


def test_a_canned_failed_submission(apimart_mock: MockControl, client: httpx.Client) -> None:
    """The real API has been seen to answer a submission with {"code": 500, "data": []}."""
    canned = apimart_mock.respond("POST", VIDEO, status=500, json={"code": 500, "data": []}, times=1)
    first = client.post(VIDEO, json=BODY)
    assert (first.status_code, first.json()) == (500, {"code": 500, "data": []})
    assert first.headers["content-type"] == "application/json"
    assert client.post(VIDEO, json=BODY).status_code == 200  # once only
    assert apimart_mock.tasks() and len(apimart_mock.tasks()) == 1
    assert [(r["id"], r["fired"]) for r in apimart_mock.responses.all()] == [(canned["id"], 1)]
    entry = apimart_mock.journal.entries()[0]
    assert (entry["canned"], entry["status"], entry["body"]) == (canned["id"], 500, BODY)
    apimart_mock.journal.assert_called("POST", VIDEO, status=500, json_contains={"prompt": "the cat turns"})


def test_canned_responses_match_by_glob_fields_and_account(apimart_mock: MockControl, client: httpx.Client) -> None:
    apimart_mock.respond(None, "/v1/midjourney/generations/**", fields={"batch_size": 4}, status=418, text="teapot")
    apimart_mock.respond("GET", "/v1/tasks/*", token=TOKEN, status=503, headers={"Retry-After": "7"}, json=None)
    big = client.post(VIDEO, json={**BODY, "batch_size": 4})
    assert (big.status_code, big.text, big.headers["content-type"]) == (418, "teapot", "text/plain; charset=utf-8")
    task_id = submit(client, batch_size=2)  # other fields: the fake answers
    busy = client.get(f"/v1/tasks/{task_id}")
    assert (busy.status_code, busy.headers["retry-after"], busy.content) == (503, "7", b"")
    other = client.get(f"/v1/tasks/{task_id}", headers={"Authorization": "Bearer other"})
    assert other.status_code == 403  # another account: the fake's own answer
    assert client.get(f"/v1/tasks/{task_id}/x").status_code == 404  # * stops at /


def test_canned_responses_come_before_every_rule(apimart_mock: MockControl, client: httpx.Client) -> None:
    apimart_mock.respond("POST", VIDEO, status=201, json={"code": 200, "data": [{"task_id": "task_canned"}]})
    apimart_mock.faults.add("error_503", endpoint="video")  # never reached
    anonymous = httpx.post(apimart_mock.base_url + VIDEO, content=b"not json")  # no key, no JSON
    assert (anonymous.status_code, anonymous.json()["data"][0]["task_id"]) == (201, "task_canned")
    assert apimart_mock.faults.rules()[0]["fired"] == 0
    apimart_mock.faults.clear()
    apimart_mock.respond("GET", "/media/**", status=404, json={"error": "gone"})
    assert client.get("/media/task_x/0.mp4").json() == {"error": "gone"}  # any path, not only the provider's
    apimart_mock.respond(None, "/__mock__/**", status=500)
    assert client.get("/__mock__/health").status_code == 200  # the control plane is never canned
    apimart_mock.responses.clear()


def test_a_body_read_for_a_canned_response_keeps_the_limits() -> None:
    """A streamed body (no Content-Length) read to decide on a canned response stops at the limit."""
    app = create_app(Settings(task_seconds=0.0, max_body_bytes=1000), clock=VirtualClock())
    with httpx.Client(transport=SyncASGITransport(app), base_url="http://testserver") as control:
        control.post("/__mock__/responses", json={"method": "POST", "path": VIDEO, "fields": {"n": 1}, "status": 500})
    sent: list[Message] = []

    async def call(chunks: list[bytes]) -> int:
        scope = {"type": "http", "method": "POST", "path": VIDEO, "raw_path": VIDEO.encode(), "query_string": b"",
                 "headers": [(b"transfer-encoding", b"chunked"), (b"authorization", b"Bearer t")],
                 "http_version": "1.1", "scheme": "http", "server": ("testserver", 80), "root_path": ""}  # fmt: skip
        messages = [{"type": "http.request", "body": c, "more_body": n < len(chunks) - 1} for n, c in enumerate(chunks)]

        async def receive() -> Message:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            sent.append(message)

        sent.clear()
        await app(scope, receive, send)
        return int(sent[0]["status"])

    assert asyncio.run(call([b'{"prompt": "', b"x" * 2000, b'"}'])) == 413
    assert asyncio.run(call([b'{"n": ', b"1}"])) == 500  # the canned response
    assert asyncio.run(call([b'{"n": ', b"2}"])) == 400  # read for the decision, then handed to the route
    journal = blocking(ControlPlane(app.state.fake)).journal()
    assert [(e["status"], e.get("canned") is not None, "error" in e) for e in journal] == [
        (413, False, True),
        (500, True, False),
        (400, False, True),
    ]


def test_canned_responses_are_listed_removed_and_validated(apimart_mock: MockControl) -> None:
    one = apimart_mock.respond("GET", "/v1/tasks/*", status=503)
    two = apimart_mock.respond("POST", VIDEO, status=500)
    assert [r["id"] for r in apimart_mock.responses.all()] == [one["id"], two["id"]]
    apimart_mock.responses.remove(one["id"])
    assert [r["id"] for r in apimart_mock.responses.all()] == [two["id"]]
    assert apimart_mock.http.delete(f"/responses/{one['id']}").status_code == 404
    apimart_mock.responses.clear()
    assert apimart_mock.responses.all() == []
    http = apimart_mock.http
    for body, param in [
        ({"path": "v1/tasks"}, "path"),
        ({"path": "/x", "body": {}, "text": "t"}, "text"),
        ({"path": "/x", "headers": {"Content-Length": "3"}}, "headers"),
        ({"path": "/x", "status": 99}, "status"),
        ({"path": "/x", "times": 0}, "times"),
        ({"method": "GET /", "path": "/x"}, "method"),
    ]:
        answer = http.post("/responses", json=body)
        assert (answer.status_code, answer.json()["error"]["param"]) == (400, param), body
    apimart_mock.respond("GET", "/x", status=204)
    apimart_mock.reset()  # a whole reset removes them, as it removes fault rules
    assert apimart_mock.responses.all() == []


@pytest.mark.all_stores
def test_canned_responses_are_shared_by_workers(make_store: MakeStore) -> None:
    """Two workers over one store: a response added through one answers on the other."""
    store = make_store()
    clients = []
    for _ in range(2):
        app = create_app(Settings(task_seconds=0.0), clock=VirtualClock(), store=store)
        clients.append(httpx.Client(transport=SyncASGITransport(app), base_url="http://testserver"))
    one, two = clients
    one.post("/__mock__/responses", json={"method": "POST", "path": VIDEO, "status": 500, "times": 1})
    assert two.post(VIDEO, json=BODY, headers={"Authorization": "Bearer t"}).status_code == 500
    assert one.post(VIDEO, json=BODY, headers={"Authorization": "Bearer t"}).status_code == 200
    assert one.get("/__mock__/responses").json()["responses"][0]["fired"] == 1
    for client in clients:
        client.close()


# -- one server for every kind of client: per-account settings ----------------------------------------


def test_an_account_chooses_its_task_dialect(apimart_mock: MockControl, client: httpx.Client) -> None:
    legacy = apimart_mock.account("legacy-key")
    assert legacy.settings() == {}
    assert legacy.configure(task_dialect="mj") == {"task_dialect": "mj"}
    with httpx.Client(base_url=apimart_mock.base_url, headers={"Authorization": "Bearer legacy-key"}) as old:
        task_id = old.post(VIDEO, json=BODY).json()["data"][0]["task_id"]
        assert old.get(f"/v1/tasks/{task_id}").json()["status"] == "SUCCESS"  # the Midjourney-style body
        unified = old.get(f"/v1/tasks/{task_id}", headers={"X-Mock-Dialect": "unified"}).json()
        assert unified["data"]["status"] == "completed"  # the header still wins
    mine = submit(client)
    assert client.get(f"/v1/tasks/{mine}").json()["data"]["status"] == "completed"  # others keep the server's
    assert legacy.configure(task_dialect=None) == {}
    over_http = apimart_mock.http.get("/accounts/legacy-key").json()
    assert over_http == {"account": legacy.id, "settings": {}}
    assert apimart_mock.http.get(f"/accounts/{legacy.id}").json() == over_http  # by token or account id
    assert apimart_mock.http.post("/accounts/x", json={"task_dialect": "xml"}).status_code == 400
    assert apimart_mock.http.post("/accounts/x", json={"colour": "red"}).status_code == 400
    legacy.configure(task_dialect="mj")
    apimart_mock.reset(token="legacy-key")
    assert legacy.settings() == {}


# -- a Python API people can find ----------------------------------------------------------------------------


def test_every_public_helper_documents_itself_with_an_example() -> None:
    names = "MockControl ClockControl FaultControl JournalControl LedgerControl ResponseControl AccountControl"
    classes = [getattr(control_module, name) for name in names.split()]
    undocumented = [
        f"{cls.__name__}.{name}"
        for cls in classes
        for name, member in vars(cls).items()
        if not name.startswith("_")
        and inspect.isfunction(getattr(member, "__func__", member))
        and "::" not in (member.__doc__ or "")
    ]
    assert undocumented == []


def test_every_control_route_is_in_the_control_spec(apimart_mock: MockControl) -> None:
    app = create_app(Settings())
    plane = next(r for r in app.routes if isinstance(r, Mount) and r.path == "/__mock__")
    documented = {
        (path, method.upper()) for path, item in load_document(spec_path(CONTROL))["paths"].items() for method in item
    }
    served = {
        (route.path, method)
        for route in plane.routes
        if isinstance(route, Route) and route.path not in ("/", "/openapi.json")
        for method in (route.methods or set()) - {"HEAD"}
    }
    assert served - documented == set()


def test_globs_and_contains() -> None:
    assert matching.path_matches("/v1/tasks/*", "/v1/tasks/task_1")
    assert not matching.path_matches("/v1/tasks/*", "/v1/tasks/a/b")
    assert matching.path_matches("/media/**", "/media/task_1/0.mp4")
    assert matching.path_matches("/media/task_?/0.mp4", "/media/task_1/0.mp4")
    assert not matching.path_matches("/v1/tasks/task.1", "/v1/tasks/task_1")  # literal, not a regex
    assert matching.contains({"a": {"b": [1, {"c": 2, "d": 3}]}, "e": 0}, {"a": {"b": [1, {"c": 2}]}})
    assert not matching.contains({"a": [1, 2]}, {"a": [1]})
    assert not matching.contains({"a": 1}, {"a": True}) and not matching.contains({"a": True}, {"a": 1})
    assert matching.differences({"a": {"b": 1}}, {"a": {"b": 2, "c": 3}}) == [
        "body.a.b is 1, wanted 2",
        "body.a.c is absent, wanted 3",
    ]
    assert json.loads(json.dumps(matching.verification(matching.Expectation(path="/x"), [], None)))["ok"] is False
