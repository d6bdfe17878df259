"""One rule for ``code`` and one for ``param`` over every kind of refusal (docs/evidence.md, "Error bodies"):
``code`` is the HTTP status as an integer; ``param`` is the request field or null, never an item path."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .conftest import MakeApi
from .helpers import FRAME, IMAGINE, VIDEO, Api, tiny_png
from .test_api import REFUSALS

UPLOAD = "/v1/uploads/images"


def refusals(api: Api) -> list[httpx.Response]:
    """One answer of each kind the provider's routes refuse with."""
    c = api.client
    answers = [api.submit(body) for _, body, _, _ in REFUSALS]
    answers.append(c.post(VIDEO, json={"prompt": "p", "image_urls": [FRAME]}, headers={"Authorization": ""}))
    answers.append(c.post(VIDEO, content=b"{bad", headers={"content-type": "application/json"}))
    answers.append(c.post(VIDEO, content=b"x", headers={"content-type": "text/plain"}))
    answers.append(c.post(VIDEO, json={"prompt": "p", "image_urls": [FRAME, 0]}))
    answers.append(c.post(IMAGINE, json={"prompt": ""}))
    answers.append(c.post(UPLOAD, files={"file": ("a.txt", b"hi", "text/plain")}))
    answers.append(c.post(UPLOAD, files={"file": ("a.png", tiny_png() + b"\0" * 2000, "image/png")}))
    answers.append(c.get("/v1/tasks/task_01KV52C0TEJSYZMCG0NCS4YWKK"))
    answers.append(c.get("/v1/midjourney/task_01KV52C0TEJSYZMCG0NCS4YWKK"))
    body = {"prompt": "p", "image_urls": [FRAME]}
    c.post(VIDEO, json=body, headers={"Idempotency-Key": "k"})
    answers.append(c.post(VIDEO, json={**body, "prompt": "q"}, headers={"Idempotency-Key": "k"}))
    answers.append(c.post(VIDEO, json=body, headers={"X-Mock-Scenario": "rate_limit"}))
    answers.append(c.post(VIDEO, json=body, headers={"X-Mock-Scenario": "moderation_422"}))
    answers.append(c.post(VIDEO, json=body, headers={"X-Mock-Scenario": "error_502"}))
    return answers


@pytest.mark.parametrize("conflict_code", ["status", "reason"])
def test_every_refusal_has_the_status_as_code_and_a_field_as_param(make_api: MakeApi, conflict_code: str) -> None:
    api = make_api(max_upload_bytes=1000, conflict_code=conflict_code)
    answers = refusals(api)
    seen: set[int] = set()
    for answer in answers:
        assert answer.status_code >= 400, answer.text
        error: dict[str, Any] = answer.json()["error"]
        seen.add(answer.status_code)
        param = error["param"]
        assert param is None or ("[" not in param and "." not in param), error
        if answer.status_code == 409 and conflict_code == "reason":
            assert error["code"] == "idempotency_key_reused", error
        else:
            assert error["code"] == answer.status_code and type(error["code"]) is int, error
    assert {400, 401, 404, 409, 413, 415, 422, 429, 502} <= seen, seen
