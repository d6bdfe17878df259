"""The control object: one Python interface to a fake's control plane.

The same class drives the in-process fake (``apimart_mock``, through an
in-process transport) and a real server (``apimart_server``, over the
network): it only speaks HTTP to ``/__mock__/``.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from typing import Any

import httpx

from ..core.accounts import account_id


class ControlError(AssertionError):
    pass


def _raise_for(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise ControlError(f"control plane refused {response.request.method} {response.request.url}: {response.text}")
    return response.json()


class ClockControl:
    """The fake's clock: move time instead of sleeping."""

    def __init__(self, http: httpx.Client) -> None:
        self._http = http

    def now(self) -> float:
        return float(_raise_for(self._http.get("/clock"))["now"])

    def advance(self, seconds: float) -> float:
        return float(_raise_for(self._http.post("/clock", json={"advance": seconds}))["now"])

    def set(self, when: float) -> float:
        return float(_raise_for(self._http.post("/clock", json={"set": when}))["now"])

    def freeze(self) -> float:
        return float(_raise_for(self._http.post("/clock", json={"freeze": True}))["now"])

    def unfreeze(self) -> float:
        return float(_raise_for(self._http.post("/clock", json={"freeze": False}))["now"])


class FaultControl:
    """Fault rules: ``faults.add("rate_limit", endpoint="video", times=1, retry_after=2)``."""

    def __init__(self, http: httpx.Client) -> None:
        self._http = http

    def add(
        self,
        scenario: str,
        *,
        endpoint: str = "any",
        token: str | None = None,
        fields: dict[str, Any] | None = None,
        times: int | None = None,
        probability: float = 1.0,
        **params: str | int | float,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"scenario": scenario, "endpoint": endpoint, "probability": probability}
        if token is not None:
            body["token"] = token
        if fields:
            body["fields"] = fields
        if times is not None:
            body["times"] = times
        if params:
            body["params"] = {k: str(v) for k, v in params.items()}
        result: dict[str, Any] = _raise_for(self._http.post("/scenarios", json=body))
        return result

    def once(self, scenario: str, **options: Any) -> dict[str, Any]:
        return self.add(scenario, times=1, **options)

    def rules(self) -> list[dict[str, Any]]:
        return list(_raise_for(self._http.get("/scenarios"))["rules"])

    def catalogue(self) -> list[dict[str, Any]]:
        return list(_raise_for(self._http.get("/scenarios"))["catalogue"])

    def remove(self, rule_id: str) -> None:
        _raise_for(self._http.delete(f"/scenarios/{rule_id}"))

    def clear(self) -> None:
        _raise_for(self._http.delete("/scenarios"))


def _matches(body: Any, fields: dict[str, Any]) -> bool:
    return isinstance(body, dict) and all(body.get(k) == v for k, v in fields.items())


