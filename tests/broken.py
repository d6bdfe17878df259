"""Deliberately broken variants of the fake, each breaking one documented rule.

A variant is a function of pytest's ``monkeypatch`` that returns an ASGI app;
the contract suite must fail on it, naming the rule it broke.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mockserver import Settings, create_app
from mockserver.core import submission
from mockserver.core.spec import Spec, load_document

Rewrite = Callable[[Scope, int, Any], tuple[int, Any]]


class RewriteJSON:
    """Rewrite the JSON answers of some paths (status and body)."""

    def __init__(self, app: ASGIApp, prefix: str, rewrite: Rewrite) -> None:
        self.app = app
        self.prefix = prefix
        self.rewrite = rewrite

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        start: Message = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            raw = b"".join(chunks)
            status = start["status"]
            headers = [(k, v) for k, v in start["headers"] if k.lower() not in (b"content-length",)]
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            if body is not None:
                status, body = self.rewrite(scope, status, body)
                raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                if isinstance(body, str):
                    headers = [(k, v) for k, v in headers if k.lower() != b"content-type"]
                    headers.append((b"content-type", b"text/plain"))
            headers.append((b"content-length", str(len(raw)).encode()))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": raw})

        await self.app(scope, receive, capture)


def fake(**settings: Any) -> ASGIApp:
    return create_app(Settings(**{"task_seconds": 0.0, **settings}))


def _poll_rewrite(change: Callable[[dict[str, Any]], None]) -> Callable[[pytest.MonkeyPatch], ASGIApp]:
    def variant(monkeypatch: pytest.MonkeyPatch) -> ASGIApp:
        def rewrite(scope: Scope, status: int, body: Any) -> tuple[int, Any]:
            if status == 200 and isinstance(body, dict) and body.get("status") == "SUCCESS":
                change(body)
            return status, body

        return RewriteJSON(fake(), "/v1/tasks/", rewrite)

    return variant


def missing_video_url(monkeypatch: pytest.MonkeyPatch) -> ASGIApp:
    def drop_last(body: dict[str, Any]) -> None:
        body["video_urls"] = body["video_urls"][:-1]

    return _poll_rewrite(drop_last)(monkeypatch)


def video_url_not_first(monkeypatch: pytest.MonkeyPatch) -> ASGIApp:
    def last(body: dict[str, Any]) -> None:
        body["video_url"] = body["video_urls"][-1] + "?other"

    return _poll_rewrite(last)(monkeypatch)


def progress_falls(monkeypatch: pytest.MonkeyPatch) -> ASGIApp:
    def zero(body: dict[str, Any]) -> None:
        body["progress"] = "0%"

    def variant(monkeypatch: pytest.MonkeyPatch) -> ASGIApp:
        def rewrite(scope: Scope, status: int, body: Any) -> tuple[int, Any]:
            if status == 200 and isinstance(body, dict) and body.get("status") == "SUCCESS":
                zero(body)
            return status, body

        return RewriteJSON(fake(task_seconds=0.4), "/v1/tasks/", rewrite)

    return variant(monkeypatch)


def lowercase_statuses(monkeypatch: pytest.MonkeyPatch) -> ASGIApp:
    def rewrite(scope: Scope, status: int, body: Any) -> tuple[int, Any]:
        if status == 200 and isinstance(body, dict) and isinstance(body.get("status"), str):
            body["status"] = body["status"].lower()
        return status, body

    return RewriteJSON(fake(), "/v1/tasks/", rewrite)


def accepts_extend(monkeypatch: pytest.MonkeyPatch) -> ASGIApp:
    document = copy.deepcopy(load_document())
    document["components"]["schemas"]["VideoType"]["enum"] += ["vid_1.1_i2v_extend_480", "vid_1.1_i2v_extend_720"]
    return create_app(Settings(task_seconds=0), spec=Spec(document))


def frame_and_task_accepted(monkeypatch: pytest.MonkeyPatch) -> ASGIApp:
    original = submission.one_frame_source

    def lenient(body: Any) -> str:
        if body.get("image_urls") and body.get("task_id"):
            return "image"
        return original(body)

    monkeypatch.setattr(submission, "one_frame_source", lenient)
    return fake()


def server_error_on_bad_json(monkeypatch: pytest.MonkeyPatch) -> ASGIApp:
    def rewrite(scope: Scope, status: int, body: Any) -> tuple[int, Any]:
        message = body.get("error", {}).get("message", "") if isinstance(body, dict) else ""
        if status == 400 and message.startswith("malformed JSON"):
            return 500, {"error": {"message": "oops", "type": "server_error", "code": 500, "param": None}}
        return status, body

    return RewriteJSON(fake(), "/v1/", rewrite)


def no_auth_check(monkeypatch: pytest.MonkeyPatch) -> ASGIApp:
    from mockserver.service import Fake

    original = Fake.account

    def anyone(self: Fake, authorization: str | None, facts: Any = None) -> str:
        try:
            return original(self, authorization, facts)
        except Exception:
            return "acct_anonymous"

    monkeypatch.setattr(Fake, "account", anyone)
    return fake()


def plain_text_errors(monkeypatch: pytest.MonkeyPatch) -> ASGIApp:
    def rewrite(scope: Scope, status: int, body: Any) -> tuple[int, Any]:
        if status >= 400 and isinstance(body, dict) and "error" in body:
            return status, str(body["error"]["message"])
        return status, body

    return RewriteJSON(fake(), "/v1/", rewrite)


def media_not_mp4(monkeypatch: pytest.MonkeyPatch) -> ASGIApp:
    import mockserver.service as service
    from mockserver.core.media import GRID_PNG

    monkeypatch.setattr(service, "clip_file", lambda video_type: GRID_PNG)
    return fake()


def prompt_not_inherited(monkeypatch: pytest.MonkeyPatch) -> ASGIApp:
    monkeypatch.setattr(submission, "parent_prompt", lambda task_id, parent: "something else")
    return fake()


@dataclass(frozen=True)
class Variant:
    name: str
    build: Callable[[pytest.MonkeyPatch], ASGIApp]
    caught_by: str  # a rule (or rule prefix) that must FAIL


VARIANTS = [
    Variant("missing video URL", missing_video_url, "lifecycle.batch2.video_urls_length"),
    Variant("video_url is not video_urls[0]", video_url_not_first, "lifecycle.batch2.video_url_first"),
    Variant("progress falls at SUCCESS", progress_falls, "lifecycle.batch1.progress_rises"),
    Variant("lowercase statuses in the default dialect", lowercase_statuses, "lifecycle.batch1.status_forward"),
    Variant("an extend video_type accepted", accepts_extend, "refuse.video_type.vid_1.1_i2v_extend_480"),
    Variant("200 for frame + task", frame_and_task_accepted, "refuse.frame_and_task"),
    Variant("500 on bad JSON", server_error_on_bad_json, "refuse.malformed_json"),
    Variant("no auth check", no_auth_check, "auth.missing_token"),
    Variant("errors as plain text", plain_text_errors, "refuse.no_frame"),
    Variant("media is not an MP4", media_not_mp4, "lifecycle.batch1.media"),
    Variant("prompt not inherited from the parent", prompt_not_inherited, "reuse.prompt_inherited"),
]
