"""Deliberately broken variants of the fake, each breaking one documented rule.

A variant is a function of pytest's ``monkeypatch`` that returns an ASGI app;
the contract suite must fail on it, naming the rule it broke. Variants that
rewrite ``/v1/tasks/{id}`` answers name the dialect they rewrite and build the
fake with it, so they prove the same thing whatever the fake's default dialect.
Variants of a refusal break only that rule and keep every other one, so a probe
refused for another reason too (an unknown task_id, a frame that is not an
image) would let them through.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mockserver import Settings, create_app
from mockserver.core import images, submission
from mockserver.core.errors import bad_request
from mockserver.core.spec import Spec, load_document

Rewrite = Callable[[Scope, int, Any], tuple[int, Any]]
Variant_ = Callable[[pytest.MonkeyPatch], ASGIApp]
FINAL = {"mj": "SUCCESS", "unified": "completed"}
MiB = 1024 * 1024


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


def with_spec(change: Callable[[dict[str, Any]], None]) -> ASGIApp:
    """The fake validating with an edited copy of the spec."""
    document = copy.deepcopy(load_document())
    change(document["components"]["schemas"])
    return create_app(Settings(task_seconds=0), spec=Spec(document))


# -- /v1/tasks/{id} answers, in a named dialect ---------------------------------------------------


def on_poll(
    dialect: str, change: Callable[[dict[str, Any]], None], *, final_only: bool = True, **settings: Any
) -> Variant_:
    """A variant whose ``/v1/tasks/{id}`` task (the body in ``mj``, ``data`` in ``unified``) is changed,
    at the final poll only or at every poll."""

    def variant(monkeypatch: pytest.MonkeyPatch) -> ASGIApp:
        def rewrite(scope: Scope, status: int, body: Any) -> tuple[int, Any]:
            task = body.get("data") if dialect == "unified" and isinstance(body, dict) else body
            if status != 200 or not isinstance(task, dict) or is_imagine(task):
                return status, body
            if not final_only or task.get("status") == FINAL[dialect]:
                change(task)
            return status, body

        return RewriteJSON(fake(task_dialect=dialect, **settings), "/v1/tasks/", rewrite)

    return variant


def is_imagine(task: dict[str, Any]) -> bool:
    """An imagine task's poll (the checker polls its parent task on /v1/tasks/ too): left alone."""
    result = task.get("result")
    return task.get("action") == "IMAGINE" or (isinstance(result, dict) and "images" in result)


def drop_last_url(task: dict[str, Any]) -> None:
    task["video_urls"] = task["video_urls"][:-1]


def drop_last_item(task: dict[str, Any]) -> None:
    task["result"]["videos"] = task["result"]["videos"][:-1]


def other_first_url(task: dict[str, Any]) -> None:
    task["video_url"] = task["video_urls"][-1] + "?other"


def mj_progress_zero(task: dict[str, Any]) -> None:
    task["progress"] = "0%"


def unified_progress_zero(task: dict[str, Any]) -> None:
    task["progress"] = 0


def lowercase_status(task: dict[str, Any]) -> None:
    task["status"] = str(task.get("status")).lower()


def uppercase_status(task: dict[str, Any]) -> None:
    task["status"] = str(task.get("status")).upper()


# -- refusals --------------------------------------------------------------------------------------


def accepts_extend(monkeypatch: pytest.MonkeyPatch) -> ASGIApp:
    def extend(schemas: dict[str, Any]) -> None:
        schemas["VideoType"]["enum"] += ["vid_1.1_i2v_extend_480", "vid_1.1_i2v_extend_720"]

    return with_spec(extend)


def accepts_two_images(monkeypatch: pytest.MonkeyPatch) -> ASGIApp:
    def two(schemas: dict[str, Any]) -> None:
        schemas["VideoRequest"]["properties"]["image_urls"]["maxItems"] = 2

    return with_spec(two)


def accepts_any_index(monkeypatch: pytest.MonkeyPatch) -> ASGIApp:
    """index is not bounded; an unknown task_id is still refused (so a probe naming one passes it)."""

    def unbounded(schemas: dict[str, Any]) -> None:
        index = schemas["VideoRequest"]["properties"]["index"]
        index.pop("minimum")
        index.pop("maximum")

    return with_spec(unbounded)


def frame_and_task_accepted(monkeypatch: pytest.MonkeyPatch) -> ASGIApp:
    original = submission.one_frame_source

    def lenient(body: Any) -> str:
        if body.get("image_urls") and body.get("task_id"):
            return "image"
        return original(body)

    monkeypatch.setattr(submission, "one_frame_source", lenient)
    return fake()


def _auto_needs_only(field: str) -> Variant_:
    def variant(monkeypatch: pytest.MonkeyPatch) -> ASGIApp:
        def needs(body: Any) -> None:
            if body.get("animate_mode") == "auto" and body.get(field) is None:
                raise bad_request(f"animate_mode auto requires {field}", field)

        monkeypatch.setattr(submission, "auto_needs_task_and_index", needs)
        return fake()

    return variant


