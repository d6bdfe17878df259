"""Every store keeps the same promises: the Store protocol, run on memory, SQLite and a real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
import threading
from pathlib import Path
from typing import Any, cast

import pytest

from mockserver import Settings, VirtualClock
from mockserver.core import ledger, lifecycle
from mockserver.core.canned import CannedResponse
from mockserver.core.errors import ApiError
from mockserver.core.faults import Fault, FaultRule
from mockserver.core.records import TaskRecord, UploadRecord
from mockserver.service import Fake
from mockserver.store import Overdraft, Store
from mockserver.store.memory import MemoryStore
from mockserver.store.sqlite import SQLiteStore, steps

from ..conftest import MakeStore
from ..helpers import at_once, blocking, twin

pytestmark = pytest.mark.all_stores  # every test here runs on memory, SQLite and Redis

PRICE = 8.0  # a charged task in these tests: 2 × 8 = 16


def task(task_id: str, account: str = "acct_a", **changes: object) -> TaskRecord:
    fields: dict[str, object] = {
        "id": task_id, "account": account, "action": "VIDEO", "created_at": 1.0, "duration": 8.0, "prompt": "p",
        "mode": "FAST", "clips": 2, "price_key": "midjourney@video", "quantity": 2, "video_type": "vid_1.1_i2v_480",
        "params": {"notes": ["n"], "index": None},
    }  # fmt: skip
    fields.update(changes)
    return TaskRecord(**fields)  # type: ignore[arg-type]


def test_tasks_round_trip_in_order(make_store: MakeStore) -> None:
    store = blocking(make_store())
    for n in range(5):
        store.put_task(task(f"task_{n}", "acct_a" if n % 2 else "acct_b"))
    assert store.get_task("task_3") == task("task_3", "acct_a")
    assert store.get_task("missing") is None
    assert [t.id for t in store.tasks()] == [f"task_{n}" for n in range(5)]
    assert [t.id for t in store.tasks("acct_a")] == ["task_1", "task_3"]
    store.put_task(task("task_0", "acct_b", prompt="again"))  # replacing keeps the order
    assert [t.id for t in store.tasks()] == ["task_0", "task_1", "task_2", "task_3", "task_4"]
    assert store.get_task("task_0").prompt == "again"


def test_update_task_is_atomic(make_store: MakeStore) -> None:
    store = blocking(make_store())
    store.put_task(task("task_p", finish_after_polls=1000))

    def poll_many() -> None:
        for _ in range(50):
            store.update_task("task_p", lambda r: TaskRecord.from_dict({**r.to_dict(), "polls": r.polls + 1}))

    threads = [threading.Thread(target=poll_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get_task("task_p").polls == 200
    assert store.update_task("missing", lambda r: r) is None


def test_eviction_forgets_old_tasks_and_their_keys(make_store: MakeStore) -> None:
    store = blocking(make_store())
    for n in range(6):
        key = {1: "old", 5: "new"}.get(n)
        assert store.put_task_once(task(f"task_{n}", created_at=float(n)), key) == f"task_{n}"
    assert store.evict_tasks(created_before=3.0) == 3
    assert [t.id for t in store.tasks()] == ["task_3", "task_4", "task_5"]
    assert store.get_task("task_0") is None
    assert store.idempotent_task("acct_a", "old") is None
    assert store.idempotent_task("acct_a", "new") == "task_5"
    assert store.evict_tasks(created_before=3.0) == 0


def test_put_task_once_binds_the_key_and_stores_the_task_together(make_store: MakeStore) -> None:
    store = blocking(make_store())
    assert store.idempotent_task("acct_a", "k") is None
    assert store.put_task_once(task("task_1", unit_price=PRICE), "k") == "task_1"
    assert store.put_task_once(task("task_2", unit_price=PRICE), "k") == "task_1"  # the earlier one; nothing stored
    assert store.get_task("task_2") is None
    assert store.put_task_once(task("task_3", "acct_b"), "k") == "task_3"  # keys are per account
    assert store.idempotent_task("acct_a", "k") == "task_1"
    assert store.get_task("task_1") == task("task_1", unit_price=PRICE)
    assert store.put_task_once(task("task_1", unit_price=PRICE), None) == "task_1"  # stored already: not again
    assert store.put_task_once(task("task_4"), None) == "task_4"
    assert [t.id for t in store.tasks()] == ["task_1", "task_3", "task_4"]
    assert store.spending("acct_a", 100.0).charged == 16.0  # task_1 once, task_2 never


def race(store: Any, count: int, submit: Any) -> list[Any]:
    """``submit(view, n)`` from ``count`` threads released at once, over four connections."""
    views = [store, twin(store), twin(store), twin(store)]
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(n: int) -> None:
        barrier.wait(timeout=30)
        results[n] = submit(views[n % len(views)], n)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_one_key_raced_over_several_connections_stores_one_task(make_store: MakeStore) -> None:
    store = blocking(make_store())
    results = race(store, 16, lambda view, n: view.put_task_once(task(f"task_{n}", unit_price=PRICE), "same"))
    assert len(set(results)) == 1
    assert [t.id for t in store.tasks()] == results[:1]
    assert store.idempotent_task("acct_a", "same") == results[0]
    assert store.spending("acct_a", 100.0).charged == 16.0


def test_balance_check_and_charge_are_one_step(make_store: MakeStore) -> None:
    """32 racing submissions of 16 against a balance of 20: exactly one is stored and charged."""
    store = blocking(make_store())
    results = race(store, 32, lambda view, n: view.put_task_once(task(f"task_{n}", unit_price=PRICE), None, 20.0))
    accepted = [r for r in results if isinstance(r, str)]
    assert len(accepted) == 1, results
    assert {r.left for r in results if isinstance(r, Overdraft)} == {4.0}
    assert [t.id for t in store.tasks()] == accepted
    assert store.spending("acct_a", 100.0) == (16.0, 0.0)


def assert_totals_agree(store: Any, now: float, account: str = "acct_a") -> None:
    derived = ledger.summary(store.tasks(), now, {}, None)["accounts"].get(account, {"charged": 0.0, "refunded": 0.0})
    running = store.spending(account, now)
    assert running.charged == pytest.approx(derived["charged"]), f"at {now}"
    assert running.refunded == pytest.approx(derived["refunded"]), f"at {now}"


def test_running_totals_follow_the_ledger(make_store: MakeStore) -> None:
    """Charges when stored; a refund when the lifecycle ends in FAILURE (at the end of its time, or at
    the poll that settles a poll-count task); eviction, replacement and reset take them out again."""
    store = blocking(make_store())
    stored = [
        task("ok", created_at=0.0, unit_price=PRICE),
        task("fails", created_at=1.0, unit_price=PRICE, outcome="failure"),  # refunded at 9
        task("by_polls", created_at=2.0, unit_price=PRICE, outcome="failure", finish_after_polls=2),
        task("never", created_at=3.0, unit_price=PRICE, outcome="never"),
        task("free", created_at=4.0, outcome="failure"),
        task("other", "acct_b", created_at=4.0, unit_price=PRICE, outcome="failure", duration=0.0),
    ]
    for record in stored:
        assert store.put_task_once(record, None) == record.id
    for now in (5.0, 8.999, 9.0, 20.0):
        assert_totals_agree(store, now)
    assert_totals_agree(store, 4.0, "acct_b")
    assert store.spending("acct_a", 20.0) == (64.0, 16.0)
    # the balance check counts the refund due by the new task's creation: 64 - 16 spent of 64
    assert store.put_task_once(task("late", created_at=10.0, unit_price=PRICE), None, 64.0) == "late"
    assert store.put_task_once(task("later", created_at=10.0, unit_price=PRICE), None, 64.0) == Overdraft(0.0)
    for at in (11.0, 12.0):  # the second poll settles it: refunded from then on
        store.update_task("by_polls", lambda r, at=at: lifecycle.counted_poll(r, at))
    assert store.get_task("by_polls").settled_at == 12.0
    for now in (12.0, 30.0):  # (clocks only move forward: nobody asks about 11.5 after the poll at 12)
        assert_totals_agree(store, now)
    assert store.spending("acct_a", 30.0) == (80.0, 32.0)
    never = store.get_task("never")
    assert never is not None
    store.put_task(dataclasses.replace(never, quantity=3))
    assert_totals_agree(store, 30.0)
    assert store.evict_tasks(created_before=2.5) == 3  # ok, fails (refund moved), by_polls (refund moved)
    assert_totals_agree(store, 30.0)
    assert store.spending("acct_a", 30.0) == (40.0, 0.0)
    store.reset("acct_a")
    assert store.spending("acct_a", 30.0) == (0.0, 0.0)
    assert store.put_task_once(task("again", created_at=31.0, unit_price=PRICE), None, 16.0) == "again"
    assert_totals_agree(store, 4.0, "acct_b")


@pytest.mark.parametrize("outcome", ["success", "failure", "cancel", "never"])
@pytest.mark.parametrize("mode", ["time", "polls", "not_start"])
def test_refund_due_is_when_the_ledger_shows_the_refund(outcome: str, mode: str) -> None:
    record = task("t", created_at=100.0, unit_price=PRICE, outcome=outcome, duration=10.0)
    if mode == "polls":
        record = dataclasses.replace(record, finish_after_polls=1, polls=1, settled_at=105.0)
    if mode == "not_start":
        record = dataclasses.replace(record, params={"not_start_seconds": 5.0})
    due = ledger.refund_due(record)
    start = record.settled_at or record.created_at  # a settled record is read after the poll that settled it
    for now in [start + step / 4 for step in range(0, 100)]:
        refunded = any(e.kind == "refund" for e in ledger.entries([record], now))
        assert refunded == (due is not None and now >= due), (now, due)


def test_uploads(make_store: MakeStore) -> None:
    store = blocking(make_store())
    upload = UploadRecord("upl_1", "acct_a", "a.png", "image/png", 3, 5.0, b"\x89PN")
    store.put_upload(upload)
    assert store.get_upload("upl_1") == upload
    assert store.get_upload("upl_2") is None


def test_journal_is_a_ring_with_stable_sequence_numbers(make_store: MakeStore) -> None:
    store = blocking(make_store(journal_size=3))
    seqs = [store.append_journal({"path": f"/{n}", "account": "acct_a"}) for n in range(5)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    kept = store.journal()
    assert [e["path"] for e in kept] == ["/2", "/3", "/4"]
    assert [e["seq"] for e in kept] == seqs[2:]
    assert [e["path"] for e in store.journal(since=seqs[3])] == ["/4"]
    store.reset()
    assert store.journal() == []
    assert store.append_journal({"path": "/after"}) > seqs[-1]


def test_rules_fire_as_often_as_allowed(make_store: MakeStore) -> None:
    store = blocking(make_store())
    twice = FaultRule("rule_1", Fault("error_500"), endpoint="video", times=2)
    always = FaultRule("rule_2", Fault("latency", {"ms": "5"}), fields={"batch_size": 4})
    store.put_fault_rule(twice)
    store.put_fault_rule(always)
    assert store.fault_rules() == [twice, always]
    assert [store.fire_fault_rule("rule_1") for _ in range(3)] == [True, True, False]
    assert all(store.fire_fault_rule("rule_2") for _ in range(5))
    assert store.delete_fault_rule("rule_1") and not store.delete_fault_rule("rule_1")
    assert not store.fire_fault_rule("rule_1")
    assert store.fault_rules() == [always]


def test_rate_windows(make_store: MakeStore) -> None:
    store = blocking(make_store())
    assert [store.hit("acct_a", 100) for _ in range(3)] == [1, 2, 3]
    assert store.hit("acct_b", 100) == 1
    assert store.hit("acct_a", 101) == 1


def clock_of(store: Any) -> tuple[float, float | None]:
    """The clock's state as a request reads it: the store's shared settings, made current."""
    store.refresh()
    clock: tuple[float, float | None] = store.shared().clock
    return clock


def test_balances_and_clock(make_store: MakeStore) -> None:
    store = blocking(make_store())
    store.set_balance("acct_a", 12.5)
    store.set_balance("acct_b", None)
    assert store.balances() == {"acct_a": 12.5, "acct_b": None}
    assert clock_of(store) == (0.0, None)
    store.set_clock_state(30.0, 1234.5)
    assert store.shared().clock == (30.0, 1234.5)  # this process's copy follows at once
    assert clock_of(twin(store)) == (30.0, 1234.5)  # and another worker's, once it refreshes


def test_reset_one_account_or_all(make_store: MakeStore) -> None:
    store = blocking(make_store())
    store.put_task_once(task("task_a", "acct_a", unit_price=PRICE), "k")
    store.put_task(task("task_b", "acct_b"))
    store.append_journal({"account": "acct_a"})
    store.append_journal({"account": "acct_b"})
    store.set_balance("acct_a", 1.0)
    store.put_fault_rule(FaultRule("rule_1", Fault("never")))
    store.set_clock_state(5.0, None)
    store.reset("acct_a")
    assert [t.id for t in store.tasks()] == ["task_b"]
    assert store.idempotent_task("acct_a", "k") is None
    assert store.spending("acct_a", 10.0) == (0.0, 0.0)
    assert [e["account"] for e in store.journal()] == ["acct_b"]
    assert store.balances() == {}
    assert len(store.fault_rules()) == 1
    store.reset()
    assert store.tasks() == [] and store.fault_rules() == [] and store.journal() == []
    assert clock_of(store) == (5.0, None)  # the clock only moves forward: a reset keeps it


# -- fire counts, canned responses, account settings (the control plane's verification and seeding) ----


def test_fault_rules_keep_their_fire_counts(make_store: MakeStore) -> None:
    store = blocking(make_store())
    store.put_fault_rule(FaultRule("rule_1", Fault("error_500"), times=3))
    store.put_fault_rule(FaultRule("rule_2", Fault("never"), fired=4))  # imported: its count goes on from 4
    assert store.fault_rule_counts() == {"rule_1": 0, "rule_2": 4}
    assert [store.fire_fault_rule("rule_1") for _ in range(4)] == [True, True, True, False]
    store.fire_fault_rule("rule_2")
    assert store.fault_rule_counts() == {"rule_1": 3, "rule_2": 5}
    assert store.fault_rules()[0] == FaultRule("rule_1", Fault("error_500"), times=3)  # fired is not compared
    store.delete_fault_rule("rule_1")
    assert store.fault_rule_counts() == {"rule_2": 5}
    store.reset()
    assert store.fault_rule_counts() == {}


def canned(response_id: str, **changes: object) -> CannedResponse:
    fields: dict[str, object] = {"id": response_id, "path": "/v1/tasks/*", "status": 503, "text": "busy"}
    fields.update(changes)
    return CannedResponse(**fields)  # type: ignore[arg-type]


def test_canned_responses_keep_order_and_counts(make_store: MakeStore) -> None:
    store = blocking(make_store())
    assert store.canned_responses() == []
    once = canned("resp_1", times=2, method="GET", headers={"retry-after": "2"}, fields={"batch_size": 4})
    always = canned("resp_2", path="/media/**", body={"code": 500, "data": []}, has_body=True, text=None)
    store.put_canned_response(once)
    store.put_canned_response(always)
    assert store.canned_responses() == [once, always]
    assert [store.fire_canned_response("resp_1") for _ in range(3)] == [True, True, False]
    assert all(store.fire_canned_response("resp_2") for _ in range(4))
    assert [r.fired for r in store.canned_responses()] == [2, 4]
    store.put_canned_response(canned("resp_1", times=5, fired=1))  # replaced: keeps its place
    assert [(r.id, r.times, r.fired) for r in store.canned_responses()] == [("resp_1", 5, 1), ("resp_2", None, 4)]
    assert store.delete_canned_response("resp_1") and not store.delete_canned_response("resp_1")
    assert not store.fire_canned_response("resp_1")
    assert [r.id for r in store.canned_responses()] == ["resp_2"]
    assert store.canned_responses()[0].content() == (b'{"code":500,"data":[]}', "application/json")
    store.reset("acct_a")  # an account's reset keeps them (as it keeps fault rules)
    assert len(store.canned_responses()) == 1
    store.reset()
    assert store.canned_responses() == []


def test_canned_responses_fire_atomically(make_store: MakeStore) -> None:
    store = blocking(make_store())
    store.put_canned_response(canned("resp_1", times=50))
    fired: list[bool] = []

    def fire_many() -> None:
        fired.extend(store.fire_canned_response("resp_1") for _ in range(30))

    threads = [threading.Thread(target=fire_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fired.count(True) == 50
    assert store.canned_responses()[0].fired == 50


def test_account_settings(make_store: MakeStore) -> None:
    store = blocking(make_store())
    assert store.account_settings("acct_a") == {}
    store.set_account_settings("acct_a", {"task_dialect": "mj"})
    store.set_account_settings("acct_b", {"task_dialect": "unified"})
    assert store.account_settings("acct_a") == {"task_dialect": "mj"}
    assert store.all_account_settings() == {"acct_a": {"task_dialect": "mj"}, "acct_b": {"task_dialect": "unified"}}
    store.account_settings("acct_a")["task_dialect"] = "changed"  # a copy: the store is not changed
    assert store.account_settings("acct_a") == {"task_dialect": "mj"}
    store.set_account_settings("acct_b", {})  # empty: forgotten
    assert store.all_account_settings() == {"acct_a": {"task_dialect": "mj"}}
    store.set_account_settings("acct_b", {"task_dialect": "mj"})
    store.reset("acct_a")  # the account's settings go with its state
    assert store.all_account_settings() == {"acct_b": {"task_dialect": "mj"}}
    store.reset()
    assert store.all_account_settings() == {}


def test_a_version_2_sqlite_file_gains_the_new_tables_without_booking_twice(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    store = blocking(SQLiteStore(path))
    store.put_task_once(task("task_a", unit_price=PRICE), None)
    store.close()
    # as a file written before canned responses and account settings
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("DROP TABLE canned")
        db.execute("DROP TABLE account_settings")
        db.execute("PRAGMA user_version = 2")
    reopened = blocking(SQLiteStore(path))
    assert reopened.spending("acct_a", 2.0) == (2 * PRICE, 0.0)  # the running totals were not summed again
    reopened.put_canned_response(canned("resp_1"))
    reopened.set_account_settings("acct_a", {"task_dialect": "mj"})
    assert [r.id for r in reopened.canned_responses()] == ["resp_1"]
    assert reopened.account_settings("acct_a") == {"task_dialect": "mj"}


# -- a submission with a balance set reads running totals, never the account's history -------------

BODY = {"prompt": "p", "image_urls": ["https://example.com/a.png"], "batch_size": 2}


class NoHistory:
    """A store that fails the test when anything lists tasks: a submission must not need to."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def tasks(self, account: str | None = None) -> list[TaskRecord]:
        raise AssertionError("a submission listed the account's tasks")


