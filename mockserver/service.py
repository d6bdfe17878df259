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

import asyncio
import contextlib
import dataclasses
import functools
import math
import random
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from .core import canned, clips, faults, images, jsonio, ledger, lifecycle, replay, submission
from .core.accounts import ACCOUNT_ID, account_id, bearer_token, key_id, shared_account_id
from .core.canned import CannedResponse
from .core.clock import LATEST, Clock, ShiftedClock, loop_running, pause
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
from .core.ids import UlidMaker
from .core.journal import Entry
from .core.media import upload_id_of
from .core.records import (
    IMAGINE,
    SUCCESS_OUTCOME,
    VIDEO,
    TaskRecord,
    UploadRecord,
)
from .core.spec import Spec
from .settings import Settings
from .store import AccountLimit, Overdraft, Store, open_store

__all__ = ["Accepted", "Fake", "Polled", "Store", "shortened"]

Facts = MutableMapping[str, Any]
DIALECT_HEADER = "X-Mock-Dialect"
DIALECTS = ("unified", "mj")
ACCOUNTS_KEPT = 4096  # Authorization headers remembered with their account
EVICT_BATCH = 1000  # tasks one submission evicts at most: eviction never holds a request for long


class Accepted(NamedTuple):
    """A submission's answer: the task it created, or the one an idempotency key already named
    (a named tuple: one is made per submission, at about half a frozen dataclass's cost)."""

    task_id: str
    replayed: bool = False
    fault: Fault | None = None


@dataclass(frozen=True)
class Polled:
    record: TaskRecord
    view: lifecycle.TaskView


