"""The fake's decisions, with no HTTP in them: ``Fake``.

Every route of the web shell reads its request, asks one method of ``Fake``,
and writes the answer. ``Fake`` holds the settings, the store (through its
protocol), the clock and the spec, and decides: who the caller is, whether
the rate limit allows the request, which fault applies, whether a submission
is accepted (the pure rules in ``core.submission``), what its record is, what
a poll sees (``core.lifecycle``), which file a media URL names, what an upload
becomes, what is charged and what is left, and what is past its lifetime.

Methods take plain values and return plain values or raise ``ApiError``. The
facts a request's journal entry should carry (account, task id, fault, ...) are
written into the ``facts`` mapping a caller may pass in. ``Fake`` is as usable
from a benchmark or a unit test as from a route.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import random
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ulid import ULID

from .core import clips, faults, images, ledger, lifecycle, replay, submission
from .core.accounts import account_id, bearer_token
from .core.clock import Clock, ShiftedClock
from .core.errors import (
    APIMART,
    AUTHENTICATION,
    CONFLICT,
    NOT_FOUND,
    PAYMENT_REQUIRED,
    PERMISSION,
    RATE_LIMIT,
    ApiError,
    StoreUnavailable,
    bad_request,
)
from .core.faults import Fault, FaultRule
from .core.media import GRID_PNG, IMAGE_PNGS, clip_file, upload_id_of
from .core.records import CANCEL_OUTCOME, FAILURE_OUTCOME, IMAGINE, NEVER_OUTCOME, VIDEO, TaskRecord, UploadRecord
from .core.spec import Spec
from .settings import Settings
from .store import Overdraft, Store, open_store

__all__ = ["Accepted", "Fake", "MediaFile", "Polled", "Store", "shortened"]

Facts = MutableMapping[str, Any]
DIALECT_HEADER = "X-Mock-Dialect"
DIALECTS = ("unified", "mj")
MAX_TIMESTAMP = 253_402_300_799.0  # 9999-12-31T23:59:59Z: the last second a ULID and a date can both say


@dataclass(frozen=True)
class Accepted:
    """A submission's answer: the task it created, or the one an idempotency key already named."""

    task_id: str
    replayed: bool = False
    fault: Fault | None = None


@dataclass(frozen=True)
class Polled:
    record: TaskRecord
    view: lifecycle.TaskView


@dataclass(frozen=True)
class MediaFile:
    """What a media URL serves: a file on disk or bytes, and its type."""

    content_type: str
    path: Path | None = None
    data: bytes | None = None


