"""The request journal as HAR 1.2 (http://www.softwareishard.com/blog/har-12-spec/), for browser
dev tools and HTTP tooling. Pure: journal entries in, a JSON-ready document out.

The journal keeps what a request said (method, path, query, headers without credentials, the
body with long strings shortened) and how it was answered (status, the error body of a
refusal, timing), not the whole answer, so each entry's response content is the error body of
a refusal, or empty.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

CREATOR = {"name": "mockserver", "version": "0.2.0"}


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def entry(journal_entry: Mapping[str, Any], base_url: str) -> dict[str, Any]:
    headers: Mapping[str, str] = journal_entry.get("headers") or {}
    query = str(journal_entry.get("query") or "")
    url = f"{base_url}{journal_entry.get('path', '')}" + (f"?{query}" if query else "")
    request: dict[str, Any] = {
        "method": journal_entry.get("method", "GET"),
        "url": url,
        "httpVersion": "HTTP/1.1",
        "cookies": [],
        "headers": [{"name": k, "value": str(v)} for k, v in headers.items()],
        "queryString": [{"name": k, "value": v} for k, v in parse_qsl(query, keep_blank_values=True)],
        "headersSize": -1,
        "bodySize": int(journal_entry.get("body_bytes") or 0),
    }
    if "body" in journal_entry:
        request["postData"] = {
            "mimeType": str(headers.get("content-type", "application/json")),
            "text": json.dumps(journal_entry["body"], ensure_ascii=False),
        }
    status = int(journal_entry.get("status") or 0)
    error = journal_entry.get("error")
    text = json.dumps({"error": error}, ensure_ascii=False) if error is not None else ""
    duration = float(journal_entry.get("duration_ms") or 0.0)
    comment = ", ".join(
        f"{k}={journal_entry[k]}" for k in ("account", "task_id", "scenario", "replayed") if k in journal_entry
    )
    return {
        "startedDateTime": _iso(float(journal_entry.get("wall_time") or 0.0)),
        "time": duration,
        "request": request,
        "response": {
            "status": status,
            "statusText": _reason(status),
            "httpVersion": "HTTP/1.1",
            "cookies": [],
            "headers": [],
            "content": {"size": len(text.encode()), "mimeType": "application/json" if text else "", "text": text},
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": -1,
        },
        "cache": {},
        "timings": {"send": 0, "wait": duration, "receive": 0},
        "comment": comment,
    }


def document(journal: Iterable[Mapping[str, Any]], base_url: str) -> dict[str, Any]:
    """The whole journal as one HAR log, oldest first."""
    return {"log": {"version": "1.2", "creator": CREATOR, "entries": [entry(e, base_url) for e in journal]}}
