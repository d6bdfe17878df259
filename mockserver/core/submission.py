"""Submission rules the schema cannot say, as small pure functions.

Each function enforces one line of the provider's documentation and cites it
(the video page, as docs/evidence.md, "What it enforces", records it, unless said otherwise). They take plain values and
return plain values or raise :class:`ApiError`; nothing here reads the clock,
the store or HTTP. The request body reaching them has already passed the
schema in ``spec/openapi.yaml`` (types, enums, bounds).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes

from .errors import ApiError, bad_request
from .records import IMAGINE, UploadRecord

STRICT = "strict"
COERCE = "coerce"
PRICE_480 = "midjourney@video"
PRICE_720 = "midjourney@video-720p"
START_END_INFIX = "start_end_"

MAX_KEY_LENGTH = 191
_VISIBLE_ASCII = re.compile(rf"[\x21-\x7e]{{1,{MAX_KEY_LENGTH}}}")

# Sizes of frames that this server stored itself (its upload URLs), or None.
MeasureUpload = Callable[[str], int | None]


@dataclass(frozen=True)
class ParentTask:
    """What the rules need to know of the task named by ``task_id``."""

    action: str
    status: str  # the lifecycle status name: SUBMITTED, IN_PROGRESS, SUCCESS, FAILURE
    prompt: str


@dataclass(frozen=True)
class VideoJob:
    """A submission the rules accepted, normalised: what the task will be."""

    prompt: str
    video_type: str
    requested_video_type: str
    batch_size: int
    requested_batch_size: Any
    motion: str
    animate_mode: str
    image_url: str | None = None
    end_url: str | None = None
    parent_task_id: str | None = None
    index: int | None = None
    price_key: str = PRICE_480
    notes: tuple[str, ...] = field(default=())

    @property
    def quantity(self) -> int:
        """Billing: amount charged = unit price × batch_size."""
        return self.batch_size


def _present(body: Mapping[str, Any], name: str) -> bool:
    value = body.get(name)
    return value is not None and value != "" and value != []


def one_frame_source(body: Mapping[str, Any]) -> str:
    """'required: image_urls (the first frame) or task_id'; 'the two must not be given together'.

    Returns which source the request uses: ``"image"`` or ``"task"``.
    """
    has_image = _present(body, "image_urls")
    has_task = _present(body, "task_id")
    if has_image and has_task:
        raise bad_request("image_urls and task_id cannot both be set", "task_id")
    if not has_image and not has_task:
        raise bad_request(
            "image_urls or task_id is required: pure text-to-video is not supported, a first frame is needed",
            "image_urls",
        )
    return "image" if has_image else "task"


def prompt_required_without_task(body: Mapping[str, Any]) -> None:
    """'prompt … when empty, task_id is required'."""
    prompt = body.get("prompt")
    if (prompt is None or not str(prompt).strip()) and not _present(body, "task_id"):
        raise bad_request("prompt must not be empty unless task_id is given (it is then inherited)", "prompt")


def auto_needs_task_and_index(body: Mapping[str, Any]) -> None:
    """'animate_mode=auto requires both task_id and index'."""
    if body.get("animate_mode") != "auto":
        return
    if not _present(body, "task_id"):
        raise bad_request("animate_mode auto requires task_id (and index)", "task_id")
    if body.get("index") is None:
        raise bad_request("animate_mode auto requires index (with task_id)", "index")


def effective_batch_size(value: Any, policy: str, allowed: Collection[int]) -> int:
    """'batch_size … must be 1 / 2 / 4 — other values are treated as 1' versus
    'strictly validated as 1 / 2 / 4' (the page contradicts itself; see the README).

    ``strict`` refuses other values; ``coerce`` treats them as 1. Absent → 1.
    """
    if value is None:
        return 1
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value in allowed:
        return value
    if policy == COERCE:
        return 1
    shown = ", ".join(str(v) for v in sorted(allowed))
    raise bad_request(f"batch_size must be one of {shown} (got {value!r})", "batch_size")


def effective_video_type(video_type: str, end_url: str | None) -> str:
    """'end_url … when set, video_type is upgraded automatically to the matching start_end_* value'."""
    if not end_url or START_END_INFIX in video_type:
        return video_type
    head, _, tier = video_type.rpartition("_")
    return f"{head}_{START_END_INFIX}{tier}"


def price_key(video_type: str) -> str:
    """'a value containing 720 is billed as midjourney@video-720p' (else midjourney@video)."""
    return PRICE_720 if "720" in video_type else PRICE_480


def parent_prompt(task_id: str, parent: ParentTask | None) -> str:
    """'task_id … reuse an existing imagine task in SUCCESS'.

    Unknown (or another account's), not an imagine task, unfinished or failed
    parents are each refused with their own message. Returns the parent's
    prompt, which an empty video prompt inherits.
    """
    if parent is None:
        raise bad_request(f"task_id {task_id} not found", "task_id")
    if parent.action != IMAGINE:
        raise bad_request(f"task_id {task_id} is a {parent.action} task, not an imagine task", "task_id")
    if parent.status == "FAILURE":
        raise bad_request(f"task_id {task_id} failed and cannot be animated", "task_id")
    if parent.status != "SUCCESS":
        raise bad_request(
            f"task_id {task_id} is not finished yet (status {parent.status}); wait for SUCCESS", "task_id"
        )
    return parent.prompt


_DATA_URL = re.compile(r"^data:(?P<type>[^,;]*)(?P<params>(?:;[^,;]*)*?)(?P<b64>;base64)?,", re.IGNORECASE)


def data_url_size(url: str, param: str) -> int | None:
    """Decoded size of a ``data:`` URL, or None for any other URL. Refuses malformed ones."""
    if url[:5].lower() != "data:":
        return None
    match = _DATA_URL.match(url)
    if match is None:
        raise bad_request(f"{param} is not a valid data: URL", param)
    media_type = match.group("type").strip().lower()
    if not media_type.startswith("image/"):
        raise bad_request(f"{param} must be an image data: URL (got {media_type or 'no media type'})", param)
    payload = url[match.end() :]
    if match.group("b64"):
        compact = payload.strip()
        if len(compact) % 4 != 0:
            raise bad_request(f"{param} is not valid base64", param)
        return len(compact) // 4 * 3 - (len(compact) - len(compact.rstrip("=")))
    return len(unquote_to_bytes(payload))


def check_base64(url: str, param: str) -> None:
    """A ``;base64`` data URL must decode (done only once its size is known to be within bounds)."""
    match = _DATA_URL.match(url)
    if match is None or not match.group("b64"):
        return
    try:
        base64.b64decode(url[match.end() :].strip(), validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(f"{param} is not valid base64", param) from None


def frame_within_limit(url: str, param: str, limit: int, measure_upload: MeasureUpload) -> None:
    """'The first frame and the end frame are each ≤ 12 MiB'.

    ``data:`` URLs are measured; URLs this server issued for uploads are
    measured; other http(s) URLs are accepted without being fetched.
    """
    size = data_url_size(url, param)
    if size is None:
        size = measure_upload(url)
    if size is not None and size > limit:
        raise bad_request(f"{param} is {size} bytes; a frame may be at most {limit} bytes (12 MiB)", param)
    if size is not None:
        check_base64(url, param)


def frame_urls(body: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Each frame URL of a submission with the field that holds it (``image_urls[0]``, ``end_url``)."""
    urls = body.get("image_urls")
    found = (
        [(f"image_urls[{n}]", u) for n, u in enumerate(urls) if isinstance(u, str)] if isinstance(urls, list) else []
    )
    end = body.get("end_url")
    return [*found, ("end_url", end)] if isinstance(end, str) else found


def uploads_fetchable(
    body: Mapping[str, Any], uploads: Mapping[str, UploadRecord | None], now: float, ttl: float
) -> None:
    """A frame that links to this server's uploads must name one it still serves: an unknown upload
    (404) or an expired one (410) cannot be fetched by the real API either (docs/evidence.md,
    "Dead upload URLs"; ``--dead-uploads accept`` keeps the older reading)."""
    for param, url in frame_urls(body):
        if url not in uploads:
            continue
        upload = uploads[url]
        if upload is None:
            raise bad_request(
                f"{param} links to an upload this server does not hold, so the image cannot be fetched: {url[:200]}",
                param,
            )
        if now >= upload.created_at + ttl:
            raise bad_request(
                f"{param} links to upload {upload.id}, which expired {int(now - upload.created_at - ttl)} s ago "
                "(uploads are served for 72 h), so the image cannot be fetched",
                param,
            )


def no_data_urls(body: Mapping[str, Any]) -> None:
    """'Generation APIs no longer accept base64': under ``--data-url-frames refuse`` a ``data:`` frame
    is refused, pointing at the upload route (docs/evidence.md, "Base64 frames")."""
    for param, url in frame_urls(body):
        if url[:5].lower() == "data:":
            raise bad_request(
                f"{param} is a base64 data: URL, which generation requests no longer accept; upload the image "
                "(POST /v1/uploads/images) and pass its URL",
                param,
            )


def video_job(
    body: Mapping[str, Any],
    *,
    policy: str,
    allowed_batch_sizes: Collection[int],
    defaults: Mapping[str, Any],
    parent: ParentTask | None,
    max_frame_bytes: int,
    measure_upload: MeasureUpload,
) -> VideoJob:
    """All the rules of a video submission, in the order a client would fix them.

    ``defaults`` are the spec's defaults of the request schema (video_type, motion, animate_mode).
    """
    source = one_frame_source(body)
    auto_needs_task_and_index(body)
    prompt_required_without_task(body)
    batch = effective_batch_size(body.get("batch_size"), policy, allowed_batch_sizes)
    requested_type = body.get("video_type") or defaults["video_type"]
    end_url = body.get("end_url") or None
    video_type = effective_video_type(requested_type, end_url)
    prompt = str(body.get("prompt") or "").strip()
    image_url: str | None = None
    task_id: str | None = None
    notes: list[str] = []
    if source == "task":
        task_id = str(body["task_id"])
        inherited = parent_prompt(task_id, parent)
        if not prompt:
            prompt = inherited
            notes.append("prompt inherited from the parent task")
    else:
        image_url = body["image_urls"][0]
        frame_within_limit(image_url, "image_urls[0]", max_frame_bytes, measure_upload)
        if body.get("index") is not None:
            notes.append("index ignored: it is used with task_id only")
    if end_url:
        frame_within_limit(end_url, "end_url", max_frame_bytes, measure_upload)
        if video_type != requested_type:
            notes.append(f"video_type upgraded from {requested_type} to {video_type} because end_url is set")
    if batch != body.get("batch_size", 1):
        notes.append(f"batch_size {body.get('batch_size')!r} treated as {batch}")
    job = object.__new__(VideoJob)  # every field given: made without the frozen __init__'s setattr per field
    job.__dict__.update(
        prompt=prompt,
        video_type=video_type,
        requested_video_type=requested_type,
        batch_size=batch,
        requested_batch_size=body.get("batch_size"),
        motion=body.get("motion") or defaults["motion"],
        animate_mode=body.get("animate_mode") or defaults["animate_mode"],
        image_url=image_url,
        end_url=end_url,
        parent_task_id=task_id,
        index=body.get("index") if source == "task" else None,
        price_key=price_key(video_type),
        notes=tuple(notes),
    )
    return job


MAX_METADATA_BYTES = 16 * 1024


def imagine_metadata(value: Any) -> dict[str, Any] | None:
    """The imagine page's ``metadata``: an object kept with the task and returned with it, so bounded."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad_request("metadata must be an object", "metadata")
    size = len(json.dumps(value, separators=(",", ":")))
    if size > MAX_METADATA_BYTES:
        raise bad_request(f"metadata is {size} bytes of JSON; it may be at most {MAX_METADATA_BYTES}", "metadata")
    return value


def imagine_prompt(prompt: Any) -> str:
    """Imagine: 'prompt required' (the imagine page; docs/evidence.md, "What it enforces"); blank counts as missing."""
    text = str(prompt or "").strip()
    if not text:
        raise bad_request("prompt must not be empty", "prompt")
    return text


def imagine_price_key(speed: str) -> str:
    """Imagine is billed per speed (docs/evidence.md, "prices": relax default / fast / turbo); the
    provider's price keys are ``midjourney@imagine`` (relax, no suffix), ``-fast`` and ``-turbo``."""
    return "midjourney@imagine" if speed == "relax" else f"midjourney@imagine-{speed}"


def refuse_non_object(body: Any) -> dict[str, Any]:
    """'bad body, bad JSON … → 400' (docs/evidence.md, "error bodies"): the body must be a JSON object."""
    if not isinstance(body, dict):
        kind = "array" if isinstance(body, list) else type(body).__name__
        raise ApiError(400, f"request body must be a JSON object, not {kind}", param=None)
    return body


def idempotency_key(key: str | None) -> str | None:
    """An ``Idempotency-Key`` header: absent, or 1 to 191 visible ASCII characters
    (docs/evidence.md, ``Idempotency-Key``)."""
    if key is None:
        return None
    if not _VISIBLE_ASCII.fullmatch(key):
        raise bad_request(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} visible ASCII characters (no spaces)", "Idempotency-Key"
        )
    return key


def body_fingerprint(endpoint: str, body: Mapping[str, Any]) -> str:
    """A short digest of a submission, to tell 'the same key with the same body' from a reuse."""
    canonical = json.dumps([endpoint, body], sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]
