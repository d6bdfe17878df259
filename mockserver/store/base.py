"""The ``Store`` protocol: everything the fake keeps goes through these methods.

Tasks, idempotency keys and uploads; the request journal (a bounded ring);
fault rules (and how often each fired) and canned responses; rate-limit windows;
account balances, what each account spent, and each account's own settings.
Implementations must make ``put_task_once``, ``update_task``, ``fire_fault_rule``,
``fire_canned_response`` and ``hit`` atomic (one transaction, one Lua script, or under one lock).

**One async interface.** Every call is a coroutine, so no call holds the event loop longer than a
short query: the memory store answers at once (a dict lookup, no hand-off), SQLite reads at once and
commits writes in groups on the loop (``sqlite/writer.py``), Redis pipelines every command of one turn
of the loop (``redis/client.py``). ``append_entry`` alone is not awaited: a journal entry is kept after
the answer went out, and a store may write entries in batches.

**Shared settings.** The clock's offset, the fault rules, the canned responses and the accounts'
settings are read by every request and changed rarely (by the control plane of any worker). A store
that would pay a query or a round trip for each read keeps a copy (``Shared``) with the version it was
read at; every change, by any worker, bumps the version, and ``refresh`` (once per request, first) reads
the copy again only when the version moved. Fault rules and canned responses in the copy may show an
older count of their firings: the firing itself is counted atomically in the store, which says whether
a firing was left.

**Failures.** A store that cannot answer (down, frozen, read-only, full, locked)
raises ``core.errors.StoreUnavailable`` (503 with ``Retry-After``) within its
timeout, never the driver's own error (see ``guard.Guard``).

**Running totals: what an account spent, in O(1) per submission.** The ledger
(``core.ledger``) derives charges and refunds from the task records: a task is
charged unit price × quantity when it is accepted, and refunded from the moment
its lifecycle ends in FAILURE (``ledger.refund_due``). Summing that over an
account's history on every submission is O(n), and reading it outside the write
lets racing submissions overdraw a balance. So each store also keeps, per account,
updated in the same transaction as the task itself:

- ``charged``: the charges of the account's stored tasks;
- ``refunded``: the refunds already moved out of the queue below;
- a queue of pending refunds (task id, amount, due time), ordered by due time. A
  task that will fail queues its refund when it is stored (due at the end of its
  lifecycle); a poll-count task queues it when the poll that settles it is counted
  (``update_task``), since only then is its end known.

``put_task_once(record, key, limit)`` first moves the refunds due by the record's
``created_at`` from the queue into ``refunded`` (each refund is moved once: O(1)
amortised per submission, O(log n) for the ordered queue), then refuses with
``Overdraft(left)`` when ``charge > limit - (charged - refunded)``, else stores the
task, binds the key and adds the charge, all at once. Evicting or replacing a task
takes its charge and its refund (queued or moved) out again, and a reset clears the
account's totals with its tasks, so ``spending(account, now)`` always equals what
``ledger.summary`` derives from the stored tasks at ``now``.

**Running totals: the bytes of uploads held, in O(1) per upload.** The upload quotas
(per account and for the whole server) would cost O(n) per upload if every held upload
were summed. So each store also keeps, per account and in total, the bytes of the uploads
it holds, updated in the same atomic step as the upload itself: ``put_upload`` (which, given
quotas, refuses with ``UploadRefused`` instead of storing, checked in that step, after evicting
the expired uploads, the oldest first: O(1) amortised per upload evicted), replacing an upload,
``delete_upload``, ``reset`` (of an account or of everything) and so an import (a reset, then
``put_upload``). Each store's ``upload_usage(account)`` always equals what summing
``upload_records()`` gives.

**Replacing the whole state** (``PUT /__mock__/state``): ``replace_state(image)`` is one atomic
step, not a reset followed by one write per item: a store that fails part way (an item it cannot
write, a full disk, a connection lost) leaves the old state as it was, and a reader (another worker)
sees the old state or the new one, never a mix. SQLite writes it in one transaction, Redis under
keys of its own and then swaps them in with one script, memory builds it aside and swaps it in
under its lock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from ..core.canned import CannedResponse
from ..core.faults import FaultRule
from ..core.journal import Entry
from ..core.ledger import refund_due
from ..core.records import TaskRecord, UploadRecord

EPSILON = 1e-9  # a charge equal to what is left (give or take rounding) is allowed


@dataclass(frozen=True)
class Overdraft:
    """``put_task_once`` refused: the charge is more than the account has left (``limit - spent``)."""

    left: float


@dataclass(frozen=True)
class AccountLimit:
    """A ``limit`` for ``put_task_once``: the account's own balance (``set_balance``; None there is
    unlimited), else ``default``, read in the same atomic step as the charge (no list of balances)."""

    default: float | None


Limit = float | AccountLimit | None


class Spending(NamedTuple):
    """An account's running totals at some time: charges of its stored tasks, refunds visible by then."""

    charged: float
    refunded: float

    @property
    def spent(self) -> float:
        return self.charged - self.refunded


