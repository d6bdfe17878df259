"""The control object: one Python interface to a fake's control plane.

The same class drives the in-process fake (``apimart_mock``, through an
in-process transport) and a real server (``apimart_server``, over the
network): it only speaks HTTP to ``/__mock__/``.

Every helper documents itself with an example; ``help(MockControl)`` lists them.
"""

from __future__ import annotations

import itertools
import json
import os
from collections import defaultdict
from typing import Any

import httpx

from ..core.accounts import ACCOUNT_ID, account_id


def short(item: dict[str, Any], *, check_probability: bool = False) -> bool:
    """A rule or canned response added with ``times=N`` that fired fewer than N times (a rule only
    when its probability is 1: a chance draw may rightly fire less)."""
    if item.get("times") is None or (check_probability and item.get("probability", 1) < 1):
        return False
    return bool(item.get("fired", 0) < item["times"])


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
        """The fake's time, in Unix seconds::

        started = apimart_mock.clock.now()
        """
        return float(_raise_for(self._http.get("/clock"))["now"])

    def advance(self, seconds: float) -> float:
        """Move the clock forward (never back) and return the new time: tasks progress, media expire::

        apimart_mock.clock.advance(30)  # a 60 s task is now half done
        """
        return float(_raise_for(self._http.post("/clock", json={"advance": seconds}))["now"])

    def set(self, when: float) -> float:
        """Move the clock to ``when`` (Unix seconds, not before now)::

        apimart_mock.clock.set(apimart_mock.clock.now() + 3 * 86400)  # past the 72 h media lifetime
        """
        return float(_raise_for(self._http.post("/clock", json={"set": when}))["now"])

    def freeze(self) -> float:
        """Stop a real server's clock where it is (``apimart_server`` starts every test frozen)::

        apimart_server.clock.freeze()
        """
        return float(_raise_for(self._http.post("/clock", json={"freeze": True}))["now"])

    def unfreeze(self) -> float:
        """Let a real server's clock run with the wall clock again::

        apimart_server.clock.unfreeze()
        """
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
        """Add a fault rule; return it (``id``, ``fired``, …).

        - ``scenario``: a catalogue name (``catalogue()``): ``error_503``, ``rate_limit``,
          ``moderation``, ``latency``, ``drop``, …
        - ``endpoint``: ``video``, ``imagine``, ``poll``, ``upload`` or ``any`` (default);
        - ``token``: only this API key's requests (default every account);
        - ``fields``: only submissions whose body has these values (``{"batch_size": 4}``);
        - ``times``: fire this many times, then stop (default every time); ``apimart_mock``
          checks at teardown that a rule with ``times`` fired that often;
        - ``probability``: fire with this chance (0 to 1; seeded by ``--seed``);
        - ``**params``: the fault's parameters (``retry_after=2``, ``ms=300``, ``reason="GPU on fire"``).

        ::

            apimart_mock.faults.add("rate_limit", endpoint="video", times=1, retry_after=2)
            apimart_mock.faults.add("latency", endpoint="poll", ms=250)
            apimart_mock.faults.add("fail", fields={"batch_size": 4}, reason="GPU on fire")
        """
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
        """``add(scenario, times=1, **options)``: the next matching request gets the fault::

        apimart_mock.faults.once("error_503", endpoint="video")
        """
        return self.add(scenario, times=1, **options)

    def rules(self) -> list[dict[str, Any]]:
        """The rules in force, oldest first, each with how often it fired (``fired``)::

        assert apimart_mock.faults.rules()[0]["fired"] == 1
        """
        return list(_raise_for(self._http.get("/scenarios"))["rules"])

    def catalogue(self) -> list[dict[str, Any]]:
        """Every fault the fake knows, with its parameters::

        names = [k["name"] for k in apimart_mock.faults.catalogue()]
        """
        return list(_raise_for(self._http.get("/scenarios"))["catalogue"])

    def remove(self, rule_id: str) -> None:
        """Remove one rule::

        rule = apimart_mock.faults.add("error_500")
        apimart_mock.faults.remove(rule["id"])
        """
        _raise_for(self._http.delete(f"/scenarios/{rule_id}"))

    def clear(self) -> None:
        """Remove every rule::

        apimart_mock.faults.clear()
        """
        _raise_for(self._http.delete("/scenarios"))

    def unfired(self) -> list[dict[str, Any]]:
        """Rules added with ``times=N`` (and probability 1) that fired fewer than N times::

        assert apimart_mock.faults.unfired() == []
        """
        return [r for r in self.rules() if short(r, check_probability=True)]

    def assert_all_fired(self) -> None:
        """Fail when a rule added with ``times=N`` fired fewer than N times (``apimart_mock`` does this
        at teardown unless ``@pytest.mark.apimart(assert_all_faults_fired=False)``)::

        apimart_mock.faults.once("error_503", endpoint="video")
        ...  # the client under test runs
        apimart_mock.faults.assert_all_fired()
        """
        left = self.unfired()
        if left:
            lines = [
                f"  {r['scenario']} on {r['endpoint']} (rule {r['id']}): fired {r.get('fired', 0)} of {r['times']}"
                for r in left
            ]
            raise AssertionError("fault rules that did not fire as often as added:\n" + "\n".join(lines))