class StoreClock:
    """The state of the server's ``ShiftedClock``, which every worker shares through the store: read from
    the store's copy of the shared settings (made current once per request, not at every reading), a
    move noted there at once and written by ``save``: the control plane's, which moves it, or at once
    when the clock is moved from plain Python code (no event loop running in the thread)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.unsaved: tuple[float, float | None] | None = None
        self.saved: tuple[float, float | None] = (0.0, None)  # the state before the unsaved moves

    def clock_state(self) -> tuple[float, float | None]:
        return self.store.shared().clock

    def set_clock_state(self, offset: float, frozen_at: float | None) -> None:
        if self.unsaved is None:
            self.saved = self.store.shared().clock
        self.unsaved = (offset, frozen_at)
        self.store.note_clock(self.unsaved)
        if not loop_running():  # moved from a script or a sync test: no control plane will save it
            asyncio.run(self.save())

    async def save(self) -> None:
        """Write the last move for every worker (nothing when the clock did not move). A write the
        store refuses (503) takes the move back here too: no worker's clock moved."""
        state, self.unsaved = self.unsaved, None
        if state is None:
            return
        try:
            await self.store.set_clock_state(*state)
        except BaseException:
            self.store.note_clock(self.saved)
            raise


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
        if clock is None:
            clock = ShiftedClock(state=StoreClock(store))
        return cls(settings, store, clock, spec)

    def __init__(self, settings: Settings, store: Store, clock: Clock, spec: Spec | None = None) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.spec = spec or Spec.shared()
        self.prices = ledger.load_prices(settings.price_table, settings.prices)
        self.rng = random.Random(settings.seed)
        self.accepted_keys = settings.accepted_keys()
        # A shared key's own account id -> the account it shares (``--shared-accounts``); no key is kept.
        shared = settings.key_accounts()
        self._shared_by_id = {account_id(key): shared_account_id(name) for key, name in shared.items()}
        self._accounts: dict[str | None, str] = {}  # Authorization header -> its account (valid ones only)
        self._in_flight: set[tuple[str, str]] = set()  # idempotency keys being handled in this process
        self._next_sweep = 0.0
        self._default_limit = AccountLimit(settings.default_balance)  # settings never change: made once
        self._ulid = UlidMaker()  # monotonic ids from the fake's clock (the ulid package's policy)
        self.counts_requests = settings.rate_limit_per_minute > 0  # a route need not ``authorize`` otherwise
        self.batch_sizes = tuple(self.spec.enum("VideoRequest", "batch_size"))
        self.video_defaults = {
            name: self.spec.default("VideoRequest", name) for name in ("video_type", "motion", "animate_mode")
        }
        self.relax = ("batch_size",) if settings.batch_size_policy == submission.COERCE else ()
        # Compiled now, not on the first request; a body they refuse is checked again by ``Spec.check``,
        # which names the first rule it breaks.
        self._video_valid: Callable[[Any], bool] = self.spec.validator("VideoRequest", relax=self.relax).is_valid
        self._imagine_valid: Callable[[Any], bool] = self.spec.validator("ImagineRequest").is_valid
        scale = settings.task_seconds if settings.task_seconds != Settings.task_seconds else None  # set, not default
        self.replay = replay.Replay.load(settings.replay, task_seconds=scale) if settings.replay else None

    # -- who is asking ------------------------------------------------------------------

    def account(self, authorization: str | None, facts: Facts | None = None) -> str:
        """'Authorization: Bearer <token>'; each token is its own account. 401 otherwise (the rate
        limit is ``authorize``'s)."""
        account = self._accounts.get(authorization)  # a client sends the same header with every request
        if account is None:
            account = self._account_of(authorization)
        if facts is not None:
            facts["account"] = account
            if self._shared_by_id:
                self._note_key(authorization, facts)
        return account

    def _account_of(self, authorization: str | None) -> str:
        token = bearer_token(authorization)
        if token is None:
            # Observed live for a missing key: 401 {"error": {"message": "API key is required ...",
            # "type": "apimart_error"}} (docs/evidence.md, "a missing key").
            reason = "" if not authorization else " (Authorization must be 'Bearer <key>')"
            raise ApiError(401, f"API key is required{reason}", type=APIMART, param=None)
        accepted = self.accepted_keys
        if accepted is not None and token not in accepted:
            raise ApiError(401, "invalid API key", type=AUTHENTICATION, param=None)
        account = self.account_of_token(token)
        if len(self._accounts) >= ACCOUNTS_KEPT:  # many tokens: keep the memo bounded
            self._accounts.clear()
        self._accounts[authorization] = account  # only headers that name an account are kept
        return account

    def account_of_token(self, token: str) -> str:
        """The account a key stands for: its own, or the one it shares (``--shared-accounts``)."""
        return self.account_alias(account_id(token))

    def account_named(self, name: str) -> str:
        """The account a control request names: an account id (a shared key's own id is its shared
        account's, so a client that hashes its token finds it), or a token."""
        return self.account_alias(name if ACCOUNT_ID.fullmatch(name) else account_id(name))

    def account_alias(self, account: str) -> str:
        """The account an account id stands for: a shared key's own id is its shared account's."""
        return self._shared_by_id.get(account, account) if self._shared_by_id else account

    def _note_key(self, authorization: str | None, facts: Facts) -> None:
        """Which key of a shared account asks (``key_id``): its tasks count towards what it spent."""
        token = bearer_token(authorization)
        if token is not None and account_id(token) in self._shared_by_id:
            facts["key_id"] = key_id(token)

    async def authorize(self, authorization: str | None, facts: Facts | None = None) -> str:
        """``account`` for a route: the rate limit's count is taken without holding the event loop."""
        if self.settings.rate_limit_per_minute <= 0:
            return self.account(authorization, facts)
        account = self.account(authorization, facts)
        now = self.clock.now()
        window = int(now // 60)
        self._over_limit(await self.store.hit(account, window), now, window)
        return account

    async def begin(self) -> None:
        """Once per request, first: make this process's copy of the shared settings (the clock's offset,
        fault rules, canned responses, accounts' settings) current, when the store keeps one."""
        try:  # noqa: SIM105 - on every request: cheaper than contextlib.suppress
            await self.store.refresh()
        except StoreUnavailable:  # the last copy serves; the request's own calls say 503
            pass

    def _over_limit(self, count: int, now: float, window: int) -> None:
        limit = self.settings.rate_limit_per_minute
        if count > limit:
            retry = max(1, math.ceil((window + 1) * 60 - now))
            raise ApiError(
                429,
                f"Rate limit reached: {limit} requests per minute; retry after {retry} s",
                type=RATE_LIMIT,
                headers={"Retry-After": str(retry)},
            )

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{self._ulid(min(max(self.clock.now(), 0.0), LATEST))}"

    # -- faults -------------------------------------------------------------------------

    async def choose_fault(
        self, header: str | None, endpoint: str, account: str | None, body: dict[str, Any] | None = None
    ) -> Fault | None:
        """The fault for a request, the rule's firing counted in the store: ``faults.choose`` walks the
        rules; the first it would fire is fired here, and when it had no firing left the walk goes on after it."""
        if header is not None:
            return faults.parse(header)
        prompt = body.get("prompt") if body is not None else None
        pending = list(self._rules())
        if not pending:
            return faults.from_prompt(prompt)
        while True:
            picked: list[str] = []
            fault = faults.choose(None, prompt, pending, endpoint, account, body, self.rng, _picking(picked))
            if not picked or await self.store.fire_fault_rule(picked[0]):
                return fault
            index = next(n for n, rule in enumerate(pending) if rule.id == picked[0])
            pending = pending[index + 1 :]

    def _rules(self) -> tuple[FaultRule, ...]:
        return self.store.shared().rules

    def canned_possible(self) -> bool:
        """Whether any canned response is kept: when none is, a request need not be asked about them. Read
        from the store's copy of the shared settings, which answers even while the store cannot."""
        return bool(self._canned())

    def _canned(self) -> tuple[CannedResponse, ...]:
        return self.store.shared().canned

    async def apply_fault(self, fault: Fault | None, facts: Facts | None = None) -> None:
        """A request-level fault's effect: latency (on the injected clock), a refusal, or a wire
        fault noted for the edge to enact. Task-level faults change the record instead."""
        if fault is None:
            return
        if facts is not None:
            facts["scenario"] = fault.name
        delay = faults.delay_seconds(fault, self.rng, most=self.settings.max_latency_ms / 1000)
        if delay:
            if facts is not None:
                facts["latency_ms"] = round(delay * 1000, 3)
            await pause(self.clock, delay)
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
        if key is not None:
            key = submission.idempotency_key(key)
        video = endpoint == "video"
        if not (self._video_valid if video else self._imagine_valid)(body):  # compiled once: valid bodies pass here
            self.spec.check("VideoRequest" if video else "ImagineRequest", body, relax=self.relax if video else ())
        if key is None:
            return await self._submit(endpoint, account, body, None, header_fault, facts)
        fingerprint = submission.body_fingerprint(endpoint, body)
        earlier = await self.store.idempotent_task(account, key)
        if earlier is not None:
            self._same_body(await self.store.get_task(earlier), fingerprint)
            await self.apply_fault(header_fault, facts)
            facts.update(task_id=earlier, replayed=True)
            return Accepted(earlier, replayed=True, fault=header_fault)
        if (account, key) in self._in_flight and self.settings.idempotency_conflicts:
            raise self._conflict(
                "a request with this Idempotency-Key is still being handled; retry when it has answered",
                "idempotency_in_progress",
            )
        self._in_flight.add((account, key))
        try:
            return await self._submit(endpoint, account, body, key, header_fault, facts, fingerprint)
        finally:
            self._in_flight.discard((account, key))

    def _same_body(self, record: TaskRecord | None, fingerprint: str) -> None:
        """'The same key with a different body → 409 idempotency_key_reused' (docs/evidence.md, ``Idempotency-Key``)."""
        if not self.settings.idempotency_conflicts:
            return
        if record is not None and record.params.get("fingerprint", fingerprint) != fingerprint:
            raise self._conflict(
                "this Idempotency-Key was used with a different request body", "idempotency_key_reused"
            )

    def _conflict(self, message: str, reason: str) -> ApiError:
        """A 409 whose reason is in the message, and in ``code`` too under ``--conflict-code reason``."""
        code = reason if self.settings.conflict_code == "reason" else None
        return ApiError(409, f"{message} ({reason})", type=CONFLICT, param="Idempotency-Key", code=code)

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
        if header_fault is not None:
            fault: Fault | None = header_fault
        elif self._rules():
            fault = await self.choose_fault(None, endpoint, account, body)
        else:  # no rule to walk (the usual case): the prompt's marker, if any
            fault = faults.from_prompt(body.get("prompt"))
        if endpoint == "imagine":
            fault = faults.screened(fault, body.get("nsfw_check"))
        if fault is not None:
            await self.apply_fault(fault, facts)
        # this server's upload links, read before the rules run (none: no store call)
        uploads = await self._uploads_named(body) if _upload_links(body) else {}
        if endpoint == "video":
            task_id = body.get("task_id")
            parent = await self.store.get_task(task_id) if isinstance(task_id, str) and task_id else None
            job = submission.video_job(
                body,
                policy=self.settings.batch_size_policy,
                allowed_batch_sizes=self.batch_sizes,
                defaults=self.video_defaults,
                parent=self._parent_task(account, parent) if parent is not None else None,
                max_frame_bytes=self.settings.max_frame_bytes,
                measure_upload=functools.partial(_size_in, uploads) if uploads else _not_uploaded,
            )
            record = self.video_record(account, fault, job, uploads)
        else:
            record = self.imagine_record(account, fault, body, uploads)
        if self.settings.data_url_frames == "refuse":
            submission.no_data_urls(body)
        if uploads and self.settings.dead_uploads == "refuse":
            submission.uploads_fetchable(body, uploads, self.clock.now(), self.settings.upload_ttl_seconds)
        script = self.replay.match(body, endpoint) if self.replay is not None else None
        if script is not None:  # a recorded submission (--replay DIR) runs as it was recorded
            record = script.apply(record)
        key_of = facts.get("key_id")  # a key of a shared account: what it spent is told apart (GET /v1/balance)
        if fingerprint is not None or key_of is not None:  # one copy of the record for both
            extra = _kept(fingerprint=fingerprint, key_id=key_of)
            record = dataclasses.replace(record, params={**record.params, **extra})
        return await self._accept(record, key, fault, facts)

    async def _accept(self, record: TaskRecord, key: str | None, fault: Fault | None, facts: Facts) -> Accepted:
        """Store the task, bind its key and charge it in one atomic step of the store (the balance
        checked against the store's running total, never the account's whole history)."""
        if record.created_at >= self._next_sweep:
            await self.sweep()
        limit = self._default_limit if record.charge else None  # the balance, read in the same step
        stored = await self.store.put_task_once(record, key, limit)
        winner = self._check_balance(record, stored)
        if winner != record.id:
            facts.update(task_id=winner, replayed=True)
            return Accepted(winner, replayed=True, fault=fault)
        facts["task_id"] = record.id
        return Accepted(record.id, fault=fault)

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

    def _new_record(
        self,
        account: str,
        fault: Fault | None,
        *,
        action: str,
        prompt: str,
        mode: str,
        clips: int,
        price_key: str,
        quantity: int,
        params: dict[str, Any],
        video_type: str | None = None,
    ) -> TaskRecord:
        outcome, fail_reason = SUCCESS_OUTCOME, ""
        if fault is not None:
            outcome, fail_reason = faults.task_outcome(fault) or (outcome, fail_reason)
            params.update(faults.task_params(fault))
        now = self.clock.now()
        settings = self.settings
        return TaskRecord.of(
            {  # every field, in one mapping: TaskRecord.of makes the record without its __init__
                "id": f"task_{self._ulid(min(max(now, 0.0), LATEST))}",
                "account": account,
                "action": action,
                "created_at": now,
                "duration": settings.task_seconds,
                "prompt": prompt,
                "mode": mode,
                "clips": clips,
                "price_key": price_key,
                "quantity": quantity,
                "video_type": video_type,
                "outcome": outcome,
                "fail_reason": fail_reason,
                "unit_price": ledger.unit_price(self.prices, price_key),
                "finish_after_polls": settings.finish_after_polls,
                "polls": 0,
                "settled_at": None,
                "params": params,
            }
        )

    def video_record(self, account: str, fault: Fault | None, job: submission.VideoJob, uploads: Uploads) -> TaskRecord:
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
                "aspect": self._aspect(job.image_url, uploads),
            },
        )

    def _aspect(self, url: str | None, uploads: Uploads) -> str:
        """The clip's frame follows the start frame's aspect ratio, where the fake can read the frame
        (a ``data:`` URL or this server's upload, as read already in ``uploads``); 16:9 otherwise."""
        info = None
        if url is not None and url[:5].lower() == "data:":
            info = images.from_data_url(url)
        elif url is not None:
            upload = uploads.get(url)
            info = images.sniff(upload.data) if upload is not None else None
        return clips.nearest_aspect(*info.display_size) if info is not None else clips.DEFAULT_ASPECT

    def imagine_record(self, account: str, fault: Fault | None, body: dict[str, Any], uploads: Uploads) -> TaskRecord:
        speed = body.get("speed") or self.spec.default("ImagineRequest", "speed")
        prompt = submission.imagine_prompt(body.get("prompt"))
        metadata = submission.imagine_metadata(body.get("metadata"))
        measure = functools.partial(_size_in, uploads)
        for n, url in enumerate(body.get("image_urls") or []):
            submission.frame_within_limit(url, f"image_urls[{n}]", self.settings.max_frame_bytes, measure)
        return self._new_record(
            account,
            fault,
            action=IMAGINE,
            prompt=prompt,
            mode=str(speed).upper(),
            clips=4,
            price_key=submission.imagine_price_key(speed),
            quantity=1,
            params={"size": body.get("size"), "speed": speed, **_kept(metadata=metadata)},
        )

    def _parent_task(self, account: str, record: TaskRecord | None) -> submission.ParentTask | None:
        if record is None or record.account != account or self.expired(record):
            return None
        state = lifecycle.view(record, self.clock.now())
        return submission.ParentTask(action=record.action, status=state.status.value, prompt=record.prompt)

    async def _uploads_named(self, body: Mapping[str, Any]) -> Uploads:
        """The uploads of this server that a submission's frames link to (none: no store call)."""
        found: Uploads = {}
        for _, url in submission.frame_urls(body):
            upload_id = upload_id_of(url)
            if upload_id is not None and url not in found:
                found[url] = await self.store.get_upload(upload_id)
        return found

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
            chosen = self.account_settings(self.account_of_token(token)).get("task_dialect")
            if chosen in DIALECTS:
                return str(chosen)
        return self.settings.task_dialect

    def account_settings(self, account: str) -> dict[str, Any]:
        """Settings one account chose for itself (``POST /__mock__/accounts/{token-or-account}``)."""
        return dict(self.store.shared().accounts.get(account) or {})

    # -- polls --------------------------------------------------------------------------

    def expired(self, record: TaskRecord) -> bool:
        return self.clock.now() >= record.created_at + self.settings.task_retention_seconds

    async def poll(
        self, account: str, task_id: str, *, fault_header: str | None = None, facts: Facts | None = None
    ) -> Polled:
        """What a poll of ``task_id`` by ``account`` sees now (404 unknown or expired, 403 another's)."""
        if facts is not None:
            facts["task_id"] = task_id
        if fault_header is not None or self._rules():
            fault = await self.choose_fault(fault_header, "poll", account)
            if fault is not None:
                await self.apply_fault(fault, facts)
        now = self.clock.now()
        record = await self.store.get_task(task_id)
        if record is None or self.expired(record):
            raise ApiError(404, f"task {task_id} not found", type=NOT_FOUND, param="task_id")
        if record.account != account:
            raise ApiError(403, f"task {task_id} belongs to another account", type=PERMISSION, param="task_id")
        if record.finish_after_polls is not None:
            record = await self.store.update_task(task_id, lambda r: lifecycle.counted_poll(r, now)) or record
        return Polled(record, lifecycle.view(record, now))

    # -- housekeeping -------------------------------------------------------------------

    async def sweep(self) -> None:
        """Evict tasks nobody can see any more (past retention and past their media's expiry), at most
        once a minute of the clock and ``EVICT_BATCH`` tasks per submission (the next one goes on while
        there are more): memory stays flat however long the server runs."""
        now = self.clock.now()
        if now < self._next_sweep:
            return
        self._next_sweep = now + 60.0
        if await self.store.evict_tasks(now - self._kept_for(), EVICT_BATCH) >= EVICT_BATCH:
            self._next_sweep = now

    def _kept_for(self) -> float:
        s = self.settings
        # A poll hands out a result URL only while the record is kept, so no URL outlives this in either
        # reading (a task may end long after created + task_seconds: polls to finish, a replay's times).
        return max(s.task_retention_seconds, s.task_seconds) + s.media_ttl_seconds

    def append_entry(self, entry: Entry) -> None:
        """One journal entry (the edge makes it; the store keeps a bounded ring; it is encoded when first
        read or written out). The answer has gone out already: when the store cannot answer, the entry is
        lost, not the response."""
        try:  # noqa: SIM105 - on every request: cheaper than contextlib.suppress
            self.store.append_entry(entry)
        except StoreUnavailable:
            pass

    async def save_clock(self) -> None:
        """The clock moved (the control plane moved it): write its state for every worker."""
        state = getattr(self.clock, "state", None)
        if isinstance(state, StoreClock):
            await state.save()

    async def health(self) -> dict[str, str]:
        """Which part is unhealthy: ``{"status": "ok", "store": "ok"}``, or ``"unhealthy"`` and why
        the store cannot answer (within the store's timeout)."""
        try:
            await self.store.ping()
        except StoreUnavailable as exc:
            return {"status": "unhealthy", "store": exc.reason}
        return {"status": "ok", "store": "ok"}

    async def balance(self, account: str) -> tuple[float | None, float]:
        """What ``account`` has left (None: unlimited) and has spent, from the store's running totals."""
        limit = (await self.store.balances()).get(account, self.settings.default_balance)
        spent = (await self.store.spending(account, self.clock.now())).spent
        return (None if limit is None else limit - spent), spent

    async def key_spent(self, account: str, key: str) -> float:
        """What one key of a shared account spent: its tasks' charges less their refunds."""
        records = await self.store.tasks(account)
        return ledger.spent((r for r in records if r.params.get("key_id") == key), self.clock.now())

    # -- canned responses (the hot path's matching) -------------------------------------

    async def canned_response(
        self,
        method: str,
        path: str,
        authorization: Callable[[], str | None],
        read_body: Callable[[], Awaitable[bytes]],
        facts: Facts | None = None,
    ) -> CannedResponse | None:
        """The canned response that answers this request instead of the fake, if any (one store read
        when there are none; the caller's ``Authorization`` header and body are asked for only when
        a response matches the method and path, the body only when one names body fields or
        answers). Counted in the store: it answers as often as it was told."""
        responses = self._canned()
        if not responses:
            return None
        routed = [r for r in responses if not r.spent() and r.matches_route(method, path)]
        if not routed:
            return None
        token = bearer_token(authorization())
        account = self.account_of_token(token) if token is not None else None
        needs_body = any(r.needs_body for r in routed)
        body = await _json_or_none(read_body) if needs_body else None
        for response in canned.answering(routed, method, path, account, body):
            if await self.store.fire_canned_response(response.id):
                if not needs_body:  # read now for the journal (and so that the connection stays usable)
                    body = await _json_or_none(read_body)
                if facts is not None:
                    facts["canned"] = response.id
                    if account is not None:
                        facts["account"] = account
                    if body is not None:
                        facts["body"] = shortened(body)
                return dataclasses.replace(response, fired=response.fired + 1)
        return None


