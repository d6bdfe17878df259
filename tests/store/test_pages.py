"""Task pages and counts, listings by status and ledger pages, eviction a step at a time."""

from __future__ import annotations

import asyncio
from typing import Any

from mockserver import Settings, VirtualClock
from mockserver.control import ControlPlane
from mockserver.core import ledger
from mockserver.service import Fake

from ..conftest import MakeStore
from ..helpers import blocking
from .test_conformance import task

BODY = {"prompt": "p", "image_urls": ["https://example.com/a.png"]}


# -- pages ------------------------------------------------------------------------------------------------


def test_task_pages_and_counts(make_store: MakeStore) -> None:
    store = blocking(make_store())
    for n in range(7):
        store.put_task_once(task(f"t{n}", account="acct_a" if n % 3 else "acct_b"), None)
    ids = [f"t{n}" for n in range(7)]
    a = [i for n, i in enumerate(ids) if n % 3]
    assert (store.task_count(), store.task_count("acct_a"), store.task_count("nobody")) == (7, len(a), 0)
    assert [t.id for t in store.task_page()] == ids
    assert [t.id for t in store.task_page(newest_first=True, offset=2, limit=3)] == ids[::-1][2:5]
    assert [t.id for t in store.task_page("acct_a", offset=1, limit=2)] == a[1:3]
    assert [t.id for t in store.task_page("acct_a", newest_first=True, limit=10)] == a[::-1]
    assert store.task_page(offset=10) == [] and store.task_page(limit=0) == []
    store.evict_tasks(5.0, limit=2)
    assert store.task_count() == 5 and [t.id for t in store.task_page()] == ids[2:]
    store.reset("acct_a")
    assert store.task_count() == store.task_count("acct_b") == len([i for i in ids[2:] if i not in a])


def test_listing_by_status_and_the_ledger_page_the_same_as_whole() -> None:
    clock = VirtualClock()
    fake = Fake.open(Settings(task_seconds=10.0), clock=clock)

    async def submit(n: int, body: dict[str, Any], **kw: Any) -> None:
        for _ in range(n):
            await fake.submit("video", "acct_a", body, **kw)

    asyncio.run(submit(5, BODY))
    clock.advance(60)
    asyncio.run(submit(3, {**BODY, "prompt": "p [mock:fail]"}))
    clock.advance(60)
    asyncio.run(submit(4, BODY))
    every = blocking(ControlPlane(fake)).tasks()[0]
    for status, want in (("SUCCESS", 5), ("FAILURE", 3), ("SUBMITTED", 4)):
        page, total = blocking(ControlPlane(fake)).tasks(status=status, newest_first=True, offset=1, limit=2)
        assert total == want
        matching = [t for t in every[::-1] if t["view"]["status"] == status]
        assert page == matching[1:3]
    whole = blocking(ControlPlane(fake)).ledger()
    assert whole["entries"] == ledger.summary(blocking(fake.store).tasks(), clock.now(), {}, None)["entries"]
    part = blocking(ControlPlane(fake)).ledger(offset=3, limit=4)
    assert part["entries"] == whole["entries"][3:7]
    assert part["accounts"] == whole["accounts"] and part["total_spent"] == whole["total_spent"]
    assert blocking(ControlPlane(fake)).ledger(limit=0)["entries"] == []


def test_eviction_goes_a_step_at_a_time(make_store: MakeStore) -> None:
    store = blocking(make_store())
    for n in range(25):
        store.put_task_once(task(f"t{n:02d}", created_at=float(n)), None)
    assert store.evict_tasks(20.0, limit=8) == 8
    assert store.evict_tasks(20.0, limit=8) == 8
    assert store.evict_tasks(20.0, limit=8) == 4
    assert [t.id for t in store.tasks()] == [f"t{n}" for n in range(20, 25)]