class UploadUsage(NamedTuple):
    """The bytes of the uploads held: the account's and the whole server's (running totals)."""

    account: int
    total: int


@dataclass(frozen=True)
class UploadRefused:
    """``put_upload`` refused: the upload would pass the ``scope``'s quota (``"account"`` or
    ``"total"``), which holds ``held`` bytes already; nothing stored."""

    scope: str
    held: int


def upload_refusal(
    usage: UploadUsage, size: int, account_quota: int | None, total_quota: int | None
) -> UploadRefused | None:
    """Which quota an upload of ``size`` bytes would pass, given what is held (the account's first)."""
    if account_quota is not None and usage.account + size > account_quota:
        return UploadRefused("account", usage.account)
    if total_quota is not None and usage.total + size > total_quota:
        return UploadRefused("total", usage.total)
    return None


@dataclass(frozen=True)
class StateImage:
    """What ``replace_state`` puts in place of everything ``reset()`` clears: the journal starts empty,
    the clock and the journal's sequence numbers are left alone. Items are written in order, as the
    single-item methods write them (a later task of the same id replaces an earlier one)."""

    tasks: Sequence[TaskRecord] = ()
    uploads: Sequence[UploadRecord] = ()
    balances: Mapping[str, float | None] = field(default_factory=dict)
    account_settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # empty ones: none kept
    fault_rules: Sequence[FaultRule] = ()
    canned_responses: Sequence[CannedResponse] = ()


async def fill(store: Store, image: StateImage) -> None:
    """Write every item of ``image`` with the store's single-item methods, in order: how a replace
    builds the new state aside (in a store of its own, or under keys of its own) before swapping it in."""
    for record in image.tasks:
        await store.put_task(record)
    for upload in image.uploads:
        await store.put_upload(upload)
    for account, amount in image.balances.items():
        await store.set_balance(account, amount)
    for account, values in image.account_settings.items():
        await store.set_account_settings(account, dict(values))
    for rule in image.fault_rules:
        await store.put_fault_rule(rule)
    for response in image.canned_responses:
        await store.put_canned_response(response)


def booking(record: TaskRecord) -> tuple[str, float, float | None]:
    """What the running totals hold of a task: its account, its charge, when its refund is due.
    A change that keeps these (a counted poll) leaves the totals alone."""
    return record.account, record.charge, refund_due(record)


class Shared(NamedTuple):
    """What every request reads of the state all workers share, as this process last read it."""

    version: Any
    clock: tuple[float, float | None]  # (offset, frozen_at)
    rules: tuple[FaultRule, ...]
    canned: tuple[CannedResponse, ...]
    accounts: Mapping[str, Mapping[str, Any]]  # account -> its own settings


