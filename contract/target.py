"""The API under check, spoken to over HTTP only: a live base URL or an in-process transport.

Holds the spend guard: paid submissions are reserved against ``max_paid_tasks``
before they are sent; a request the documentation says must be refused, but
which the target accepts, is counted too, and once the budget is used up no
further submission of any kind is sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

VIDEO = "/v1/midjourney/generations/video"
IMAGINE = "/v1/midjourney/generations"
STATUS_RANK = {"NOT_START": 0, "SUBMITTED": 0, "IN_PROGRESS": 1, "MODAL": 1, "SUCCESS": 2, "FAILURE": 2}
UNIFIED_TO_MJ = {"pending": "SUBMITTED", "processing": "IN_PROGRESS", "completed": "SUCCESS", "failed": "FAILURE"}
UNIFIED_TO_MJ["cancelled"] = "FAILURE"


class BudgetExhausted(Exception):
    pass


@dataclass
class Budget:
    max_paid: int
    used: int = 0
    unplanned: int = 0
    units: dict[str, int] = field(default_factory=dict)

    def reserve(self, price_key: str, units: int) -> None:
        if self.used >= self.max_paid:
            raise BudgetExhausted(f"the budget of {self.max_paid} paid task(s) is used up")
        self.used += 1
        self.units[price_key] = self.units.get(price_key, 0) + units

    def charge_unplanned(self, price_key: str, units: int) -> None:
        self.used += 1
        self.unplanned += 1
        self.units[price_key] = self.units.get(price_key, 0) + units

    @property
    def closed(self) -> bool:
        """No submission of any kind once the target has taken money it should not have and the budget is used."""
        return self.unplanned > 0 and self.used >= self.max_paid


@dataclass
class TaskState:
    """One poll, in the Midjourney vocabulary whatever the dialect."""

    status: str
    progress: int
    urls: list[str]
    first_url: str | None
    fail_reason: str
    dialect: str
    raw: dict[str, Any]


def read_task(body: dict[str, Any]) -> TaskState:
    if "data" in body and isinstance(body.get("data"), dict):
        data = body["data"]
        result = data.get("result") or {}
        items = result.get("videos") or result.get("images") or []
        urls: list[str] = []
        for item in items:
            url = item.get("url")
            urls.extend(url if isinstance(url, list) else [url])
        status = UNIFIED_TO_MJ.get(str(data.get("status")), str(data.get("status")))
        return TaskState(
            status=status,
            progress=int(data.get("progress") or 0),
            urls=urls,
            first_url=urls[0] if urls else None,
            fail_reason=str((data.get("error") or {}).get("message", "")),
            dialect="unified",
            raw=body,
        )
    progress = str(body.get("progress", "0%")).rstrip("%")
    urls = list(body.get("video_urls") or body.get("image_urls") or [])
    return TaskState(
        status=str(body.get("status")),
        progress=int(progress) if progress.isdigit() else -1,
        urls=urls,
        first_url=body.get("video_url") or body.get("grid_image_url"),
        fail_reason=str(body.get("fail_reason") or ""),
        dialect="mj",
        raw=body,
    )


class Target:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        max_paid_tasks: int = 0,
        poll_interval: float | None = None,
        timeout: float | None = None,
        transport: httpx.BaseTransport | None = None,
        log: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.http = httpx.Client(base_url=self.base_url, transport=transport, timeout=30.0)
        self.log = log
        self.fake = self._is_fake()
        self.budget = Budget(max_paid_tasks)
        # The provider recommends polling every 3–5 s; the fake can be polled at once.
        self.poll_interval = poll_interval
        self.timeout = timeout if timeout is not None else (30.0 if self.fake else 900.0)

    def close(self) -> None:
        self.http.close()

    def _is_fake(self) -> bool:
        try:
            response = self.http.get("/__mock__/health")
            body = response.json()
            return response.status_code == 200 and isinstance(body, dict) and body.get("status") == "ok"
        except (httpx.HTTPError, ValueError):
            return False

    # -- requests ---------------------------------------------------------------------------

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    def send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        request = self.http.build_request(method, url, **kwargs)
        request.read()  # multipart bodies are streams; the report and schemathesis read them back
        response = self.http.send(request)
        response.read()
        response.close()  # httpx sets .elapsed on close; schemathesis reads it
        return response

    def get(self, path: str, *, token: str | None = None, authenticated: bool = True) -> httpx.Response:
        return self.send("GET", path, headers=self.auth(token) if authenticated else {})

    def paid_submit(self, path: str, body: dict[str, Any], price_key: str, units: int) -> httpx.Response:
        """A submission that is meant to be accepted (and charged on a live API)."""
        self.budget.reserve(price_key, units)
        self.log(f"  paid task {self.budget.used}/{self.budget.max_paid}: {price_key} × {units}")
        return self.send("POST", path, json=body, headers=self.auth())

    def refused_submit(
        self, body: Any, *, path: str = VIDEO, raw: bytes | None = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """A submission the documentation says must be refused (free unless the target breaks the rule)."""
        if self.budget.closed and not self.fake:
            raise BudgetExhausted("no more submissions: the target accepted a refused request and the budget is used")
        merged = {**self.auth(), **(headers or {})}
        if raw is not None:
            response = self.send("POST", path, content=raw, headers={"Content-Type": "application/json", **merged})
        else:
            response = self.send("POST", path, json=body, headers=merged)
        if response.status_code == 200 and "task_id" in response.text:
            self.budget.charge_unplanned("midjourney@video", 1)
        return response

    # -- polling ----------------------------------------------------------------------------

    def poll_until_final(self, task_id: str, path: str = "/v1/tasks/") -> list[TaskState]:
        """Poll until the task is final (or the timeout); every poll's state, in order."""
        seen: list[TaskState] = []
        interval = self.poll_interval if self.poll_interval is not None else (0.02 if self.fake else 3.0)
        ceiling = self.poll_interval if self.poll_interval is not None else (0.5 if self.fake else 5.0)
        deadline = time.monotonic() + self.timeout
        while True:
            response = self.get(path + task_id)
            if response.status_code != 200:
                raise AssertionError(f"poll of {task_id} answered {response.status_code}: {response.text[:200]}")
            state = read_task(response.json())
            seen.append(state)
            # Final, out of time, or a status the documentation does not know (already a violation).
            if STATUS_RANK.get(state.status, -1) != 0 and STATUS_RANK.get(state.status, -1) != 1:
                return seen
            if time.monotonic() >= deadline:
                return seen
            time.sleep(interval)
            interval = min(ceiling, interval * 1.5)
