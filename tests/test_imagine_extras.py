"""The imagine page's extras: ``metadata`` kept and returned, ``nsfw_check`` screening the prompt at submit."""

from __future__ import annotations

from .conftest import MakeApi
from .helpers import IMAGINE, Api, assert_refused

META = {"order": "A-17", "tags": ["cat", "sunset"], "n": 3}


def test_metadata_is_kept_and_returned_in_both_dialects(api: Api) -> None:
    task_id = api.imagine_ok(metadata=META)
    assert api.poll(task_id)["metadata"] == META
    unified = api.client.get(f"/v1/tasks/{task_id}").json()["data"]
    assert unified["metadata"] == META
    api.clock.advance(60)
    assert api.poll(task_id)["metadata"] == META
    plain = api.imagine_ok()
    assert "metadata" not in api.poll(plain)


def test_metadata_must_be_a_bounded_object(api: Api) -> None:
    assert_refused(api.client.post(IMAGINE, json={"prompt": "a fox", "metadata": "x"}), 400, "metadata", "object")
    huge = {"k": "v" * 20_000}
    assert_refused(api.client.post(IMAGINE, json={"prompt": "a fox", "metadata": huge}), 400, "metadata", "16384")
    assert api.task_count() == 0


def test_nsfw_check_refuses_at_submit_what_moderation_would_fail_later(make_api: MakeApi) -> None:
    api = make_api()
    prompt = "a fox [mock:moderation]"
    unchecked = api.imagine_ok(prompt)
    api.clock.advance(60)
    assert api.poll(unchecked)["status"] == "FAILURE"  # without the check: accepted, then failed
    screened = api.client.post(IMAGINE, json={"prompt": prompt, "nsfw_check": True})
    assert_refused(screened, 422, "prompt", "moderation")
    assert api.imagine_ok("a fox", nsfw_check=True)
    assert_refused(api.client.post(IMAGINE, json={"prompt": "a fox", "nsfw_check": "yes"}), 400, "nsfw_check")
