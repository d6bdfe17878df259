"""The provider's API over HTTP, in-process: every rule as a client sees it."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import MutableMapping
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from mockserver.core.accounts import account_id
from mockserver.core.records import FAILURE_OUTCOME, TaskRecord
from mockserver.core.spec import load_document

from .conftest import MakeApi
from .helpers import AUTH, FRAME, IMAGINE, VIDEO, Api, assert_refused, blocking, tiny_png
from .mp4 import read_clip

DOC = load_document()
_REGISTRY: Registry[Any] = Registry().with_resource(
    "urn:t", Resource.from_contents(DOC, default_specification=DRAFT202012)
)
TASK_ID = re.compile(r"^task_[0-9A-HJKMNP-TV-Z]{26}$")
MiB = 1024 * 1024


def conforms(schema: str, body: Any) -> None:
    Draft202012Validator({"$ref": f"urn:t#/components/schemas/{schema}"}, registry=_REGISTRY).validate(body)


def png_data_url(size: int) -> str:
    return "data:image/png;base64," + base64.b64encode(b"\x89PNG" + b"\x00" * (size - 4)).decode()


# -- submission ------------------------------------------------------------------------


def test_doc_example_i2v_batch4(api: Api) -> None:
    body = DOC["paths"][VIDEO]["post"]["requestBody"]["content"]["application/json"]["examples"]["i2v_batch4"]["value"]
    response = api.submit(body)
    assert response.status_code == 200
    answer = response.json()
    conforms("Submitted", answer)
    assert answer["data"][0]["status"] == "submitted"
    assert TASK_ID.match(answer["data"][0]["task_id"])
    done = api.finish(answer["data"][0]["task_id"])
    assert len(done["video_urls"]) == 4


def test_doc_example_start_end_upgrades_and_bills_720p(api: Api) -> None:
    body = DOC["paths"][VIDEO]["post"]["requestBody"]["content"]["application/json"]["examples"]["start_end"]["value"]
    task_id = api.submit(body).json()["data"][0]["task_id"]
    record = blocking(api.fake.store).get_task(task_id)
    assert record is not None
    assert record.video_type == "vid_1.1_i2v_start_end_720"
    assert (record.price_key, record.quantity) == ("midjourney@video-720p", 1)
    internal = api.client.get(f"/__mock__/tasks/{task_id}").json()
    assert internal["record"]["video_type"] == "vid_1.1_i2v_start_end_720"
    assert internal["record"]["params"]["requested_video_type"] == "vid_1.1_i2v_720"


@pytest.mark.all_stores
def test_each_task_id_is_new(api: Api) -> None:
    ids = {api.submit_ok() for _ in range(20)}
    assert len(ids) == 20


REFUSALS: list[tuple[str, Any, str | None, str]] = [
    ("no frame, no task", {"prompt": "p"}, "image_urls", "text-to-video"),
    ("frame and task", {"prompt": "p", "image_urls": [FRAME], "task_id": "task_x"}, "task_id", "both"),
    ("two images", {"prompt": "p", "image_urls": [FRAME, FRAME]}, "image_urls", "at most 1"),
    ("empty image list", {"prompt": "p", "image_urls": []}, "image_urls", "at least 1"),
    ("image_urls not a list", {"prompt": "p", "image_urls": FRAME}, "image_urls", "array"),
    ("frame not a URL", {"prompt": "p", "image_urls": ["/home/me/cat.png"]}, "image_urls", "form"),
    ("extend 480", {"prompt": "p", "image_urls": [FRAME], "video_type": "vid_1.1_i2v_extend_480"}, "video_type", ""),
    ("extend 720", {"prompt": "p", "image_urls": [FRAME], "video_type": "vid_1.1_extend_720"}, "video_type", ""),
    ("unknown tier", {"prompt": "p", "image_urls": [FRAME], "video_type": "vid_1.1_i2v_1080"}, "video_type", ""),
    ("video_type case", {"prompt": "p", "image_urls": [FRAME], "video_type": "VID_1.1_I2V_480"}, "video_type", ""),
    ("motion medium", {"prompt": "p", "image_urls": [FRAME], "motion": "medium"}, "motion", "low"),
    ("animate_mode", {"prompt": "p", "image_urls": [FRAME], "animate_mode": "magic"}, "animate_mode", "auto"),
    ("auto without task", {"prompt": "p", "image_urls": [FRAME], "animate_mode": "auto"}, "task_id", "auto"),
    ("auto without index", {"task_id": "task_x", "animate_mode": "auto"}, "index", "auto"),
    ("index 4", {"task_id": "task_x", "index": 4}, "index", "<= 3"),
    ("index -1", {"task_id": "task_x", "index": -1}, "index", ">= 0"),
    ("index string", {"task_id": "task_x", "index": "1"}, "index", "integer"),
    ("empty prompt", {"prompt": "", "image_urls": [FRAME]}, "prompt", "prompt"),
    ("blank prompt", {"prompt": "   ", "image_urls": [FRAME]}, "prompt", "prompt"),
    ("no prompt", {"image_urls": [FRAME]}, "prompt", "prompt"),
    ("prompt number", {"prompt": 5, "image_urls": [FRAME]}, "prompt", "string"),
    ("batch 3", {"prompt": "p", "image_urls": [FRAME], "batch_size": 3}, "batch_size", "1, 2, 4"),
    ("batch 0", {"prompt": "p", "image_urls": [FRAME], "batch_size": 0}, "batch_size", "1, 2, 4"),
    ("batch string", {"prompt": "p", "image_urls": [FRAME], "batch_size": "2"}, "batch_size", "integer"),
    ("batch bool", {"prompt": "p", "image_urls": [FRAME], "batch_size": True}, "batch_size", "integer"),
    ("batch 2.5", {"prompt": "p", "image_urls": [FRAME], "batch_size": 2.5}, "batch_size", "integer"),
    ("unknown parent", {"task_id": "task_nope"}, "task_id", "not found"),
    ("task_id number", {"task_id": 7}, "task_id", "string"),
    ("end_url number", {"prompt": "p", "image_urls": [FRAME], "end_url": 1}, "end_url", "string"),
    ("bad data url", {"prompt": "p", "image_urls": ["data:image/png;base64,@@@@"]}, "image_urls", "base64"),
    ("text data url", {"prompt": "p", "image_urls": ["data:text/plain,hi"]}, "image_urls", "image"),
]


@pytest.mark.parametrize(("name", "body", "param", "words"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusal(api: Api, name: str, body: Any, param: str | None, words: str) -> None:
    error = assert_refused(api.submit(body), 400, param, words)
    assert error["type"] == "invalid_request_error"
    assert api.task_count() == 0


def test_oversize_start_frame(api: Api) -> None:
    response = api.submit({"prompt": "p", "image_urls": [png_data_url(12 * MiB + 1)]})
    assert_refused(response, 400, "image_urls", "image_urls[0]", "12 MiB")
    assert api.task_count() == 0


def test_frame_of_exactly_12_mib_accepted(api: Api) -> None:
    assert api.submit({"prompt": "p", "image_urls": [png_data_url(12 * MiB)]}).status_code == 200


def test_oversize_end_frame(make_api: MakeApi) -> None:
    api = make_api(max_frame_bytes=1000)
    response = api.submit({"prompt": "p", "image_urls": [png_data_url(1000)], "end_url": png_data_url(1001)})
    assert_refused(response, 400, "end_url", "at most 1000")


def test_integral_float_batch_size_counts(api: Api) -> None:
    task_id = api.submit_ok(batch_size=2.0)
    assert len(api.finish(task_id)["video_urls"]) == 2


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"{bad json", "malformed JSON"),
        (b"[1, 2]", "JSON object, not array"),
        (b'"text"', "JSON object, not str"),
        (b"null", "JSON object"),
        (b"", "empty"),
        (b'{"prompt": NaN}', "NaN"),
        (b"\xff\xfe", "UTF-8"),
        (b"[" * 100_000, "malformed JSON"),
    ],
)
def test_bad_json(api: Api, content: bytes, words: str) -> None:
    response = api.client.post(VIDEO, content=content, headers={"content-type": "application/json"})
    assert_refused(response, 400, None, words)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_non_json_content_type(api: Api, content_type: str) -> None:
    response = api.client.post(VIDEO, content=b'{"prompt":"p"}', headers={"content-type": content_type})
    assert_refused(response, 415, None, "application/json")


def test_json_with_charset_accepted(api: Api) -> None:
    body = b'{"prompt": "p", "image_urls": ["https://example.com/a.png"]}'
    response = api.client.post(VIDEO, content=body, headers={"content-type": "application/json; charset=utf-8"})
    assert response.status_code == 200


def test_body_over_limit_by_content_length(make_api: MakeApi) -> None:
    api = make_api(max_body_bytes=1000)
    response = api.client.post(VIDEO, content=b"{" + b" " * 2000 + b"}", headers={"content-type": "application/json"})
    assert_refused(response, 413, None, "1000 bytes")


@pytest.mark.parametrize("declared", [b"9" * 5000, b" 1001 ", b"0" * 40 + b"1001"])
def test_body_over_limit_by_any_declared_length(make_api: MakeApi, declared: bytes) -> None:
    """A declared length longer than int() reads (over 4300 digits), padded, or zero-padded: the same 413."""
    api = make_api(max_body_bytes=1000)
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    token = AUTH["Authorization"].encode()
    headers = [(b"authorization", token), (b"content-type", b"application/json"), (b"content-length", declared)]
    scope = {"type": "http", "method": "POST", "path": VIDEO, "root_path": "", "query_string": b"", "scheme": "http",
             "headers": headers, "server": ("testserver", 80), "client": ("127.0.0.1", 1)}  # fmt: skip
    asyncio.run(api.app(scope, receive, send))
    assert sent[0]["status"] == 413
    assert b"1000 bytes" in sent[1]["body"]
    sent.clear()
    scope["headers"] = [*headers[:2], (b"content-length", b"0" * 4400 + b"2")]  # within the limit, zero-padded
    asyncio.run(api.app(scope, receive, send))
    assert sent[0]["status"] != 413


def test_body_over_limit_when_streamed(make_api: MakeApi) -> None:
    api = make_api(max_body_bytes=1000)

    def chunks() -> Any:
        for _ in range(50):
            yield b" " * 100

    response = api.client.post(VIDEO, content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in response.request.headers
    assert_refused(response, 413, None, "1000 bytes")


def test_default_body_limit_is_40_mib(api: Api) -> None:
    assert api.fake.settings.max_body_bytes == 40 * MiB
    response = api.client.post(VIDEO, content=b" " * (40 * MiB + 1), headers={"content-type": "application/json"})
    assert_refused(response, 413, None, str(40 * MiB))


# -- auth ------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", "Basic dXNlcjpwYXNz", "token-without-scheme"])
def test_missing_or_bad_token(make_api: MakeApi, header: str | None) -> None:
    api = make_api(headers={} if header is None else {"Authorization": header})
    # Observed live for a missing key: 401 {"error": {"message": "API key is required ...", "type": "apimart_error"}}
    error = assert_refused(api.submit({"prompt": "p", "image_urls": [FRAME]}), 401, None, "API key is required")
    assert error["type"] == "apimart_error"
    assert assert_refused(api.client.get("/v1/tasks/task_x"), 401, None)["type"] == "apimart_error"
    assert api.task_count() == 0


def test_auth_checked_before_body(make_api: MakeApi) -> None:
    api = make_api(headers={})
    assert api.client.post(VIDEO, content=b"{bad", headers={"content-type": "application/json"}).status_code == 401


def test_other_account_gets_403_unknown_gets_404(api: Api) -> None:
    task_id = api.submit_ok()
    other = {"Authorization": "Bearer someone-else"}
    error = assert_refused(api.client.get(f"/v1/tasks/{task_id}", headers=other), 403, "task_id", "another account")
    assert error["type"] == "permission_error"
    assert_refused(api.client.get(f"/v1/midjourney/{task_id}", headers=other), 403, "task_id")
    assert_refused(api.client.get("/v1/tasks/task_01KV52C0TEJSYZMCG0NCS4YWKK"), 404, "task_id", "not found")
    assert_refused(api.client.get("/v1/midjourney/task_01KV52C0TEJSYZMCG0NCS4YWKK"), 404, "task_id")


# -- lifecycle and task views ------------------------------------------------------------


@pytest.mark.all_stores
@pytest.mark.parametrize("batch", [1, 2, 4])
def test_lifecycle_mj_dialect(api: Api, batch: int) -> None:
    task_id = api.submit_ok(batch_size=batch)
    first = api.poll(task_id)
    conforms("MjTask", first)
    assert (first["status"], first["progress"], first["action"], first["mode"]) == ("SUBMITTED", "0%", "VIDEO", "FAST")
    assert "video_urls" not in first
    api.clock.advance(5.5)
    middle = api.poll(task_id)
    assert (middle["status"], middle["progress"]) == ("IN_PROGRESS", "50%")
    done = api.finish(task_id)
    conforms("MjTask", done)
    assert (done["status"], done["progress"], done["fail_reason"]) == ("SUCCESS", "100%", "")
    assert len(done["video_urls"]) == batch
    assert done["video_url"] == done["video_urls"][0]
    assert len(set(done["video_urls"])) == batch
    assert done["submit_time"] <= done["start_time"] <= done["finish_time"]
    assert done["prompt"] == "a cat"
    assert api.poll(task_id, "/v1/midjourney/") == done


def test_zero_task_seconds_final_on_first_poll(make_api: MakeApi) -> None:
    api = make_api(task_seconds=0)
    assert api.poll(api.submit_ok())["status"] == "SUCCESS"


@pytest.mark.parametrize("shape", ["list", "string"])
def test_unified_dialect(make_api: MakeApi, shape: str) -> None:
    api = make_api(task_dialect="unified", unified_url_shape=shape)
    task_id = api.submit_ok(batch_size=2)
    pending = api.poll(task_id, "/v1/tasks/")
    conforms("UnifiedTaskEnvelope", pending)
    assert pending["code"] == 200
    assert (pending["data"]["status"], pending["data"]["progress"]) == ("pending", 0)
    assert "result" not in pending["data"] and "completed" not in pending["data"]
    api.clock.advance(5.5)
    assert api.poll(task_id, "/v1/tasks/")["data"]["status"] == "processing"
    api.clock.advance(10)
    done = api.poll(task_id, "/v1/tasks/")
    conforms("UnifiedTaskEnvelope", done)
    data = done["data"]
    assert (data["status"], data["progress"]) == ("completed", 100)
    assert data["completed"] >= data["created"]
    assert data["actual_time"] == 10
    videos = data["result"]["videos"]
    assert len(videos) == 2
    urls = [v["url"][0] if shape == "list" else v["url"] for v in videos]
    assert all(isinstance(u, str) and u.endswith(".mp4") for u in urls)
    assert videos[0]["expires_at"] == data["created"] + 3 * 86400 + 3 * 86400  # record dropped, then 72 h
    mj = api.poll(task_id, "/v1/midjourney/")
    assert mj["status"] == "SUCCESS"
    assert mj["video_urls"] == urls


def test_failed_task_views(make_api: MakeApi) -> None:
    for dialect in ("mj", "unified"):
        api = make_api(task_dialect=dialect)
        record = TaskRecord(
            id="task_01KV52C0TEJSYZMCG0NCS4YWKK",
            account=_account(api),
            action="VIDEO",
            created_at=api.clock.now(),
            duration=10,
            prompt="p",
            mode="FAST",
            clips=1,
            price_key="midjourney@video",
            quantity=1,
            outcome=FAILURE_OUTCOME,
            fail_reason="Banned prompt detected",
        )
        blocking(api.fake.store).put_task(record)
        api.clock.advance(11)
        view = api.poll(record.id, "/v1/tasks/")
        if dialect == "mj":
            assert (view["status"], view["fail_reason"]) == ("FAILURE", "Banned prompt detected")
            assert "video_urls" not in view
        else:
            assert view["data"]["status"] == "failed"
            assert view["data"]["error"]["message"] == "Banned prompt detected"
            assert "result" not in view["data"]


def _account(api: Api) -> str:
    return account_id(AUTH["Authorization"].removeprefix("Bearer "))


def test_public_url_setting(make_api: MakeApi) -> None:
    api = make_api(public_url="https://fake.example.test/base/", task_seconds=0)
    done = api.poll(api.submit_ok())
    assert done["video_url"].startswith("https://fake.example.test/base/media/")


def test_coerce_policy_treats_other_batch_sizes_as_one(make_api: MakeApi) -> None:
    api = make_api(batch_size_policy="coerce")
    for value in (3, 0, 100, -2):
        task_id = api.submit_ok(batch_size=value)
        assert len(api.finish(task_id)["video_urls"]) == 1
        record = blocking(api.fake.store).get_task(task_id)
        assert record is not None and record.quantity == 1
    assert_refused(api.submit({"prompt": "p", "image_urls": [FRAME], "batch_size": "3"}), 400, "batch_size")


@pytest.mark.all_stores
def test_retention_then_404_while_media_still_served(make_api: MakeApi) -> None:
    """The tasks page: after 3 days the poll answers 404 "while the media URLs still work". With the
    in-process pace (a task final at once) the clip must outlive the record, not die with it."""
    api = make_api(task_seconds=0)
    task_id = api.submit_ok()
    url = api.poll(task_id)["video_url"]
    api.clock.advance(3 * 86400 - 1)
    assert api.client.get(f"/v1/tasks/{task_id}").status_code == 200
    assert api.client.get(url).status_code == 200
    api.clock.advance(2)  # 3 days + 1 s
    assert_refused(api.client.get(f"/v1/tasks/{task_id}"), 404, "task_id", "not found")
    assert api.client.get(url).status_code == 200
    api.clock.advance(3 * 86400 - 2)  # 1 s before the record's drop + 72 h
    assert api.client.get(url).status_code == 200
    api.clock.advance(1)
    assert api.client.get(url).status_code == 410


@pytest.mark.all_stores
def test_media_clock_end_counts_from_the_task_end(make_api: MakeApi) -> None:
    api = make_api(task_seconds=10, media_clock="end", media_ttl_seconds=600)
    task_id = api.submit_ok()
    api.clock.advance(10)
    data = api.client.get(f"/v1/tasks/{task_id}").json()["data"]
    assert data["result"]["videos"][0]["expires_at"] == data["completed"] + 600
    url = api.poll(task_id)["video_url"]
    api.clock.advance(599)
    assert api.client.get(url).status_code == 200
    api.clock.advance(1)
    assert api.client.get(url).status_code == 410
    assert api.client.get(f"/v1/tasks/{task_id}").status_code == 200  # the record outlives its media


@pytest.mark.all_stores
@pytest.mark.parametrize("clock", ["end", "record"])
def test_a_task_that_ends_late_keeps_its_media_until_they_expire(make_api: MakeApi, clock: str) -> None:
    """A task that ends at its second poll, long after submission: the sweep must not take its
    record (and so its media) before the URL a poll handed out expires."""
    api = make_api(
        task_seconds=0, finish_after_polls=2, task_retention_seconds=100, media_ttl_seconds=50, media_clock=clock
    )
    task_id = api.submit_ok()
    api.poll(task_id)
    api.clock.advance(90)
    data = api.client.get(f"/v1/tasks/{task_id}").json()["data"]
    expires = data["result"]["videos"][0]["expires_at"]
    url = api.poll(task_id)["video_url"]
    api.clock.advance(expires - api.clock.now() - 1)  # 1 s before its expiry
    api.submit_ok()  # a submission sweeps
    assert api.client.get(url).status_code == 200
    api.clock.advance(1)
    assert api.client.get(url).status_code in (404, 410)


@pytest.mark.all_stores
def test_expired_tasks_are_evicted_so_memory_stays_flat(make_api: MakeApi) -> None:
    api = make_api(task_seconds=0, task_retention_seconds=3000, media_ttl_seconds=600)
    for _ in range(3):
        api.submit_ok()
    api.clock.advance(3601)
    latest = api.submit_ok()  # a submission sweeps
    assert [t.id for t in blocking(api.fake.store).tasks()] == [latest]
    for _ in range(10):  # a day of traffic, an hour apart: the store never holds more than an hour's tasks
        api.clock.advance(3601)
        api.submit_ok()
        assert api.task_count() == 1


# -- imagine and reuse ---------------------------------------------------------------------


@pytest.mark.all_stores
def test_imagine_success_and_reuse(api: Api) -> None:
    parent = api.imagine_ok("a red fox in the snow", speed="fast", size="16:9")
    assert_refused(api.submit({"task_id": parent, "index": 1}), 400, "task_id", "not finished")
    done = api.finish(parent)
    conforms("MjTask", done)
    assert (done["action"], done["mode"], done["status"]) == ("IMAGINE", "FAST", "SUCCESS")
    assert done["grid_image_url"].endswith("/grid.png")
    assert len(done["image_urls"]) == 4
    assert [b["label"] for b in done["buttons"]] == ["U1", "U2", "U3", "U4", "V1", "V2", "V3", "V4"]
    image = api.client.get(done["image_urls"][3])
    assert (image.status_code, image.headers["content-type"]) == (200, "image/png")
    child = api.submit({"task_id": parent, "index": 1, "animate_mode": "auto"})
    assert child.status_code == 200
    child_id = child.json()["data"][0]["task_id"]
    video = api.finish(child_id)
    assert video["prompt"] == "a red fox in the snow"
    assert len(video["video_urls"]) == 1


def test_imagine_alias_path_and_rules(api: Api) -> None:
    assert api.client.post("/v1/midjourney/generations/imagine", json={"prompt": "x"}).status_code == 200
    assert_refused(api.client.post(IMAGINE, json={}), 400, "prompt", "required")
    assert_refused(api.client.post(IMAGINE, json={"prompt": "  "}), 400, "prompt", "empty")
    assert_refused(api.client.post(IMAGINE, json={"prompt": "x", "speed": "warp"}), 400, "speed", "relax")
    assert_refused(api.client.post(IMAGINE, json={"prompt": "x", "size": "wide"}), 400, "size")


@pytest.mark.all_stores
def test_parent_rules_over_http(api: Api) -> None:
    video = api.submit_ok()
    api.finish(video)
    assert_refused(api.submit({"task_id": video}), 400, "task_id", "not an imagine task")
    parent = api.imagine_ok()
    api.finish(parent)
    other = {"Authorization": "Bearer someone-else"}
    assert_refused(api.submit({"task_id": parent}, headers=other), 400, "task_id", "not found")


# -- idempotency -------------------------------------------------------------------------


@pytest.mark.all_stores
def test_idempotency_key_replays(api: Api) -> None:
    body = {"prompt": "p", "image_urls": [FRAME]}
    first = api.submit(body, headers={"Idempotency-Key": "k1"})
    again = api.submit(body, headers={"Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["idempotency-replayed"] == "true"
    assert "idempotency-replayed" not in first.headers
    assert api.task_count() == 1
    other_key = api.submit(body, headers={"Idempotency-Key": "k2"})
    assert other_key.json() != first.json()
    other_account = api.submit(body, headers={"Idempotency-Key": "k1", "Authorization": "Bearer other"})
    assert other_account.json() != first.json()
    assert "idempotency-replayed" not in other_account.headers
    assert api.task_count() == 3


@pytest.mark.all_stores
def test_refused_submission_does_not_bind_the_key(api: Api) -> None:
    assert api.submit({"prompt": "p"}, headers={"Idempotency-Key": "k"}).status_code == 400
    ok = api.submit({"prompt": "p", "image_urls": [FRAME]}, headers={"Idempotency-Key": "k"})
    assert ok.status_code == 200
    assert "idempotency-replayed" not in ok.headers


def test_overlong_idempotency_key(api: Api) -> None:
    response = api.submit({"prompt": "p", "image_urls": [FRAME]}, headers={"Idempotency-Key": "k" * 192})
    assert_refused(response, 400, "Idempotency-Key", "191")


# -- uploads ------------------------------------------------------------------------------


PNG = tiny_png()


@pytest.mark.all_stores
def test_upload_then_animate(api: Api) -> None:
    response = api.client.post("/v1/uploads/images", files={"file": ("my cat.png", PNG, "image/png")})
    assert response.status_code == 200, response.text
    upload = response.json()
    conforms("Upload", upload)
    assert (upload["filename"], upload["content_type"], upload["bytes"]) == ("my_cat.png", "image/png", len(PNG))
    fetched = api.client.get(upload["url"])
    assert (fetched.content, fetched.headers["content-type"]) == (PNG, "image/png")
    assert api.submit({"prompt": "p", "image_urls": [upload["url"]]}).status_code == 200


def test_uploaded_frame_over_limit_refused(make_api: MakeApi) -> None:
    api = make_api(max_frame_bytes=50)
    upload = api.client.post("/v1/uploads/images", files={"file": ("a.png", PNG, "image/png")}).json()
    assert_refused(
        api.submit({"prompt": "p", "image_urls": [upload["url"]]}), 400, "image_urls", "image_urls[0]", "at most 50"
    )
    assert_refused(
        api.submit({"prompt": "p", "image_urls": [FRAME], "end_url": upload["url"]}), 400, "end_url", "at most 50"
    )


def test_upload_refusals(api: Api) -> None:
    path = "/v1/uploads/images"
    assert_refused(
        api.client.post(path, files={"file": ("a.txt", b"hi", "text/plain")}), 400, "file", "Unsupported Format"
    )
    assert_refused(
        api.client.post(path, files={"other": ("a.png", PNG, "image/png")}), 400, "file", "Missing File Field"
    )
    assert_refused(api.client.post(path, files={"file": ("a.png", b"", "image/png")}), 400, "file", "empty")
    assert_refused(api.client.post(path, json={"file": "x"}), 415, "file", "multipart")
    unauth = api.client.post(path, files={"file": ("a.png", PNG, "image/png")}, headers={"Authorization": ""})
    assert unauth.status_code == 401


# -- media ------------------------------------------------------------------------------


@pytest.mark.all_stores
def test_media_served_with_ranges(api: Api) -> None:
    task_id = api.submit_ok(video_type="vid_1.1_i2v_720", batch_size=2)
    url = f"/media/{task_id}/1.mp4"
    assert api.client.get(url).status_code == 404  # not ready yet
    done = api.finish(task_id)
    whole = api.client.get(done["video_urls"][1])
    assert whole.status_code == 200
    assert whole.headers["content-type"] == "video/mp4"
    assert whole.headers["accept-ranges"] == "bytes"
    assert (read_clip(whole.content).width, read_clip(whole.content).height) == (1280, 720)
    part = api.client.get(url, headers={"Range": "bytes=0-99"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 0-99/{len(whole.content)}"
    assert part.content == whole.content[:100]
    assert api.client.get(f"/media/{task_id}/2.mp4").status_code == 404
    assert api.client.head(url).status_code == 200
    assert api.client.get(url, headers={"Authorization": ""}).status_code == 200  # public like a CDN link


def test_480p_clip_size(api: Api) -> None:
    done = api.finish(api.submit_ok())
    clip = read_clip(api.client.get(done["video_url"]).content)
    assert (clip.width, clip.height) == (832, 464)


def test_unknown_routes_use_the_error_body(api: Api) -> None:
    assert_refused(api.client.get("/v1/nothing"), 404, None, "no route")
    assert_refused(api.client.get(VIDEO), 405, None, "not allowed")
    assert_refused(api.client.get("/media/task_x/0.mp4"), 404, None)


def test_control_plane_can_be_switched_off(make_api: MakeApi) -> None:
    assert make_api().client.get("/__mock__/health").json()["status"] == "ok"
    assert make_api(control=False).client.get("/__mock__/health").status_code == 404


def test_a_clip_stops_at_the_whole_second_its_expires_at_shows(make_api: MakeApi) -> None:
    """expires_at is a whole second: with a clock that has a fraction, the clip stops at that second,
    not a fraction later (a user's suite found it serving until expires_at + 0.5 s)."""
    api = make_api(task_seconds=0)
    api.clock.set(1_800_000_000.5)
    task_id = api.submit_ok()
    item = api.client.get(f"/v1/tasks/{task_id}").json()["data"]["result"]["videos"][0]
    url = item["url"][0] if isinstance(item["url"], list) else item["url"]
    api.clock.set(item["expires_at"] - 0.1)
    assert api.client.get(url).status_code == 200
    api.clock.set(item["expires_at"])
    assert api.client.get(url).status_code == 410
