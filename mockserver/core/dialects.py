"""How a task is written in a poll answer: the provider's two vocabularies.

``mj``: the Midjourney-style body the video page shows (bare object, uppercase
status, ``progress`` "NN%", ``video_url`` + ``video_urls``).
``unified``: the tasks page's envelope (``{"code": 200, "data": {...}}``,
lowercase status, integer progress, ``result.videos``/``result.images``).
Pure functions: record + view + links in, JSON-ready dict out.
"""

from __future__ import annotations

from typing import Any

from .lifecycle import Status, TaskView, unified_status
from .media import Links
from .records import IMAGINE, TaskRecord


def _ms(seconds: float | None) -> int:
    return 0 if seconds is None else int(seconds * 1000)


def mj_task(record: TaskRecord, view: TaskView, links: Links, *, usd_per_credit: float = 0.1) -> dict[str, Any]:
    """The Midjourney-style body (``GET /v1/midjourney/{id}``): uppercase status, ``progress`` "NN%",
    ``video_url`` + ``video_urls`` (as many as the batch), and the charge as published clients read it."""
    credits = 0.0 if view.status is Status.FAILURE else record.charge
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
        "cost": round(credits * usd_per_credit, 6),
        "credits_cost": round(credits, 6),
        **_metadata(record),
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


def _metadata(record: TaskRecord) -> dict[str, Any]:
    """The submission's ``metadata``, returned with the task as the imagine page says (only when sent)."""
    metadata = record.params.get("metadata")
    return {"metadata": metadata} if metadata is not None else {}


def _buttons(record: TaskRecord) -> list[dict[str, str]]:
    job = record.id.removeprefix("task_").lower()
    return [
        {"customId": f"MJ::JOB::{kind}::{n}::{job}", "label": f"{label}{n}"}
        for kind, label in (("upsample", "U"), ("variation", "V"))
        for n in range(1, 5)
    ]


def unified_task(
    record: TaskRecord,
    view: TaskView,
    links: Links,
    *,
    url_shape: str,
    media_expires_at: float,
    video_items: str = "per-clip",
    usd_per_credit: float = 0.1,
) -> dict[str, Any]:
    """The envelope of ``GET /v1/tasks/{id}`` as the provider's own clients read it: lowercase status,
    ``cost`` (USD) and ``credits_cost`` from the first poll on (0 once a failed task is refunded),
    and on completion every clip's URL under ``result.videos``: one item per clip (``per-clip``) or
    one item listing them all (``single``)."""
    credits = 0.0 if view.status is Status.FAILURE else record.charge
    data: dict[str, Any] = {
        "id": record.id,
        "status": unified_status(record, view.status),
        "progress": view.progress,
        "created": int(record.created_at),
        "estimated_time": round(record.duration),
        "cost": round(credits * usd_per_credit, 6),
        "credits_cost": round(credits, 6),
        **_metadata(record),
    }
    if view.finished_at is not None:
        data["completed"] = int(view.finished_at)
        data["actual_time"] = round(view.finished_at - record.created_at)
    if view.status is Status.SUCCESS:
        expires = int(media_expires_at)
        urls = links.media(record)
        if record.action != IMAGINE and video_items == "single":
            items = [{"url": urls, "expires_at": expires}]
        else:
            items = [{"url": url if url_shape == "string" else [url], "expires_at": expires} for url in urls]
        data["result"] = {"images" if record.action == IMAGINE else "videos": items}
    elif view.status is Status.FAILURE:
        data["error"] = {"code": 500, "message": record.fail_reason or "task failed", "type": "task_failed"}
    return {"code": 200, "data": data}