def submit(fake: Fake, count: int = 1) -> list[str]:
    async def run() -> list[str]:
        return [(await fake.submit("video", "acct_a", dict(BODY))).task_id for _ in range(count)]

    return asyncio.run(run())


def test_a_submission_checks_the_balance_without_reading_the_history(make_store: MakeStore) -> None:
    store = blocking(make_store())
    fake = Fake.open(Settings(task_seconds=10.0), clock=VirtualClock(), store=cast(Store, NoHistory(store.store)))
    charge = store.get_task(submit(fake)[0]).charge
    assert charge > 0
    store.set_balance("acct_a", 2.5 * charge)
    submit(fake)
    with pytest.raises(ApiError) as refused:
        submit(fake)
    assert refused.value.status == 402
    assert refused.value.message.endswith(f", {0.5 * charge:g} left")
    assert len(store.tasks("acct_a")) == 2


def full_store(kind: str, tmp_path: Path, tasks: int) -> Store:
    """A store holding ``tasks`` tasks of acct_a (one in ten failed and refunded), filled in bulk."""
    records = [
        task(f"old_{n:06d}", created_at=1_767_225_000.0, unit_price=PRICE, outcome="failure" if n % 10 else "success")
        for n in range(tasks)
    ]
    if kind == "sqlite":
        store = SQLiteStore(tmp_path / f"{tasks}.db")  # the file and its schema
        with contextlib.closing(sqlite3.connect(store.path)) as db, db:  # one transaction, not 100 000
            for record in records:
                steps.insert(db, record)
                steps.book(db, record)
        return store
    memory = MemoryStore()
    for record in records:
        at_once(memory.put_task(record))
    return memory