class Store(Protocol):
    # the shared settings (see the module's docstring): read at once, made current by ``refresh``
    def shared(self) -> Shared:
        """The clock's state, fault rules, canned responses and accounts' settings as of the last
        ``refresh`` (the memory store's are always current). When the store cannot answer, the last
        copy serves, so the clock keeps running and a request can still be refused with a 503."""
        ...

    async def refresh(self) -> None:
        """Make ``shared()`` current: once per request, before anything reads it."""
        ...

    def note_clock(self, state: tuple[float, float | None]) -> None:
        """The clock moved in this process: the copy follows now, before ``set_clock_state`` writes it."""
        ...

    # tasks
    async def put_task_once(self, record: TaskRecord, key: str | None, limit: Limit = None) -> str | Overdraft:
        """Store a new task and bind the idempotency ``key`` (if any) to it, in one atomic step;
        return the task id the key is bound to. When the key is bound already, or the task is stored
        already, nothing changes and the earlier id is returned. With a ``limit`` (the account's
        balance), a task whose charge is more than ``limit`` minus what the account has spent is
        refused: ``Overdraft(left)``, nothing stored."""
        ...

    async def put_task(self, record: TaskRecord) -> None:
        """Store or replace a task (no key, no balance check); the running totals follow."""
        ...

    async def get_task(self, task_id: str) -> TaskRecord | None: ...

    async def update_task(self, task_id: str, change: Callable[[TaskRecord], TaskRecord]) -> TaskRecord | None: ...

    async def tasks(self, account: str | None = None) -> list[TaskRecord]: ...

    async def task_count(self, account: str | None = None) -> int:
        """How many tasks are stored (of ``account``): kept as a count, not counted."""
        ...

    async def task_page(
        self, account: str | None = None, *, newest_first: bool = False, offset: int = 0, limit: int | None = None
    ) -> list[TaskRecord]:
        """One page of the tasks (of ``account``) in the order they were stored (newest first): what it
        costs grows with ``offset`` and ``limit``, not with how many tasks are stored."""
        ...

    async def evict_tasks(self, created_before: float, limit: int | None = None) -> int:
        """Forget tasks created before this time (and their idempotency keys), the oldest first and at
        most ``limit`` of them (eviction goes in steps, none of them long); return how many."""
        ...

    # idempotency (keys are bound by ``put_task_once`` only: never to a task that is not stored)
    async def idempotent_task(self, account: str, key: str) -> str | None: ...

    # uploads (and the running totals of their bytes: see above)
    async def put_upload(
        self,
        upload: UploadRecord,
        *,
        account_quota: int | None = None,
        total_quota: int | None = None,
        evict_by: float | None = None,
    ) -> UploadRefused | None:
        """Store or replace an upload, its bytes counted in the running totals, in one atomic step.
        With ``evict_by``: first forget the uploads created at or before that time (expired), the
        oldest first, whatever comes next (costs the number evicted, not the number held). With
        quotas: refused (``UploadRefused``, nothing stored) when the account's bytes held plus
        ``upload.size`` would pass ``account_quota``, else when the server's would pass ``total_quota``.
        """
        ...

    async def upload_usage(self, account: str) -> UploadUsage:
        """The bytes of uploads held by ``account`` and by everyone (the running totals)."""
        ...

    async def get_upload(self, upload_id: str) -> UploadRecord | None: ...

    async def upload_records(self) -> list[UploadRecord]:
        """Every upload's metadata (``data`` left empty), oldest first: for quotas and expiry."""
        ...

    async def delete_upload(self, upload_id: str) -> bool: ...

    # journal
    def append_entry(self, entry: Entry) -> None:
        """Keep an edge's journal entry, made into text when read or written out. The answer has gone
        out: a store may write entries in batches, and one it cannot write is lost, not the response."""
        ...

    async def append_journal(self, entry: dict[str, Any]) -> int:
        """Keep ``entry`` now (the oldest falls out past the ring's size); return its sequence number
        (0: not kept, a full disk shedding the journal). For callers that need it written: tests."""
        ...

    async def journal(self, since: int = 0) -> list[dict[str, Any]]: ...

    # faults
    async def put_fault_rule(self, rule: FaultRule) -> None: ...

    async def fault_rules(self) -> list[FaultRule]: ...

    async def delete_fault_rule(self, rule_id: str) -> bool: ...

    async def fire_fault_rule(self, rule_id: str) -> bool:
        """Count one firing of the rule if it has firings left; False when spent or gone."""
        ...

    async def fault_rule_counts(self) -> dict[str, int]:
        """How often each rule fired, by rule id (``put_fault_rule`` starts a rule at its ``fired``)."""
        ...

    # canned responses (``core.canned``): answered before any rule runs; cleared by a whole reset
    async def put_canned_response(self, response: CannedResponse) -> None:
        """Add (or replace) a canned response, keeping the order they were added in; its count
        starts at ``response.fired``."""
        ...

    async def canned_responses(self) -> list[CannedResponse]:
        """Every canned response, oldest first, each with its current ``fired`` count. Asked once
        per provider request: cheap, above all when there are none."""
        ...

    async def delete_canned_response(self, response_id: str) -> bool: ...

    async def fire_canned_response(self, response_id: str) -> bool:
        """Count one answer of the response if it has answers left; False when spent or gone."""
        ...

    # per-account settings (``POST /__mock__/accounts/…``: the task dialect, …); reset with the account
    async def account_settings(self, account: str) -> dict[str, Any]:
        """The settings one account chose (empty when none)."""
        ...

    async def set_account_settings(self, account: str, settings: dict[str, Any]) -> None:
        """Replace the account's settings (an empty mapping forgets them)."""
        ...

    async def all_account_settings(self) -> dict[str, dict[str, Any]]:
        """Every account's settings, by account (for a snapshot of the state)."""
        ...

    # rate limiting
    async def hit(self, account: str, window: int) -> int:
        """Count one request of ``account`` in time window ``window``; return the count so far."""
        ...

    # balances
    async def set_balance(self, account: str, amount: float | None) -> None: ...

    async def balances(self) -> dict[str, float | None]: ...

    async def spending(self, account: str, now: float) -> Spending:
        """The account's running totals at ``now`` (refunds due by then count as refunded)."""
        ...

    # the clock's offset, shared by every worker (read from ``shared().clock``)
    async def set_clock_state(self, offset: float, frozen_at: float | None) -> None:
        """Write the clock's state for every worker (this process's copy follows at once)."""
        ...

    async def reset(self, account: str | None = None) -> None: ...

    async def replace_state(self, image: StateImage) -> None:
        """Put ``image`` in place of the whole state in one atomic step: all of it or none (a failure
        part way leaves the old state), and readers see the old state or the new, never a mix."""
        ...

    # health
    async def ping(self) -> None:
        """Return when the store can read and write; raise ``StoreUnavailable`` saying why not."""
        ...
