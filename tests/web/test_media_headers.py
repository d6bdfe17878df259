"""Nothing that comes from outside runs on the fake's origin: media answers are never a page
(``nosniff``, a sandboxing CSP, only image and video types), and the dashboard has its own policy."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest

from mockserver import Settings, create_app
from mockserver.core.clock import VirtualClock
from mockserver.testing.transport import SyncASGITransport

from ..helpers import tiny_png

AUTH = {"Authorization": "Bearer media-headers"}
PAGE = b"<!doctype html><script>document.title = localStorage.getItem('mockserver.controlToken')</script>"


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    app = create_app(Settings(task_seconds=0), clock=VirtualClock())
    transport = SyncASGITransport(app)
    with httpx.Client(transport=transport, base_url="http://127.0.0.1:8000", headers=AUTH) as c:
        yield c
    transport.close()


def assert_never_a_page(answer: httpx.Response) -> None:
    assert answer.headers["x-content-type-options"] == "nosniff"
    policy = answer.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "sandbox" in policy
    assert answer.headers["content-type"].split(";")[0] in ("image/png", "video/mp4", "application/octet-stream")


def test_clips_and_uploads_are_served_as_media_only(client: httpx.Client) -> None:
    upload = client.post("/v1/uploads/images", files={"file": ("a.png", tiny_png(), "image/png")}).json()
    assert_never_a_page(client.get(upload["url"]))
    submitted = client.post("/v1/midjourney/generations/video", json={"prompt": "p", "image_urls": [upload["url"]]})
    task_id = submitted.json()["data"][0]["task_id"]
    url = client.get(f"/v1/tasks/{task_id}").json()["data"]["result"]["videos"][0]["url"]
    clip = client.get(url[0] if isinstance(url, list) else url)
    assert clip.headers["content-type"] == "video/mp4"
    assert_never_a_page(clip)
    assert_never_a_page(client.get(url[0] if isinstance(url, list) else url, headers={"Range": "bytes=0-9"}))


def test_an_imported_page_is_never_served_as_one(client: httpx.Client) -> None:
    upload = client.post("/v1/uploads/images", files={"file": ("a.png", tiny_png(), "image/png")}).json()
    state = client.get("/__mock__/state", params={"upload_data": "true"}).json()
    state["uploads"][0].update(content_type="text/html", filename="a.html", data=base64.b64encode(PAGE).decode())
    client.put("/__mock__/state", json=state)  # refused, or kept: either way it is never a page
    answer = client.get(upload["url"])
    assert answer.status_code == 200
    assert_never_a_page(answer)


def test_the_dashboard_has_a_strict_policy(client: httpx.Client) -> None:
    policy = client.get("/__mock__/").headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy.replace("style-src-attr 'unsafe-inline'", "")
