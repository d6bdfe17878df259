"""SQLite on a nearly full disk recovers by itself once space is freed.

The "disk" is SQLite's own ``PRAGMA max_page_count`` on every connection to the file (the store's,
a checkpoint's; a connection opened again after a failure too): a write that needs
one more page fails with SQLITE_FULL, "database or disk is full", as on a full disk. The disk fills
with tasks until submissions are answered 503; then a little space is freed, and the journal's writes
(every request makes an entry) would take it all again before the next submission. The store sheds
the journal instead (its rows, and any further entries until a write succeeds): the tasks come first.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx
import pytest

from mockserver import Settings, VirtualClock, create_app
from mockserver.core.errors import StoreUnavailable
from mockserver.core.records import TaskRecord
from mockserver.store.sqlite import SQLiteStore
from mockserver.testing.transport import SyncASGITransport

from ..conftest import SPEC
from ..helpers import AUTH, FRAME, Api, blocking

BODY = {"prompt": "a cat " * 500, "image_urls": [FRAME]}  # a task row of 3 KB: each one takes a page of its own
FREED = 12  # pages of room made on the full disk


class Disk:
    """Every connection to one SQLite file holds at most ``pages`` pages (None: as many as it likes)."""

    def __init__(self, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.path = str(path)
        self.pages: int | None = None
        self.connections: list[sqlite3.Connection] = []
        connect = sqlite3.connect

        def limited(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
            db: sqlite3.Connection = connect(database, *args, **kwargs)
            if str(database) == self.path:
                self.connections.append(db)
                self._limit(db)
            return db

        monkeypatch.setattr(sqlite3, "connect", limited)

    def _limit(self, db: sqlite3.Connection) -> None:
        with suppress(sqlite3.ProgrammingError):  # closed
            db.execute(f"PRAGMA max_page_count = {self.pages or 1_000_000_000}")

    def hold(self, pages: int | None) -> None:
        """From now on, at most ``pages`` pages, on every open connection and every one opened later."""
        self.pages = pages
        for db in self.connections:
            self._limit(db)

    def used(self) -> int:
        """The pages the database holds now (its free ones included), as its last commit left it."""
        db = sqlite3.connect(self.path)
        try:
            return int(db.execute("PRAGMA page_count").fetchone()[0])
        finally:
            db.close()


@pytest.fixture
def disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Disk:
    return Disk(tmp_path / "state.db", monkeypatch)


@pytest.fixture
def api(disk: Disk) -> Iterator[Api]:
    """A server on the file, called in-process: submissions go through the store's group-commit writer."""
    clock = VirtualClock()
    store = SQLiteStore(disk.path, timeout=0.5)
    app = create_app(Settings(task_seconds=10.0), clock=clock, spec=SPEC, store=store)
    with httpx.Client(transport=SyncASGITransport(app), base_url="http://testserver", headers=AUTH) as client:
        yield Api(client=client, app=app, clock=clock)
    store.close()


def journaled(api: Api, count: int) -> None:
    """``count`` requests, each journaled, and each entry written before the next request (as the
    journal's writes come in between a busy server's submissions): polls of a task nobody made."""
    store = blocking(api.fake.store)
    for n in range(count):
        assert api.client.get(f"/v1/midjourney/task_nobody_{n}").status_code == 404
        with suppress(StoreUnavailable):
            store.journal()  # what is queued is written first (or lost, when it cannot be)


def fill_with_tasks(api: Api, most: int = 400) -> list[int]:
    """Submit until one is refused for want of room; the answers."""
    statuses: list[int] = []
    while not statuses or statuses[-1] == 200:
        assert len(statuses) < most, "the disk never filled"
        statuses.append(api.submit(BODY).status_code)
    return statuses


def test_after_space_is_freed_submissions_succeed_and_the_journal_was_shed(api: Api, disk: Disk) -> None:
    assert isinstance(api.fake.store, SQLiteStore)
    store = blocking(api.fake.store)
    journaled(api, 40)
    first = store.journal()[-1]["seq"]  # the journal from before the disk filled
    disk.hold(disk.used())  # the disk is full: not one page more

    statuses = fill_with_tasks(api)
    assert statuses[-1] == 503  # no room left for a task, even with the journal shed
    accepted = statuses.count(200)
    assert store.task_count() == accepted  # every task answered 200 is kept

    disk.hold(disk.used() + FREED)  # some space is freed ...
    journaled(api, 200)  # ... and the journal's writes come first (enough to fill it all again)

    assert api.submit(BODY).status_code == 200  # the task is written: the journal did not take the room
    assert store.task_count() == accepted + 1
    assert all(entry["seq"] > first for entry in store.journal())  # the entries from before were shed

    disk.hold(None)  # room enough again
    assert [api.submit(BODY).status_code for _ in range(5)] == [200] * 5
    journaled(api, 3)
    assert [e["path"] for e in store.journal()][-3:] == [f"/v1/midjourney/task_nobody_{n}" for n in range(3)]


def big_task(n: int) -> TaskRecord:
    """A task of about 3 KB (a page of its own)."""
    return TaskRecord(
        id=f"task_{n:06d}", account="acct_a", action="VIDEO", created_at=1.0, duration=8.0, prompt="p" * 3000,
        mode="FAST", clips=1, price_key="midjourney@video", quantity=1, unit_price=2.0,
    )  # fmt: skip


def test_the_store_calls_recover_too(disk: Disk) -> None:
    """The same without a server (the store's own calls, one at a time): a write that fails for want of
    room sheds the journal and is tried once more; a journal write is shed, not tried again."""
    store = blocking(SQLiteStore(disk.path, timeout=0.5))
    for n in range(40):
        store.append_journal({"path": f"/before/{n}", "body": "x" * 400})
    disk.hold(disk.used())
    stored = 0
    with pytest.raises(StoreUnavailable) as full:
        while stored < 400:
            store.put_task(big_task(stored))
            stored += 1
    assert "full" in full.value.reason
    assert store.task_count() == stored > 0
    assert store.journal() == []  # shed: the tasks took the room its rows held

    disk.hold(disk.used() + FREED)
    for n in range(200):  # not written while writes fail: the room stays the tasks'
        with suppress(StoreUnavailable):
            store.append_journal({"path": f"/later/{n}", "body": "x" * 400})
    store.put_task(big_task(stored))
    assert store.task_count() == stored + 1

    store.append_journal({"path": "/back"})  # a write succeeded: the journal is kept again
    assert [entry["path"] for entry in store.journal()] == ["/back"]
    store.close()
