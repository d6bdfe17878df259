"""Every store keeps the same promises: the Store protocol, run on memory, SQLite and a real Redis."""

from __future__ import annotations

import threading

from mockserver.core.faults import Fault, FaultRule
from mockserver.core.records import TaskRecord, UploadRecord

from .conftest import MakeStore


def task(task_id: str, account: str = "acct_a", **changes: object) -> TaskRecord:
    fields: dict[str, object] = {
        "id": task_id, "account": account, "action": "VIDEO", "created_at": 1.0, "duration": 8.0, "prompt": "p",
        "mode": "FAST", "clips": 2, "price_key": "midjourney@video", "quantity": 2, "video_type": "vid_1.1_i2v_480",
        "params": {"notes": ["n"], "index": None},
    }  # fmt: skip
    fields.update(changes)
    return TaskRecord(**fields)  # type: ignore[arg-type]


def test_tasks_round_trip_in_order(make_store: MakeStore) -> None:
    store = make_store()
    for n in range(5):
        store.put_task(task(f"task_{n}", "acct_a" if n % 2 else "acct_b"))
    assert store.get_task("task_3") == task("task_3", "acct_a")
    assert store.get_task("missing") is None
    assert [t.id for t in store.tasks()] == [f"task_{n}" for n in range(5)]
    assert [t.id for t in store.tasks("acct_a")] == ["task_1", "task_3"]
    store.put_task(task("task_0", "acct_b", prompt="again"))  # replacing keeps the order
    assert [t.id for t in store.tasks()] == ["task_0", "task_1", "task_2", "task_3", "task_4"]
    assert store.get_task("task_0").prompt == "again"  # type: ignore[union-attr]


def test_update_task_is_atomic(make_store: MakeStore) -> None:
    store = make_store()
    store.put_task(task("task_p", finish_after_polls=1000))

    def poll_many() -> None:
        for _ in range(50):
            store.update_task("task_p", lambda r: TaskRecord.from_dict({**r.to_dict(), "polls": r.polls + 1}))

    threads = [threading.Thread(target=poll_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get_task("task_p").polls == 200  # type: ignore[union-attr]
    assert store.update_task("missing", lambda r: r) is None


def test_eviction_forgets_old_tasks_and_their_keys(make_store: MakeStore) -> None:
    store = make_store()
    for n in range(6):
        store.put_task(task(f"task_{n}", created_at=float(n)))
    store.claim_idempotency_key("acct_a", "old", "task_1")
    store.claim_idempotency_key("acct_a", "new", "task_5")
    assert store.evict_tasks(created_before=3.0) == 3
    assert [t.id for t in store.tasks()] == ["task_3", "task_4", "task_5"]
    assert store.get_task("task_0") is None
    assert store.idempotent_task("acct_a", "old") is None
    assert store.idempotent_task("acct_a", "new") == "task_5"
    assert store.evict_tasks(created_before=3.0) == 0


def test_idempotency_first_claim_wins(make_store: MakeStore) -> None:
    store = make_store()
    assert store.idempotent_task("acct_a", "k") is None
    assert store.claim_idempotency_key("acct_a", "k", "task_1") == "task_1"
    assert store.claim_idempotency_key("acct_a", "k", "task_2") == "task_1"
    assert store.claim_idempotency_key("acct_b", "k", "task_3") == "task_3"
    assert store.idempotent_task("acct_a", "k") == "task_1"


def test_uploads(make_store: MakeStore) -> None:
    store = make_store()
    upload = UploadRecord("upl_1", "acct_a", "a.png", "image/png", 3, 5.0, b"\x89PN")
    store.put_upload(upload)
    assert store.get_upload("upl_1") == upload
    assert store.get_upload("upl_2") is None


def test_journal_is_a_ring_with_stable_sequence_numbers(make_store: MakeStore) -> None:
    store = make_store(journal_size=3)
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
    store = make_store()
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
    store = make_store()
    assert [store.hit("acct_a", 100) for _ in range(3)] == [1, 2, 3]
    assert store.hit("acct_b", 100) == 1
    assert store.hit("acct_a", 101) == 1


def test_balances_and_clock(make_store: MakeStore) -> None:
    store = make_store()
    store.set_balance("acct_a", 12.5)
    store.set_balance("acct_b", None)
    assert store.balances() == {"acct_a": 12.5, "acct_b": None}
    assert store.clock_state() == (0.0, None)
    store.set_clock_state(30.0, 1234.5)
    assert store.clock_state() == (30.0, 1234.5)


def test_reset_one_account_or_all(make_store: MakeStore) -> None:
    store = make_store()
    store.put_task(task("task_a", "acct_a"))
    store.put_task(task("task_b", "acct_b"))
    store.claim_idempotency_key("acct_a", "k", "task_a")
    store.append_journal({"account": "acct_a"})
    store.append_journal({"account": "acct_b"})
    store.set_balance("acct_a", 1.0)
    store.put_fault_rule(FaultRule("rule_1", Fault("never")))
    store.set_clock_state(5.0, None)
    store.reset("acct_a")
    assert [t.id for t in store.tasks()] == ["task_b"]
    assert store.idempotent_task("acct_a", "k") is None
    assert [e["account"] for e in store.journal()] == ["acct_b"]
    assert store.balances() == {}
    assert len(store.fault_rules()) == 1
    store.reset()
    assert store.tasks() == [] and store.fault_rules() == [] and store.journal() == []
    assert store.clock_state() == (5.0, None)  # the clock only moves forward: a reset keeps it
