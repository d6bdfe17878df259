"""Frames the real API cannot read: dead upload links, and (as a setting) base64 data: URLs."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest

from .conftest import MakeApi
from .helpers import FRAME, IMAGINE, Api, assert_refused, tiny_png

UPLOAD = "/v1/uploads/images"
DAY = 86400.0


def upload(api: Api) -> dict[str, Any]:
    answer = api.client.post(UPLOAD, files={"file": ("a.png", tiny_png(), "image/png")})
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


@pytest.mark.all_stores
def test_an_expired_upload_is_refused_as_a_frame(api: Api) -> None:
    url = upload(api)["url"]
    api.clock.advance(3 * DAY - 1)
    assert api.submit({"prompt": "p", "image_urls": [url]}).status_code == 200  # still served
    api.clock.advance(1)
    refused = assert_refused(api.submit({"prompt": "p", "image_urls": [url]}), 400, "image_urls", "expired")
    assert "image_urls[0]" in refused["message"] and "cannot be fetched" in refused["message"]
    assert api.client.get(url).status_code == 410  # and once it has answered 410, it is gone
    assert_refused(api.submit({"prompt": "p", "image_urls": [url]}), 400, "image_urls", "does not hold")


def test_an_unknown_upload_on_this_host_is_refused(api: Api) -> None:
    url = re.sub(r"/upl_\w+/", "/upl_00000000000000000000000000/", upload(api)["url"])
    assert api.client.get(url).status_code == 404
    assert_refused(api.submit({"prompt": "p", "image_urls": [url]}), 400, "image_urls", "does not hold")
    assert_refused(
        api.submit({"prompt": "p", "image_urls": [FRAME], "end_url": url}), 400, "end_url", "cannot be fetched"
    )
    assert_refused(api.client.post(IMAGINE, json={"prompt": "a fox", "image_urls": [url]}), 400, "image_urls")
    assert api.task_count() == 0


def test_dead_uploads_accept_keeps_the_older_reading(make_api: MakeApi) -> None:
    api = make_api(dead_uploads="accept")
    url = upload(api)["url"]
    api.clock.advance(3 * DAY)
    task_id = api.submit_ok(image_urls=[url])
    assert api.finish(task_id)["status"] == "SUCCESS"


def test_data_url_frames_refuse_points_at_the_upload_route(make_api: MakeApi) -> None:
    frame = "data:image/png;base64," + base64.b64encode(tiny_png()).decode()
    accepting = make_api()
    assert accepting.submit({"prompt": "p", "image_urls": [frame], "end_url": frame}).status_code == 200
    refusing = make_api(data_url_frames="refuse")
    error = assert_refused(refusing.submit({"prompt": "p", "image_urls": [frame]}), 400, "image_urls", "base64")
    assert "/v1/uploads/images" in error["message"]
    assert_refused(refusing.submit({"prompt": "p", "image_urls": [FRAME], "end_url": frame}), 400, "end_url")
    assert_refused(refusing.client.post(IMAGINE, json={"prompt": "a fox", "image_urls": [frame]}), 400, "image_urls")
    assert refusing.submit({"prompt": "p", "image_urls": [FRAME]}).status_code == 200
