"""However malformed the request: never a 5xx, every refusal in the provider's body, no task from a refusal."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import MakeApi
from .helpers import FRAME, IMAGINE, VIDEO


@pytest.fixture
def store_kind() -> str:
    """Robustness, not storage: fuzzing runs on the memory store only."""
    return "memory"


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
FIELDS = ["prompt", "image_urls", "task_id", "index", "video_type", "animate_mode", "motion", "batch_size", "end_url"]
plausible = {
    "prompt": st.sampled_from(["", " ", "a cat"]) | st.text(max_size=20),
    "image_urls": st.sampled_from(
        [[FRAME], [], [FRAME, FRAME], ["data:image/png;base64,AAAA"], ["x"], ["http://["], ["https://[::1"]]
    ),
    "task_id": st.sampled_from(["", "task_x", "task_01KV52C0TEJSYZMCG0NCS4YWKK"]),
    "index": st.integers(-2, 6),
    "video_type": st.sampled_from(
        ["vid_1.1_i2v_480", "vid_1.1_i2v_720", "vid_1.1_i2v_start_end_720", "vid_1.1_i2v_extend_480", ""]
    ),
    "animate_mode": st.sampled_from(["manual", "auto", "x"]),
    "motion": st.sampled_from(["low", "high", "mid"]),
    "batch_size": st.integers(-1, 5) | st.sampled_from([2.0, 2.5, "2"]),
    "end_url": st.sampled_from([FRAME, "data:image/png,x", "", "nope"]),
}
bodies = st.fixed_dictionaries({}, optional={name: plausible[name] | json_values for name in FIELDS}) | json_values


def _check(api: Any, response: Any, before: int) -> None:
    assert response.status_code < 500, response.text
    if response.status_code == 200:
        assert api.task_count() == before + 1
        return
    assert api.task_count() == before
    error = response.json()["error"]
    assert error["code"] == response.status_code
    assert isinstance(error["message"], str) and error["message"]


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(body=bodies, policy=st.sampled_from(["strict", "coerce"]))
def test_video_bodies(make_api: MakeApi, body: Any, policy: str) -> None:
    api = make_api(batch_size_policy=policy)
    before = api.task_count()
    _check(api, api.submit(body), before)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(
    raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
    content_type=st.sampled_from(["application/json", "text/plain", "", "application/json; charset=latin-1"]),
    path=st.sampled_from([VIDEO, IMAGINE, "/v1/uploads/images"]),
)
def test_raw_bytes(make_api: MakeApi, raw: bytes, content_type: str, path: str) -> None:
    api = make_api()
    before = api.task_count()
    response = api.client.post(path, content=raw, headers={"content-type": content_type})
    assert response.status_code < 500, response.text
    assert response.status_code in (200, 400, 413, 415)
    if response.status_code != 200:
        assert api.task_count() == before
        assert set(response.json()) == {"error"}


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(task_id=st.text(min_size=1, max_size=40))
def test_poll_any_id(make_api: MakeApi, task_id: str) -> None:
    api = make_api()
    for path in ("/v1/tasks/", "/v1/midjourney/"):
        response = api.client.get(path + quote(task_id, safe=""))
        assert response.status_code in (404, 405), response.text
        assert set(response.json()) == {"error"}
