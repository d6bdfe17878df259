"""The control plane: what a test or the dashboard does to the fake, apart from the provider's API.

Reset, fault rules, canned responses, the journal and its verification, the ledger, the task
listing, seeding, snapshots of the whole state and per-account settings. It works on the provider
service's store and clock (``service.Fake``) and, like it, knows nothing of HTTP: ``web/control/``
is its HTTP face.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from .core import faults, jsonio, ledger, lifecycle, matching, seeding, submission
from .core.canned import CannedResponse
from .core.errors import CONFLICT, NOT_FOUND, ApiError, bad_request
from .core.faults import Fault, FaultRule
from .core.imports import check as check_state
from .core.imports import upload_type
from .core.records import CANCEL_OUTCOME, FAILURE_OUTCOME, IMAGINE, VIDEO, TaskRecord, UploadRecord
from .service import DIALECTS, Fake
from .store import StateImage

STATUS_CHUNK = 2000  # tasks read at a time when a listing filters by status
ACCOUNT_SETTINGS: dict[str, tuple[str, ...]] = {"task_dialect": DIALECTS}  # what an account may choose, and how
STATE_VERSION = 1  # of the document GET /__mock__/state exports and PUT takes back
HOP_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})  # a canned response cannot set these


class ControlPlane:
    """The control plane over one provider service (``Fake``)."""

    def __init__(self, fake: Fake) -> None:
        self.fake = fake
        self.store = fake.store
        self.clock = fake.clock
        self.settings = fake.settings

    async def reset(self, account: str | None = None) -> None:
        """Forget one account's state, or everything (the clock included)."""
        await self.store.reset(account)
        reset_clock = getattr(self.clock, "reset", None)
        if account is None and reset_clock is not None:
            reset_clock()
            await self.fake.save_clock()

    async def save_clock(self) -> None:
        """The clock moved: its state written for every worker (``service.StoreClock``)."""
        await self.fake.save_clock()

    async def fault_rules(self) -> list[FaultRule]:
        return await self.store.fault_rules()

    async def add_fault_rule(
        self,
        name: str,
        params: dict[str, Any] | None = None,
        *,
        endpoint: str = "any",
        account: str | None = None,
        fields: dict[str, Any] | None = None,
        times: int | None = None,
        probability: Any = 1.0,
    ) -> FaultRule:
        fault = faults.validated(
            faults.Fault(name.lower(), {str(k).lower(): str(v) for k, v in (params or {}).items()}), "scenario"
        )
        if fault.name not in faults.CATALOGUE:  # pragma: no cover - validated() reads the catalogue first
            raise bad_request(f"unknown fault {name!r}", "scenario")
        rule = FaultRule(
            id=self.fake.new_id("rule"),
            fault=fault,
            endpoint=endpoint,
            account=account,
            fields=fields or {},
            times=times,
            probability=faults.probability(probability),
        )
        await self.store.put_fault_rule(rule)
        return rule

    async def delete_fault_rule(self, rule_id: str) -> None:
        if not await self.store.delete_fault_rule(rule_id):
            raise ApiError(404, f"no rule {rule_id}", type=NOT_FOUND, param="rule_id")

    async def clear_fault_rules(self) -> None:
        for rule in await self.store.fault_rules():
            await self.store.delete_fault_rule(rule.id)

    async def journal(
        self,
        since: int = 0,
        *,
        method: str | None = None,
        path: str | None = None,
        account: str | None = None,
        status: int | None = None,
        limit: int | None = None,
        refused: bool | None = None,
    ) -> list[dict[str, Any]]:
        entries = [
            e
            for e in await self.store.journal(since)
            if (not method or e["method"] == method.upper())
            and (not path or e["path"].startswith(path))
            and (account is None or e.get("account") == account)
            and (status is None or e.get("status") == status)
            and (refused is None or ("error" in e) == refused)
        ]
        return entries[-limit:] if limit else entries

    async def ledger(self, account: str | None = None, *, offset: int = 0, limit: int | None = None) -> dict[str, Any]:
        """What each account spent, and the entries (one page of them with ``limit``). The tasks are
        read a page at a time and let go of: the entries held are those of the page."""
        balances = await self.store.balances()
        if account is not None:
            balances = {account: balances.get(account, self.settings.default_balance)}
        summary = await self._summary(account, balances, offset=offset, limit=limit)
        usd = self.settings.usd_per_credit
        return {
            **summary,
            "total_spent_usd": summary["total_spent"] * usd,
            "usd_per_credit": usd,
            "prices": self.fake.prices,
        }

    async def _summary(
        self, account: str | None, balances: Mapping[str, float | None], *, offset: int = 0, limit: int | None = None
    ) -> dict[str, Any]:
        """``ledger.summary`` of every task (of ``account``), read from the store ``STATUS_CHUNK`` at a
        time and let go of: the entries held are those of the page."""
        found = ledger.Summary(self.clock.now(), offset=offset, limit=limit)
        start = 0
        while True:
            chunk = await self.store.task_page(account, offset=start, limit=STATUS_CHUNK)
            found.add(chunk)
            if len(chunk) < STATUS_CHUNK:
                return found.result(balances, self.settings.default_balance)
            start += STATUS_CHUNK

    async def set_balance(self, account: str, amount: float | None) -> None:
        if amount is not None and not (math.isfinite(amount) and 0 <= amount <= 1e15):
            raise bad_request("balance must be a finite number from 0 to 1e15, or null", "balance")
        await self.store.set_balance(account, amount)

    def internal_task(self, record: TaskRecord) -> dict[str, Any]:
        view = lifecycle.view(record, self.clock.now())
        return {
            "record": {**record.to_dict(), "charge": record.charge},
            "view": {
                "status": view.status.value,
                "progress": view.progress,
                "started_at": view.started_at,
                "finished_at": view.finished_at,
            },
        }

    async def tasks(
        self,
        account: str | None = None,
        *,
        status: str | None = None,
        newest_first: bool = False,
        offset: int = 0,
        limit: int | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """The internal view of the tasks (filtered, ordered, one page) and how many matched. The store
        reads the page only (and keeps the count). A status is worked out from the clock, so with one
        every task is looked at to count the matches, a chunk at a time, none kept but the page's."""
        if not status:
            page = await self.store.task_page(account, newest_first=newest_first, offset=offset, limit=limit)
            return [self.internal_task(r) for r in page], await self.store.task_count(account)
        now = self.clock.now()
        wanted = status.upper()
        end = None if limit is None else offset + limit
        matched, kept, start = 0, [], 0
        while True:
            chunk = await self.store.task_page(account, newest_first=newest_first, offset=start, limit=STATUS_CHUNK)
            for record in chunk:
                if lifecycle.view(record, now).status.value == wanted:
                    if matched >= offset and (end is None or matched < end):
                        kept.append(record)
                    matched += 1
            if len(chunk) < STATUS_CHUNK:
                return [self.internal_task(r) for r in kept], matched
            start += STATUS_CHUNK

    async def task(self, task_id: str) -> dict[str, Any]:
        record = await self.store.get_task(task_id)
        if record is None:
            raise ApiError(404, f"task {task_id} not found", type=NOT_FOUND, param="task_id")
        return self.internal_task(record)

    async def rule_listing(self) -> list[FaultRule]:
        """The fault rules in force, each with how often it has fired."""
        counts = await self.store.fault_rule_counts()
        return [dataclasses.replace(r, fired=counts.get(r.id, 0)) for r in await self.store.fault_rules()]

    async def verify(
        self, expectation: matching.Expectation, times: int | None = None, since: int = 0
    ) -> dict[str, Any]:
        """Whether the journal (after ``since``) holds the requests ``expectation`` describes, ``times``
        times (None: at least once); with the near misses when it does not (``core.matching``)."""
        if times is not None and times < 0:
            raise bad_request("times must be 0 or more", "times")
        return matching.verification(expectation, await self.store.journal(since), times)

    async def seed_task(
        self,
        account: str,
        *,
        action: str = VIDEO,
        status: str = "SUCCESS",
        progress: int | None = None,
        fail_reason: str | None = None,
        prompt: str | None = None,
        batch_size: int = 1,
        video_type: str | None = None,
        speed: str | None = None,
        task_seconds: float | None = None,
        ended_seconds_ago: float = 0.0,
        expired: bool = False,
        charged: bool = False,
        task_id: str | None = None,
    ) -> TaskRecord:
        """A task of ``account`` stored as if it had been submitted earlier, showing ``status`` (either
        vocabulary) now, at ``progress`` while IN_PROGRESS; from there it runs on at its pace
        (``task_seconds``; the server's, or 60 s when that is 0 and the task is not final yet)."""
        wanted, outcome = self._seeded_status(status, expired, fail_reason)
        duration = task_seconds if task_seconds is not None else self.settings.task_seconds
        if not wanted.final and duration <= 0:
            duration = 60.0
        ago = ended_seconds_ago + (self.settings.task_retention_seconds + 1.0 if expired else 0.0)
        try:
            timing = seeding.timing(wanted, self.clock.now(), duration, progress, ago)
        except ValueError as exc:
            raise bad_request(str(exc), "progress" if progress is not None else "ended_seconds_ago") from None
        if task_id is not None and await self.store.get_task(task_id) is not None:
            raise ApiError(409, f"a task {task_id} exists already", type=CONFLICT, param="id")
        params: dict[str, Any] = {"seeded": True}
        if timing.not_start_seconds:
            params["not_start_seconds"] = timing.not_start_seconds
        fields = self._seeded_kind(action, speed, batch_size, video_type, params)
        record = TaskRecord(
            id=task_id or self.fake.new_id("task"),
            account=account,
            action=IMAGINE if action == IMAGINE else VIDEO,
            created_at=timing.created_at,
            duration=timing.duration,
            prompt=prompt if prompt is not None else ("a seeded imagine task" if action == IMAGINE else ""),
            outcome=outcome,
            fail_reason=_seeded_reason(outcome, fail_reason),
            unit_price=ledger.unit_price(self.fake.prices, fields["price_key"]) if charged else 0.0,
            **fields,
        )
        await self.store.put_task(record)
        return record

    @staticmethod
    def _seeded_status(status: str, expired: bool, fail_reason: str | None) -> tuple[lifecycle.Status, str]:
        """The lifecycle status and outcome a seeded ``status`` names, or a 400 for what cannot be."""
        if status not in seeding.STATUSES:
            raise bad_request(f"status must be one of {', '.join(seeding.STATUSES)} (got {status!r})", "status")
        wanted, outcome = seeding.STATUSES[status]
        if expired and not wanted.final:
            raise bad_request("expired applies to a final task (SUCCESS or FAILURE)", "expired")
        if fail_reason is not None and wanted is not lifecycle.Status.FAILURE:
            raise bad_request("fail_reason applies to a FAILURE", "fail_reason")
        return wanted, outcome

    def _seeded_kind(
        self, action: str, speed: str | None, batch_size: int, video_type: str | None, params: dict[str, Any]
    ) -> dict[str, Any]:
        """A seeded task's fields that depend on what it is: an imagine (its speed) or a video (its tier
        and batch), each checked against the spec as a submission's would be."""
        spec = self.fake.spec
        for name, value, schema in (("video_type", video_type, "VideoRequest"), ("speed", speed, "ImagineRequest")):
            allowed = spec.enum(schema, name)
            if value is not None and value not in allowed:
                raise bad_request(f"{name} must be one of {', '.join(allowed)} (got {value!r})", name)
        if action == IMAGINE:
            chosen = speed or str(spec.default("ImagineRequest", "speed"))
            return {
                "mode": chosen.upper(),
                "clips": 4,
                "price_key": submission.imagine_price_key(chosen),
                "quantity": 1,
                "video_type": None,
                "params": {**params, "speed": chosen},
            }
        if batch_size not in self.fake.batch_sizes:
            raise bad_request(f"batch_size must be one of {', '.join(map(str, self.fake.batch_sizes))}", "batch_size")
        kind = video_type or str(self.fake.video_defaults["video_type"])
        return {
            "mode": "FAST",
            "clips": batch_size,
            "price_key": submission.price_key(kind),
            "quantity": batch_size,
            "video_type": kind,
            "params": {**params, "requested_video_type": kind, "requested_batch_size": batch_size, "notes": []},
        }

    async def export_state(self, *, upload_data: bool = False) -> dict[str, Any]:
        """Every account's tasks, uploads (metadata; their bytes too with ``upload_data``), balances,
        settings, the fault rules and canned responses (with their counts) and the clock, as one
        JSON document ``import_state`` takes back."""
        uploads = []
        for upload in await self.store.upload_records():
            meta = {k: getattr(upload, k) for k in ("id", "account", "filename", "content_type", "size", "created_at")}
            if upload_data:
                full = await self.store.get_upload(upload.id)
                meta["data"] = base64.b64encode(full.data if full is not None else b"").decode("ascii")
            uploads.append(meta)
        return {
            "version": STATE_VERSION,
            "clock": {"now": self.clock.now(), "frozen": bool(getattr(self.clock, "frozen", True))},
            "tasks": [record.to_dict() for record in await self.store.tasks()],
            "uploads": uploads,
            "balances": await self.store.balances(),
            "account_settings": await self.store.all_account_settings(),
            "fault_rules": [rule.to_dict() for rule in await self.rule_listing()],
            "canned_responses": [response.to_dict() for response in await self.store.canned_responses()],
        }

    async def import_state(self, document: Mapping[str, Any]) -> dict[str, Any]:
        """Replace the whole state (the journal is emptied) with a document ``export_state`` made.
        The clock moves forward to the document's time when it can; when it is past it already
        (a clock never goes back), every time in the document is shifted by the difference, so
        each task shows what it showed when the document was made."""
        if document.get("version", STATE_VERSION) != STATE_VERSION:
            raise bad_request(f"version must be {STATE_VERSION}", "version")
        check_state(document)  # the whole document first: a refusal leaves the state untouched
        records, uploads, rules, responses = [], [], [], []
        clock = document.get("clock") or {}
        shift = self._shift_for(clock.get("now"))  # the clock moves only once every item is read
        for n, data in enumerate(document.get("tasks") or []):
            try:
                record = TaskRecord.from_dict(dict(data))
            except TypeError as exc:
                raise bad_request(f"tasks[{n}] is not a task record: {exc}", f"tasks[{n}]") from None
            settled = None if record.settled_at is None else record.settled_at + shift
            records.append(dataclasses.replace(record, created_at=record.created_at + shift, settled_at=settled))
        for n, meta in enumerate(document.get("uploads") or []):
            try:
                data = base64.b64decode(meta.get("data") or "", validate=True)
            except (binascii.Error, ValueError):
                raise bad_request(f"uploads[{n}].data is not base64", f"uploads[{n}].data") from None
            fields = {k: v for k, v in meta.items() if k != "data"}
            fields["created_at"] = float(fields["created_at"]) + shift
            fields["content_type"] = upload_type(meta, f"uploads[{n}]")
            uploads.append(UploadRecord(**fields, data=data))
        for n, data in enumerate(document.get("fault_rules") or []):
            rule = FaultRule.from_dict(data)
            fault = Fault(rule.fault.name.lower(), {str(k).lower(): str(v) for k, v in rule.fault.params.items()})
            rules.append(dataclasses.replace(rule, fault=faults.validated(fault, f"fault_rules[{n}].scenario")))
        for data in document.get("canned_responses") or []:
            responses.append(CannedResponse.from_dict(data))
        settings = document.get("account_settings") or {}
        image = StateImage(
            tasks=records,
            uploads=uploads,
            balances=dict(document.get("balances") or {}),
            account_settings={a: {k: v for k, v in values.items() if v is not None} for a, values in settings.items()},
            fault_rules=rules,
            canned_responses=responses,
        )
        await self.store.replace_state(image)  # one atomic step: a store failing part way leaves the old state
        # The clock moves once the state is in place (check_state bounded clock.now: the move is not refused).
        self._adopt_clock(clock.get("now"), clock.get("frozen"), shift)
        await self.fake.save_clock()
        return {
            "tasks": len(records),
            "uploads": len(uploads),
            "fault_rules": len(rules),
            "canned_responses": len(responses),
            "shifted_by": shift,
            "now": self.clock.now(),
        }

    def _shift_for(self, when: Any) -> float:
        """How far the document's times shift: 0 when the clock can move to ``when`` (forward only)."""
        if not isinstance(when, int | float) or isinstance(when, bool):
            return 0.0
        now = self.clock.now()
        return 0.0 if when >= now and hasattr(self.clock, "set") else now - float(when)

    def _adopt_clock(self, when: Any, frozen: Any, shift: float) -> None:
        """Move the clock to ``when`` unless the document's times are shifted instead; freeze or unfreeze it."""
        if shift == 0.0 and isinstance(when, int | float) and not isinstance(when, bool) and when > self.clock.now():
            try:
                self.clock.set(float(when))  # type: ignore[attr-defined]
            except (ValueError, OverflowError) as exc:
                raise bad_request(str(exc), "clock.now") from None
        if frozen is True and hasattr(self.clock, "freeze"):
            self.clock.freeze()
        elif frozen is False and hasattr(self.clock, "unfreeze"):
            self.clock.unfreeze()

    async def add_canned_response(self, spec: Mapping[str, Any], account: str | None = None) -> CannedResponse:
        """A canned response from its control-plane body (validated by ``spec/control.yaml``)."""
        path = str(spec["path"])
        if not path.startswith("/"):
            raise bad_request("path must start with /", "path")
        if "body" in spec and spec.get("text") is not None:
            raise bad_request("give body (JSON) or text, not both", "text")
        headers = {str(k).lower(): str(v) for k, v in (spec.get("headers") or {}).items()}
        framing = sorted(set(headers) & HOP_HEADERS)
        if framing:
            raise bad_request(f"headers: {', '.join(framing)} is set by the server", "headers")
        for name in ("body", "fields"):
            if name in spec:
                jsonio.check_writable(spec[name])
        response = CannedResponse.from_dict(
            {
                **{k: v for k, v in spec.items() if k in ("method", "fields", "status", "body", "text", "times")},
                "id": self.fake.new_id("resp"),
                "path": path,
                "account": account,
                "headers": headers,
            }
        )
        await self.store.put_canned_response(response)
        return response

    async def canned_listing(self) -> list[CannedResponse]:
        return await self.store.canned_responses()

    async def delete_canned_response(self, response_id: str) -> None:
        if not await self.store.delete_canned_response(response_id):
            raise ApiError(404, f"no canned response {response_id}", type=NOT_FOUND, param="response_id")

    async def clear_canned_responses(self) -> None:
        for response in await self.store.canned_responses():
            await self.store.delete_canned_response(response.id)

    async def configure_account(self, account: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``changes`` into the account's settings (a null value removes one); the settings now."""
        current = await self.store.account_settings(account)
        for name, value in changes.items():
            if name not in ACCOUNT_SETTINGS:
                raise bad_request(f"unknown account setting {name!r}; known: {', '.join(ACCOUNT_SETTINGS)}", name)
            if value is None:
                current.pop(name, None)
            elif value not in ACCOUNT_SETTINGS[name]:
                raise bad_request(f"{name} must be one of {', '.join(ACCOUNT_SETTINGS[name])}", name)
            else:
                current[name] = value
        await self.store.set_account_settings(account, current)
        return current

    async def spend_report(self) -> str:
        """One line on what the run would have cost on the real API."""
        summary = await self._summary(None, await self.store.balances(), limit=0)
        accounts = summary["accounts"]
        tasks = sum(a["tasks"] for a in accounts.values())
        usd = summary["total_spent"] * self.settings.usd_per_credit
        return (
            f"mockserver: {tasks} task(s) from {len(accounts)} account(s); on the real API this run would have cost "
            f"{summary['total_spent']:g} credits (${usd:.2f}) "
            f"(unit prices: {self.settings.price_table or 'packaged defaults'})"
        )


def _seeded_reason(outcome: str, fail_reason: str | None) -> str:
    """A seeded task's failure reason: the one given, or what a failed or cancelled task says."""
    if outcome == FAILURE_OUTCOME:
        return fail_reason or "Task failed"
    return (fail_reason or faults.CANCEL_REASON) if outcome == CANCEL_OUTCOME else ""
