"""The fast JSON reader answers as the standard parser did (``core/jsonio.py``)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mockserver.core import jsonio
from mockserver.core.errors import ApiError

BODY = {"prompt": "p", "image_urls": ["https://example.com/a.png"]}


# -- JSON in ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": 1, "b": [1.5, "x", null, true], "c": {"d": "\\u00e9"}}',
        b'{"big": 123456789012345678901234567890}',
        b'{"neg": -98765432109876543210}',
        b'{"a": NaN}',
        b'{"a": 1e400}',
        b'{"a": "\\ud800"}',
        b'{"a": 1,}',
        b"[" * 70 + b"]" * 70,
        b'{"a": "' + b"x" * 30 + b'"}',
        b"\xef\xbb\xbf{}",
        b'{"a": 1, "a": 2}',
    ],
)
def test_reading_json_answers_as_the_standard_parser_did(raw: bytes) -> None:
    def standard(text: bytes) -> Any:  # jsonio.loads without the orjson path
        return jsonio.loads(text.decode("utf-8"))

    try:
        expected: Any = ("ok", standard(raw))
    except ApiError as exc:
        expected = ("refused", exc.message, exc.param)
    try:
        found: Any = ("ok", jsonio.loads(raw))
    except ApiError as exc:
        found = ("refused", exc.message, exc.param)
    assert found == expected
    if found[0] == "ok":
        assert json.dumps(found[1]) == json.dumps(expected[1])  # the same types (an int stays an int)
