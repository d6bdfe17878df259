"""The API under check, spoken to over HTTP only: a live base URL or an in-process transport.

What differs between the fake and a live API is decided once, in a :class:`Profile`
(how often to poll, how long to wait, what the budget is by default, whether paid
operations may be fuzzed with a token, which second account to ask), chosen when
the target is opened: nothing below asks "is this the fake?" again.

Holds the spend guard: paid submissions are reserved against ``max_paid_tasks``
before they are sent; a request the documentation says must be refused, but
which the target accepts, is counted too, and once the budget is used up no
further submission of any kind is sent.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

VIDEO = "/v1/midjourney/generations/video"
IMAGINE = "/v1/midjourney/generations"
UPLOAD = "/v1/uploads/images"
TASKS = "/v1/tasks/"
MIDJOURNEY = "/v1/midjourney/"
STATUS_RANK = {"NOT_START": 0, "SUBMITTED": 0, "IN_PROGRESS": 1, "MODAL": 1, "SUCCESS": 2, "FAILURE": 2}
UNIFIED_TO_MJ = {
    "pending": "SUBMITTED",
    "processing": "IN_PROGRESS",
    "completed": "SUCCESS",
    "failed": "FAILURE",
    "cancelled": "FAILURE",
}
COST_FIELDS = ("cost", "credits_cost")


@dataclass(frozen=True)
class Profile:
    """How the suite treats one kind of target; chosen once, when the target is opened."""

    name: str
    mockserver: bool  # the report's ``target_is_mockserver``
    charges: bool  # paid submissions cost money: fuzz paid operations without a token; warn before spending
    poll_first: float  # seconds before the second poll; the interval grows by half up to ``poll_ceiling``
    poll_ceiling: float
    timeout: float  # seconds to wait for one task
    default_budget: int | None  # paid tasks when --max-paid-tasks is not given; None: every paid check
    other_token: str | None  # a second account to ask for the first one's task, unless --other-token

    def with_overrides(self, *, poll_interval: float | None = None, timeout: float | None = None) -> Profile:
        """``--poll-interval`` (a fixed interval) and ``--timeout`` over the profile's own."""
        changes: dict[str, Any] = {}
        if poll_interval is not None:
            changes.update(poll_first=poll_interval, poll_ceiling=poll_interval)
        if timeout is not None:
            changes["timeout"] = timeout
        return dataclasses.replace(self, **changes)


MOCKSERVER = Profile(
    name="mockserver: paid checks cost nothing",
    mockserver=True,
    charges=False,
    poll_first=0.02,
    poll_ceiling=0.5,
    timeout=30.0,
    default_budget=None,
    other_token="contract-other-account",  # noqa: S106 - any token is an account of its own there
)
# The provider recommends polling every 3–5 s; a typical job takes about a minute.
LIVE = Profile(
    name="live",
    mockserver=False,
    charges=True,
    poll_first=3.0,
    poll_ceiling=5.0,
    timeout=900.0,
    default_budget=0,
    other_token=None,
)


def detect(http: httpx.Client) -> Profile:
    """mockserver answers ``GET /__mock__/health`` with ``{"status": "ok"}``; anything else is live."""
    try:
        response = http.get("/__mock__/health")
        body = response.json()
        fake = response.status_code == 200 and isinstance(body, dict) and body.get("status") == "ok"
    except (httpx.HTTPError, ValueError):
        fake = False
    return MOCKSERVER if fake else LIVE


class BudgetExhausted(Exception):
    pass


@dataclass
class Budget:
    max_paid: int | None  # None: no limit (mockserver, where paid checks cost nothing)
    used: int = 0
    unplanned: int = 0
    units: dict[str, int] = field(default_factory=dict)

    def reserve(self, price_key: str, units: int) -> None:
        if self.max_paid is not None and self.used >= self.max_paid:
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
        return self.unplanned > 0 and self.max_paid is not None and self.used >= self.max_paid


@dataclass(frozen=True)
class TaskState:
    """One poll, in the Midjourney vocabulary whatever the dialect, with what the body said of itself."""

    status: str
    progress: int
    urls: list[str]
    first_url: str | None
    fail_reason: str
    dialect: str  # "unified" (the tasks page's envelope) or "mj" (the Midjourney-style body)
    raw: dict[str, Any]
    items: list[Any] = field(default_factory=list)  # unified: result.videos (or .images) as answered
    cost_fields: tuple[str, ...] = ()  # which of cost / credits_cost the task carries
    seconds: float | None = None  # final: the server's own time from submission to the final state


