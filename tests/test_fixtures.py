"""The pytest fixtures as a user's test suite meets them: unchanged clients, no sleeping."""

from __future__ import annotations

import fnmatch
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import requests
import respx
from respx.models import AllMockedAssertionError

from mockserver.testing import InProcessFake
from mockserver.testing.control import MockControl

from .mp4 import read_clip

pytest_plugins = ["pytester"]

BODY = {"prompt": "the cat turns", "image_urls": ["https://example.com/cat.png"], "batch_size": 2}
HEADERS = {"Authorization": "Bearer user-token"}
VIDEO = "/v1/midjourney/generations/video"


def wait_for(client: httpx.Client, task_id: str) -> dict[str, object]:
    """A client's polling loop, as written against the real API (minus the sleep)."""
    for _ in range(100):
        task: dict[str, object] = client.get(f"/v1/midjourney/{task_id}").json()
        if task["status"] in ("SUCCESS", "FAILURE"):
            return task
    raise AssertionError("task never finished")


def test_sync_client_full_cycle(apimart_mock: MockControl) -> None:
    with httpx.Client(base_url="https://api.apimart.ai", headers=HEADERS) as client:
        task_id = client.post(VIDEO, json=BODY).json()["data"][0]["task_id"]
        task = wait_for(client, task_id)
        assert task["status"] == "SUCCESS"
        urls = task["video_urls"]
        assert isinstance(urls, list) and len(urls) == 2
        assert urls[0].startswith("https://api.apimart.ai/media/")
        clip = client.get(urls[1])
        assert read_clip(clip.content).codec == "avc1"
    assert [e["endpoint"] for e in apimart_mock.journal.entries() if "endpoint" in e] == ["video", "poll"]


@pytest.mark.asyncio
async def test_async_client_full_cycle(apimart_mock: MockControl) -> None:
    async with httpx.AsyncClient(base_url="https://api.apimart.ai", headers=HEADERS) as client:
        submitted = await client.post(VIDEO, json=BODY)
        task_id = submitted.json()["data"][0]["task_id"]
        task = (await client.get(f"/v1/midjourney/{task_id}")).json()
        assert task["status"] == "SUCCESS"
        clip = await client.get(task["video_url"])
        assert clip.headers["content-type"] == "video/mp4"
    apimart_mock.journal.assert_submitted(1, batch_size=2)


def test_a_sync_client_shared_by_threads(apimart_mock: MockControl) -> None:
    """Sync calls run on the caller's thread where they can: from many threads at once, each answer
    is right and every submission is kept, as on a real server."""
    with httpx.Client(base_url="https://api.apimart.ai", headers=HEADERS) as client:

        def submit_and_poll(_: int) -> str:
            task_id: str = client.post(VIDEO, json=BODY).json()["data"][0]["task_id"]
            assert wait_for(client, task_id)["status"] == "SUCCESS"
            return task_id

        with ThreadPoolExecutor(max_workers=8) as pool:
            ids = list(pool.map(submit_and_poll, range(80)))
    assert len(set(ids)) == 80
    apimart_mock.journal.assert_submitted(80, batch_size=2)


@pytest.mark.asyncio
async def test_a_sync_client_called_inside_an_event_loop(apimart_mock: MockControl) -> None:
    """A sync client in async code (its loop is running): the call goes to the transport's own thread."""
    with httpx.Client(base_url="https://api.apimart.ai", headers=HEADERS) as client:
        task_id = client.post(VIDEO, json=BODY).json()["data"][0]["task_id"]
        assert wait_for(client, task_id)["status"] == "SUCCESS"
    async with httpx.AsyncClient(base_url="https://api.apimart.ai", headers=HEADERS) as client:
        assert (await client.get(f"/v1/midjourney/{task_id}")).json()["status"] == "SUCCESS"


@pytest.mark.apimart(task_seconds=30, base_url="https://gateway.example.test/apimart")
def test_marker_settings_and_clock(apimart_mock: MockControl) -> None:
    assert apimart_mock.base_url == "https://gateway.example.test/apimart"
    with httpx.Client(base_url=apimart_mock.base_url, headers=HEADERS) as client:
        task_id = client.post(VIDEO.lstrip("/"), json=BODY).json()["data"][0]["task_id"]
        assert client.get(f"v1/midjourney/{task_id}").json()["status"] == "SUBMITTED"
        apimart_mock.clock.advance(15)
        assert client.get(f"v1/midjourney/{task_id}").json()["status"] == "IN_PROGRESS"
        apimart_mock.clock.advance(15)
        assert client.get(f"v1/midjourney/{task_id}").json()["status"] == "SUCCESS"