def frame_size_not_checked(monkeypatch: pytest.MonkeyPatch) -> ASGIApp:
    """A data: frame must hold an image, but its size is never measured."""

    def image_only(url: str, param: str, limit: int, measure_upload: Any) -> None:
        if url[:5].lower() == "data:" and images.from_data_url(url) is None:
            raise bad_request(f"{param} is not an image", param)

    monkeypatch.setattr(submission, "frame_within_limit", image_only)
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


# -- uploads ---------------------------------------------------------------------------------------


def upload_without_bytes(monkeypatch: pytest.MonkeyPatch) -> ASGIApp:
    def rewrite(scope: Scope, status: int, body: Any) -> tuple[int, Any]:
        if status == 200 and isinstance(body, dict):
            body.pop("bytes", None)
        return status, body

    return RewriteJSON(fake(), "/v1/uploads/", rewrite)


def upload_not_sniffed(monkeypatch: pytest.MonkeyPatch) -> ASGIApp:
    """An upload is kept under the type its part declared, whatever its bytes are."""
    from mockserver.files import Files

    original = Files.upload

    async def declared(self: Files, account: str, filename: str, content_type: str, data: bytes, **kw: Any) -> Any:
        upload = await original(self, account, filename, "image/png", data, **kw)
        return dataclasses.replace(upload, content_type=content_type)

    monkeypatch.setattr(Files, "upload", declared)
    return fake()


def upload_size_crashes(monkeypatch: pytest.MonkeyPatch) -> ASGIApp:
    """Past 20 MiB an upload is a server error instead of a 413 (or an acceptance)."""
    from mockserver.files import Files

    original = Files.upload

    async def crash(self: Files, account: str, filename: str, content_type: str, data: bytes, **kw: Any) -> Any:
        if len(data) > 20 * MiB:
            raise RuntimeError("out of memory")
        return await original(self, account, filename, content_type, data, **kw)

    monkeypatch.setattr(Files, "upload", crash)
    return fake()


# -- results ---------------------------------------------------------------------------------------


def media_not_mp4(monkeypatch: pytest.MonkeyPatch) -> ASGIApp:
    import mockserver.files as files
    from mockserver.core.media import GRID_PNG

    monkeypatch.setattr(files, "clip_file", lambda *args, **kwargs: GRID_PNG)
    return fake()


def prompt_not_inherited(monkeypatch: pytest.MonkeyPatch) -> ASGIApp:
    monkeypatch.setattr(submission, "parent_prompt", lambda task_id, parent: "something else")
    return fake()


@dataclass(frozen=True)
class Variant:
    name: str
    build: Variant_
    caught_by: str  # a rule that must FAIL


VARIANTS = [
    Variant("mj: missing video URL", on_poll("mj", drop_last_url), "lifecycle.batch2.video_urls_length"),
    Variant("unified: missing video item", on_poll("unified", drop_last_item), "lifecycle.batch2.video_urls_length"),
    Variant("mj: video_url is not video_urls[0]", on_poll("mj", other_first_url), "lifecycle.batch2.video_url_first"),
    Variant(
        "mj: progress falls at SUCCESS",
        on_poll("mj", mj_progress_zero, task_seconds=0.4),
        "lifecycle.batch1.progress_rises",
    ),
    Variant(
        "unified: progress falls at completed",
        on_poll("unified", unified_progress_zero, task_seconds=0.4),
        "lifecycle.batch1.progress_rises",
    ),
    Variant(
        "mj: lowercase statuses", on_poll("mj", lowercase_status, final_only=False), "lifecycle.batch1.status_forward"
    ),
    Variant(
        "unified: uppercase statuses",
        on_poll("unified", uppercase_status, final_only=False),
        "lifecycle.batch1.status_forward",
    ),
    Variant("an extend video_type accepted", accepts_extend, "refuse.video_type.vid_1.1_i2v_extend_480"),
    Variant("two start frames accepted", accepts_two_images, "refuse.two_images"),
    Variant("200 for frame + task", frame_and_task_accepted, "refuse.frame_and_task"),
    Variant("accepts any index (above 3)", accepts_any_index, "refuse.index_above_3"),
    Variant("accepts any index (below 0)", accepts_any_index, "refuse.index_below_0"),
    Variant("auto without index accepted", _auto_needs_only("task_id"), "refuse.auto_without_index"),
    Variant("auto without task_id accepted", _auto_needs_only("index"), "refuse.auto_without_task"),
    Variant("frame size not checked", frame_size_not_checked, "refuse.oversize_frame"),
    Variant("500 on bad JSON", server_error_on_bad_json, "refuse.malformed_json"),
    Variant("no auth check", no_auth_check, "auth.missing_token"),
    Variant("errors as plain text", plain_text_errors, "refuse.no_frame"),
    Variant("upload answer without bytes", upload_without_bytes, "upload.image"),
    Variant("upload not sniffed", upload_not_sniffed, "open.upload_sniffing"),
    Variant("upload past 20 MiB crashes", upload_size_crashes, "open.upload_size_limit"),
    Variant("media is not an MP4", media_not_mp4, "lifecycle.batch1.media"),
    Variant("prompt not inherited from the parent", prompt_not_inherited, "reuse.prompt_inherited"),
]
