"""The SQLite file's connection and its group-commit writer: no call holds the event loop longer than a
short query, or waits for a lock.

One connection per process (WAL; ``synchronous=NORMAL``: a committed write survives the process being
killed, only a power cut can lose the last commits), shared by the event loops of every thread under a
lock, with a busy timeout of 0 once open. Opening it migrates the file's schema (``schema.migrate``).

- **Reads** run at once: under WAL a reader never waits for a writer. The reads of one turn of an event
  loop share one read transaction (one snapshot, one taking of WAL's read lock), ended when the turn is
  over; a read from another loop ends it and opens its own, so it never reads from before a change its
  request follows.
- **Writes** (steps: functions of the connection) are queued per event loop, and once per turn of the
  loop all of them are made in one transaction (``BEGIN IMMEDIATE`` … ``COMMIT``: group commit), each in
  a savepoint of its own: a step that raises is undone alone and its caller gets the error. A write is
  answered once committed; a transaction holds at most ``BATCH`` writes.
- **A lock held elsewhere** (another worker writing, a file locked by another process): the queued writes
  wait and are tried again ``RETRY`` seconds later, not sooner however many writes come meanwhile (trying
  at every turn spent a worker's time on failed tries). Writes that waited the whole ``timeout`` are
  answered 503 (``StoreUnavailable``), and the guard answers the following calls at once for a while.
- **Other failures** (read-only, full, cannot be opened): 503 at once, and the file is opened afresh on
  the next call (a read-only file opens read-only, and stays so until reopened): the store recovers by
  itself once the file is usable.
- **Journal entries** are queued and written with the next transaction, or ``JOURNAL_DELAY`` after the
  first one came when no write comes sooner; ``flush_journal`` writes them before the journal is read.
- **Checkpoints** (the WAL copied into the file, with its fsync) are made by a thread of their own once
  the WAL has grown past ``CHECKPOINT_BYTES``, never on the loop; then waiting writes are tried at once.
- **A full disk** (``make_room``): the tasks come before the journal. A transaction that fails for want
  of space makes room and its writes are tried once more, without the journal's; no journal entry is
  written until a write succeeds again. Else the journal's writes (one per request) took any space freed
  before a checkpoint came, and submissions stayed 503.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ...core.errors import StoreUnavailable
from ...core.journal import Entry
from ..guard import Guard
from . import steps
from .schema import SCHEMA_VERSION, migrate, out_of_space

BATCH = 256  # writes one transaction takes at most
RETRY = 0.0003  # seconds from a try that found the write lock held elsewhere to the next
JOURNAL_DELAY = 0.02  # seconds a journal entry may wait for the next transaction
JOURNAL_BATCH = 512  # queued entries that are written at once, whatever the delay
CHECKPOINT_BYTES = 4 * 1024 * 1024  # the WAL's size that calls for a checkpoint (the loop's connection makes none)
CHECKPOINT_LOOK = 16  # transactions between looks at the WAL's size
RESTART_WAIT_MS = 50  # longest a checkpoint keeps writers waiting for readers to leave the WAL
ROOM_WAIT_MS = 50  # longest making room waits for other connections (it runs on the loop)

T = TypeVar("T")
Step = Callable[[sqlite3.Connection], Any]


class _Busy(Exception):
    """The write lock is held by another connection."""


def _locked(exc: BaseException) -> bool:
    name = str(getattr(exc, "sqlite_errorname", ""))
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(exc)


@dataclass(eq=False)
class _Write:
    step: Step
    future: asyncio.Future[Any]
    journal: bool  # journal entries: answered 0 while the journal is off, shed (not retried) for room


@dataclass(eq=False)
class _Queue:
    """One event loop's queued writes and its next transaction (``due``, ``retry_at``: on its clock)."""

    loop: asyncio.AbstractEventLoop
    writes: list[_Write] = field(default_factory=list)
    waiting_since: float = 0.0  # (monotonic) when the oldest queued write was queued
    scheduled: asyncio.Handle | None = None
    due: float = 0.0
    retry_at: float = 0.0  # the lock was found held elsewhere: no transaction is begun before this time


Outcome = tuple[_Write, Any, BaseException | None]


def _answer(writes: list[_Write], error: BaseException) -> list[Outcome]:
    """The writes failed with ``error`` (none of them was made); nothing left to settle."""
    for write in writes:
        if not write.future.done():
            write.future.set_exception(error)
    return []