@pytest.mark.parametrize("apimart_mock", [{"task_dialect": "unified"}], indirect=True)
def test_fixture_parameter(apimart_mock: MockControl) -> None:
    with httpx.Client(base_url=apimart_mock.base_url, headers=HEADERS) as client:
        task_id = client.post(VIDEO, json=BODY).json()["data"][0]["task_id"]
        assert client.get(f"/v1/tasks/{task_id}").json()["data"]["status"] == "completed"


@pytest.mark.apimart(task_seconds=10_000, finish_after_polls=3)
def test_finish_after_nth_poll(apimart_mock: MockControl) -> None:
    with httpx.Client(base_url=apimart_mock.base_url, headers=HEADERS) as client:
        task_id = client.post(VIDEO, json=BODY).json()["data"][0]["task_id"]
        seen = [client.get(f"/v1/midjourney/{task_id}").json() for _ in range(4)]
    assert [t["status"] for t in seen] == ["IN_PROGRESS", "IN_PROGRESS", "SUCCESS", "SUCCESS"]
    assert [t["progress"] for t in seen] == ["33%", "66%", "100%", "100%"]
    assert seen[2]["finish_time"] == seen[3]["finish_time"]


def test_other_hosts_pass_through(apimart_mock: MockControl, apimart_server: MockControl) -> None:
    """Only the fake's base URL is intercepted: a call to another host goes out for real."""
    with httpx.Client() as client:
        assert client.get(apimart_server.base_url + "/__mock__/health").json()["status"] == "ok"


def test_server_fixture_with_requests(apimart_server: MockControl) -> None:
    base = apimart_server.base_url
    submitted = requests.post(base + VIDEO, json=BODY, headers=HEADERS, timeout=5)
    task_id = submitted.json()["data"][0]["task_id"]
    task = requests.get(f"{base}/v1/midjourney/{task_id}", headers=HEADERS, timeout=5).json()
    assert task["status"] == "SUCCESS"
    clip = requests.get(task["video_urls"][0], timeout=5)
    assert read_clip(clip.content).width == 832
    assert len(apimart_server.tasks()) == 1


def test_server_state_is_reset_between_tests(apimart_server: MockControl) -> None:
    assert apimart_server.tasks() == []
    assert apimart_server.journal.entries() == []


# -- apimart_mock beside other respx routers, in any order -------------------------------------

OTHER = "http://127.0.0.1:9/charge"  # another service the client calls; nothing listens on port 9


def fake_and_other_service(control: MockControl) -> None:
    """The client calls the fake and another service (mocked by respx) in turn."""
    with httpx.Client(headers=HEADERS) as client:
        task_id = client.post(control.base_url + VIDEO, json=BODY).json()["data"][0]["task_id"]
        assert client.post(OTHER, json={"amount": 1}).json() == {"charged": True}
        assert client.get(f"{control.base_url}/v1/midjourney/{task_id}").json()["status"] == "SUCCESS"
    assert len(control.tasks()) == 1


def test_respx_mock_requested_after_apimart_mock(apimart_mock: MockControl, respx_mock: respx.MockRouter) -> None:
    charge = respx_mock.post(OTHER).respond(json={"charged": True})
    fake_and_other_service(apimart_mock)
    assert charge.call_count == 1


def test_respx_mock_requested_before_apimart_mock(respx_mock: respx.MockRouter, apimart_mock: MockControl) -> None:
    charge = respx_mock.post(OTHER).respond(json={"charged": True})
    fake_and_other_service(apimart_mock)
    assert charge.call_count == 1


def test_a_respx_block_inside_a_test_with_apimart_mock(apimart_mock: MockControl) -> None:
    with respx.mock() as router:
        charge = router.post(OTHER).respond(json={"charged": True})
        fake_and_other_service(apimart_mock)
    assert charge.call_count == 1
    with httpx.Client() as client, pytest.raises(httpx.ConnectError):
        client.post(OTHER)  # the block is over: the call goes out, and nothing listens


