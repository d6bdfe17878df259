"""The store calls of a submission and a poll, as coroutines: ``HotStore``.

A request on the provider's hot path (a submission, a poll) makes a handful of store
calls: the task read, the charge-and-store step, a journal entry, now and then a fault
rule's or a canned response's firing. Each store answers them in the way that holds
the event loop least:

- ``Inline(store)``, for the memory store: the call is made at once (a dict lookup costs
  less than any hand-off), and what every request reads of the shared settings is read
  live (``shared()`` is None).
- SQLite (``SQLiteStore.hot()``) and Redis (``RedisStore.hot()``) offer their own: reads
  that cost one query run at once, writes go to a writer thread or an asyncio client,
  journal entries are written in batches, and the shared settings come from a copy
  (``Shared``) that ``refresh`` makes current once per request.

**Shared settings.** The clock's offset, the fault rules, the canned responses and the
accounts' settings are read by every request and changed rarely (by the control plane
of any worker). A store that would pay a query or a round trip for each read keeps a
copy with the version it was read at; every change, by any worker, bumps the version,
and ``refresh`` (once per request, first) reads the copy again only when the version
moved. Fault rules and canned responses in the copy may show an older count of their
firings: the firing itself is counted atomically in the store, which says whether a
firing was left.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

from ..core.canned import CannedResponse
from ..core.faults import FaultRule
from ..core.journal import Entry
from ..core.records import TaskRecord, UploadRecord
from .base import Limit, Overdraft, Store


class Shared(NamedTuple):
    """What every request reads of the state all workers share, as this process last read it."""

    version: Any
    clock: tuple[float, float | None]
    rules: tuple[FaultRule, ...]
    canned: tuple[CannedResponse, ...]
    accounts: Mapping[str, Mapping[str, Any]]  # account -> its own settings


class HotStore(Protocol):
    """The hot path's calls: the same promises as the ``Store`` methods of the same names."""

    def shared(self) -> Shared | None:
        """The shared settings as of the last ``refresh``; None: read them from the store itself."""
        ...

    async def refresh(self) -> None:
        """Make ``shared()`` current (once per request, before anything reads it)."""
        ...

    def note_clock(self, state: tuple[float, float | None]) -> None:
        """This process moved the clock (written to the store already): the copy follows at once."""
        ...

    async def get_task(self, task_id: str) -> TaskRecord | None: ...

    async def put_task_once(self, record: TaskRecord, key: str | None, limit: Limit = None) -> str | Overdraft: ...

    async def idempotent_task(self, account: str, key: str) -> str | None: ...

    async def update_task(self, task_id: str, change: Callable[[TaskRecord], TaskRecord]) -> TaskRecord | None: ...

    async def get_upload(self, upload_id: str) -> UploadRecord | None: ...

    async def fire_fault_rule(self, rule_id: str) -> bool: ...

    async def fire_canned_response(self, response_id: str) -> bool: ...

    async def hit(self, account: str, window: int) -> int: ...

    async def evict_tasks(self, created_before: float, limit: int | None = None) -> int: ...

    def append_entry(self, entry: Entry) -> None:
        """Keep a journal entry (made into its final form when read or written out). The answer has
        gone out: a store may write entries in batches, and one it cannot write is lost, not the
        response."""
        ...


class Inline:
    """``HotStore`` over a store that answers from memory: every call made at once."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._append_entry = getattr(store, "append_entry", None)

    def shared(self) -> Shared | None:
        return None

    async def refresh(self) -> None:
        return None

    def note_clock(self, state: tuple[float, float | None]) -> None:
        return None

    async def get_task(self, task_id: str) -> TaskRecord | None:
        return self.store.get_task(task_id)

    async def put_task_once(self, record: TaskRecord, key: str | None, limit: Limit = None) -> str | Overdraft:
        return self.store.put_task_once(record, key, limit)

    async def idempotent_task(self, account: str, key: str) -> str | None:
        return self.store.idempotent_task(account, key)

    async def update_task(self, task_id: str, change: Callable[[TaskRecord], TaskRecord]) -> TaskRecord | None:
        return self.store.update_task(task_id, change)

    async def get_upload(self, upload_id: str) -> UploadRecord | None:
        return self.store.get_upload(upload_id)

    async def fire_fault_rule(self, rule_id: str) -> bool:
        return self.store.fire_fault_rule(rule_id)

    async def fire_canned_response(self, response_id: str) -> bool:
        return self.store.fire_canned_response(response_id)

    async def hit(self, account: str, window: int) -> int:
        return self.store.hit(account, window)

    async def evict_tasks(self, created_before: float, limit: int | None = None) -> int:
        return self.store.evict_tasks(created_before, limit)

    def append_entry(self, entry: Entry) -> None:
        if self._append_entry is not None:
            self._append_entry(entry)
        else:
            self.store.append_journal(entry.to_dict())


class SharedClock:
    """The ``clock.ClockState`` of the server's ``ShiftedClock``: the offset as the hot store's copy of
    the shared settings has it (read once per request, not at every reading of the clock), written
    through to the store."""

    def __init__(self, store: Store, hot_store: HotStore) -> None:
        self.store = store
        self.hot = hot_store

    def clock_state(self) -> tuple[float, float | None]:
        shared = self.hot.shared()
        return shared.clock if shared is not None else self.store.clock_state()

    def set_clock_state(self, offset: float, frozen_at: float | None) -> None:
        self.store.set_clock_state(offset, frozen_at)
        self.hot.note_clock((offset, frozen_at))


def hot(store: Store) -> HotStore:
    """The store's own ``HotStore`` (``store.hot()``), else ``Inline``."""
    own = getattr(store, "hot", None)
    found: HotStore = own() if callable(own) else Inline(store)
    return found