def _nothing(db: sqlite3.Connection) -> None:
    return None


class SQLiteWriter:
    def __init__(self, path: str, timeout: float, journal_size: int) -> None:
        self.path = path
        self.timeout = timeout
        self.journal_size = journal_size
        self.guard = Guard("sqlite", (sqlite3.OperationalError,), on_error=self._on_error)
        self.journal_off = False  # a write found no room: no entry is written until a write succeeds
        self._lock = threading.RLock()  # the connection: every loop's thread
        self._db: sqlite3.Connection | None = None
        self._reading: asyncio.Handle | None = None  # a read transaction is open, ended by this callback
        self._reading_loop: asyncio.AbstractEventLoop | None = None  # ... on this loop's turn
        self._queues: dict[asyncio.AbstractEventLoop, _Queue] = {}
        self._journal: list[Entry] = []
        self._carrier: _Queue | None = None  # the queue whose next transaction takes the queued entries
        self._commits = 0
        self._checkpointing = threading.Lock()

    # -- the connection -------------------------------------------------------------------------

    def connection(self) -> sqlite3.Connection:
        """The connection, opened when there is none: opening (and migrating) alone may wait for a lock."""
        with self._lock:
            if self._db is None:
                db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
                try:
                    db.execute("PRAGMA journal_mode=WAL")
                    db.execute("PRAGMA synchronous=NORMAL")  # per connection: under WAL, no sync per commit
                    if db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                        migrate(db)
                    db.execute("PRAGMA busy_timeout=0")  # never wait for a lock on the event loop
                    db.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints are made off the loop
                except BaseException:
                    db.close()
                    raise
                self._db = db
            return self._db

    def _on_error(self, error: BaseException) -> None:
        """The guard met ``error``: unless it is a lock held elsewhere, the file is opened afresh next time."""
        if not _locked(error):
            self._forget()

    def _forget(self) -> None:
        with self._lock:
            handle, self._reading, self._reading_loop = self._reading, None, None
            if handle is not None:
                handle.cancel()
            db, self._db = self._db, None
            if db is not None:
                with suppress(sqlite3.Error):
                    db.close()

    def close(self) -> None:
        self._forget()

    # -- reads -----------------------------------------------------------------------------------

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn`` on this turn's snapshot (see the module's docstring); without a running loop, on a
        snapshot of its own. Never waits for a lock: a failure is quick."""
        guard = self.guard
        if guard.has_opened:  # a failure was met once: maybe answer at once (``Guard.check``)
            guard.check()
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self._lock:
            try:
                db = self.connection()
                if self._reading is not None and self._reading_loop is not loop:
                    self._end_read()  # another loop's turn, maybe from before a change this request follows
                if loop is None:
                    db.execute("BEGIN")
                    try:
                        return fn(db)
                    finally:
                        if db.in_transaction:
                            db.execute("COMMIT")
                if self._reading is None:
                    db.execute("BEGIN")
                    self._reading, self._reading_loop = loop.call_soon(self._end_read), loop
                return fn(db)
            except sqlite3.OperationalError as exc:
                self._end_read()
                raise guard.failed(exc, 0.0) from exc

    def read_one(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        """One row (None when there is none), on this turn's snapshot."""
        return self.read(lambda db: db.execute(sql, args).fetchone())

    def read_all(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        """Every row, on this turn's snapshot."""
        rows: list[Any] = self.read(lambda db: db.execute(sql, args).fetchall())
        return rows

    def _end_read(self) -> None:
        """End the open read, so that the next one sees the latest commit."""
        with self._lock:
            handle, self._reading, self._reading_loop = self._reading, None, None
            if handle is None:
                return
            handle.cancel()
            if self._db is not None and self._db.in_transaction:
                with suppress(sqlite3.Error):
                    self._db.execute("COMMIT")

    # -- queueing --------------------------------------------------------------------------------

    async def write(self, step: Step, *, journal: bool = False) -> Any:
        """Make ``step`` in this loop's next transaction; its result, once committed. ``journal``: a step
        that keeps journal entries (answered 0 unmade while the journal is off; shed for the tasks' room)."""
        self.guard.check()  # a store known to be stuck: 503 at once, nothing queued
        loop = asyncio.get_running_loop()
        queue = self._queue(loop)
        future: asyncio.Future[Any] = loop.create_future()
        if not queue.writes:
            queue.waiting_since = time.monotonic()
        queue.writes.append(_Write(step, future, journal))
        self._schedule(queue, 0.0)
        return await future

    def append_entry(self, entry: Entry) -> None:
        """Queue a journal entry for the next transaction, of whichever loop (lost if it cannot be written)."""
        if self.journal_off:
            return  # the disk was full at the last write: the room is the tasks'
        with self._lock:
            self._journal.append(entry)
            queued = len(self._journal)
        if queued < JOURNAL_BATCH and self._carried():
            return  # a transaction that takes them is due already
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a caller of its own: written with the next transaction, or by ``flush_journal``
            return
        queue = self._carrier = self._queue(loop)
        self._schedule(queue, JOURNAL_DELAY if queued < JOURNAL_BATCH else 0.0)

    def _carried(self) -> bool:
        """Whether a transaction that will take the queued entries is scheduled (on a loop still open)."""
        carrier = self._carrier
        return carrier is not None and carrier.scheduled is not None and not carrier.loop.is_closed()

    async def flush_journal(self) -> None:
        """Get the queued journal entries committed (before the journal is read): a write that carries
        them. Entries that cannot be written are lost, as on the hot path."""
        if self._journal:
            with suppress(StoreUnavailable):
                await self.write(_nothing, journal=True)

    def _queue(self, loop: asyncio.AbstractEventLoop) -> _Queue:
        queue = self._queues.get(loop)
        if queue is None:
            with self._lock:  # a loop's first write: the closed loops' queues go
                self._queues = {known: q for known, q in self._queues.items() if not known.is_closed()}
                queue = self._queues.setdefault(loop, _Queue(loop))
        return queue

    def _schedule(self, queue: _Queue, delay: float) -> None:
        """The queue's next transaction: at the end of this turn of its loop (``delay`` 0), or ``delay``
        later, never before ``retry_at``; one due as soon or sooner stands."""
        loop = queue.loop
        due = max(loop.time() + delay, queue.retry_at)
        if queue.scheduled is not None:
            if queue.due <= due:
                return
            queue.scheduled.cancel()
        queue.due = due
        queue.scheduled = loop.call_soon(self._flush, queue) if delay <= 0 else loop.call_at(due, self._flush, queue)

    # -- the transaction ---------------------------------------------------------------------------

    def _flush(self, queue: _Queue) -> None:
        queue.scheduled = None
        loop = queue.loop
        if queue.retry_at and loop.time() < queue.retry_at:
            self._schedule(queue, 0.0)  # (a timer of under a millisecond fires at the loop's next turn)
            return
        writes, queue.writes = queue.writes[:BATCH], queue.writes[BATCH:]
        try:
            outcomes = self._commit(writes)
        except _Busy:
            queue.retry_at = loop.time() + RETRY  # no try before then, whatever writes come
            queue.writes[:0] = [write for write in writes if not write.future.done()]  # first in line again
            if queue.writes and time.monotonic() - queue.waiting_since >= self.timeout:
                self._give_up(queue)
            elif queue.writes or self._journal:
                self._schedule(queue, RETRY)
            return
        queue.retry_at = 0.0
        for write, result, error in outcomes:
            if not write.future.done():
                if error is None:
                    write.future.set_result(result)
                else:
                    write.future.set_exception(error)
        if queue.writes:
            queue.waiting_since = time.monotonic()
            self._schedule(queue, 0.0)

    def _commit(self, writes: list[_Write]) -> list[Outcome]:
        """The queued journal entries and ``writes`` in one transaction; each write's outcome (a failed
        transaction answers its writes with the error). One that fails for want of space makes room and
        tries the writes once more, without the journal's. Raises ``_Busy``: the writes wait."""
        with self._lock:
            entries, self._journal = self._journal, []
            if entries:
                self._carrier = None
            try:
                return self._transact(writes, entries)
            except _Busy:
                self._journal[:0] = entries  # first in line again
                raise
            except StoreUnavailable as exc:
                if not out_of_space(exc):
                    return _answer(writes, exc)
                self.make_room()
                _answer([write for write in writes if write.journal], exc)
            except Exception as exc:  # the transaction failed: none of it was written
                return _answer(writes, exc)
            kept = [write for write in writes if not write.journal]
            try:
                return self._transact(kept, []) if kept else []
            except _Busy:
                raise
            except Exception as exc:
                return _answer(kept, exc)

    def _transact(self, writes: list[_Write], entries: list[Entry]) -> list[Outcome]:
        """One transaction: the entries, then each write in a savepoint. Raises ``_Busy`` when the lock is
        held elsewhere, ``StoreUnavailable`` when the store fails."""
        self._end_read()  # this turn's reads are done: a write transaction of its own
        with self.guard:
            db = self.connection()
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if _locked(exc):
                    raise _Busy() from None
                raise
            try:
                if entries and not self.journal_off:
                    rows = [(entry.account, entry.encoded().decode()) for entry in entries]
                    steps.append_journal(db, rows, self.journal_size)
                outcomes = [(write, *self._step(db, write)) for write in writes]
                db.execute("COMMIT")
            except BaseException:
                with suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
        if any(error is None and not write.journal for write, _, error in outcomes):
            self.journal_off = False  # a write succeeded: there is room again
        self._look_at_wal()
        return outcomes

    def _step(self, db: sqlite3.Connection, write: _Write) -> tuple[Any, BaseException | None]:
        if write.journal and self.journal_off:
            return 0, None  # the journal is shed for the tasks' room
        db.execute("SAVEPOINT op")
        try:
            result = write.step(db)
        except sqlite3.OperationalError:
            raise  # the store cannot go on: the whole transaction fails
        except Exception as exc:  # this write's own problem: undo it alone
            db.execute("ROLLBACK TO op")
            db.execute("RELEASE op")
            return None, exc
        db.execute("RELEASE op")
        return result, None

    def _give_up(self, queue: _Queue) -> None:
        """The lock was held elsewhere for the whole timeout: the waiting writes are answered 503, and
        the guard answers the next calls at once for a while."""
        writes, queue.writes = queue.writes, []
        took = time.monotonic() - queue.waiting_since
        _answer(writes, self.guard.failed(sqlite3.OperationalError("database is locked"), took))

    def make_room(self) -> None:
        """A write found no room: checkpoint the WAL and truncate it (its space goes back to the disk),
        delete the journal's rows (their pages go to the file's free list, for the tasks), and write no
        journal entry until a write succeeds again. Best effort, each step waiting ``ROOM_WAIT_MS`` at
        most for other connections (readers, another worker's writer)."""
        self.journal_off = True
        with self._lock, suppress(sqlite3.Error):
            self._end_read()  # this process's reader leaves the WAL first
            db = self.connection()
            db.execute(f"PRAGMA busy_timeout={ROOM_WAIT_MS}")
            try:
                with suppress(sqlite3.Error):
                    db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                db.execute("DELETE FROM journal")  # a transaction of its own: shed even if the retry fails
            finally:
                db.execute("PRAGMA busy_timeout=0")

    # -- checkpoints -------------------------------------------------------------------------------

    def _look_at_wal(self) -> None:
        """Now and then (every ``CHECKPOINT_LOOK`` commits), a checkpoint when the WAL has grown."""
        self._commits += 1
        if self._commits % CHECKPOINT_LOOK or self._checkpointing.locked():
            return
        with suppress(OSError):
            if os.stat(self.path + "-wal").st_size > CHECKPOINT_BYTES:
                threading.Thread(target=self._checkpoint, name="mockserver-sqlite-checkpoint", daemon=True).start()

    def _checkpoint(self) -> None:
        with self._checkpointing, suppress(sqlite3.Error):
            db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            try:
                # PASSIVE copies what is in the WAL while writes go on; RESTART then copies the few frames
                # written meanwhile and makes the next transaction start the WAL over (passive ones alone,
                # racing writes that keep coming, would leave it growing for ever). RESTART keeps the write
                # lock while it waits for readers to leave the WAL: briefly, so that the writers (who find
                # the lock taken and try again) do not wait out their timeout.
                db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                db.execute(f"PRAGMA busy_timeout={RESTART_WAIT_MS}")
                db.execute("PRAGMA wal_checkpoint(RESTART)")
            finally:
                db.close()
        with self._lock:
            queues = list(self._queues.values())
        for queue in queues:
            if queue.writes and not queue.loop.is_closed():
                with suppress(RuntimeError):  # (closed meanwhile)
                    queue.loop.call_soon_threadsafe(self._kick, queue)

    def _kick(self, queue: _Queue) -> None:
        """The checkpoint let go of the lock: writes waiting for it are tried now, not at their next retry."""
        if queue.writes:
            queue.retry_at = 0.0
            self._schedule(queue, 0.0)