@pytest.mark.asyncio
async def test_respx_and_apimart_mock_with_an_async_client(
    apimart_mock: MockControl, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(OTHER).respond(json={"charged": True})
    async with httpx.AsyncClient(headers=HEADERS) as client:
        submitted = await client.post(apimart_mock.base_url + VIDEO, json=BODY)
        assert submitted.status_code == 200
        assert (await client.post(OTHER)).json() == {"charged": True}


@pytest.mark.parametrize("order", ["fake first", "respx first"])
def test_a_call_no_router_knows_is_refused_as_respx_would(order: str, request: pytest.FixtureRequest) -> None:
    """With respx_mock active, an unmocked host is respx_mock's to refuse, whichever started first."""
    names = ["apimart_mock", "respx_mock"] if order == "fake first" else ["respx_mock", "apimart_mock"]
    for name in names:
        request.getfixturevalue(name)
    with httpx.Client() as client, pytest.raises(AllMockedAssertionError):
        client.get("http://127.0.0.1:9/unmocked")


def test_two_in_process_fakes_and_the_network() -> None:
    with InProcessFake("https://one.example") as one, InProcessFake("https://two.example") as two:
        with httpx.Client(headers=HEADERS) as client:
            assert client.post(one.base_url + VIDEO, json=BODY).status_code == 200
            assert client.post(two.base_url + VIDEO, json=BODY).status_code == 200
            with pytest.raises(httpx.ConnectError):
                client.get(OTHER)  # neither fake knows it, no other router: it goes out
        assert len(one.tasks()) == len(two.tasks()) == 1


# -- apimart_server takes a test's marker settings ---------------------------------------------


@pytest.mark.apimart(task_seconds=60)
def test_marker_settings_apply_to_apimart_server(apimart_server: MockControl) -> None:
    base = apimart_server.base_url
    task_id = requests.post(base + VIDEO, json=BODY, headers=HEADERS, timeout=5).json()["data"][0]["task_id"]
    assert requests.get(f"{base}/v1/midjourney/{task_id}", headers=HEADERS, timeout=5).json()["status"] != "SUCCESS"
    apimart_server.clock.advance(60)
    assert requests.get(f"{base}/v1/midjourney/{task_id}", headers=HEADERS, timeout=5).json()["status"] == "SUCCESS"


@pytest.mark.apimart(task_seconds=60)
def test_same_marker_settings_share_a_server(apimart_server: MockControl, apimart_server_pool: Any) -> None:
    assert apimart_server_pool.get(["--task-seconds", "60"]) is apimart_server
    assert apimart_server.tasks() == [], "reset before the test, though shared"


def test_without_a_marker_apimart_server_has_the_ini_settings(
    apimart_server: MockControl, apimart_server_pool: Any
) -> None:
    assert apimart_server_pool.get([]) is apimart_server
    assert apimart_server_pool.get(["--task-seconds", "60"]) is not apimart_server


INNER_TESTS = """
import httpx
import pytest


@pytest.mark.apimart(task_secs=60)
def test_misspelt(apimart_server):
    pass


@pytest.mark.apimart(base_url="https://gateway.example.test")
def test_mock_only(apimart_server):
    pass


@pytest.mark.apimart(assert_all_faults_fired=False)  # the rule is added to prove the token works, not to fire
def test_token(apimart_server):
    assert httpx.get(apimart_server.base_url + "/__mock__/clock").status_code == 401
    apimart_server.clock.advance(5)
    apimart_server.faults.once("error_503")
    assert httpx.get(apimart_server.base_url + "/healthz").json()["status"] == "ok"
"""


@pytest.mark.e2e
def test_marker_mistakes_fail_loudly_and_the_ini_token_is_used(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\napimart_server_control_token = ini-s3cret\n")
    pytester.makepyfile(INNER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(["*there is no setting 'task_secs'; did you mean 'task_seconds'*"])
    result.stdout.fnmatch_lines(["*base_url=* cannot apply to apimart_server*"])


TYPO_TESTS = """
import pytest


@pytest.mark.apimart(task_secondz=5)
def test_mock(apimart_mock):
    pass


@pytest.mark.apimart(task_secondz=5)
def test_server(apimart_server):
    pass
"""


def test_a_typo_in_a_setting_fails_with_the_same_words_under_both_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(TYPO_TESTS)
    reports = pytester.inline_run("-p", "no:cacheprovider")
    errors = [r for r in reports.getreports("pytest_runtest_logreport") if r.when == "setup" and r.failed]
    assert [r.head_line for r in errors] == ["test_mock", "test_server"]
    wanted = "*@pytest.mark.apimart(task_secondz=…): there is no setting 'task_secondz'; did you mean 'task_seconds'*"
    for report in errors:
        assert fnmatch.fnmatch(report.longreprtext, wanted), report.longreprtext
        assert "TypeError" not in report.longreprtext
