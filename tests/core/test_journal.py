"""A lazy journal entry says what an eager one said (``core/journal.py``)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mockserver.core import jsonio
from mockserver.core.journal import Entry, clipped, cut, journal_headers
from mockserver.service import shortened

BODY = {"prompt": "p", "image_urls": ["https://example.com/a.png"]}


# -- journal entries ---------------------------------------------------------------------------------


def eager(raw_headers: list[tuple[bytes, bytes]], facts: dict[str, Any], size: int) -> dict[str, Any]:
    """An entry as the edge used to build it at once."""
    kept = dict(facts)
    kept.pop("wire_fault", None)
    for name, value in kept.items():
        if name == "body":
            kept[name] = clipped(value)
        elif isinstance(value, str):
            kept[name] = cut(value, 1024)
    return {
        "time": 1.0,
        "wall_time": 2.0,
        "method": "POST",
        "path": "/v1/midjourney/generations/video",
        "query": "a=1",
        "headers": journal_headers(raw_headers),
        "body_bytes": size,
        "status": 200,
        "duration_ms": 1.5,
        **kept,
    }


@pytest.mark.parametrize(
    "body",
    [
        BODY,
        {"prompt": "p" * 300, "image_urls": ["x" * 500] * 3},
        {"k" * 100: "long field name", "nested": [{"l" * 70: 1}]},
        {"prompt": "p", "image_urls": [f"https://example.com/{n}.png" for n in range(400)]},
        {"n": [1e15, 1e-7, 2**70, True, None]},
    ],
)
def test_a_lazy_journal_entry_says_what_an_eager_one_said(body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    headers = [(b"host", b"x"), (b"authorization", b"Bearer secret"), (b"x-long", b"v" * 2000)]
    facts = {"endpoint": "video", "account": "acct_1", "body": shortened(body), "wire_fault": "drop", "error": {}}
    expected = eager(headers, facts, len(raw))
    kept = journal_headers(headers)
    entry = Entry(1.0, 2.0, "POST", expected["path"], b"a=1", kept, len(jsonio.dumps(kept)), len(raw), 200, 0.0015,
                  dict(facts))  # fmt: skip
    assert entry.account == "acct_1"
    assert entry.to_dict() == expected
    assert len(entry.encoded()) <= entry.size, "the memory store's byte budget counts at least what it holds"
    assert entry.to_dict() == expected and entry.account == "acct_1"  # again, from the encoded text
