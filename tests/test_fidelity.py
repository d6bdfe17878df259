"""The fake as the provider's own clients see it, with the default settings.

Each test is written the way such a client is: one that polls ``GET /v1/tasks/{id}``
and reads the envelope (as the provider's command-line client and published
integrations do), one that polls ``GET /v1/midjourney/{id}`` and reads
``video_url``/``video_urls``, and the uploads, lifetimes, errors, statuses and
idempotency rules of docs/evidence.md.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from mockserver.testing import MockControl

from .helpers import tiny_png

VIDEO = "/v1/midjourney/generations/video"
UPLOAD = "/v1/uploads/images"
FRAME = "https://example.com/cat.png"
FINAL = ("completed", "failed", "cancelled")
CREDITS = {"vid_1.1_i2v_480": 2.0, "vid_1.1_i2v_720": 4.0}


def envelope_client(client: httpx.Client, body: dict[str, Any], clock: Any = None) -> dict[str, Any]:
    """What the provider's own client does: submit, then poll /v1/tasks/{id} until a final
    lowercase status, reading data.status and every URL under data.result.videos."""
    task_id = client.post(VIDEO, json=body).json()["data"][0]["task_id"]
    for _ in range(100):
        answer = client.get(f"/v1/tasks/{task_id}").json()
        assert answer["code"] == 200
        if answer["data"]["status"] in FINAL:
            return dict(answer["data"])
        if clock is not None:
            clock.advance(3)
    raise AssertionError("the task never finished")


def clip_urls(data: dict[str, Any]) -> list[str]:
    urls: list[str] = []
    for item in data["result"]["videos"]:
        urls.extend(item["url"] if isinstance(item["url"], list) else [item["url"]])
    return urls


@pytest.mark.apimart(task_seconds=30)
@pytest.mark.parametrize("batch", [1, 2, 4])
@pytest.mark.parametrize("video_type", ["vid_1.1_i2v_480", "vid_1.1_i2v_720"])
def test_a_client_of_the_envelope_works(apimart_mock: MockControl, batch: int, video_type: str) -> None:
    auth = {"Authorization": "Bearer envelope"}
    with httpx.Client(base_url=apimart_mock.base_url, headers=auth) as client:
        body = {"prompt": "waves", "image_urls": [FRAME], "batch_size": batch, "video_type": video_type}
        task_id = client.post(VIDEO, json=body).json()["data"][0]["task_id"]
        pending = client.get(f"/v1/tasks/{task_id}").json()["data"]
        assert pending["status"] == "pending"
        assert pending["credits_cost"] == CREDITS[video_type] * batch  # from the first poll on
        assert pending["cost"] == pytest.approx(CREDITS[video_type] * batch * 0.1)
        data = envelope_client(client, body, apimart_mock.clock)
        assert data["status"] == "completed"
        urls = clip_urls(data)
        assert len(urls) == batch == len(set(urls))
        assert all(isinstance(item["url"], list) for item in data["result"]["videos"])  # each url a list
        clips = [client.get(url) for url in urls]
        assert {c.headers["content-type"] for c in clips} == {"video/mp4"}
        assert len({c.content for c in clips}) == batch  # each clip's bytes are its own


@pytest.mark.parametrize("batch", [1, 2, 4])
def test_a_client_of_the_midjourney_body_works(apimart_mock: MockControl, batch: int) -> None:
    with httpx.Client(base_url=apimart_mock.base_url, headers={"Authorization": "Bearer mj"}) as client:
        body = {"prompt": "waves", "image_urls": [FRAME], "batch_size": batch}
        task_id = client.post(VIDEO, json=body).json()["data"][0]["task_id"]
        task = client.get(f"/v1/midjourney/{task_id}").json()
        assert task["status"] == "SUCCESS"
        assert len(task["video_urls"]) == batch
        assert task["video_url"] == task["video_urls"][0]
        assert client.get(task["video_url"]).content[4:8] == b"ftyp"


@pytest.mark.apimart(unified_video_items="single", unified_url_shape="string")
def test_single_item_grouping(apimart_mock: MockControl) -> None:
    with httpx.Client(base_url=apimart_mock.base_url, headers={"Authorization": "Bearer g"}) as client:
        data = envelope_client(client, {"prompt": "p", "image_urls": [FRAME], "batch_size": 4})
    (item,) = data["result"]["videos"]
    assert isinstance(item["url"], list) and len(item["url"]) == 4


def test_a_failed_task_is_refunded_in_the_envelope(apimart_mock: MockControl) -> None:
    with httpx.Client(base_url=apimart_mock.base_url, headers={"Authorization": "Bearer f"}) as client:
        data = envelope_client(client, {"prompt": "p [mock:moderation]", "image_urls": [FRAME]})
    assert (data["status"], data["cost"], data["credits_cost"]) == ("failed", 0, 0)
    assert "result" not in data


# -- uploads -------------------------------------------------------------------------------------------


def test_png_sent_as_octet_stream_is_detected(apimart_mock: MockControl) -> None:
    """What Go clients (CreateFormFile) send: every part as application/octet-stream."""
    png = tiny_png(32, 18)
    with httpx.Client(base_url=apimart_mock.base_url, headers={"Authorization": "Bearer u"}) as client:
        answer = client.post(UPLOAD, files={"file": ("frame", png, "application/octet-stream")})
        assert answer.status_code == 200, answer.text
        assert answer.json()["content_type"] == "image/png"
        assert client.get(answer.json()["url"]).headers["content-type"] == "image/png"
        lying = client.post(UPLOAD, files={"file": ("a.png", b"GIF89a\x0a\x00\x0a\x00" + b"\x00" * 20, "image/png")})
        assert lying.json()["content_type"] == "image/gif"  # the bytes decide, not the declaration
        text = client.post(UPLOAD, files={"file": ("a.png", b"not an image at all", "image/png")})
        assert text.status_code == 400
        assert text.json()["error"]["param"] == "file"


def test_upload_over_20_mb_is_413(apimart_mock: MockControl) -> None:
    big = tiny_png() + b"\x00" * (21 * 1024 * 1024)
    with httpx.Client(base_url=apimart_mock.base_url, headers={"Authorization": "Bearer u"}) as client:
        answer = client.post(UPLOAD, files={"file": ("big.png", big, "image/png")})
    assert answer.status_code == 413
    assert answer.json()["error"]["param"] == "file"


def test_upload_lives_72_hours_then_410(apimart_mock: MockControl) -> None:
    with httpx.Client(base_url=apimart_mock.base_url, headers={"Authorization": "Bearer u"}) as client:
        url = client.post(UPLOAD, files={"file": ("a.png", tiny_png(), "image/png")}).json()["url"]
        apimart_mock.clock.advance(71 * 3600)
        assert client.get(url).status_code == 200
        apimart_mock.clock.advance(2 * 3600)
        assert client.get(url).status_code == 410


@pytest.mark.apimart(upload_quota_bytes=3000)
def test_upload_quota_per_account_and_eviction(apimart_mock: MockControl) -> None:
    png = tiny_png(40, 40)  # a little over 1 KB... of compressible grey: pad it
    png = png + b"\x00" * (1200 - len(png))
    with httpx.Client(base_url=apimart_mock.base_url, headers={"Authorization": "Bearer q"}) as client:
        assert client.post(UPLOAD, files={"file": ("a.png", png, "image/png")}).status_code == 200
        assert client.post(UPLOAD, files={"file": ("b.png", png, "image/png")}).status_code == 200
        full = client.post(UPLOAD, files={"file": ("c.png", png, "image/png")})
        assert full.status_code == 413
        assert "quota" in full.json()["error"]["message"]
        other = client.post(UPLOAD, files={"file": ("c.png", png, "image/png")}, headers={"Authorization": "Bearer r"})
        assert other.status_code == 200  # the quota is per account
        apimart_mock.clock.advance(73 * 3600)  # the first two expire and are evicted
        assert client.post(UPLOAD, files={"file": ("c.png", png, "image/png")}).status_code == 200


# -- media lifetime and shape -------------------------------------------------------------------


def test_media_download_after_the_task_is_gone_and_410_72_h_later(apimart_mock: MockControl) -> None:
    with httpx.Client(base_url=apimart_mock.base_url, headers={"Authorization": "Bearer m"}) as client:
        data = envelope_client(client, {"prompt": "p", "image_urls": [FRAME]})
        url, task_id = clip_urls(data)[0], data["id"]
        apimart_mock.clock.advance(25 * 3600)
        assert client.get(url).status_code == 200
        apimart_mock.clock.advance(48 * 3600)  # 73 h: the task is gone, its media are not
        assert client.get(f"/v1/tasks/{task_id}").status_code == 404
        assert client.get(url).status_code == 200
        apimart_mock.clock.advance(72 * 3600)
        assert client.get(url).status_code == 410


@pytest.mark.parametrize(("size", "frame"), [((64, 64), (624, 624)), ((90, 160), (464, 832)), ((160, 90), (832, 464))])
def test_clip_follows_the_start_frame_aspect(apimart_mock: MockControl, size: tuple[int, int], frame: Any) -> None:
    from .mp4 import read_clip

    data_url = "data:image/png;base64," + base64.b64encode(tiny_png(*size)).decode()
    with httpx.Client(base_url=apimart_mock.base_url, headers={"Authorization": "Bearer a"}) as client:
        data = envelope_client(client, {"prompt": "p", "image_urls": [data_url]})
        clip = read_clip(client.get(clip_urls(data)[0]).content)
    assert (clip.width, clip.height) == frame


def test_clip_ranges(apimart_mock: MockControl) -> None:
    with httpx.Client(base_url=apimart_mock.base_url, headers={"Authorization": "Bearer a"}) as client:
        url = clip_urls(envelope_client(client, {"prompt": "p", "image_urls": [FRAME]}))[0]
        whole = client.get(url).content
        part = client.get(url, headers={"Range": "bytes=10-19"})
        assert (part.status_code, part.content) == (206, whole[10:20])
        assert part.headers["content-range"] == f"bytes 10-19/{len(whole)}"
        assert client.get(url, headers={"Range": "bytes=-5"}).content == whole[-5:]
        beyond = client.get(url, headers={"Range": f"bytes={len(whole)}-"})
        assert (beyond.status_code, beyond.headers["content-range"]) == (416, f"bytes */{len(whole)}")


# -- errors ---------------------------------------------------------------------------------------------


def test_missing_key_and_unknown_key(apimart_mock: MockControl) -> None:
    with httpx.Client(base_url=apimart_mock.base_url) as client:
        missing = client.post(VIDEO, json={"prompt": "p", "image_urls": [FRAME]}).json()["error"]
    assert (missing["type"], missing["code"]) == ("apimart_error", 401)
    assert missing["message"].startswith("API key is required")


@pytest.mark.apimart(api_keys="key-one,key-two")
def test_api_keys_setting_accepts_only_those(apimart_mock: MockControl) -> None:
    body = {"prompt": "p", "image_urls": [FRAME]}
    with httpx.Client(base_url=apimart_mock.base_url) as client:
        ok = client.post(VIDEO, json=body, headers={"Authorization": "Bearer key-two"})
        assert ok.status_code == 200
        wrong = client.post(VIDEO, json=body, headers={"Authorization": "Bearer key-three"})
        assert (wrong.status_code, wrong.json()["error"]["type"]) == (401, "authentication_error")


def test_moderation_at_submit_is_422(apimart_mock: MockControl) -> None:
    apimart_mock.faults.once("moderation_422", endpoint="video")
    with httpx.Client(base_url=apimart_mock.base_url, headers={"Authorization": "Bearer p"}) as client:
        refused = client.post(VIDEO, json={"prompt": "p", "image_urls": [FRAME]})
    assert refused.status_code == 422
    assert refused.json()["error"]["type"] == "invalid_request_error"
    assert "moderation" in refused.json()["error"]["message"]
    assert apimart_mock.tasks() == []


# -- statuses a client must survive ------------------------------------------------------------------


@pytest.mark.apimart(task_seconds=10)
def test_not_start_then_the_usual_lifecycle(apimart_mock: MockControl) -> None:
    with httpx.Client(base_url=apimart_mock.base_url, headers={"Authorization": "Bearer s"}) as client:
        headers = {"X-Mock-Scenario": "not_start; seconds=20"}
        task_id = client.post(VIDEO, json={"prompt": "p", "image_urls": [FRAME]}, headers=headers).json()["data"][0][
            "task_id"
        ]
        assert client.get(f"/v1/midjourney/{task_id}").json()["status"] == "NOT_START"
        assert client.get(f"/v1/tasks/{task_id}").json()["data"]["status"] == "pending"
        apimart_mock.clock.advance(20.5)
        assert client.get(f"/v1/midjourney/{task_id}").json()["status"] == "SUBMITTED"
        apimart_mock.clock.advance(5.5)
        assert client.get(f"/v1/midjourney/{task_id}").json()["status"] == "IN_PROGRESS"
        apimart_mock.clock.advance(10)
        assert client.get(f"/v1/tasks/{task_id}").json()["data"]["status"] == "completed"


def test_cancelled_task_in_both_dialects(apimart_mock: MockControl) -> None:
    apimart_mock.faults.once("cancel", endpoint="video")
    with httpx.Client(base_url=apimart_mock.base_url, headers={"Authorization": "Bearer c"}) as client:
        task_id = client.post(VIDEO, json={"prompt": "p", "image_urls": [FRAME]}).json()["data"][0]["task_id"]
        envelope = client.get(f"/v1/tasks/{task_id}").json()["data"]
        mj = client.get(f"/v1/midjourney/{task_id}").json()
    assert (envelope["status"], envelope["credits_cost"]) == ("cancelled", 0)
    assert (mj["status"], mj["fail_reason"]) == ("FAILURE", "Task timeout")
    assert apimart_mock.ledger.spent(token="c") == 0  # refunded


# -- idempotency ------------------------------------------------------------------------------------------


def test_idempotency_key_rules(apimart_mock: MockControl) -> None:
    body = {"prompt": "p", "image_urls": [FRAME]}
    with httpx.Client(base_url=apimart_mock.base_url, headers={"Authorization": "Bearer i"}) as client:
        first = client.post(VIDEO, json=body, headers={"Idempotency-Key": "order-1"})
        again = client.post(VIDEO, json=body, headers={"Idempotency-Key": "order-1"})
        assert again.json() == first.json()
        assert again.headers["idempotency-replayed"] == "true"
        reused = client.post(VIDEO, json={**body, "prompt": "q"}, headers={"Idempotency-Key": "order-1"})
        assert reused.status_code == 409
        assert reused.json()["error"]["code"] == 409  # one rule: code is the status
        assert "(idempotency_key_reused)" in reused.json()["error"]["message"]
        for bad in (b"k" * 192, b"has space", "é".encode()):
            refused = client.post(VIDEO, json=body, headers={b"Idempotency-Key": bad})
            assert refused.status_code == 400, bad
            assert refused.json()["error"]["param"] == "Idempotency-Key"
        assert client.post(VIDEO, json=body, headers={"Idempotency-Key": "k" * 191}).status_code == 200
    assert len(apimart_mock.tasks()) == 2


@pytest.mark.apimart(conflict_code="reason")
def test_conflict_code_reason_puts_the_reason_in_code(apimart_mock: MockControl) -> None:
    body = {"prompt": "p", "image_urls": [FRAME]}
    with httpx.Client(base_url=apimart_mock.base_url, headers={"Authorization": "Bearer i"}) as client:
        client.post(VIDEO, json=body, headers={"Idempotency-Key": "order-1"})
        reused = client.post(VIDEO, json={**body, "prompt": "q"}, headers={"Idempotency-Key": "order-1"})
    assert (reused.status_code, reused.json()["error"]["code"]) == (409, "idempotency_key_reused")