class Fake:
    """The fake API's behaviour, over a store and a clock."""

    @classmethod
    def open(
        cls, settings: Settings, *, clock: Clock | None = None, store: Store | None = None, spec: Spec | None = None
    ) -> Fake:
        """The fake for these settings: the store their ``state`` URL names (unless one is handed in)
        and a clock that every worker shares through it (unless one is handed in)."""
        if store is None:
            timeout = settings.store_timeout_seconds
            store = open_store(settings.state, settings.journal_size, settings.journal_max_bytes, timeout=timeout)
        return cls(settings, store, clock or ShiftedClock(state=store), spec)

    def __init__(self, settings: Settings, store: Store, clock: Clock, spec: Spec | None = None) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.spec = spec or Spec()
        self.prices = ledger.load_prices(settings.price_table, settings.prices)
        self.rng = random.Random(settings.seed)
        self.accepted_keys = settings.accepted_keys()
        self._in_flight: set[tuple[str, str]] = set()  # idempotency keys being handled in this process
        self._next_sweep = 0.0
        self.batch_sizes = tuple(self.spec.enum("VideoRequest", "batch_size"))
        self.video_defaults = {
            name: self.spec.default("VideoRequest", name) for name in ("video_type", "motion", "animate_mode")
        }
        self.relax = ("batch_size",) if settings.batch_size_policy == submission.COERCE else ()
        # Compile the validators now, not on the first request.
        self.spec.validator("VideoRequest", relax=self.relax)
        self.spec.validator("ImagineRequest")
        scale = settings.task_seconds if settings.task_seconds != Settings.task_seconds else None  # set, not default
        self.replay = replay.Replay.load(settings.replay, task_seconds=scale) if settings.replay else None

    # -- who is asking ------------------------------------------------------------------

    def account(self, authorization: str | None, facts: Facts | None = None) -> str:
        """'Authorization: Bearer <token>'; each token is its own account. 401 otherwise;
        429 when the account is over its rate limit."""
        token = bearer_token(authorization)
        if token is None:
            # Observed live for a missing key: 401 {"error": {"message": "API key is required ...",
            # "type": "apimart_error"}} (task-api-notes.md, "Errors").
            reason = "" if not authorization else " (Authorization must be 'Bearer <key>')"
            raise ApiError(401, f"API key is required{reason}", type=APIMART, param=None)
        accepted = self.accepted_keys
        if accepted is not None and token not in accepted:
            raise ApiError(401, "invalid API key", type=AUTHENTICATION, param=None)
        account = account_id(token)
        if facts is not None:
            facts["account"] = account
        self._rate_limit(account)
        return account

    def _rate_limit(self, account: str) -> None:
        limit = self.settings.rate_limit_per_minute
        if limit <= 0:
            return
        now = self.clock.now()
        window = int(now // 60)
        if self.store.hit(account, window) > limit:
            retry = max(1, math.ceil((window + 1) * 60 - now))
            raise ApiError(
                429,
                f"Rate limit reached: {limit} requests per minute; retry after {retry} s",
                type=RATE_LIMIT,
                headers={"Retry-After": str(retry)},
            )

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{ULID.from_timestamp(min(max(self.clock.now(), 0.0), MAX_TIMESTAMP))}"

    # -- faults -------------------------------------------------------------------------

    def choose_fault(
        self, header: str | None, endpoint: str, account: str | None, body: dict[str, Any] | None = None
    ) -> Fault | None:
        prompt = body.get("prompt") if body is not None else None
        return faults.choose(
            header, prompt, self.store.fault_rules(), endpoint, account, body, self.rng, self.store.fire_fault_rule
        )

    async def apply_fault(self, fault: Fault | None, facts: Facts | None = None) -> None:
        """A request-level fault's effect: latency (on the injected clock), a refusal, or a wire
        fault noted for the edge to enact. Task-level faults change the record instead."""
        if fault is None:
            return
        if facts is not None:
            facts["scenario"] = fault.name
        delay = faults.delay_seconds(fault, self.rng)
        if delay:
            if facts is not None:
                facts["latency_ms"] = round(delay * 1000, 3)
            await self.clock.sleep(delay)
        error = faults.request_error(fault)
        if error is not None:
            raise error
        if fault.name in ("drop", "truncate") and facts is not None:
            facts["wire_fault"] = fault.name

    # -- submissions --------------------------------------------------------------------

    async def submit(
        self,
        endpoint: str,
        account: str,
        body: dict[str, Any],
        *,
        key: str | None = None,
        fault_header: str | None = None,
        facts: Facts | None = None,
    ) -> Accepted:
        """A submission (``endpoint`` ``video`` or ``imagine``): validated against the spec and
        the rules, charged, stored. A repeated idempotency key answers the first task."""
        facts = {} if facts is None else facts
        header_fault = faults.parse(fault_header) if fault_header is not None else None
        key = submission.idempotency_key(key)
        schema = "VideoRequest" if endpoint == "video" else "ImagineRequest"
        self.spec.check(schema, body, relax=self.relax if endpoint == "video" else ())
        if key is None:
            return await self._submit(endpoint, account, body, None, header_fault, facts)
        fingerprint = submission.body_fingerprint(endpoint, body)
        earlier = self.store.idempotent_task(account, key)
        if earlier is not None:
            self._same_body(earlier, fingerprint)
            await self.apply_fault(header_fault, facts)
            facts.update(task_id=earlier, replayed=True)
            return Accepted(earlier, replayed=True, fault=header_fault)
        if (account, key) in self._in_flight and self.settings.idempotency_conflicts:
            raise ApiError(
                409,
                "a request with this Idempotency-Key is still being handled; retry when it has answered",
                type=CONFLICT,
                param="Idempotency-Key",
                code="idempotency_in_progress",
            )
        self._in_flight.add((account, key))
        try:
            return await self._submit(endpoint, account, body, key, header_fault, facts, fingerprint)
        finally:
            self._in_flight.discard((account, key))

    def _same_body(self, task_id: str, fingerprint: str) -> None:
        """'The same key with a different body → 409 idempotency_key_reused' (task-api-notes.md)."""
        record = self.store.get_task(task_id)
        if not self.settings.idempotency_conflicts:
            return
        if record is not None and record.params.get("fingerprint", fingerprint) != fingerprint:
            raise ApiError(
                409,
                "this Idempotency-Key was used with a different request body",
                type=CONFLICT,
                param="Idempotency-Key",
                code="idempotency_key_reused",
            )

    async def _submit(
        self,
        endpoint: str,
        account: str,
        body: dict[str, Any],
        key: str | None,
        header_fault: Fault | None,
        facts: Facts,
        fingerprint: str | None = None,
    ) -> Accepted:
        fault = header_fault or self.choose_fault(None, endpoint, account, body)
        await self.apply_fault(fault, facts)
        if endpoint == "video":
            job = submission.video_job(
                body,
                policy=self.settings.batch_size_policy,
                allowed_batch_sizes=self.batch_sizes,
                defaults=self.video_defaults,
                parent=self._parent(account, body.get("task_id")),
                max_frame_bytes=self.settings.max_frame_bytes,
                measure_upload=self._upload_size,
            )
            record = self.video_record(account, fault, job)
        else:
            record = self.imagine_record(account, fault, body)
        script = self.replay.match(body, endpoint) if self.replay is not None else None
        if script is not None:  # a recorded submission (--replay DIR) runs as it was recorded
            record = script.apply(record)
        if fingerprint is not None:
            record = dataclasses.replace(record, params={**record.params, "fingerprint": fingerprint})
        return self._accept(record, key, fault, facts)

    def _accept(self, record: TaskRecord, key: str | None, fault: Fault | None, facts: Facts) -> Accepted:
        """Store the task, bind its key and charge it in one atomic step of the store (the balance
        checked against the store's running total, never the account's whole history)."""
        self.sweep()
        limit = self.balance(record.account) if record.charge else None
        winner = self._check_balance(record, self.store.put_task_once(record, key, limit))
        if winner != record.id:
            facts.update(task_id=winner, replayed=True)
            return Accepted(winner, replayed=True, fault=fault)
        facts["task_id"] = record.id
        return Accepted(record.id, fault=fault)

    def balance(self, account: str) -> float | None:
        return self.store.balances().get(account, self.settings.default_balance)

    def _check_balance(self, record: TaskRecord, stored: str | Overdraft) -> str:
        """The task id the store bound, or the provider's 402 when the store refused the charge."""
        if isinstance(stored, Overdraft):
            left = stored.left
            raise ApiError(
                402,
                f"insufficient balance: this task costs {record.charge:g} ({record.price_key} × {record.quantity}), "
                f"{max(left, 0):g} left",
                type=PAYMENT_REQUIRED,
                param=None,
            )
        return stored

    def _new_record(self, account: str, fault: Fault | None, **fields: Any) -> TaskRecord:
        outcome = faults.task_outcome(fault) if fault is not None else None
        if fault is not None and faults.task_params(fault):
            fields["params"] = {**fields.get("params", {}), **faults.task_params(fault)}
        return TaskRecord(
            id=self.new_id("task"),
            account=account,
            created_at=self.clock.now(),
            duration=self.settings.task_seconds,
            outcome=outcome[0] if outcome else "success",
            fail_reason=outcome[1] if outcome else "",
            unit_price=ledger.unit_price(self.prices, fields["price_key"]),
            finish_after_polls=self.settings.finish_after_polls,
            **fields,
        )

    def video_record(self, account: str, fault: Fault | None, job: submission.VideoJob) -> TaskRecord:
        """The task a video submission the rules accepted becomes."""
        return self._new_record(
            account,
            fault,
            action=VIDEO,
            prompt=job.prompt,
            mode="FAST",
            clips=job.batch_size,
            price_key=job.price_key,
            quantity=job.quantity,
            video_type=job.video_type,
            params={
                "requested_video_type": job.requested_video_type,
                "requested_batch_size": job.requested_batch_size,
                "motion": job.motion,
                "animate_mode": job.animate_mode,
                "image_url": shortened(job.image_url),
                "end_url": shortened(job.end_url),
                "parent_task_id": job.parent_task_id,
                "index": job.index,
                "notes": list(job.notes),
                "aspect": self._aspect(job.image_url),
            },
        )

    def _aspect(self, url: str | None) -> str:
        """The clip's frame follows the start frame's aspect ratio, where the fake can read the frame
        (a ``data:`` URL or this server's upload); 16:9 otherwise."""
        info = None
        if url is not None and url[:5].lower() == "data:":
            info = images.from_data_url(url)
        elif url is not None:
            upload_id = upload_id_of(url)
            upload = self.store.get_upload(upload_id) if upload_id else None
            info = images.sniff(upload.data) if upload is not None else None
        return clips.nearest_aspect(*info.display_size) if info is not None else clips.DEFAULT_ASPECT

    def imagine_record(self, account: str, fault: Fault | None, body: dict[str, Any]) -> TaskRecord:
        speed = body.get("speed") or self.spec.default("ImagineRequest", "speed")
        prompt = submission.imagine_prompt(body.get("prompt"))
        for n, url in enumerate(body.get("image_urls") or []):
            submission.frame_within_limit(url, f"image_urls[{n}]", self.settings.max_frame_bytes, self._upload_size)
        return self._new_record(
            account,
            fault,
            action=IMAGINE,
            prompt=prompt,
            mode=str(speed).upper(),
            clips=4,
            price_key=submission.imagine_price_key(speed),
            quantity=1,
            params={"size": body.get("size"), "speed": speed},
        )

    def _parent(self, account: str, task_id: Any) -> submission.ParentTask | None:
        if not isinstance(task_id, str) or not task_id:
            return None
        record = self.store.get_task(task_id)
        if record is None or record.account != account or self.expired(record):
            return None
        state = lifecycle.view(record, self.clock.now())
        return submission.ParentTask(action=record.action, status=state.status.value, prompt=record.prompt)

    def _upload_size(self, url: str) -> int | None:
        upload_id = upload_id_of(url)
        upload = self.store.get_upload(upload_id) if upload_id else None
        return upload.size if upload else None

    def dialect_for(self, authorization: str | None, requested: str | None = None) -> str:
        """The body ``GET /v1/tasks/{id}`` speaks: the request's ``X-Mock-Dialect``, else the account's
        own setting (``POST /__mock__/accounts/…``), else the server's ``--task-dialect``."""
        if requested is not None:
            value = requested.strip().lower()
            if value not in DIALECTS:
                raise bad_request(f"{DIALECT_HEADER} must be unified or mj (got {requested[:40]!r})", DIALECT_HEADER)
            return value
        token = bearer_token(authorization)
        if token is not None:
            chosen = self.account_settings(account_id(token)).get("task_dialect")
            if chosen in DIALECTS:
                return str(chosen)
        return self.settings.task_dialect

    def account_settings(self, account: str) -> dict[str, Any]:
        """Settings one account chose for itself (``POST /__mock__/accounts/{token-or-account}``)."""
        getter = getattr(self.store, "account_settings", None)
        return dict(getter(account)) if getter is not None else {}

    # -- polls --------------------------------------------------------------------------

    def expired(self, record: TaskRecord) -> bool:
        return self.clock.now() >= record.created_at + self.settings.task_retention_seconds

    async def poll(
        self, account: str, task_id: str, *, fault_header: str | None = None, facts: Facts | None = None
    ) -> Polled:
        """What a poll of ``task_id`` by ``account`` sees now (404 unknown or expired, 403 another's)."""
        if facts is not None:
            facts["task_id"] = task_id
        await self.apply_fault(self.choose_fault(fault_header, "poll", account), facts)
        now = self.clock.now()
        record = self.store.get_task(task_id)
        if record is None or self.expired(record):
            raise ApiError(404, f"task {task_id} not found", type=NOT_FOUND, param="task_id")
        if record.account != account:
            raise ApiError(403, f"task {task_id} belongs to another account", type=PERMISSION, param="task_id")
        if record.finish_after_polls is not None:
            record = self.store.update_task(task_id, lambda r: lifecycle.counted_poll(r, now)) or record
        return Polled(record, lifecycle.view(record, now))

    # -- uploads ------------------------------------------------------------------------

    async def upload(
        self,
        account: str,
        filename: str,
        content_type: str,
        data: bytes,
        *,
        fault_header: str | None = None,
        facts: Facts | None = None,
    ) -> UploadRecord:
        """An uploaded image, kept for ``image_urls`` and ``end_url`` (uploads page: at most 20 MB,
        413 beyond; "content_type: detected MIME type", whatever the part declared)."""
        await self.apply_fault(self.choose_fault(fault_header, "upload", account), facts)
        limit = self.settings.max_upload_bytes
        if len(data) > limit:
            raise ApiError(413, f"file is larger than {limit} bytes ({len(data)})", param="file")
        if not data:
            raise bad_request("file is empty", "file")
        info = images.sniff(data)
        if info is None:
            shown = content_type or "unknown"
            raise bad_request(f"file must be a JPEG, PNG, GIF or WebP image (declared {shown}, not one)", "file")
        self._make_room_for(account, len(data))
        upload = UploadRecord(
            id=self.new_id("upl"),
            account=account,
            filename=filename,
            content_type=info.mime,
            size=len(data),
            created_at=self.clock.now(),
            data=data,
        )
        self.store.put_upload(upload)
        return upload

    def _make_room_for(self, account: str, size: int) -> None:
        """Evict expired uploads, then refuse (413) an upload beyond the account's or the server's byte quota."""
        expired_before = self.clock.now() - self.settings.upload_ttl_seconds
        kept = []
        for upload in self.store.upload_records():
            if upload.created_at <= expired_before:
                self.store.delete_upload(upload.id)
            else:
                kept.append(upload)
        mine = sum(u.size for u in kept if u.account == account)
        if mine + size > self.settings.upload_quota_bytes:
            raise ApiError(
                413,
                f"this account keeps {mine} bytes of uploads; {size} more would pass its quota of "
                f"{self.settings.upload_quota_bytes} (uploads expire "
                f"{self.settings.upload_ttl_seconds:g} s after upload)",
                param="file",
            )
        if sum(u.size for u in kept) + size > self.settings.upload_total_bytes:
            raise ApiError(413, "the server's upload storage is full; retry when older uploads expire", param="file")

    # -- media --------------------------------------------------------------------------

    def media_file(self, task_id: str, name: str) -> MediaFile:
        """The file a result URL names (404 unknown or not finished, 410 past its lifetime)."""
        record = self.store.get_task(task_id)
        missing = ApiError(404, f"no media at /media/{task_id}/{name}", type=NOT_FOUND, param=None)
        if record is None or record.outcome in (FAILURE_OUTCOME, NEVER_OUTCOME, CANCEL_OUTCOME):
            raise missing
        now = self.clock.now()
        view = lifecycle.view(record, now)
        if view.status is not lifecycle.Status.SUCCESS:
            raise missing
        if view.finished_at is not None and now >= view.finished_at + self.settings.media_ttl_seconds:
            raise ApiError(410, f"media at /media/{task_id}/{name} has expired", type=NOT_FOUND, param=None)
        stem, _, ext = name.partition(".")
        number = int(stem) if stem.isascii() and stem.isdigit() and len(stem) < 4 else None
        if record.action == IMAGINE:
            if name == "grid.png":
                return MediaFile("image/png", path=GRID_PNG)
            if ext == "png" and number is not None and number < 4:
                return MediaFile("image/png", path=IMAGE_PNGS[number])
            raise missing
        if ext == "mp4" and number is not None and number < record.clips:
            aspect = str(record.params.get("aspect") or clips.DEFAULT_ASPECT)
            path = clip_file(record.video_type, aspect)
            # Every clip's bytes differ per task and index (a box readers skip), as real clips do.
            return MediaFile("video/mp4", data=clips.tagged(_asset(path), task_id, number))
        raise missing

    def upload_file(self, upload_id: str) -> MediaFile:
        """An uploaded file, served until its lifetime ends (then 410, and it is evicted)."""
        upload = self.store.get_upload(upload_id)
        if upload is None:
            raise ApiError(404, f"no upload {upload_id}", type=NOT_FOUND, param=None)
        if self.clock.now() >= upload.created_at + self.settings.upload_ttl_seconds:
            self.store.delete_upload(upload_id)
            raise ApiError(410, f"upload {upload_id} has expired", type=NOT_FOUND, param=None)
        return MediaFile(upload.content_type, data=upload.data)

    # -- housekeeping -------------------------------------------------------------------

    def sweep(self) -> None:
        """Evict tasks nobody can see any more (past retention and past their media's expiry),
        at most once a minute of the clock: memory stays flat however long the server runs."""
        now = self.clock.now()
        if now < self._next_sweep:
            return
        self._next_sweep = now + 60.0
        s = self.settings
        keep = max(s.task_retention_seconds, s.task_seconds + s.media_ttl_seconds)
        self.store.evict_tasks(now - keep)

    def record_request(self, entry: dict[str, Any]) -> None:
        """One journal entry (the edge builds it; the store keeps a bounded ring). The answer has
        gone out already: when the store cannot answer, the entry is lost, not the response."""
        with contextlib.suppress(StoreUnavailable):
            self.store.append_journal(entry)

    def health(self) -> dict[str, str]:
        """Which part is unhealthy: ``{"status": "ok", "store": "ok"}``, or ``"unhealthy"`` and why
        the store cannot answer (within the store's timeout)."""
        try:
            self.store.ping()
        except StoreUnavailable as exc:
            return {"status": "unhealthy", "store": exc.reason}
        return {"status": "ok", "store": "ok"}

    def spend_report(self) -> str:
        """One line on what the run would have cost on the real API."""
        summary = ledger.summary(
            self.store.tasks(), self.clock.now(), self.store.balances(), self.settings.default_balance
        )
        accounts = summary["accounts"]
        tasks = sum(a["tasks"] for a in accounts.values())
        usd = summary["total_spent"] * self.settings.usd_per_credit
        return (
            f"mockserver: {tasks} task(s) from {len(accounts)} account(s); on the real API this run would have cost "
            f"{summary['total_spent']:g} credits (${usd:.2f}) "
            f"(unit prices: {self.settings.price_table or 'packaged defaults'})"
        )

    # -- the control plane --------------------------------------------------------------

    def reset(self, account: str | None = None) -> None:
        """Forget one account's state, or everything (the clock included)."""
        self.store.reset(account)
        reset_clock = getattr(self.clock, "reset", None)
        if account is None and reset_clock is not None:
            reset_clock()

    def fault_rules(self) -> list[FaultRule]:
        return self.store.fault_rules()

    def add_fault_rule(
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
            id=self.new_id("rule"),
            fault=fault,
            endpoint=endpoint,
            account=account,
            fields=fields or {},
            times=times,
            probability=faults.probability(probability),
        )
        self.store.put_fault_rule(rule)
        return rule

    def delete_fault_rule(self, rule_id: str) -> None:
        if not self.store.delete_fault_rule(rule_id):
            raise ApiError(404, f"no rule {rule_id}", type=NOT_FOUND, param="rule_id")

    def clear_fault_rules(self) -> None:
        for rule in self.store.fault_rules():
            self.store.delete_fault_rule(rule.id)

    def journal(
        self,
        since: int = 0,
        *,
        method: str | None = None,
        path: str | None = None,
        account: str | None = None,
        status: int | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        entries = [
            e
            for e in self.store.journal(since)
            if (not method or e["method"] == method.upper())
            and (not path or e["path"].startswith(path))
            and (account is None or e.get("account") == account)
            and (status is None or e.get("status") == status)
        ]
        return entries[-limit:] if limit else entries

    def ledger(self, account: str | None = None) -> dict[str, Any]:
        balances = self.store.balances()
        if account is not None:
            balances = {account: balances.get(account, self.settings.default_balance)}
        summary = ledger.summary(self.store.tasks(account), self.clock.now(), balances, self.settings.default_balance)
        usd = self.settings.usd_per_credit
        return {
            **summary,
            "total_spent_usd": summary["total_spent"] * usd,
            "usd_per_credit": usd,
            "prices": self.prices,
        }

    def set_balance(self, account: str, amount: float | None) -> None:
        if amount is not None and not (math.isfinite(amount) and 0 <= amount <= 1e15):
            raise bad_request("balance must be a finite number from 0 to 1e15, or null", "balance")
        self.store.set_balance(account, amount)

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

    def tasks(
        self,
        account: str | None = None,
        *,
        status: str | None = None,
        newest_first: bool = False,
        offset: int = 0,
        limit: int | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """The internal view of the tasks (filtered, ordered, one page) and how many matched."""
        now = self.clock.now()
        records = self.store.tasks(account)
        if status:
            wanted = status.upper()
            records = [r for r in records if lifecycle.view(r, now).status.value == wanted]
        if newest_first:
            records = records[::-1]
        page = records[offset : offset + limit if limit is not None else None]
        return [self.internal_task(r) for r in page], len(records)

    def task(self, task_id: str) -> dict[str, Any]:
        record = self.store.get_task(task_id)
        if record is None:
            raise ApiError(404, f"task {task_id} not found", type=NOT_FOUND, param="task_id")
        return self.internal_task(record)


@functools.lru_cache(maxsize=32)
def _asset(path: Path) -> bytes:
    """A committed clip's bytes, read once."""
    return path.read_bytes()


def shortened(value: Any, limit: int = 200) -> Any:
    """A copy for the journal in which long strings (data: URLs) keep only their head."""
    if isinstance(value, str):
        return value if len(value) <= limit else f"{value[:limit]}… ({len(value)} characters)"
    if isinstance(value, list):
        return [shortened(v, limit) for v in value]
    if isinstance(value, dict):
        return {k: shortened(v, limit) for k, v in value.items()}
    return value
