"""The SQLite hot store (``store/sqlite/hot.py``): workers read each other's changes, loops never share a
snapshot, a lock held elsewhere is retried after a pause, queued journal entries are read."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from mockserver import Settings
from mockserver.core.faults import Fault, FaultRule
from mockserver.core.journal import Entry
from mockserver.service import Fake
from mockserver.store.base import Overdraft
from mockserver.store.sqlite import SQLiteHot, SQLiteStore
from mockserver.store.sqlite import hot as sqlite_hot

from .test_conformance import task

BODY = {"prompt": "p", "image_urls": ["https://example.com/a.png"]}


# -- shared settings across workers ----------------------------------------------------------------


def test_sqlite_workers_read_each_others_changes_in_their_next_turn(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    a, b = SQLiteStore(path), SQLiteStore(path)
    hot = a.hot()
    assert isinstance(hot, SQLiteHot)

    async def rules_seen() -> tuple[int, int]:
        await hot.refresh()
        first = len(hot.shared().rules)
        b.put_fault_rule(FaultRule("rule_1", Fault("error_500")))
        await hot.refresh()  # the same turn of the loop: the copy stands
        same_turn = len(hot.shared().rules)
        await asyncio.sleep(0)  # a later turn: read again
        await hot.refresh()
        return first, same_turn * 10 + len(hot.shared().rules)

    assert asyncio.run(rules_seen()) == (0, 1)
    b.set_clock_state(12.5, None)
    asyncio.run(hot.refresh())
    assert hot.shared().clock == (12.5, None)


def test_a_loop_never_reads_through_another_loops_snapshot(tmp_path: Path) -> None:
    """In-process transports share one store from threads of their own, each with its loop: a request
    on one loop that follows a change must see it, even while another loop's turn (and its read
    transaction) is still open. (Seen once in 20 runs of make test: a canned response added through
    one app was not yet seen by the other.)"""
    path = tmp_path / "state.db"
    a, b = SQLiteStore(path), SQLiteStore(path)
    hot = a.hot()
    assert isinstance(hot, SQLiteHot)
    seen: list[int] = []

    def other_loop() -> None:
        async def refreshed() -> int:
            await hot.refresh()
            return len(hot.shared().rules)

        seen.append(asyncio.run(refreshed()))

    async def change_while_this_turn_reads() -> None:
        await hot.refresh()  # this turn's read transaction is open now, and stays open until the turn ends
        b.put_fault_rule(FaultRule("rule_1", Fault("error_500")))  # another worker changes the rules
        reader = threading.Thread(target=other_loop)
        reader.start()
        reader.join()  # this turn is not over: its snapshot is still open

    asyncio.run(change_while_this_turn_reads())
    assert seen == [1]


def test_a_write_lock_held_elsewhere_is_tried_again_after_a_pause_not_at_every_turn(tmp_path: Path) -> None:
    """Writes that find the lock held wait ``RETRY`` seconds for their next try, however many writes come
    meanwhile (trying at every turn of the loop spent a worker's time on failed tries); once the lock is
    free, every queued write is made."""
    path = tmp_path / "state.db"
    store = SQLiteStore(path)
    hot = store.hot()
    assert isinstance(hot, SQLiteHot)
    other = sqlite3.connect(path, isolation_level=None)
    tries: list[float] = []
    commit = hot._commit

    def counted(*args: Any) -> None:
        tries.append(time.monotonic())
        commit(*args)

    hot._commit = counted  # type: ignore[method-assign,assignment]

    async def writes_while_locked() -> list[str | Overdraft]:
        other.execute("BEGIN IMMEDIATE")  # another worker writes
        pending: list[asyncio.Future[str | Overdraft]] = []
        started = time.monotonic()
        while time.monotonic() - started < 0.1:  # a write at every turn of the loop, for 0.1 s
            pending.append(asyncio.ensure_future(hot.put_task_once(task(f"task_{len(pending)}"), None)))
            await asyncio.sleep(0)
        locked = len(tries)
        other.execute("ROLLBACK")
        done = await asyncio.gather(*pending)
        assert 1 <= locked <= 0.1 / sqlite_hot.RETRY + 2, f"{locked} tries in 0.1 s"
        return done

    done = asyncio.run(writes_while_locked())
    assert len(done) > 50 and done == [f"task_{n}" for n in range(len(done))]
    assert store.get_task(f"task_{len(done) - 1}") is not None
    other.close()


def test_sqlite_journal_entries_queued_are_read(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "state.db")
    fake = Fake.open(Settings(), store=store)
    entry = Entry(1.0, 2.0, "GET", "/v1/tasks/x", b"", {}, 2, 0, 404, 0.001, {"account": "acct_a"})

    async def record() -> None:
        fake.append_entry(entry)

    asyncio.run(record())  # queued for the next transaction, which this loop never ran
    assert [e["path"] for e in store.journal()] == ["/v1/tasks/x"]
    assert SQLiteStore(tmp_path / "state.db").journal()[0]["status"] == 404  # and written for every worker