class ResponseControl:
    """Canned responses: the escape hatch that answers a request as told, before any rule runs."""

    def __init__(self, http: httpx.Client) -> None:
        self._http = http

    def add(
        self,
        method: str | None,
        path: str,
        *,
        status: int = 200,
        json: Any = None,
        text: str | None = None,
        headers: dict[str, str] | None = None,
        fields: dict[str, Any] | None = None,
        token: str | None = None,
        times: int | None = None,
    ) -> dict[str, Any]:
        """Answer requests with this ``method`` (None: any) whose path matches the glob ``path``
        (``*`` any characters but ``/``, ``**`` anything, ``?`` one character but ``/``), from
        ``token`` (default any) and whose JSON body contains ``fields``, with ``status``,
        ``headers`` and a JSON body (``json``) or a raw one (``text``); ``times`` times (default
        every time). The oldest matching response answers; the fake's rules never see the request.

        ::

            # the failed submission the real API has been seen to answer
            apimart_mock.responses.add("POST", "/v1/midjourney/generations/video",
                                       json={"code": 500, "data": []}, status=500, times=1)
        """
        body: dict[str, Any] = {"path": path, "status": status}
        if method is not None:
            body["method"] = method
        if json is not None:
            body["body"] = json
        if text is not None:
            body["text"] = text
        if headers:
            body["headers"] = headers
        if fields:
            body["fields"] = fields
        if token is not None:
            body["token"] = token
        if times is not None:
            body["times"] = times
        result: dict[str, Any] = _raise_for(self._http.post("/responses", json=body))
        return result

    def all(self) -> list[dict[str, Any]]:
        """The canned responses, oldest first, each with how often it answered (``fired``)::

        assert apimart_mock.responses.all()[0]["fired"] == 1
        """
        return list(_raise_for(self._http.get("/responses"))["responses"])

    def remove(self, response_id: str) -> None:
        """Remove one canned response::

        canned = apimart_mock.respond("GET", "/v1/tasks/*", status=503)
        apimart_mock.responses.remove(canned["id"])
        """
        _raise_for(self._http.delete(f"/responses/{response_id}"))

    def clear(self) -> None:
        """Remove every canned response::

        apimart_mock.responses.clear()
        """
        _raise_for(self._http.delete("/responses"))

    def unused(self) -> list[dict[str, Any]]:
        """Canned responses added with ``times=N`` that answered fewer than N times::

        assert apimart_mock.responses.unused() == []
        """
        return [r for r in self.all() if short(r)]