class JournalControl:
    """The requests the fake answered, and assertions over them."""

    def __init__(self, http: httpx.Client) -> None:
        self._http = http

    def entries(self, **filters: Any) -> list[dict[str, Any]]:
        params = {k: str(v) for k, v in filters.items() if v is not None}
        return list(_raise_for(self._http.get("/requests", params=params))["requests"])

    def har(self) -> dict[str, Any]:
        """The journal as a HAR 1.2 document, for browser dev tools and HTTP tooling::

        Path("run.har").write_text(json.dumps(apimart_mock.journal.har()))
        """
        result: dict[str, Any] = _raise_for(self._http.get("/requests.har"))
        return result

    def mark(self) -> int:
        """The newest sequence number: pass it as ``since=`` to see only what came after."""
        entries = self.entries(limit=1)
        return int(entries[-1]["seq"]) if entries else 0

    def submissions(
        self, kind: str = "video", *, token: str | None = None, accepted: bool = True, since: int = 0, **fields: Any
    ) -> list[dict[str, Any]]:
        """Submissions of ``kind`` (video | imagine) whose body has these field values."""
        return [
            e
            for e in self.entries(token=token, since=since)
            if e.get("endpoint") == kind
            and (not accepted or e["status"] == 200)
            and not e.get("replayed")
            and _matches(e.get("body"), fields)
        ]

    def assert_submitted(self, count: int, kind: str = "video", **options: Any) -> None:
        found = self.submissions(kind, **options)
        if len(found) != count:
            described = ", ".join(f"{k}={v!r}" for k, v in options.items()) or "any"
            raise AssertionError(f"expected {count} accepted {kind} submission(s) with {described}, saw {len(found)}")

    def polls(self, task_id: str | None = None, *, token: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.entries(token=token)
            if e.get("endpoint") == "poll" and (task_id is None or e.get("task_id") == task_id)
        ]

    def poll_intervals(self, task_id: str | None = None, *, token: str | None = None) -> list[float]:
        """Gaps between consecutive polls of the same task.

        Each gap is the larger of the fake's clock and the wall clock, so a
        client that sleeps and a test that moves the virtual clock are both measured.
        """
        by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for entry in self.polls(task_id, token=token):
            by_task[entry.get("task_id", "")].append(entry)
        gaps: list[float] = []
        for polls in by_task.values():
            for before, after in itertools.pairwise(polls):
                gaps.append(max(after["time"] - before["time"], after["wall_time"] - before["wall_time"]))
        return gaps

    def assert_poll_interval_at_least(self, seconds: float, task_id: str | None = None, **options: Any) -> None:
        gaps = self.poll_intervals(task_id, **options)
        if gaps and min(gaps) < seconds:
            raise AssertionError(f"a task was polled {min(gaps):.3f} s after the previous poll (limit {seconds} s)")


class LedgerControl:
    """What the run would have cost on the real API; balances."""

    def __init__(self, http: httpx.Client) -> None:
        self._http = http

    def summary(self, token: str | None = None) -> dict[str, Any]:
        params = {"token": token} if token else None
        result: dict[str, Any] = _raise_for(self._http.get("/ledger", params=params))
        return result

    def spent(self, token: str | None = None) -> float:
        summary = self.summary(token)
        if token is None:
            return float(summary["total_spent"])
        account = summary["accounts"].get(account_id(token))
        return float(account["spent"]) if account else 0.0

    def set_balance(self, token: str, balance: float | None) -> None:
        _raise_for(self._http.post("/balances", json={"token": token, "balance": balance}))


class MockControl:
    """Clock, faults, journal, ledger and reset of one fake.

    ``base_url`` is where the fake answers the provider's API (give it to the
    client under test).
    """

    def __init__(self, http: httpx.Client, base_url: str) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.clock = ClockControl(http)
        self.faults = FaultControl(http)
        self.journal = JournalControl(http)
        self.ledger = LedgerControl(http)

    @classmethod
    def connect(cls, base_url: str, *, control_token: str | None = None, timeout: float = 10.0) -> MockControl:
        """The control object of a fake already running at ``base_url`` (a container, another
        process), sending ``Authorization: Bearer <control_token>`` when its server requires one."""
        base = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {control_token}"} if control_token else None
        return cls(httpx.Client(base_url=base + "/__mock__", timeout=timeout, headers=headers), base)

    def reset(self, token: str | None = None) -> None:
        """Forget tasks, uploads, keys, journal, balances (and fault rules when no token is given)."""
        _raise_for(self.http.post("/reset", json={"token": token} if token else {}))

    def task(self, task_id: str) -> dict[str, Any]:
        """A task's internal view: effective video_type, price key, charge, outcome."""
        result: dict[str, Any] = _raise_for(self.http.get(f"/tasks/{task_id}"))
        return result

    def tasks(self, token: str | None = None) -> list[dict[str, Any]]:
        params = {"token": token} if token else None
        return list(_raise_for(self.http.get("/tasks", params=params))["tasks"])

    def close(self) -> None:
        self.http.close()
