"""How a task is written in a poll answer: the provider's two vocabularies.

``mj``: the Midjourney-style body the video page shows (bare object, uppercase
status, ``progress`` "NN%", ``video_url`` + ``video_urls``).
``unified``: the tasks page's envelope (``{"code": 200, "data": {...}}``,
lowercase status, integer progress, ``result.videos``/``result.images``).
Pure functions: record + view + links in, JSON-ready dict out.
"""

from __future__ import annotations

from typing import Any

from .lifecycle import UNIFIED_STATUS, Status, TaskView
from .media import Links
from .records import IMAGINE, TaskRecord


def _ms(seconds: float | None) -> int:
    return 0 if seconds is None else int(seconds * 1000)


def mj_task(record: TaskRecord, view: TaskView, links: Links) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": record.id,
        "action": record.action,
        "mode": record.mode,
        "status": view.status.value,
        "progress": f"{view.progress}%",
        "prompt": record.prompt,
        "fail_reason": record.fail_reason if view.status is Status.FAILURE else "",
        "submit_time": _ms(record.created_at),
        "start_time": _ms(view.started_at),
        "finish_time": _ms(view.finished_at),
    }
    if view.status is Status.SUCCESS:
        if record.action == IMAGINE:
            body["grid_image_url"] = links.grid(record)
            body["image_urls"] = links.images(record)
            body["buttons"] = _buttons(record)
        else:
            urls = links.videos(record)
            body["video_url"] = urls[0]
            body["video_urls"] = urls
    return body


def _buttons(record: TaskRecord) -> list[dict[str, str]]:
    job = record.id.removeprefix("task_").lower()
    return [
        {"customId": f"MJ::JOB::{kind}::{n}::{job}", "label": f"{label}{n}"}
        for kind, label in (("upsample", "U"), ("variation", "V"))
        for n in range(1, 5)
    ]


def unified_task(
    record: TaskRecord, view: TaskView, links: Links, *, url_shape: str, media_ttl: float
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": record.id,
        "status": UNIFIED_STATUS[view.status],
        "progress": view.progress,
        "created": int(record.created_at),
        "estimated_time": round(record.duration),
    }
    if view.finished_at is not None:
        data["completed"] = int(view.finished_at)
        data["actual_time"] = round(view.finished_at - record.created_at)
    if view.status is Status.SUCCESS:
        expires = int((view.finished_at or record.created_at) + media_ttl)
        items = [{"url": url if url_shape == "string" else [url], "expires_at": expires} for url in links.media(record)]
        data["result"] = {"images" if record.action == IMAGINE else "videos": items}
    elif view.status is Status.FAILURE:
        data["error"] = {"code": 500, "message": record.fail_reason or "task failed", "type": "task_failed"}
    return {"code": 200, "data": data}