def _percent(value: Any) -> int:
    """Progress as 0–100: an integer, or a string "NN%"; -1 when it is neither."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value if value is not None else "0").strip().rstrip("%")
    return int(text) if text.isdigit() else -1


def as_number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def item_urls(item: Any) -> list[str]:
    """The URLs of one ``result.videos`` item: ``url`` as a string or a list of strings."""
    url = item.get("url") if isinstance(item, dict) else None
    if isinstance(url, str):
        return [url]
    return [u for u in url if isinstance(u, str)] if isinstance(url, list) else []


def read_task(body: Any) -> TaskState:
    if not isinstance(body, dict):
        return TaskState(str(body)[:40], -1, [], None, "", "unknown", {})
    if isinstance(body.get("data"), dict):
        data = body["data"]
        result = data.get("result") if isinstance(data.get("result"), dict) else {}
        items = result.get("videos") or result.get("images") or []
        items = items if isinstance(items, list) else []
        urls = [url for item in items for url in item_urls(item)]
        status = UNIFIED_TO_MJ.get(str(data.get("status")), str(data.get("status")))
        seconds = None
        if STATUS_RANK.get(status) == 2:
            created, completed = as_number(data.get("created")), as_number(data.get("completed"))
            seconds = completed - created if created and completed else as_number(data.get("actual_time"))
        error = data.get("error") if isinstance(data.get("error"), dict) else {}
        return TaskState(
            status=status,
            progress=_percent(data.get("progress") or 0),
            urls=urls,
            first_url=urls[0] if urls else None,
            fail_reason=str(error.get("message", "")),
            dialect="unified",
            raw=body,
            items=items,
            cost_fields=tuple(f for f in COST_FIELDS if f in data),
            seconds=seconds,
        )
    status = str(body.get("status"))
    urls = list(body.get("video_urls") or body.get("image_urls") or [])
    seconds = None
    submitted, finished = as_number(body.get("submit_time")), as_number(body.get("finish_time"))
    if STATUS_RANK.get(status) == 2 and submitted and finished:
        seconds = (finished - submitted) / 1000  # Unix milliseconds
    return TaskState(
        status=status,
        progress=_percent(body.get("progress", "0%")),
        urls=urls,
        first_url=body.get("video_url") or body.get("grid_image_url"),
        fail_reason=str(body.get("fail_reason") or ""),
        dialect="mj",
        raw=body,
        cost_fields=tuple(f for f in COST_FIELDS if f in body),
        seconds=seconds,
    )


@dataclass(frozen=True)
class Followed:
    """A task polled until final: every poll's state in order, and the client's own measure of its time."""

    states: list[TaskState]
    waited: float  # seconds from the submission's answer to the first final poll (or the timeout)

    @property
    def final(self) -> TaskState:
        return self.states[-1]

    @property
    def seconds(self) -> float | None:
        """The task's time from submission to its final state: the server's, else the client's; None unfinished."""
        if STATUS_RANK.get(self.final.status) != 2:
            return None
        return self.final.seconds if self.final.seconds is not None else self.waited


class Target:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        max_paid_tasks: int | None = None,
        poll_interval: float | None = None,
        timeout: float | None = None,
        transport: httpx.BaseTransport | None = None,
        profile: Profile | None = None,
        log: Callable[[str], None] = lambda line: None,
    ) -> None:
        """``max_paid_tasks`` None: the profile's default budget (all paid checks on mockserver, none live)."""
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.http = httpx.Client(base_url=self.base_url, transport=transport, timeout=30.0)
        self.log = log
        self.profile = (profile or detect(self.http)).with_overrides(poll_interval=poll_interval, timeout=timeout)
        self.budget = Budget(self.profile.default_budget if max_paid_tasks is None else max_paid_tasks)

    @property
    def fake(self) -> bool:
        """Whether the target is mockserver (for the report)."""
        return self.profile.mockserver

    def close(self) -> None:
        self.http.close()

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

    def get(self, path: str, *, token: str | None = None) -> httpx.Response:
        return self.send("GET", path, headers=self.auth(token))

    def upload(self, data: bytes, content_type: str, filename: str) -> httpx.Response:
        """``POST /v1/uploads/images`` with the multipart part ``file`` declared as ``content_type`` (free;
        up to two minutes, for a 21 MiB body on a slow uplink)."""
        files = {"file": (filename, data, content_type)}
        return self.send("POST", UPLOAD, files=files, headers=self.auth(), timeout=120.0)

    def paid_submit(self, path: str, body: dict[str, Any], price_key: str, units: int) -> httpx.Response:
        """A submission that is meant to be accepted (and charged on a live API)."""
        self.budget.reserve(price_key, units)
        cap = "no limit" if self.budget.max_paid is None else self.budget.max_paid
        self.log(f"  paid task {self.budget.used}/{cap}: {price_key} × {units}")
        return self.send("POST", path, json=body, headers=self.auth())

    def refused_submit(self, body: Any, *, raw: bytes | None = None) -> httpx.Response:
        """A video submission the documentation says must be refused (free unless the target breaks the rule):
        ``body`` as JSON, or ``raw`` bytes declared JSON."""
        if self.budget.closed:
            raise BudgetExhausted("no more submissions: the target accepted a refused request and the budget is used")
        if raw is not None:
            headers = {"Content-Type": "application/json", **self.auth()}
            response = self.send("POST", VIDEO, content=raw, headers=headers)
        else:
            response = self.send("POST", VIDEO, json=body, headers=self.auth())
        if response.status_code == 200 and "task_id" in response.text:
            self.budget.charge_unplanned("midjourney@video", 1)
        return response

    # -- polling ----------------------------------------------------------------------------

    def follow(self, task_id: str, path: str = TASKS) -> Followed:
        """Poll until the task is final (or the timeout): every poll's state, in order."""
        seen: list[TaskState] = []
        interval, ceiling = self.profile.poll_first, self.profile.poll_ceiling
        started = time.monotonic()
        deadline = started + self.profile.timeout
        while True:
            response = self.get(path + task_id)
            if response.status_code != 200:
                raise AssertionError(f"poll of {task_id} answered {response.status_code}: {response.text[:200]}")
            state = read_task(response.json())
            seen.append(state)
            # Final, out of time, or a status the documentation does not know (already a violation).
            if STATUS_RANK.get(state.status, -1) not in (0, 1) or time.monotonic() >= deadline:
                return Followed(seen, time.monotonic() - started)
            time.sleep(interval)
            interval = min(ceiling, interval * 1.5)
