"""The pytest fixtures as a user's test suite meets them: unchanged clients, no sleeping."""

from __future__ import annotations

import httpx
import pytest
import requests

from mockserver.testing.control import MockControl

from .mp4 import read_clip

BODY = {"prompt": "the cat turns", "image_urls": ["https://example.com/cat.png"], "batch_size": 2}
HEADERS = {"Authorization": "Bearer user-token"}
VIDEO = "/v1/midjourney/generations/video"


def wait_for(client: httpx.Client, task_id: str) -> dict[str, object]:
    """A client's polling loop, as written against the real API (minus the sleep)."""
    for _ in range(100):
        task: dict[str, object] = client.get(f"/v1/tasks/{task_id}").json()
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
        task = (await client.get(f"/v1/tasks/{task_id}")).json()
        assert task["status"] == "SUCCESS"
        clip = await client.get(task["video_url"])
        assert clip.headers["content-type"] == "video/mp4"
    apimart_mock.journal.assert_submitted(1, batch_size=2)


@pytest.mark.apimart(task_seconds=30, base_url="https://gateway.example.test/apimart")
def test_marker_settings_and_clock(apimart_mock: MockControl) -> None:
    assert apimart_mock.base_url == "https://gateway.example.test/apimart"
    with httpx.Client(base_url=apimart_mock.base_url, headers=HEADERS) as client:
        task_id = client.post(VIDEO.lstrip("/"), json=BODY).json()["data"][0]["task_id"]
        assert client.get(f"v1/tasks/{task_id}").json()["status"] == "SUBMITTED"
        apimart_mock.clock.advance(15)
        assert client.get(f"v1/tasks/{task_id}").json()["status"] == "IN_PROGRESS"
        apimart_mock.clock.advance(15)
        assert client.get(f"v1/tasks/{task_id}").json()["status"] == "SUCCESS"


@pytest.mark.parametrize("apimart_mock", [{"task_dialect": "unified"}], indirect=True)
def test_fixture_parameter(apimart_mock: MockControl) -> None:
    with httpx.Client(base_url=apimart_mock.base_url, headers=HEADERS) as client:
        task_id = client.post(VIDEO, json=BODY).json()["data"][0]["task_id"]
        assert client.get(f"/v1/tasks/{task_id}").json()["data"]["status"] == "completed"


@pytest.mark.apimart(task_seconds=10_000, finish_after_polls=3)
def test_finish_after_nth_poll(apimart_mock: MockControl) -> None:
    with httpx.Client(base_url=apimart_mock.base_url, headers=HEADERS) as client:
        task_id = client.post(VIDEO, json=BODY).json()["data"][0]["task_id"]
        seen = [client.get(f"/v1/tasks/{task_id}").json() for _ in range(4)]
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
    task = requests.get(f"{base}/v1/tasks/{task_id}", headers=HEADERS, timeout=5).json()
    assert task["status"] == "SUCCESS"
    clip = requests.get(task["video_urls"][0], timeout=5)
    assert read_clip(clip.content).width == 832
    assert len(apimart_server.tasks()) == 1


def test_server_state_is_reset_between_tests(apimart_server: MockControl) -> None:
    assert apimart_server.tasks() == []
    assert apimart_server.journal.entries() == []
