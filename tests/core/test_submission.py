"""One test (or a few) per documented rule, on the pure functions of ``mockserver.core.submission``."""

from __future__ import annotations

import base64
import socket
from typing import Any

import pytest

from mockserver.core import submission
from mockserver.core.errors import ApiError
from mockserver.core.spec import Spec

SPEC = Spec()
ALLOWED = SPEC.enum("VideoRequest", "batch_size")
DEFAULTS = {name: SPEC.default("VideoRequest", name) for name in ("video_type", "motion", "animate_mode")}
FRAME = "https://example.com/cat.png"
MiB = 1024 * 1024
DONE_IMAGINE = submission.ParentTask(action="IMAGINE", status="SUCCESS", prompt="a red fox")


def refusal(fn: Any, *args: Any, **kwargs: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        fn(*args, **kwargs)
    assert caught.value.status == 400
    return caught.value


def no_upload(url: str) -> int | None:
    return None


def job(body: dict[str, Any], **overrides: Any) -> submission.VideoJob:
    options: dict[str, Any] = {
        "policy": submission.STRICT,
        "allowed_batch_sizes": ALLOWED,
        "defaults": DEFAULTS,
        "parent": None,
        "max_frame_bytes": 12 * MiB,
        "measure_upload": no_upload,
    }
    options.update(overrides)
    return submission.video_job(body, **options)


def data_url(size: int, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64," + base64.b64encode(b"\x00" * size).decode()


# -- the spec's view of the rules ---------------------------------------------------


def test_spec_states_the_documented_values() -> None:
    assert ALLOWED == [1, 2, 4]
    assert DEFAULTS == {"video_type": "vid_1.1_i2v_480", "motion": "high", "animate_mode": "manual"}
    assert SPEC.enum("VideoType") == [
        "vid_1.1_i2v_480",
        "vid_1.1_i2v_720",
        "vid_1.1_i2v_start_end_480",
        "vid_1.1_i2v_start_end_720",
    ]


# -- image_urls xor task_id -----------------------------------------------------------


def test_frame_source_image() -> None:
    assert submission.one_frame_source({"image_urls": [FRAME]}) == "image"


def test_frame_source_task() -> None:
    assert submission.one_frame_source({"task_id": "task_x"}) == "task"


def test_frame_source_both_refused() -> None:
    error = refusal(submission.one_frame_source, {"image_urls": [FRAME], "task_id": "task_x"})
    assert error.param == "task_id"
    assert "cannot both be set" in error.message


@pytest.mark.parametrize("body", [{}, {"image_urls": []}, {"task_id": ""}, {"image_urls": None, "task_id": None}])
def test_frame_source_neither_refused(body: dict[str, Any]) -> None:
    error = refusal(submission.one_frame_source, body)
    assert error.param == "image_urls"
    assert "text-to-video is not supported" in error.message


# -- prompt ----------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", [None, "", "   "])
def test_prompt_required_without_task(prompt: str | None) -> None:
    body = {"image_urls": [FRAME]} if prompt is None else {"image_urls": [FRAME], "prompt": prompt}
    assert refusal(submission.prompt_required_without_task, body).param == "prompt"


def test_prompt_may_be_empty_with_task() -> None:
    submission.prompt_required_without_task({"task_id": "task_x", "prompt": ""})


def test_prompt_inherited_from_parent() -> None:
    made = job({"task_id": "task_p", "index": 2}, parent=DONE_IMAGINE)
    assert made.prompt == "a red fox"
    assert made.index == 2
    assert made.parent_task_id == "task_p"


def test_own_prompt_wins_over_parent() -> None:
    assert job({"task_id": "task_p", "prompt": "zoom out"}, parent=DONE_IMAGINE).prompt == "zoom out"


# -- animate_mode ----------------------------------------------------------------------


def test_auto_without_task_refused() -> None:
    error = refusal(submission.auto_needs_task_and_index, {"animate_mode": "auto", "image_urls": [FRAME], "index": 1})
    assert error.param == "task_id"


def test_auto_without_index_refused() -> None:
    error = refusal(submission.auto_needs_task_and_index, {"animate_mode": "auto", "task_id": "task_p"})
    assert error.param == "index"


def test_auto_with_task_and_index_accepted() -> None:
    submission.auto_needs_task_and_index({"animate_mode": "auto", "task_id": "task_p", "index": 0})
    made = job({"animate_mode": "auto", "task_id": "task_p", "index": 0}, parent=DONE_IMAGINE)
    assert made.animate_mode == "auto"


def test_manual_is_the_default_mode() -> None:
    assert job({"prompt": "p", "image_urls": [FRAME]}).animate_mode == "manual"


def test_motion_default_high_and_kept() -> None:
    assert job({"prompt": "p", "image_urls": [FRAME]}).motion == "high"
    assert job({"prompt": "p", "image_urls": [FRAME], "motion": "low"}).motion == "low"


# -- batch_size ------------------------------------------------------------------------


@pytest.mark.parametrize("value", [1, 2, 4])
def test_batch_size_documented_values(value: int) -> None:
    for policy in (submission.STRICT, submission.COERCE):
        assert submission.effective_batch_size(value, policy, ALLOWED) == value


def test_batch_size_absent_is_one() -> None:
    assert submission.effective_batch_size(None, submission.STRICT, ALLOWED) == 1


@pytest.mark.parametrize("value", [0, 3, 5, 8, -1, 100])
def test_batch_size_strict_refuses(value: int) -> None:
    error = refusal(submission.effective_batch_size, value, submission.STRICT, ALLOWED)
    assert error.param == "batch_size"
    assert "1, 2, 4" in error.message


@pytest.mark.parametrize("value", [0, 3, 5, 8, -1, 100])
def test_batch_size_coerce_treats_as_one(value: int) -> None:
    assert submission.effective_batch_size(value, submission.COERCE, ALLOWED) == 1


def test_batch_size_coerce_is_noted_on_the_job() -> None:
    made = job({"prompt": "p", "image_urls": [FRAME], "batch_size": 3}, policy=submission.COERCE)
    assert made.batch_size == 1
    assert made.quantity == 1
    assert any("treated as 1" in note for note in made.notes)


# -- video_type and end_url --------------------------------------------------------------


@pytest.mark.parametrize(
    ("video_type", "expected"),
    [
        ("vid_1.1_i2v_480", "vid_1.1_i2v_start_end_480"),
        ("vid_1.1_i2v_720", "vid_1.1_i2v_start_end_720"),
        ("vid_1.1_i2v_start_end_480", "vid_1.1_i2v_start_end_480"),
        ("vid_1.1_i2v_start_end_720", "vid_1.1_i2v_start_end_720"),
    ],
)
def test_end_url_upgrades_video_type(video_type: str, expected: str) -> None:
    assert submission.effective_video_type(video_type, "https://example.com/end.png") == expected


@pytest.mark.parametrize("video_type", SPEC.enum("VideoType"))
def test_no_end_url_keeps_video_type(video_type: str) -> None:
    assert submission.effective_video_type(video_type, None) == video_type


def test_doc_example_start_end_job() -> None:
    made = job(
        {
            "prompt": "transition smoothly from sunrise to sunset",
            "image_urls": ["https://example.com/sunrise.jpg"],
            "end_url": "https://example.com/sunset.jpg",
            "video_type": "vid_1.1_i2v_720",
        }
    )
    assert made.video_type == "vid_1.1_i2v_start_end_720"
    assert made.requested_video_type == "vid_1.1_i2v_720"
    assert made.price_key == "midjourney@video-720p"


def test_default_video_type() -> None:
    made = job({"prompt": "p", "image_urls": [FRAME]})
    assert made.video_type == "vid_1.1_i2v_480"
    assert made.price_key == "midjourney@video"


# -- billing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("video_type", "key"),
    [
        ("vid_1.1_i2v_480", "midjourney@video"),
        ("vid_1.1_i2v_start_end_480", "midjourney@video"),
        ("vid_1.1_i2v_720", "midjourney@video-720p"),
        ("vid_1.1_i2v_start_end_720", "midjourney@video-720p"),
    ],
)
def test_price_key_by_tier(video_type: str, key: str) -> None:
    assert submission.price_key(video_type) == key


@pytest.mark.parametrize("batch", [1, 2, 4])
def test_quantity_is_batch_size(batch: int) -> None:
    made = job({"prompt": "p", "image_urls": [FRAME], "batch_size": batch, "video_type": "vid_1.1_i2v_720"})
    assert (made.price_key, made.quantity) == ("midjourney@video-720p", batch)


# -- parent task -----------------------------------------------------------------------


def test_parent_unknown_refused() -> None:
    assert "not found" in refusal(submission.parent_prompt, "task_x", None).message


def test_parent_not_imagine_refused() -> None:
    parent = submission.ParentTask(action="VIDEO", status="SUCCESS", prompt="p")
    assert "not an imagine task" in refusal(submission.parent_prompt, "task_x", parent).message


@pytest.mark.parametrize("status", ["SUBMITTED", "IN_PROGRESS"])
def test_parent_unfinished_refused(status: str) -> None:
    parent = submission.ParentTask(action="IMAGINE", status=status, prompt="p")
    error = refusal(submission.parent_prompt, "task_x", parent)
    assert "not finished" in error.message
    assert status in error.message


def test_parent_failed_refused() -> None:
    parent = submission.ParentTask(action="IMAGINE", status="FAILURE", prompt="p")
    assert "failed" in refusal(submission.parent_prompt, "task_x", parent).message


def test_parent_success_gives_prompt() -> None:
    assert submission.parent_prompt("task_x", DONE_IMAGINE) == "a red fox"


def test_index_without_task_is_ignored_and_noted() -> None:
    made = job({"prompt": "p", "image_urls": [FRAME], "index": 2})
    assert made.index is None
    assert any("index ignored" in note for note in made.notes)


# -- frame size ------------------------------------------------------------------------


def test_data_url_measured() -> None:
    assert submission.data_url_size(data_url(1000), "f") == 1000
    assert submission.data_url_size("data:image/png,abc%20d", "f") == 5
    assert submission.data_url_size(FRAME, "f") is None


def test_frame_at_limit_accepted() -> None:
    submission.frame_within_limit(data_url(12 * MiB), "image_urls[0]", 12 * MiB, no_upload)


def test_frame_over_limit_refused() -> None:
    error = refusal(submission.frame_within_limit, data_url(12 * MiB + 1), "image_urls[0]", 12 * MiB, no_upload)
    assert error.param == "image_urls[0]"
    assert "12 MiB" in error.message


def test_end_frame_over_limit_refused() -> None:
    body = {"prompt": "p", "image_urls": [FRAME], "end_url": data_url(2000)}
    error = refusal(job, body, max_frame_bytes=1000)
    assert error.param == "end_url"


def test_uploaded_frame_measured() -> None:
    def measure(url: str) -> int | None:
        return 13 * MiB if "upl_big" in url else None

    url = "http://127.0.0.1:8000/media/uploads/upl_big/a.png"
    assert refusal(submission.frame_within_limit, url, "image_urls[0]", 12 * MiB, measure).param == "image_urls[0]"
    submission.frame_within_limit(FRAME, "image_urls[0]", 12 * MiB, measure)


def test_foreign_url_accepted_without_a_fetch(monkeypatch: pytest.MonkeyPatch) -> None:
    """A foreign http(s) URL is only looked up among this server's uploads (not one of them: no
    size), and accepted without any network access."""
    asked: list[str] = []

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("a foreign frame must not be fetched")

    def measure(url: str) -> int | None:
        asked.append(url)
        return None

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    submission.frame_within_limit(FRAME, "image_urls[0]", 12 * MiB, measure)
    assert asked == [FRAME]


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("data:image/png;base64,abc", "base64"),
        ("data:image/png;base64,ab!=", "base64"),
        ("data:text/plain;base64,AAAA", "image data: URL"),
        ("data:nocomma", "valid data: URL"),
    ],
)
def test_bad_data_url_refused(url: str, words: str) -> None:
    error = refusal(submission.frame_within_limit, url, "image_urls[0]", 12 * MiB, no_upload)
    assert words in error.message


# -- imagine and body ------------------------------------------------------------------


@pytest.mark.parametrize("prompt", [None, "", "  "])
def test_imagine_prompt_required(prompt: str | None) -> None:
    assert refusal(submission.imagine_prompt, prompt).param == "prompt"


def test_imagine_price_key_by_speed() -> None:
    assert submission.imagine_price_key("fast") == "midjourney@imagine-fast"


@pytest.mark.parametrize("body", [[], "x", 1, None, True])
def test_body_must_be_object(body: Any) -> None:
    assert "JSON object" in refusal(submission.refuse_non_object, body).message
