"""The memory store's own promises (the conformance suite holds the ones every store shares)."""

from __future__ import annotations

from typing import Any

from mockserver.core.faults import Fault, FaultRule
from mockserver.store.memory import MemoryStore

from ..helpers import at_once


class ChangedWhileRead(dict[str, FaultRule]):
    """Fault rules whose listing lets another thread move the clock mid-way (after the copy read it), as
    a control request on another thread can while a request makes the shared settings' copy."""

    def __init__(self, store: MemoryStore) -> None:
        super().__init__()
        self.store = store
        self.pending = True

    def values(self) -> Any:
        if self.pending:
            self.pending = False
            at_once(self.store.set_clock_state(7.0, None))
        return super().values()


def test_a_copy_made_while_the_clock_moved_is_not_kept() -> None:
    store = MemoryStore()
    at_once(store.put_fault_rule(FaultRule("rule_1", Fault("never"))))
    racing = ChangedWhileRead(store)
    racing.update(store._rules)  # (the race needs the store's own mapping)
    store._rules = racing
    store.shared()  # made while the clock moved: it may be handed out, not kept
    assert store.shared().clock == (7.0, None)
    assert [rule.id for rule in store.shared().rules] == ["rule_1"]


def test_the_copy_follows_every_change_of_what_it_holds() -> None:
    store = MemoryStore()
    first = store.shared()
    assert store.shared() is first  # kept while nothing changes
    at_once(store.put_fault_rule(FaultRule("rule_1", Fault("never"))))
    assert [r.id for r in store.shared().rules] == ["rule_1"]
    at_once(store.set_clock_state(5.0, None))
    assert store.shared().clock == (5.0, None)
    at_once(store.reset())
    assert store.shared().rules == () and store.shared().clock == (5.0, None)
