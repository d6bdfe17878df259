"""SQLite's ``HotStore``: no store call holds the event loop longer than a short query, or waits.

One connection per process serves the hot path, on the event loop, with a busy timeout
of 0: it never waits for a lock.

- **Reads** (a task, an idempotency key, an upload, the shared settings' version) run at
  once: under WAL a reader never waits for a writer.
- **Writes** (a submission's task and charge; a fault rule's or canned response's firing,
  a rate-limit count, a poll-count update, eviction) are queued, and once per turn of the
  event loop every queued write is made in one transaction (``BEGIN IMMEDIATE`` … ``COMMIT``:
  group commit), each in a savepoint of its own; a submission is answered once its task is
  committed. A transaction holds at most ``BATCH`` writes, so the loop is never held long.
- **A lock held elsewhere** (another worker writing, a file locked by another process): the
  transaction is not begun; the queued writes wait, and are tried again ``RETRY`` seconds
  later, not sooner however many writes come meanwhile (two workers that tried at every
  turn of their loops spent their time on failed tries; docs/performance.md has the figures),
  while every other request goes on. Writes that wait longer
  than the store's timeout are answered 503 (``StoreUnavailable``), and the store's guard
  answers the following calls at once for a while (``guard.Guard``).
- **Journal entries** are queued and written with the next transaction, or ``JOURNAL_DELAY``
  after the first one came when no write comes sooner (a few hundred at a time); reading the
  journal writes what is queued first.
- **Checkpoints** (copying the WAL into the file, with its fsync) are made by a thread of their
  own once the WAL has grown past ``CHECKPOINT_BYTES`` (as SQLite's own automatic checkpoint
  does, at 1000 pages), never on the loop; when it is done, waiting writes are tried at once.
- **A full disk** (``SQLiteStore.make_room``): a transaction that fails for want of space makes
  room (the WAL checkpointed and truncated, the journal's rows deleted, no entry written until a
  write succeeds again), and its writes are tried once more in a transaction of their own, without
  the journal's entries: the tasks come first. The check happens on the loop (with short waits):
  a full disk is rare, and a write answered 503 for the journal's sake would be worse.
- **Shared settings** (``aio.Shared``): once per request one read of their version (bumped by
  triggers on every change, from any worker), and a read of the settings only when it moved.

Without a running event loop (a caller outside the server), a write is made at once with the
store's own busy timeout.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from typing import Any, Protocol

from ...core.canned import CannedResponse
from ...core.errors import StoreUnavailable
from ...core.faults import FaultRule
from ...core.journal import Entry
from ...core.records import TaskRecord, UploadRecord
from ..aio import Shared
from ..base import Limit, Overdraft
from ..guard import Guard
from . import steps
from .schema import out_of_space


class Host(Protocol):
    """What the hot store uses of its ``SQLiteStore`` (which builds it, so it never imports the store)."""

    path: str
    timeout: float
    guard: Guard
    journal_off: bool  # the disk was full at the last write: no journal entry is written

    def connection(self) -> sqlite3.Connection: ...
    def write(self) -> AbstractContextManager[sqlite3.Connection]: ...
    def make_room(self) -> None: ...
    def append_rows(self, db: sqlite3.Connection, entries: list[tuple[Any, str]]) -> int: ...


BATCH = 256  # writes one transaction takes at most
RETRY = 0.0003  # seconds from a try that found the write lock held elsewhere to the next
JOURNAL_DELAY = 0.02  # seconds a journal entry may wait for the next transaction
JOURNAL_BATCH = 512  # queued entries that are written at once, whatever the delay
CHECKPOINT_BYTES = 4 * 1024 * 1024  # the WAL's size that calls for a checkpoint (the loop's connection makes none)
RESTART_WAIT_MS = 50  # longest a checkpoint keeps writers waiting for readers to leave the WAL
CHECKPOINT_LOOK = 16  # transactions between looks at the WAL's size

Write = Callable[[sqlite3.Connection], Any]


class _Busy(Exception):
    """The write lock is held by another connection."""


def _locked(exc: sqlite3.OperationalError) -> bool:
    name = str(getattr(exc, "sqlite_errorname", ""))
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(exc)


class SQLiteHot:
    def __init__(self, store: Host) -> None:
        self.store = store
        self._lock = threading.RLock()  # the connection: the server's loop, and the in-process transports' threads
        self._db: sqlite3.Connection | None = None
        self._shared = Shared(None, (0.0, None), (), (), {})
        self._writes: list[tuple[Write, asyncio.Future[Any]]] = []
        self._waiting_since = 0.0  # when the oldest queued write was queued
        self._journal: list[Entry] = []
        self._scheduled: asyncio.Handle | None = None  # the next transaction
        self._retry_at = 0.0  # the lock was found held elsewhere: no transaction is begun before this time
        self._due = 0.0  # when it is due, on its loop's clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._commits = 0
        self._fresh_in: int | None = None  # the thread whose loop read the version in its current turn
        self._reading: asyncio.Handle | None = None  # a read transaction is open, ended by this callback
        self._reading_loop: asyncio.AbstractEventLoop | None = None  # ... on this loop's turn
        self._checkpointing = threading.Lock()
        with suppress(StoreUnavailable):
            self._load_shared()

    # -- the connection -------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            store = self.store
            store.connection()  # the file is there and its schema current (the store's own connection sees to it)
            db = sqlite3.connect(store.path, timeout=0, isolation_level=None, check_same_thread=False)
            try:
                db.execute("PRAGMA busy_timeout=0")  # never wait for a lock on the event loop
                db.execute("PRAGMA synchronous=NORMAL")  # per connection: under WAL, no sync per commit
                db.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints are made off the loop
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    def _forget(self) -> None:
        if self._db is not None:
            with suppress(sqlite3.Error):
                self._db.close()
            self._db = None  # opened afresh next time (a file replaced, made writable again)

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        """One row. The reads of one turn of the event loop share one read transaction (one snapshot,
        one taking of WAL's read lock instead of one per read), ended when the turn is over. A read
        from another loop (in-process transports share this store from threads of their own) never
        reads through that loop's snapshot: it ends it and opens its own."""
        guard = self.store.guard
        if guard.has_opened:  # a failure was met once: maybe answer at once (``Guard.check``)
            guard.check()
        with self._lock:
            try:
                db = self._connection()
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:  # no loop to end it: a read of its own
                    if self._reading is not None:
                        self.end_read()
                    return db.execute(sql, args).fetchone()
                if self._reading is not None and self._reading_loop is not loop:
                    self.end_read()  # another loop's turn, maybe from before a change this request follows
                if self._reading is None:
                    db.execute("BEGIN")
                    self._reading, self._reading_loop = loop.call_soon(self.end_read), loop
                return db.execute(sql, args).fetchone()
            except sqlite3.OperationalError as exc:  # a read never waits here: a quick failure
                self.end_read()
                self._forget()
                raise guard.failed(exc, 0.0) from exc

    def end_read(self) -> None:
        """End this process's open read on the hot connection, so its next read sees the latest commit
        (the store calls it after replacing the state, and before checkpointing for space)."""
        with self._lock:
            handle, self._reading, self._reading_loop = self._reading, None, None
            if handle is not None:
                handle.cancel()
                if self._db is not None and self._db.in_transaction:
                    with suppress(sqlite3.Error):
                        self._db.execute("COMMIT")

    # -- shared settings --------------------------------------------------------------------------

    def shared(self) -> Shared:
        return self._shared

    async def refresh(self) -> None:
        """The version is read once per turn of the event loop: every request that arrived after a
        change was committed (by any worker) runs in a later turn than the change, and reads it again."""
        thread = threading.get_ident()
        if self._fresh_in == thread:
            return
        self._load_shared()
        with suppress(RuntimeError):  # no loop running: read every time
            asyncio.get_running_loop().call_soon(self._went_stale)
            self._fresh_in = thread

    def _went_stale(self) -> None:
        self._fresh_in = None

    def _load_shared(self) -> None:
        row = self._read("SELECT version FROM shared_version WHERE id = 1")
        version = row[0] if row is not None else None
        if version is not None and version == self._shared.version:
            return
        self.end_read()
        with self._lock, self.store.guard:  # one snapshot of all four
            db = self._connection()
            db.execute("BEGIN")
            try:
                version = db.execute("SELECT version FROM shared_version WHERE id = 1").fetchone()[0]
                clock = db.execute("SELECT offset, frozen_at FROM clock WHERE id = 1").fetchone()
                rules = db.execute("SELECT data FROM rules ORDER BY pos").fetchall()
                canned = db.execute("SELECT data, fired FROM canned ORDER BY pos").fetchall()
                accounts = db.execute("SELECT account, data FROM account_settings").fetchall()
            finally:
                db.execute("COMMIT")
        self._shared = Shared(
            version,
            (float(clock[0]), clock[1]) if clock else (0.0, None),
            tuple(FaultRule.from_dict(json.loads(data)) for (data,) in rules),
            tuple(CannedResponse.from_dict({**json.loads(data), "fired": fired}) for data, fired in canned),
            {account: json.loads(data) for account, data in accounts},
        )

    def note_clock(self, state: tuple[float, float | None]) -> None:
        """This process moved the clock (written to the store already): its copy follows at once."""
        self._shared = self._shared._replace(clock=state)

    # -- reads ---------------------------------------------------------------------------------------

    async def get_task(self, task_id: str) -> TaskRecord | None:
        row = self._read("SELECT data FROM tasks WHERE id = ?", (task_id,))
        return TaskRecord.from_json(row[0]) if row else None

    async def idempotent_task(self, account: str, key: str) -> str | None:
        row = self._read("SELECT task_id FROM idempotency WHERE account = ? AND key = ?", (account, key))
        return str(row[0]) if row else None

    async def get_upload(self, upload_id: str) -> UploadRecord | None:
        row = self._read("SELECT meta, data FROM uploads WHERE id = ?", (upload_id,))
        return UploadRecord(**json.loads(row[0]), data=bytes(row[1])) if row else None

    # -- writes ----------------------------------------------------------------------------------------

    async def put_task_once(self, record: TaskRecord, key: str | None, limit: Limit = None) -> str | Overdraft:
        found: str | Overdraft = await self._write(lambda db: steps.put_once(db, record, key, limit))
        return found

    async def update_task(self, task_id: str, change: Callable[[TaskRecord], TaskRecord]) -> TaskRecord | None:
        found: TaskRecord | None = await self._write(lambda db: steps.update_task(db, task_id, change))
        return found

    async def fire_fault_rule(self, rule_id: str) -> bool:
        return bool(await self._write(lambda db: steps.fire(db, "rules", rule_id)))

    async def fire_canned_response(self, response_id: str) -> bool:
        return bool(await self._write(lambda db: steps.fire(db, "canned", response_id)))

    async def hit(self, account: str, window: int) -> int:
        return int(await self._write(lambda db: steps.hit(db, account, window)))

    async def evict_tasks(self, created_before: float, limit: int | None = None) -> int:
        return int(await self._write(lambda db: steps.evict_tasks(db, created_before, limit)))

    async def _write(self, fn: Write) -> Any:
        self.store.guard.check()  # a store known to be stuck: 503 at once, nothing queued
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._writes:
            self._waiting_since = time.monotonic()
        self._writes.append((fn, future))
        self._schedule(loop, 0.0)
        return await future

    def append_entry(self, entry: Entry) -> None:
        if self.store.journal_off:
            return  # the disk was full at the last write: the room is the tasks'
        with self._lock:
            self._journal.append(entry)
            queued = len(self._journal)
        if 1 < queued < JOURNAL_BATCH:
            return  # a transaction is due already (the first entry saw to it)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not in the server (a caller of its own): written at once
            self.flush_journal()
            return
        self._schedule(loop, JOURNAL_DELAY if queued == 1 else 0.0)

    def _schedule(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        """The next transaction: at the end of this turn of the loop (``delay`` 0), or ``delay`` later;
        one due as soon or sooner stands."""
        due = loop.time() + delay
        if self._loop is loop:
            due = max(due, self._retry_at)  # (a time on this loop's clock)
        if self._scheduled is not None:
            if self._loop is loop and self._due <= due:
                return
            self._scheduled.cancel()
        self._loop, self._due = loop, due
        self._scheduled = loop.call_soon(self._flush) if delay <= 0 else loop.call_at(due, self._flush)

    def flush_journal(self) -> None:
        """Write the queued journal entries now (before the journal is read), waiting for the lock as the
        store does (its busy timeout): a control-plane read, not the hot path."""
        with self._lock:
            entries, self._journal = self._journal, []
            if not entries or self.store.journal_off:
                return
            try:
                with self.store.write() as db:
                    self.store.append_rows(db, [(entry.account, entry.encoded().decode()) for entry in entries])
            except StoreUnavailable as exc:  # lost when they cannot be written
                if out_of_space(exc):
                    self.store.make_room()

    def close(self) -> None:
        with self._lock:
            self._forget()

    # -- the transaction ---------------------------------------------------------------------------

    def _flush(self) -> None:
        self._scheduled = None
        if self._retry_at and self._loop is not None and self._loop.time() < self._retry_at:
            self._schedule(self._loop, 0.0)  # (a timer of under a millisecond fires at the loop's next turn)
            return
        writes, self._writes = self._writes[:BATCH], self._writes[BATCH:]
        entries = self._journal
        if writes or entries:
            self._journal = []
            try:
                self._commit(writes, entries)
                self._retry_at = 0.0
            except _Busy:
                if self._loop is not None:
                    self._retry_at = self._loop.time() + RETRY  # no try before then, whatever writes come
                self._writes[:0] = writes  # first in line again
                self._journal[:0] = entries
                if writes and time.monotonic() - self._waiting_since >= self.store.timeout:
                    self._give_up()
                elif self._loop is not None:
                    self._schedule(self._loop, RETRY)
                return
        if self._writes and self._loop is not None:
            self._waiting_since = time.monotonic()
            self._schedule(self._loop, 0.0)

    def _commit(self, writes: list[tuple[Write, asyncio.Future[Any]]], entries: list[Entry]) -> None:
        """The queued writes and journal entries in one transaction; their futures answered. One that fails
        for want of space makes room and tries the writes once more, without the entries."""
        try:
            try:
                outcomes = self._transact(writes, entries)
            except StoreUnavailable as exc:
                if not out_of_space(exc):
                    raise
                self.store.make_room()
                if not writes:
                    return  # only journal entries: shed with the rest
                outcomes = self._transact(writes, [])
        except _Busy:
            raise
        except BaseException as exc:  # the transaction failed: none of it was written
            for _, future in writes:
                if not future.done():
                    future.set_exception(exc)
            return
        if writes:
            self.store.journal_off = False  # a write succeeded: there is room again
        self._settle(outcomes)

    def _transact(
        self, writes: list[tuple[Write, asyncio.Future[Any]]], entries: list[Entry]
    ) -> list[tuple[asyncio.Future[Any], Any, BaseException | None]]:
        """One transaction: the entries, then each write in a savepoint; each write's outcome. Raises
        ``_Busy`` when the lock is held elsewhere, and what the store raises when it fails."""
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        self.end_read()  # this turn's reads are done: a write transaction of its own
        try:
            with self._lock, self.store.guard:
                db = self._connection()
                try:
                    db.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as exc:
                    if _locked(exc):
                        raise _Busy() from None
                    raise
                try:
                    if entries:
                        self.store.append_rows(db, [(entry.account, entry.encoded().decode()) for entry in entries])
                    for fn, future in writes:
                        outcomes.append((future, *self._in_savepoint(db, fn)))
                    db.execute("COMMIT")
                except BaseException:
                    with suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                    raise
        except StoreUnavailable:
            self._forget()
            raise
        return outcomes

    def _settle(self, outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
        """Answer each committed write; now and then, a checkpoint when the WAL has grown."""
        for future, result, error in outcomes:
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
        self._commits += 1
        if self._commits % CHECKPOINT_LOOK == 0 and not self._checkpointing.locked():
            with suppress(OSError):
                if os.stat(self.store.path + "-wal").st_size > CHECKPOINT_BYTES:
                    self._checkpoint_soon()

    @staticmethod
    def _in_savepoint(db: sqlite3.Connection, fn: Write) -> tuple[Any, BaseException | None]:
        db.execute("SAVEPOINT op")
        try:
            result = fn(db)
        except sqlite3.OperationalError:
            raise  # the store cannot go on: the whole transaction fails
        except Exception as exc:  # this write's own problem: undo it alone
            db.execute("ROLLBACK TO op")
            db.execute("RELEASE op")
            return None, exc
        db.execute("RELEASE op")
        return result, None

    def _give_up(self) -> None:
        """The lock was held elsewhere for the whole timeout: the waiting writes are answered 503, and
        the guard answers the next calls at once for a while."""
        writes, self._writes = self._writes, []
        error = self.store.guard.failed(
            sqlite3.OperationalError("database is locked"), time.monotonic() - self._waiting_since
        )
        for _, future in writes:
            if not future.done():
                future.set_exception(error)

    def _checkpoint_soon(self) -> None:
        if self._checkpointing.locked():
            return
        name = "mockserver-sqlite-checkpoint"
        threading.Thread(target=self._checkpoint, args=(self._loop,), name=name, daemon=True).start()

    def _checkpoint(self, loop: asyncio.AbstractEventLoop | None) -> None:
        with self._checkpointing, suppress(sqlite3.Error, StoreUnavailable):
            db = sqlite3.connect(self.store.path, timeout=self.store.timeout, isolation_level=None)
            try:
                # PASSIVE copies what is in the WAL while writes go on; RESTART then copies the few
                # frames written meanwhile and makes the next transaction start the WAL over (passive
                # ones alone, racing writes that keep coming, would leave it growing for ever). While
                # it holds the write lock, the loop's transactions find it taken and try again.
                db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                # RESTART keeps the write lock while it waits for readers to leave the WAL, and
                # with both workers reading at every turn that wait could outlast the writers'
                # timeout (every waiting submission a 503): it waits briefly, and gives up if it must.
                db.execute(f"PRAGMA busy_timeout={RESTART_WAIT_MS}")
                db.execute("PRAGMA wal_checkpoint(RESTART)")
            finally:
                db.close()
        if loop is not None and not loop.is_closed():
            with suppress(RuntimeError):
                loop.call_soon_threadsafe(self._kick)

    def _kick(self) -> None:
        """The checkpoint let go of the lock: writes waiting for it are tried now, not at their next retry."""
        if self._writes and self._loop is not None:
            self._schedule(self._loop, 0.0)