async def _json_or_none(read_body: Callable[[], Awaitable[bytes]]) -> Any:
    """The request's body as JSON, or None when it is empty or not JSON."""
    raw = await read_body()
    with contextlib.suppress(ApiError, UnicodeDecodeError):
        return jsonio.loads(raw) if raw.strip() else None
    return None


Uploads = dict[str, UploadRecord | None]  # a submission's upload links -> the uploads they name


def _not_uploaded(url: str) -> None:
    """The upload size measure of a submission that links to none of this server's uploads."""
    return None


def _size_in(uploads: Uploads, url: str) -> int | None:
    upload = uploads.get(url)
    return upload.size if upload is not None else None


def _upload_links(body: Mapping[str, Any]) -> bool:
    """Whether a submission's frames may link to this server's uploads (the substring they all hold)."""
    urls = body.get("image_urls")
    end = body.get("end_url")
    found = isinstance(end, str) and "/media/uploads/" in end
    return found or (isinstance(urls, list) and any(isinstance(u, str) and "/media/uploads/" in u for u in urls))


def _kept(**values: Any) -> dict[str, Any]:
    """The values that were given (a task's params keep no nulls)."""
    return {name: value for name, value in values.items() if value is not None}


def _picking(picked: list[str]) -> Callable[[str], bool]:
    """A ``fire`` for ``faults.choose`` that notes the rule it would fire, and lets it."""

    def pick(rule_id: str) -> bool:
        picked.append(rule_id)
        return True

    return pick


def shortened(value: Any, limit: int = 200) -> Any:
    """A copy for the journal in which long strings (data: URLs) keep only their head."""
    if isinstance(value, str):
        return value if len(value) <= limit else f"{value[:limit]}… ({len(value)} characters)"
    if isinstance(value, list):
        return [shortened(v, limit) for v in value]
    if isinstance(value, dict):
        return {k: shortened(v, limit) for k, v in value.items()}
    return value
