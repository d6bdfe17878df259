"""ULIDs from the fake's clock: in order, distinct across threads (``core/ids.py``)."""

from __future__ import annotations

import threading

from ulid import ULID

from mockserver.core.ids import UlidMaker

BODY = {"prompt": "p", "image_urls": ["https://example.com/a.png"]}


# -- ids -------------------------------------------------------------------------------------------


def test_ids_are_ulids_in_the_order_they_were_made() -> None:
    make = UlidMaker()
    for seconds in (0.0, 1.5, 1_767_225_600.123, 253_402_300_799.0):
        assert ULID.from_str(make(seconds)).milliseconds == int(seconds * 1000)
    same_ms = [make(5.0) for _ in range(3000)]  # crosses at least two steps of the last ten bits
    values = [int(ULID.from_str(text)) for text in same_ms]
    assert values == list(range(values[0], values[0] + 3000))  # each the one before plus one
    assert {ULID.from_str(text).milliseconds for text in same_ms} == {5000}
    assert all(text == str(ULID.from_str(text)) for text in same_ms)  # 26 characters, as the package writes them
    assert make(-1.0)[:10] == "0" * 10 and ULID.from_str(make(1e20)).milliseconds == 2**48 - 1  # clamped
    assert UlidMaker()(0.0) != UlidMaker()(0.0)  # random bits from the first id on, even at time 0


def test_ids_made_on_many_threads_are_distinct_and_in_order_within_each() -> None:
    make = UlidMaker()
    made: list[list[str]] = [[] for _ in range(8)]

    def run(out: list[str]) -> None:
        out.extend(make(7.0) for _ in range(2000))

    threads = [threading.Thread(target=run, args=(out,)) for out in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({text for out in made for text in out}) == 16_000
    assert all(out == sorted(out) for out in made)