class AccountControl:
    """One account's own settings (``control.account(token)``)."""

    def __init__(self, http: httpx.Client, token_or_account: str) -> None:
        self._http = http
        self.name = token_or_account
        named = ACCOUNT_ID.fullmatch(token_or_account) is not None
        self.id = token_or_account if named else account_id(token_or_account)  # a token never goes in a URL

    def settings(self) -> dict[str, Any]:
        """The settings this account chose (empty: the server's apply)::

        assert apimart_mock.account("t").settings() == {}
        """
        result: dict[str, Any] = _raise_for(self._http.get(f"/accounts/{self.id}"))["settings"]
        return result

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change this account's settings (None goes back to the server's); return them all.
        ``task_dialect="mj"|"unified"``: the body ``GET /v1/tasks/{id}`` answers it with
        (a request's ``X-Mock-Dialect`` header still wins)::

            apimart_mock.account("legacy-client-key").configure(task_dialect="mj")
        """
        result: dict[str, Any] = _raise_for(self._http.post(f"/accounts/{self.id}", json=settings))["settings"]
        return result


def _matches(body: Any, fields: dict[str, Any]) -> bool:
    return isinstance(body, dict) and all(body.get(k) == v for k, v in fields.items())


class JournalControl:
    """The requests the fake answered, and assertions over them."""

    def __init__(self, http: httpx.Client) -> None:
        self._http = http

    def entries(self, **filters: Any) -> list[dict[str, Any]]:
        """Journal entries, oldest first. Filters: ``since`` (a sequence number, see ``mark()``),
        ``method``, ``path`` (a prefix), ``status``, ``token``, ``refused`` (True/False), ``limit``
        (the newest N)::

            for entry in apimart_mock.journal.entries(method="POST", status=400):
                print(entry["path"], entry["error"]["message"])
        """
        params = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in filters.items() if v is not None}
        return list(_raise_for(self._http.get("/requests", params=params))["requests"])

    def verify(
        self,
        method: str | None = None,
        path: str | None = None,
        *,
        times: int | None = None,
        json_contains: Any = None,
        token: str | None = None,
        status: int | None = None,
        since: int = 0,
    ) -> dict[str, Any]:
        """The verdict ``assert_called`` raises on, without raising: ``ok``, ``matched``,
        ``matches`` (sequence numbers), ``message`` and ``near_misses``::

            if not apimart_mock.journal.verify("GET", "/v1/tasks/*")["ok"]:
                ...
        """
        body: dict[str, Any] = {"since": since}
        for name, value in (("method", method), ("path", path), ("token", token), ("status", status)):
            if value is not None:
                body[name] = value
        if json_contains is not None:
            body["json_contains"] = json_contains
        if times is not None:
            body["times"] = times
        result: dict[str, Any] = _raise_for(self._http.post("/requests/verify", json=body))
        return result

    def assert_called(
        self,
        method: str | None = None,
        path: str | None = None,
        *,
        times: int | None = None,
        json_contains: Any = None,
        token: str | None = None,
        status: int | None = None,
        since: int = 0,
    ) -> list[int]:
        """Fail unless the fake answered requests with this ``method`` whose path matches the glob
        ``path`` (``*`` any characters but ``/``, ``**`` anything), whose JSON body contains
        ``json_contains`` (objects: these keys, recursively; lists: item by item), from ``token``,
        answered with ``status``: exactly ``times`` times, or at least once. The journal keeps bodies
        with long strings cut (``data:`` URLs keep 200 characters): match those by shorter fields.
        The message lists the near misses (same method or path prefix), closest first. Returns the
        matching sequence numbers::

            apimart_mock.journal.assert_called("POST", "/v1/midjourney/generations/video",
                                               times=1, json_contains={"batch_size": 2})
            apimart_mock.journal.assert_called("GET", "/v1/tasks/*")
        """
        verdict = self.verify(
            method, path, times=times, json_contains=json_contains, token=token, status=status, since=since
        )
        if not verdict["ok"]:
            raise AssertionError(verdict["message"])
        return [int(seq) for seq in verdict["matches"]]

    def assert_not_called(
        self,
        method: str | None = None,
        path: str | None = None,
        *,
        json_contains: Any = None,
        token: str | None = None,
        status: int | None = None,
        since: int = 0,
    ) -> None:
        """Fail if the fake answered any such request (``assert_called(..., times=0)``)::

        apimart_mock.journal.assert_not_called("POST", "/v1/midjourney/generations/video",
                                               json_contains={"batch_size": 4})
        """
        self.assert_called(method, path, times=0, json_contains=json_contains, token=token, status=status, since=since)

    def refusals(self, *, since: int = 0, token: str | None = None) -> list[dict[str, Any]]:
        """Every refused request, oldest first, with why: ``seq``, ``method``, ``path``, ``status``,
        ``message`` (the rule it broke), ``type``, ``code`` and ``param`` (the field)::

            assert [(r["status"], r["param"]) for r in apimart_mock.journal.refusals()] == [(400, "image_urls")]
        """
        return [
            {
                "seq": e.get("seq"),
                "time": e.get("time"),
                "method": e.get("method"),
                "path": e.get("path"),
                "status": e.get("status"),
                **{k: (e.get("error") or {}).get(k) for k in ("message", "type", "code", "param")},
            }
            for e in self.entries(since=since, token=token, refused=True)
        ]

    def har(self) -> dict[str, Any]:
        """The journal as a HAR 1.2 document, for browser dev tools and HTTP tooling (``json`` is the module)::

        Path("run.har").write_text(json.dumps(apimart_mock.journal.har()))
        """
        result: dict[str, Any] = _raise_for(self._http.get("/requests.har"))
        return result

    def mark(self) -> int:
        """The newest sequence number: pass it as ``since=`` to see only what came after::

        mark = apimart_mock.journal.mark()
        client.retry_failed_jobs()
        apimart_mock.journal.assert_called("POST", "/v1/midjourney/generations/video", times=2, since=mark)
        """
        entries = self.entries(limit=1)
        return int(entries[-1]["seq"]) if entries else 0

    def submissions(
        self, kind: str = "video", *, token: str | None = None, accepted: bool = True, since: int = 0, **fields: Any
    ) -> list[dict[str, Any]]:
        """Submissions of ``kind`` (video | imagine) whose body has these field values; accepted ones
        only unless ``accepted=False``; idempotent replays left out::

            big = apimart_mock.journal.submissions("video", batch_size=4)
            assert big[0]["task_id"].startswith("task_")
        """
        return [
            e
            for e in self.entries(token=token, since=since)
            if e.get("endpoint") == kind
            and (not accepted or e["status"] == 200)
            and not e.get("replayed")
            and _matches(e.get("body"), fields)
        ]

    def assert_submitted(self, count: int, kind: str = "video", **options: Any) -> None:
        """Fail unless exactly ``count`` accepted submissions of ``kind`` have these field values::

        apimart_mock.journal.assert_submitted(1, batch_size=2)
        apimart_mock.journal.assert_submitted(0, "imagine")
        """
        found = self.submissions(kind, **options)
        if len(found) != count:
            described = ", ".join(f"{k}={v!r}" for k, v in options.items()) or "any"
            raise AssertionError(f"expected {count} accepted {kind} submission(s) with {described}, saw {len(found)}")

    def polls(self, task_id: str | None = None, *, token: str | None = None) -> list[dict[str, Any]]:
        """Every poll (``GET /v1/tasks/{id}`` and ``GET /v1/midjourney/{id}``), of one task or all::

        assert len(apimart_mock.journal.polls(task_id)) <= 10  # the client gave up in time
        """
        return [
            e
            for e in self.entries(token=token)
            if e.get("endpoint") == "poll" and (task_id is None or e.get("task_id") == task_id)
        ]

    def poll_intervals(self, task_id: str | None = None, *, token: str | None = None) -> list[float]:
        """Gaps between consecutive polls of the same task.

        Each gap is the larger of the fake's clock and the wall clock, so a
        client that sleeps and a test that moves the virtual clock are both measured::

            assert min(apimart_mock.journal.poll_intervals(task_id)) >= 2.0
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
        """Fail when any task (or ``task_id``) was polled sooner than ``seconds`` after its previous poll::

        apimart_mock.journal.assert_poll_interval_at_least(3)  # a polite client
        """
        gaps = self.poll_intervals(task_id, **options)
        if gaps and min(gaps) < seconds:
            raise AssertionError(f"a task was polled {min(gaps):.3f} s after the previous poll (limit {seconds} s)")


class LedgerControl:
    """What the run would have cost on the real API; balances."""

    def __init__(self, http: httpx.Client) -> None:
        self._http = http

    def summary(self, token: str | None = None) -> dict[str, Any]:
        """The whole ledger (of one account with ``token``): ``total_spent`` and ``total_spent_usd``,
        per account ``charged``, ``refunded``, ``spent``, ``by_price_key``, ``balance``; every entry::

            summary = apimart_mock.ledger.summary()
            print(f"this test would have cost ${summary['total_spent_usd']:.2f}")
        """
        params = {"token": token} if token else None
        result: dict[str, Any] = _raise_for(self._http.get("/ledger", params=params))
        return result

    def spent(self, token: str | None = None) -> float:
        """Credits spent (charges less refunds), by every account or one::

        assert apimart_mock.ledger.spent(token="t") == 4  # two clips at 2 credits
        """
        summary = self.summary(token)
        if token is None:
            return float(summary["total_spent"])
        account = next(iter(summary["accounts"].values()), None)  # the server picked the token's account
        return float(account["spent"]) if account else 0.0

    def balance(self, token: str) -> dict[str, Any]:
        """What ``GET /v1/balance`` answers the client holding ``token`` (``remain_balance``,
        ``used_balance``, ``unlimited_quota``, in the server's ``--balance-unit``)::

            assert apimart_mock.ledger.balance("t")["unlimited_quota"] is True
        """
        return self._provider_balance("/v1/balance", token)

    def user_balance(self, token: str) -> dict[str, Any]:
        """What ``GET /v1/user/balance`` answers: the whole account's, which differs from ``balance``
        only for keys that share an account (``--shared-accounts``)::

            assert apimart_mock.ledger.user_balance("t")["used_balance"] == 0
        """
        return self._provider_balance("/v1/user/balance", token)

    def _provider_balance(self, path: str, token: str) -> dict[str, Any]:
        root = str(self._http.base_url).rstrip("/").removesuffix("/__mock__")
        answer = self._http.get(root + path, headers={"Authorization": f"Bearer {token}"})
        result: dict[str, Any] = _raise_for(answer)
        return result

    def set_balance(self, token: str, balance: float | None) -> None:
        """Give an account a balance (None: unlimited); a submission that would overdraw it gets 402::

        apimart_mock.ledger.set_balance("t", 1)
        """
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
        self.responses = ResponseControl(http)
        # The requests block_network kept from leaving (``METHOD URL``); the fixtures fail a test at
        # teardown while any remain: clear it when a test provokes one on purpose.
        self.blocked: list[str] = []

    @classmethod
    def connect(cls, base_url: str, *, control_token: str | None = None, timeout: float = 10.0) -> MockControl:
        """The control object of a fake already running at ``base_url`` (a container, another
        process), sending ``Authorization: Bearer <control_token>`` when its server requires one::

            control = MockControl.connect("http://127.0.0.1:8000", control_token=os.environ.get("MOCK_TOKEN"))
            control.faults.once("error_503", endpoint="video")
        """
        base = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {control_token}"} if control_token else None
        return cls(httpx.Client(base_url=base + "/__mock__", timeout=timeout, headers=headers), base)

    def reset(self, token: str | None = None) -> None:
        """Forget tasks, uploads, keys, journal, balances and settings (and fault rules and canned
        responses when no token is given)::

            apimart_mock.reset(token="t")  # one account
            apimart_mock.reset()  # everything, the clock included
        """
        _raise_for(self.http.post("/reset", json={"token": token} if token else {}))

    def task(self, task_id: str) -> dict[str, Any]:
        """A task's internal view: effective video_type, price key, charge, outcome::

        assert apimart_mock.task(task_id)["record"]["video_type"] == "vid_1.1_i2v_start_end_480"
        """
        result: dict[str, Any] = _raise_for(self.http.get(f"/tasks/{task_id}"))
        return result

    def tasks(self, token: str | None = None) -> list[dict[str, Any]]:
        """Every task's internal view (of one account with ``token``), oldest first::

        assert len(apimart_mock.tasks()) == 1
        """
        params = {"token": token} if token else None
        return list(_raise_for(self.http.get("/tasks", params=params))["tasks"])

    def seed_task(
        self,
        token: str,
        *,
        action: str = "VIDEO",
        status: str = "SUCCESS",
        progress: int | None = None,
        fail_reason: str | None = None,
        **options: Any,
    ) -> str:
        """Create a task of ``token``'s account in any state, as if submitted earlier; return its id.
        ``action``: ``VIDEO`` or ``IMAGINE``; ``status``: ``NOT_START``, ``SUBMITTED``,
        ``IN_PROGRESS`` (with ``progress`` 0-99), ``SUCCESS``, ``FAILURE`` (with ``fail_reason``),
        or the envelope's words (``pending``, ``processing``, ``completed``, ``failed``,
        ``cancelled``). Options: ``prompt``, ``batch_size``, ``video_type``, ``speed``,
        ``task_seconds`` (its pace from there), ``ended_seconds_ago``, ``expired=True`` (past
        retention: polls answer 404), ``charged=True`` (the ledger counts it), ``id``::

            parent = apimart_mock.seed_task("t", action="IMAGINE")  # finished: reuse it by task_id
            running = apimart_mock.seed_task("t", status="IN_PROGRESS", progress=40, task_seconds=60)
            failed = apimart_mock.seed_task("t", status="FAILURE", fail_reason="GPU on fire")
        """
        body: dict[str, Any] = {"token": token, "action": action, "status": status, **options}
        if progress is not None:
            body["progress"] = progress
        if fail_reason is not None:
            body["fail_reason"] = fail_reason
        return str(_raise_for(self.http.post("/tasks", json=body))["task_id"])

    def respond(self, method: str | None, path: str, **options: Any) -> dict[str, Any]:
        """A canned response (``responses.add``): answer matching requests as told, before any rule::

        apimart_mock.respond("POST", "/v1/midjourney/generations/video", status=500,
                             json={"code": 500, "data": []}, times=1)
        """
        return self.responses.add(method, path, **options)

    def account(self, token: str) -> AccountControl:
        """One account's own settings, by its API key (or its ``acct_…`` id)::

        apimart_mock.account("legacy-key").configure(task_dialect="mj")
        """
        return AccountControl(self.http, token)

    def export_state(self, *, upload_data: bool = False) -> dict[str, Any]:
        """Every account's tasks, uploads (metadata; bytes too with ``upload_data``), balances and
        settings, the fault rules, canned responses and the clock, as one JSON document::

            snapshot = apimart_mock.export_state()
        """
        params = {"upload_data": "true"} if upload_data else None
        result: dict[str, Any] = _raise_for(self.http.get("/state", params=params))
        return result

    def save_state(self, path: str | os.PathLike[str], *, upload_data: bool = False) -> dict[str, Any]:
        """Write ``export_state()`` to a JSON file (and return it)::

        apimart_mock.save_state(tmp_path / "snapshot.json")
        """
        document = self.export_state(upload_data=upload_data)
        with open(path, "w", encoding="utf-8") as out:
            json.dump(document, out, indent=1)
        return document

    def load_state(self, source: str | os.PathLike[str] | dict[str, Any]) -> dict[str, Any]:
        """Replace the whole state with a snapshot (a document or a JSON file); the journal is
        emptied. When the fake's clock is past the snapshot's, the snapshot's times shift with it,
        so every task shows what it showed then. Returns what was imported::

            apimart_mock.load_state("tests/data/one-finished-imagine.json")
        """
        if isinstance(source, dict):
            document = source
        else:
            with open(source, encoding="utf-8") as file:
                document = json.load(file)
        result: dict[str, Any] = _raise_for(self.http.put("/state", json=document))["imported"]
        return result

    def close(self) -> None:
        """Close the control plane's HTTP client (the fixtures do this for you)::

        control = MockControl.connect("http://127.0.0.1:8000")
        ...
        control.close()
        """
        self.http.close()
