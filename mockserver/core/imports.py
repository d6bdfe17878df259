"""Checks on a whole state document (``PUT /__mock__/state``) before anything is replaced.

Pure: ``check(document)`` raises ``ApiError`` (400, naming the field path such as
``tasks[3].clips``) for the first value the single-item control routes would refuse,
or that the API's bounds exclude; it returns nothing when the document is safe to import.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from typing import Any

from . import faults, images
from .clips import ASPECTS
from .clock import LATEST
from .errors import ApiError, bad_request

MAX_CLIPS = 4  # a task makes at most four clips or images
MAX_BALANCE = 1e15
MAX_INT = 2**53  # well inside SQLite's 64-bit integers
IMAGE_TYPES = (images.PNG, images.JPEG, images.GIF, images.WEBP)
ENDPOINTS = ("video", "imagine", "poll", "upload", "any")


def _refuse(path: str, rule: str) -> ApiError:
    return bad_request(f"{path} {rule}", path)


def _number(value: Any, path: str, low: float, high: float) -> None:
    """``value`` a finite number (not a bool) from ``low`` to ``high``."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or not low <= value <= high:
        raise _refuse(path, f"must be a finite number from {low:g} to {high:g}")


def _whole(value: Any, path: str, low: int, high: int = MAX_INT, *, null: bool = False) -> None:
    """``value`` an integer from ``low`` to ``high`` (or None with ``null``)."""
    if value is None and null:
        return
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _refuse(path, f"must be an integer from {low} to {high}")


def _task(data: Mapping[str, Any], path: str) -> None:
    """One task record's numbers and aspect."""
    _number(data.get("created_at"), f"{path}.created_at", 0.0, LATEST)
    _number(data.get("duration"), f"{path}.duration", 0.0, LATEST)
    _whole(data.get("clips"), f"{path}.clips", 0, MAX_CLIPS)
    _whole(data.get("quantity"), f"{path}.quantity", 0, MAX_CLIPS)
    _number(data.get("unit_price", 0.0), f"{path}.unit_price", 0.0, MAX_BALANCE)
    _whole(data.get("polls", 0), f"{path}.polls", 0)
    _whole(data.get("finish_after_polls"), f"{path}.finish_after_polls", 1, null=True)
    if data.get("settled_at") is not None:
        _number(data["settled_at"], f"{path}.settled_at", 0.0, LATEST)
    aspect = (data.get("params") or {}).get("aspect")
    if aspect is not None and not (isinstance(aspect, str) and aspect in ASPECTS):  # (a list: unhashable)
        raise _refuse(f"{path}.params.aspect", f"must be one of {', '.join(ASPECTS)}")


def upload_type(meta: Mapping[str, Any], path: str) -> str:
    """The media type an imported upload's bytes hold (never what it declares); 400 for a non-image.
    An upload exported without its bytes (no ``data``) keeps its type only if that is an image type."""
    if meta.get("data") is None:
        if meta.get("content_type") not in IMAGE_TYPES:
            raise _refuse(f"{path}.content_type", f"must be one of {', '.join(IMAGE_TYPES)}")
        return str(meta["content_type"])
    try:
        data = base64.b64decode(meta.get("data") or "", validate=True)
    except (binascii.Error, ValueError):
        raise _refuse(f"{path}.data", "is not base64") from None
    info = images.sniff(data)
    if info is None:
        raise _refuse(f"{path}.data", "must be a JPEG, PNG, GIF or WebP image")
    return info.mime


def _upload(meta: Mapping[str, Any], path: str) -> None:
    _number(meta.get("created_at"), f"{path}.created_at", 0.0, LATEST)
    _whole(meta.get("size"), f"{path}.size", 0)
    upload_type(meta, path)


def _rule(data: Mapping[str, Any], path: str) -> None:
    """What ``POST /__mock__/scenarios`` checks, and a bounded count."""
    if data.get("endpoint", "any") not in ENDPOINTS:
        raise _refuse(f"{path}.endpoint", f"must be one of {', '.join(ENDPOINTS)}")
    _whole(data.get("times"), f"{path}.times", 1, null=True)
    _number(data.get("probability", 1.0), f"{path}.probability", 0.0, 1.0)
    _whole(data.get("fired") or 0, f"{path}.fired", 0)
    params = {str(k).lower(): str(v) for k, v in (data.get("params") or {}).items()}
    faults.validated(faults.Fault(str(data.get("scenario", "")).lower(), params), f"{path}.scenario")


def _canned(data: Mapping[str, Any], path: str) -> None:
    if not str(data.get("path", "")).startswith("/"):
        raise _refuse(f"{path}.path", "must start with /")
    _whole(data.get("times"), f"{path}.times", 1, null=True)
    _whole(data.get("fired") or 0, f"{path}.fired", 0)


def check(document: Mapping[str, Any]) -> None:
    """Refuse (400, naming the field) a state document any part of which could not be imported whole."""
    now = (document.get("clock") or {}).get("now")
    if now is not None:
        _number(now, "clock.now", 0.0, LATEST)
    for name, each in (("tasks", _task), ("uploads", _upload), ("fault_rules", _rule), ("canned_responses", _canned)):
        for n, item in enumerate(document.get(name) or []):
            each(item, f"{name}[{n}]")
    for account, amount in (document.get("balances") or {}).items():
        if amount is not None:
            _number(amount, f"balances.{account}", 0.0, MAX_BALANCE)
