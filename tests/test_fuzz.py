"""However malformed the request: never a 5xx, every refusal in the provider's body, no task from a refusal.

The same through the proxy (``mockserver proxy``), however the path is spelt, and nothing
forwarded for a path not in canonical form (the end of this file). The figures of the last run
at scale are in bench/results/fuzz.txt.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote, unquote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mockserver.core.accounts import account_id
from mockserver.core.clock import VirtualClock
from mockserver.core.errors import BAD_GATEWAY
from mockserver.core.faults import CATALOGUE
from mockserver.proxy.app import Proxy, create_proxy_app
from mockserver.proxy.config import ProxyConfig
from mockserver.service import Fake
from mockserver.settings import Settings
from mockserver.testing.process import ServerProcess
from mockserver.testing.transport import SyncASGITransport
from mockserver.web.app import create_app

from .conftest import SPEC, MakeApi
from .helpers import FRAME, IMAGINE, VIDEO, blocking, tiny_png

pytestmark = pytest.mark.slow  # thousands of generated requests: `make unit` leaves it out


@pytest.fixture
def store_kind() -> str:
    """Robustness, not storage: fuzzing runs on the memory store only."""
    return "memory"


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
FIELDS = ["prompt", "image_urls", "task_id", "index", "video_type", "animate_mode", "motion", "batch_size", "end_url"]
plausible = {
    "prompt": st.sampled_from(["", " ", "a cat"]) | st.text(max_size=20),
    "image_urls": st.sampled_from(
        [[FRAME], [], [FRAME, FRAME], ["data:image/png;base64,AAAA"], ["x"], ["http://["], ["https://[::1"]]
    ),
    "task_id": st.sampled_from(["", "task_x", "task_01KV52C0TEJSYZMCG0NCS4YWKK"]),
    "index": st.integers(-2, 6),
    "video_type": st.sampled_from(
        ["vid_1.1_i2v_480", "vid_1.1_i2v_720", "vid_1.1_i2v_start_end_720", "vid_1.1_i2v_extend_480", ""]
    ),
    "animate_mode": st.sampled_from(["manual", "auto", "x"]),
    "motion": st.sampled_from(["low", "high", "mid"]),
    "batch_size": st.integers(-1, 5) | st.sampled_from([2.0, 2.5, "2"]),
    "end_url": st.sampled_from([FRAME, "data:image/png,x", "", "nope"]),
}
bodies = st.fixed_dictionaries({}, optional={name: plausible[name] | json_values for name in FIELDS}) | json_values


def _check(api: Any, response: Any, before: int) -> None:
    assert response.status_code < 500, response.text
    if response.status_code == 200:
        assert api.task_count() == before + 1
        return
    assert api.task_count() == before
    error = response.json()["error"]
    assert error["code"] == response.status_code
    assert isinstance(error["message"], str) and error["message"]


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(body=bodies, policy=st.sampled_from(["strict", "coerce"]))
def test_video_bodies(make_api: MakeApi, body: Any, policy: str) -> None:
    api = make_api(batch_size_policy=policy)
    before = api.task_count()
    _check(api, api.submit(body), before)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(
    raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
    content_type=st.sampled_from(["application/json", "text/plain", "", "application/json; charset=latin-1"]),
    path=st.sampled_from([VIDEO, IMAGINE, "/v1/uploads/images"]),
)
def test_raw_bytes(make_api: MakeApi, raw: bytes, content_type: str, path: str) -> None:
    api = make_api()
    before = api.task_count()
    response = api.client.post(path, content=raw, headers={"content-type": content_type})
    assert response.status_code < 500, response.text
    assert response.status_code in (200, 400, 413, 415)
    if response.status_code != 200:
        assert api.task_count() == before
        assert set(response.json()) == {"error"}


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(task_id=st.text(min_size=1, max_size=40))
def test_poll_any_id(make_api: MakeApi, task_id: str) -> None:
    api = make_api()
    for path in ("/v1/tasks/", "/v1/midjourney/"):
        response = api.client.get(path + quote(task_id, safe=""))
        assert response.status_code in (404, 405), response.text
        assert set(response.json()) == {"error"}


# -- every route and the control plane: raw bytes, deep structures, odd numbers and text --------
#
# One generated request per example, against one in-process app per run, to any route: the
# provider's, the media, and the control plane with its writes (state imports, canned responses,
# seeded tasks, verifications, account settings), each with a JSON Content-Type or not (a control
# write without one is answered 415). FUZZ_REQUESTS sets how many (default 3 000 in `make test`;
# bench/results/fuzz.txt has a run of 20 000). A 5xx passes only when the request asked for it (a
# simulated fault) or a canned response answered (it says what to answer); every other refusal is
# in the provider's error body. After an accepted state import, everything imported must read back
# with no 5xx (tasks, state, polls, media, a submission, the export imported again); after every
# 100 requests, every stored task and the journal must still be readable. A request that takes
# 60 s is a hang: it fails with its stack. With FUZZ_STATS=FILE, the figures (requests and statuses
# by route kind) are written to FILE as JSON (and the proxy's to FILE.proxy); `-s` prints them.

FUZZ_REQUESTS = int(os.environ.get("FUZZ_REQUESTS", "3000"))
SAFE_FAULTS = [name for name in CATALOGUE if name not in ("drop", "truncate")]  # those break the connection
ODD_TEXT = ["\ud800", "a\udfff", "\U0010ffff", "\x00", "²", "①", "٣", "\u202e", "🐈", " ", "", "x" * 300]
NUMBER_LITERALS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-400", "-0", "9" * 5000, "0.1e99999"]
ODD_CHARACTERS = st.sampled_from(["\ud800", "\udfff", "\U0010ffff", "\x00", "²", "①", "٣", "\u202e", "🐈", "/", "%"])
TASK_IDS = st.sampled_from(["task_x", "task_01KV52C0TEJSYZMCG0NCS4YWKK", "", "..", "%2e%2e", "a" * 3000]) | st.text(
    st.characters(codec="utf-8") | ODD_CHARACTERS, max_size=40
)
MEDIA_NAMES = st.sampled_from(["0.mp4", "3.mp4", "grid.png", "0.png", "².mp4", "①.png", "9" * 5000 + ".mp4", "-1.mp4"])
texts = st.text(max_size=30) | st.sampled_from(ODD_TEXT)
scalars = st.none() | st.booleans() | st.integers(-(2**80), 2**80) | st.floats(allow_nan=False, allow_infinity=False)
values = st.recursive(
    scalars | texts,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(texts, inner, max_size=5),
    max_leaves=20,
)
markers = st.builds(
    lambda name, reason: f"[mock:{name} reason={json.dumps(reason)}]" if name == "fail" else f"[mock:{name}]",
    st.sampled_from(SAFE_FAULTS),
    texts,
)
PROVIDER_FIELDS = {
    "prompt": st.sampled_from(["a cat", ""]) | texts | markers.map(lambda m: "a cat " + m),
    "image_urls": st.sampled_from([[FRAME], [], ["data:image/png;base64,AAAA"], ["x"]]) | st.lists(values, max_size=3),
    "task_id": TASK_IDS,
    "index": st.integers(-2, 6) | values,
    "video_type": st.sampled_from(["vid_1.1_i2v_480", "vid_1.1_i2v_720", ""]) | values,
    "batch_size": st.sampled_from([1, 2, 4, 3, 2.0]) | values,
    "end_url": st.sampled_from([FRAME, ""]) | values,
    "speed": st.sampled_from(["relax", "fast", "turbo", "x"]),
    "size": st.sampled_from(["1:1", "16:9", "x"]),
}
CONTROL_FIELDS = {
    "advance": st.floats(-10, 1e13) | values,
    "set": st.floats(0, 1e13) | values,
    "freeze": st.booleans() | values,
    "token": st.sampled_from(["t", "user"]) | texts,
    "account": texts,
    "balance": st.floats(0, 1e16) | st.none() | values,
    "scenario": st.sampled_from(SAFE_FAULTS) | texts,
    "params": st.dictionaries(
        st.sampled_from(["reason", "retry_after", "ms", "dist", "mean", "seconds"]), texts, max_size=3
    )
    | values,
    "endpoint": st.sampled_from(["video", "imagine", "poll", "upload", "any", "x"]),
    "fields": st.dictionaries(texts, values, max_size=3) | values,
    "times": st.integers(-1, 5) | values,
    "probability": st.floats(0, 1) | values,
}


def nested_text(depth: int, kind: str) -> str:
    return "[" * depth + "]" * depth if kind == "list" else '{"a":' * depth + "1" + "}" * depth


@st.composite
def json_bodies(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[Any]]) -> bytes:
    """A JSON object of plausible and odd fields, sometimes with a deep structure, a number no double
    holds, a lone surrogate, or cut short."""
    chosen = draw(st.lists(st.sampled_from(sorted(fields)), max_size=len(fields), unique=True))
    body = {name: draw(fields[name]) for name in chosen}
    if draw(st.booleans()):
        body[draw(st.sampled_from([*sorted(fields), "unknown"]))] = "@@HOLE@@"
    text = json.dumps(body, ensure_ascii=draw(st.booleans()))
    hole = draw(
        st.sampled_from(NUMBER_LITERALS)
        | st.builds(nested_text, st.integers(1, 3000), st.sampled_from(["list", "object"]))
        | st.sampled_from(['"\\ud800"', '"\\udc00x"', '"a\\u0000b"', "[1,", "{"])
    )
    text = text.replace('"@@HOLE@@"', hole)
    raw = text.encode("utf-8", "surrogatepass")
    cut = draw(st.none() | st.integers(0, max(len(raw) - 1, 0)))
    return raw if cut is None else raw[:cut]


valid_bodies = st.builds(
    lambda prompt, extra: json.dumps({"prompt": prompt, "image_urls": [FRAME], **extra}).encode(),
    st.sampled_from(["a cat", "a fox"]) | markers.map(lambda m: "a cat " + m) | texts.filter(str.strip),
    st.dictionaries(st.sampled_from(["batch_size", "video_type", "motion"]), st.sampled_from([1, 2, 4, "low", "high"])),
)


def quoted(text: str) -> str:
    return quote(text, safe="", encoding="utf-8", errors="surrogatepass")


# -- the control plane's writes: state documents, canned responses, seeded tasks, verifications --
#
# A state document starts from a real export (``base_state``: a task of each kind, an upload, a
# fault rule, a balance, an account setting, a canned response) and is then mutated: fields set to
# hostile values (numbers no field takes, wrong types, deep nesting, long strings), removed, or
# added (unknown keys); items copied (duplicate ids). The other writes are objects of their
# schema's fields with plausible and hostile values, as ``json_bodies`` makes them.

FUZZ_TOKEN = "fuzz"  # the bearer token most generated requests carry: the exported state is its account's
FUZZ_ACCOUNT = account_id(FUZZ_TOKEN)
HOLE = "@@HOLE@@"
holes = (
    st.sampled_from(NUMBER_LITERALS)
    | st.builds(nested_text, st.integers(1, 3000), st.sampled_from(["list", "object"]))
    | st.sampled_from(['"\\ud800"', '"\\udc00x"', '"a\\u0000b"', "[1,", "{"])
)
HOSTILE_NUMBERS = [1e9, 10**9, -1, -1e-9, -0.0, 0.5, 1e308, -1e308, 5e-324, 2**53 + 1, 2**63, 2**64, -(2**63) - 1]
HOSTILE_NUMBERS += [10**30, 253_402_300_799.0, 253_402_300_800.0, 1e15 + 1, 31_536_001, 1e9 + 1]
HOSTILE_TEXT = ["", " ", "x" * 70_000, "../../x", "a/b", "%2e%2e", "task_x", "acct_0000000000000000", "\x00", "\r\n"]
HOSTILE_TEXT += ["²", "\ud800", "task_" + "a" * 65, "upl_x", "resp_x", "rule_x", "-1", "1e400", "NaN"]
hostile: st.SearchStrategy[Any] = (
    st.sampled_from(HOSTILE_NUMBERS)
    | st.sampled_from(HOSTILE_TEXT)
    | st.sampled_from([True, False, None, [], {}, [[[[]]]], {"a": {"b": {"c": {}}}}, [1] * 50])
    | values
    | st.just(HOLE)
)
TASK_KEYS = ["id", "account", "action", "created_at", "duration", "prompt", "mode", "clips", "price_key", "quantity"]
TASK_KEYS += ["video_type", "outcome", "fail_reason", "unit_price", "finish_after_polls", "polls", "settled_at"]
TASK_PARAMS = ["aspect", "parent_task_id", "index", "image_url", "end_url", "notes", "seeded", "requested_batch_size"]
TASK_PARAMS += ["requested_video_type", "motion", "animate_mode", "fault", "fault_params", "not_start_until"]
UPLOAD_KEYS = ["id", "account", "filename", "content_type", "size", "created_at", "data"]
RULE_KEYS = ["id", "scenario", "params", "endpoint", "account", "fields", "times", "probability", "fired"]
CANNED_KEYS = ["id", "method", "path", "account", "fields", "status", "headers", "body", "text", "times", "fired"]
# Where a mutation lands: "*" is any item of a list, "@" any key of an object.
STATE_TARGETS: list[tuple[str, ...]] = [
    ("version",),
    ("clock",),
    ("clock", "now"),
    ("clock", "frozen"),
    ("tasks",),
    ("tasks", "*"),
    ("tasks", "*", "params"),
    *[("tasks", "*", key) for key in TASK_KEYS],
    *[("tasks", "*", "params", key) for key in TASK_PARAMS],
    ("uploads",),
    *[("uploads", "*", key) for key in UPLOAD_KEYS],
    ("balances",),
    ("balances", "@"),
    ("account_settings",),
    ("account_settings", "@"),
    ("account_settings", "@", "task_dialect"),
    ("fault_rules",),
    *[("fault_rules", "*", key) for key in RULE_KEYS],
    ("fault_rules", "*", "params", "@"),
    ("canned_responses",),
    *[("canned_responses", "*", key) for key in CANNED_KEYS],
    ("canned_responses", "*", "headers", "@"),
]
# Values that mean something to one field: the edges of what it takes, and just past them.
FIELD_VALUES: dict[str, list[Any]] = {
    "now": [0, 1e308, 253_402_300_799.0, 253_402_300_800.0, 1_767_225_500.0, 1_767_225_700.0],
    "created_at": [0, 1e308, -1e308, 253_402_300_799.0, 253_402_300_800.0, 1_767_225_600.0],
    "settled_at": [0, 1e308, 253_402_300_799.0, None, 1_767_225_600.0],
    "duration": [0, 1e-300, 5e-324, 1e308, 253_402_300_799.0, 31_536_000, 60],
    "clips": [0, 1, 2, 4, 5, 10**9, 1e9, 2**63],
    "quantity": [0, 1, 4, 5, 10**9],
    "polls": [0, 2**53, 2**53 + 1, 2**64],
    "finish_after_polls": [None, 0, 1, 2**53, 2**64],
    "unit_price": [0, 1e15, 1e15 + 1, 1e308],
    "size": [0, 2**53, 2**63, 10**12],
    "fired": [0, None, 2**53, 2**63, 10**9],
    "times": [None, 0, 1, 10**9, 2**63],
    "probability": [0, 1, 1.0000001, 5e-324],
    "action": ["VIDEO", "IMAGINE", "video", "UPSCALE"],
    "outcome": ["success", "failure", "never", "cancel", "x"],
    "mode": ["FAST", "RELAX", "TURBO", ""],
    "price_key": ["midjourney@video", "midjourney@video-720p", "midjourney@imagine", "x", ""],
    "video_type": ["vid_1.1_i2v_480", "vid_1.1_i2v_720", "vid_1.1_i2v_start_end_720", "x", None],
    "aspect": ["1:1", "16:9", "9:16", "x", None, [], {}, ["16:9"], 1],
    "content_type": ["image/png", "image/jpeg", "text/plain", "", None],
    "data": ["", "AAAA", "!!!", "iVBORw0KGgo=", "=" * 8],
    "scenario": [*SAFE_FAULTS, "latency; ms=1e9", "latency; ms=-1", "fail; reason=x", "x", ""],
    "endpoint": ["video", "imagine", "poll", "upload", "any", "x"],
    "status": [100, 101, 103, 200, 204, 304, 418, 500, 599, 600, 999],
    "path": ["/v1/tasks/*", "/**", "", "x", "/" + "*" * 3000],
    "task_dialect": ["unified", "mj", None, "x"],
    "account": [FUZZ_ACCOUNT, "acct_0000000000000000", "", "x"],
    "id": ["", "task_x", "../x", "a/b", "x" * 3000],
    "version": [1, 2, 0, "1", None, 1.0],
    "frozen": [True, False, None, 0],
}


@functools.cache
def base_state() -> dict[str, Any]:
    """GET /__mock__/state (with the uploads' bytes) of a fake holding one of everything."""
    app = create_app(Settings(task_seconds=10.0), clock=VirtualClock(), spec=SPEC)
    auth = {"authorization": f"Bearer {FUZZ_TOKEN}"}
    with httpx.Client(transport=SyncASGITransport(app), base_url="http://testserver", headers=auth) as client:
        writes: list[tuple[str, dict[str, Any]]] = [
            (VIDEO, {"prompt": "a cat", "image_urls": [FRAME], "batch_size": 4, "video_type": "vid_1.1_i2v_720"}),
            (IMAGINE, {"prompt": "a fox"}),
            (VIDEO, {"prompt": "a cat [mock:never]", "image_urls": [FRAME]}),
            ("/__mock__/scenarios", {"scenario": "fail", "params": {"reason": "x"}, "times": 2, "token": FUZZ_TOKEN}),
            ("/__mock__/scenarios", {"scenario": "latency", "params": {"ms": 100}, "endpoint": "poll"}),
            ("/__mock__/balances", {"token": FUZZ_TOKEN, "balance": 100}),
            ("/__mock__/responses", {"path": "/v1/tasks/task_canned*", "status": 418, "body": {"a": 1}, "times": 3}),
            ("/__mock__/responses", {"path": "/v1/balance", "method": "GET", "text": "x", "headers": {"x-a": "b"}}),
            ("/__mock__/accounts/" + FUZZ_TOKEN, {"task_dialect": "mj"}),
            ("/__mock__/tasks", {"token": FUZZ_TOKEN, "status": "IN_PROGRESS", "progress": 40}),
            ("/__mock__/tasks", {"token": FUZZ_TOKEN, "status": "FAILURE", "fail_reason": "no", "action": "IMAGINE"}),
        ]
        for path, body in writes:
            assert client.post(path, json=body).status_code == 200, path
        upload = client.post("/v1/uploads/images", files={"file": ("a.png", tiny_png(), "image/png")})
        assert upload.status_code == 200, upload.text
        state: dict[str, Any] = client.get("/__mock__/state?upload_data=true").json()
    assert all(state[name] for name in ("tasks", "uploads", "balances", "fault_rules", "canned_responses"))
    return state


def _place(draw: st.DrawFn, document: Any, target: tuple[str, ...]) -> tuple[Any, Any] | None:
    """The container and key ``target`` names in ``document`` (``*``, ``@``: one drawn), or None."""
    node = document
    for n, part in enumerate(target):
        key: Any = part
        if part == "*":
            if not isinstance(node, list) or not node:
                return None
            key = draw(st.integers(0, len(node) - 1))
        elif part == "@":
            if not isinstance(node, dict) or not node:
                return None
            key = draw(st.sampled_from(sorted(node, key=str)))
        elif not isinstance(node, dict):
            return None
        if n == len(target) - 1:
            return node, key
        if isinstance(node, dict) and key not in node:
            return None
        node = node[key]
    return None  # pragma: no cover


@st.composite
def state_documents(draw: st.DrawFn) -> bytes:
    """A state document: a real export, mutated a few times, sometimes with a literal no JSON
    reader keeps (a hole), sometimes cut short."""
    document = copy.deepcopy(base_state())
    if draw(st.booleans()):
        for upload in document["uploads"]:
            upload.pop("data", None)  # an export without the bytes
    for _ in range(draw(st.integers(0, 4))):
        target = draw(st.sampled_from(STATE_TARGETS))
        place = _place(draw, document, target)
        if place is None:
            continue
        node, key = place
        action = draw(st.sampled_from(["set", "set", "set", "field", "delete", "unknown", "copy"]))
        if action == "delete" and (isinstance(node, dict) and key in node):
            del node[key]
        elif action == "unknown" and isinstance(node, dict):
            node[draw(st.sampled_from(["unknown", "__proto__", "", "id "]) | texts)] = draw(hostile)
        elif action == "copy" and isinstance(node, list):  # the same item again: duplicate ids
            node.extend(copy.deepcopy(node[key]) for _ in range(draw(st.integers(1, 40))))
        elif action == "field" and target[-1] in FIELD_VALUES:
            node[key] = draw(st.sampled_from(FIELD_VALUES[target[-1]]))
        else:
            node[key] = draw(hostile)
    text = json.dumps(document, ensure_ascii=draw(st.booleans()))
    if HOLE in text:
        text = text.replace(f'"{HOLE}"', draw(holes))
    raw = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 9)) == 0:
        raw = raw[: draw(st.integers(0, max(len(raw) - 1, 0)))]
    return raw


GLOBS = st.sampled_from(
    [
        *["/v1/tasks/*", "/v1/tasks/?", "/v1/**", "/**", "**", "*", "/media/**", VIDEO, IMAGINE, "/v1/midjourney/*"],
        *["/v1/balance", "/healthz", "/__mock__/**", "", "/", "/" + "*" * 3000, "/" + "**/" * 700, "/" + "?" * 2048],
        *["/" + "a" * 2048, "/" + "a" * 2049, "/v1/uploads/images", "/media/*/0.mp4"],
    ]
)
METHODS = st.sampled_from(["GET", "POST", "HEAD", "PUT", "get", "", "G E T", "X" * 16, "X" * 17, "DELETE"])
ACCOUNTS = st.sampled_from([FUZZ_ACCOUNT, "acct_0000000000000000", "acct_x"]) | texts
TOKENS = st.sampled_from([FUZZ_TOKEN, "other", ""]) | texts
HEADER_NAMES = st.sampled_from(
    [
        *["x-a", "content-type", "Content-Type", "content-length", "transfer-encoding", "connection", "set-cookie"],
        *["retry-after", "content-encoding", "x a", "", "x\r\ny", "é", "x:y", "X-Mock-Fault"],
    ]
)
HEADER_VALUES = st.sampled_from(
    [
        *["b", "a\r\nb", "a\nb", "a\rb", "\x00", " a", "a ", "\t", "é", "€", "", "0", "1", "999", "gzip", "close"],
        *["application/json", "text/html", "x" * 10_000],
    ]
)
CANNED_FIELDS = {
    "method": METHODS | values,
    "path": GLOBS | texts | values,
    "account": ACCOUNTS | values,
    "token": TOKENS | values,
    "fields": st.sampled_from([{}, {"prompt": "a cat"}, {"image_urls": [FRAME]}])
    | st.dictionaries(texts, values)
    | values,
    "status": st.sampled_from([100, 101, 103, 199, 200, 201, 204, 304, 404, 418, 429, 500, 503, 599, 600, 999, -1])
    | st.sampled_from([0, 200.0, 200.5, "200", 2**64])
    | values,
    "headers": st.dictionaries(HEADER_NAMES | texts, HEADER_VALUES | texts, max_size=4) | values,
    "body": values,
    "text": texts | st.sampled_from(["", "x" * 50_000]) | values,
    "times": st.integers(-1, 3) | st.none() | st.sampled_from([2.0, 2**64]) | values,
}
SEED_STATUSES = ["NOT_START", "SUBMITTED", "IN_PROGRESS", "SUCCESS", "FAILURE", "pending", "processing", "completed"]
SEED_STATUSES += ["failed", "cancelled", "success", "x"]
SEED_FIELDS = {
    "account": ACCOUNTS | values,
    "token": TOKENS | values,
    "id": st.sampled_from(["task_seeded", "task_" + "a" * 64, "task_" + "a" * 65, "task_x.y", "task_"]) | TASK_IDS,
    "action": st.sampled_from(["VIDEO", "IMAGINE", "video", "X"]) | values,
    "status": st.sampled_from(SEED_STATUSES) | values,
    "progress": st.integers(-1, 100) | values,
    "fail_reason": texts | st.sampled_from(["x" * 1000, "x" * 1001]) | values,
    "prompt": texts | st.sampled_from(["p" * 8192, "p" * 8193]) | markers.map(lambda m: "a cat " + m) | values,
    "batch_size": st.sampled_from([1, 2, 4, 3, 0, -1, 2.0, 10**9, 2**64]) | values,
    "video_type": st.sampled_from(["vid_1.1_i2v_480", "vid_1.1_i2v_720", "vid_1.1_i2v_extend_480", "x"]) | values,
    "speed": st.sampled_from(["relax", "fast", "turbo", "x"]) | values,
    "task_seconds": st.sampled_from([0, 1e-300, 5e-324, 1, 31_536_000, 31_536_001, 1e308]) | st.floats(0, 4e7) | values,
    "ended_seconds_ago": st.sampled_from([0, 1e9, 1e9 + 1, 1e-300, 5e-324]) | st.floats(0, 2e9) | values,
    "expired": st.booleans() | values,
    "charged": st.booleans() | values,
}
VERIFY_FIELDS = {
    "method": METHODS | values,
    "path": GLOBS | texts | values,
    "json_contains": st.sampled_from([{"prompt": "a cat"}, {"image_urls": [FRAME]}, [], {}]) | values,
    "times": st.integers(-1, 5) | st.none() | values,
    "status": st.sampled_from([99, 100, 200, 400, 404, 599, 600]) | values,
    "since": st.integers(-1, 10**6) | st.sampled_from([2**63, 2**64]) | values,
    "account": ACCOUNTS | values,
    "token": TOKENS | values,
}
# Writes that are accepted, so that what they make (a canned response answering, a seeded task
# polled, a verification over the journal) is fuzzed too.
valid_canned = st.fixed_dictionaries(
    {"path": st.sampled_from(["/v1/tasks/*", "/v1/**", "/media/**", VIDEO, IMAGINE, "/v1/midjourney/*", "/**"])},
    optional={
        "method": st.sampled_from(["GET", "POST", "HEAD", "post"]),
        "token": st.just(FUZZ_TOKEN),
        "fields": st.sampled_from([{}, {"prompt": "a cat"}, {"image_urls": [FRAME]}]),
        "status": st.sampled_from([200, 201, 204, 304, 400, 404, 418, 429, 500, 503, 599]),
        "headers": st.dictionaries(
            st.sampled_from(["x-a", "content-type", "retry-after", "content-encoding", "set-cookie"]),
            st.sampled_from(["b", "application/json", "text/html", "gzip", "1", "x" * 1000]),
            max_size=3,
        ),
        "body": values,
        "times": st.integers(1, 3) | st.none(),
    },
).map(lambda body: {k: v for k, v in body.items() if k != "body"} if body.get("status") in (204, 304) else body)
valid_seed = st.fixed_dictionaries(
    {"token": st.just(FUZZ_TOKEN)},
    optional={
        "id": st.sampled_from(["task_seeded", "task_" + "a" * 64, "task_01KV52C0TEJSYZMCG0NCS4YWKK"]),
        "action": st.sampled_from(["VIDEO", "IMAGINE"]),
        "status": st.sampled_from(SEED_STATUSES[:-2]),
        "prompt": texts | st.just("p" * 8192),
        "batch_size": st.sampled_from([1, 2, 4]),
        "video_type": st.sampled_from(["vid_1.1_i2v_480", "vid_1.1_i2v_720"]),
        "task_seconds": st.sampled_from([1e-300, 1, 60, 31_536_000]) | st.floats(1e-3, 3.1e7),
        "charged": st.booleans(),
    },
)
valid_verify = st.fixed_dictionaries(
    {},
    optional={
        "method": st.sampled_from(["GET", "POST"]),
        "path": GLOBS,
        "json_contains": st.sampled_from([{"prompt": "a cat"}, {"image_urls": [FRAME]}, {}]),
        "times": st.integers(0, 5) | st.none(),
        "status": st.sampled_from([200, 400, 404]),
        "token": st.just(FUZZ_TOKEN),
    },
)
ACCOUNT_FIELDS = {"task_dialect": st.sampled_from(["unified", "mj", None, "x", ""]) | values, "other": values}
bodies_of_any_kind = {
    "provider": valid_bodies | json_bodies(PROVIDER_FIELDS) | st.binary(max_size=300),
    "control": json_bodies(CONTROL_FIELDS) | st.binary(max_size=100) | st.just(b""),
    "state": state_documents() | state_documents() | state_documents() | json_bodies(CONTROL_FIELDS) | st.just(b""),
    "canned": valid_canned.map(lambda b: json.dumps(b).encode()) | json_bodies(CANNED_FIELDS) | st.binary(max_size=100),
    "seed": valid_seed.map(lambda b: json.dumps(b).encode()) | json_bodies(SEED_FIELDS) | st.binary(max_size=100),
    "verify": valid_verify.map(lambda b: json.dumps(b).encode()) | json_bodies(VERIFY_FIELDS) | st.binary(max_size=100),
    "account": st.sampled_from([b'{"task_dialect": "mj"}', b'{"task_dialect": null}']) | json_bodies(ACCOUNT_FIELDS),
    "write": st.just(b"") | st.just(b"{}") | json_bodies(CONTROL_FIELDS),
}
# The Content-Type a control write carries: JSON (the only kind the control plane parses) or not (415).
CONTROL_CONTENT_TYPES = st.sampled_from(
    [b"application/json"] * 4
    + [b"application/json; charset=utf-8", b"APPLICATION/JSON", b"application/x+json"]
    + [b"text/plain", b"application/x-www-form-urlencoded", b"multipart/form-data", b"application/jsonx", b""]
)


class Generated(NamedTuple):
    method: str
    path: str  # with the query
    headers: list[tuple[bytes, bytes]]
    body: bytes
    kind: str  # the kind of route, for the figures


@st.composite
def requests_to_any_route(draw: st.DrawFn) -> Generated:
    """A request (method, path with query, headers, body) for any route of the provider's API, the
    media, the spec, the health check and the control plane (its writes included: state imports,
    canned responses, seeded tasks, verifications, account settings), or a path nobody serves."""
    task_id = quoted(draw(TASK_IDS))
    account = quoted(draw(st.sampled_from([FUZZ_TOKEN, FUZZ_ACCOUNT, "acct_0000000000000000"]) | texts))
    route = draw(
        st.sampled_from(
            [
                ("POST", VIDEO, "provider", "submission"),
                ("POST", IMAGINE, "provider", "submission"),
                ("POST", IMAGINE + "/imagine", "provider", "submission"),
                ("GET", f"/v1/tasks/{task_id}", None, "poll"),
                ("GET", f"/v1/midjourney/{task_id}", None, "poll"),
                (
                    "GET",
                    draw(st.sampled_from(["/v1/balance", "/balance", "/v1/user/balance", "/user/balance"])),
                    None,
                    "balance",
                ),
                ("POST", "/v1/uploads/images", "upload", "upload"),
                ("GET", f"/media/{task_id}/{quoted(draw(MEDIA_NAMES))}", None, "media"),
                ("HEAD", f"/media/uploads/{task_id}/{quoted(draw(texts))}", None, "media"),
                ("GET", "/openapi.json", None, "spec and health"),
                ("GET", "/healthz", None, "spec and health"),
                ("POST", "/__mock__/reset", "control", "control write"),
                ("GET", "/__mock__/clock", None, "control read"),
                ("POST", "/__mock__/clock", "control", "control write"),
                ("GET", "/__mock__/scenarios", None, "control read"),
                ("POST", "/__mock__/scenarios", "control", "control write"),
                ("DELETE", "/__mock__/scenarios", "write", "control write"),
                ("DELETE", f"/__mock__/scenarios/{task_id}", "write", "control write"),
                ("GET", "/__mock__/requests", "query", "control read"),
                ("GET", "/__mock__/requests.har", "query", "control read"),
                ("POST", "/__mock__/requests/verify", "verify", "verify"),
                ("GET", "/__mock__/ledger", "query", "control read"),
                ("POST", "/__mock__/balances", "control", "control write"),
                ("GET", "/__mock__/tasks", "query", "control read"),
                ("POST", "/__mock__/tasks", "seed", "seeded task"),
                ("GET", f"/__mock__/tasks/{task_id}", None, "control read"),
                ("GET", "/__mock__/state", "state query", "control read"),
                ("PUT", "/__mock__/state", "state", "state import"),
                ("PUT", "/__mock__/state", "state", "state import"),
                ("PUT", "/__mock__/state", "state", "state import"),
                ("GET", "/__mock__/responses", None, "control read"),
                ("POST", "/__mock__/responses", "canned", "canned response"),
                ("POST", "/__mock__/responses", "canned", "canned response"),
                ("DELETE", "/__mock__/responses", "write", "control write"),
                ("DELETE", f"/__mock__/responses/{task_id}", "write", "control write"),
                ("GET", f"/__mock__/accounts/{account}", None, "control read"),
                ("POST", f"/__mock__/accounts/{account}", "account", "account settings"),
                ("GET", "/__mock__/health", None, "control read"),
                (
                    "GET",
                    draw(st.sampled_from(["/__mock__/openapi.json", "/__mock__/", "/__mock__/dashboard/app.js"])),
                    None,
                    "control read",
                ),
                (
                    draw(st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"])),
                    f"/__mock__/{quoted(draw(texts))}",
                    "write",
                    "unknown path",
                ),
                (
                    draw(st.sampled_from(["GET", "PUT", "PATCH", "OPTIONS"])),
                    f"/{quoted(draw(texts))}",
                    None,
                    "unknown path",
                ),
            ]
        )
    )
    method, path, body_kind, kind = route
    headers: list[tuple[bytes, bytes]] = []
    authorization = draw(
        st.sampled_from([f"Bearer {FUZZ_TOKEN}".encode(), b"Bearer other", b"", b"Basic eA==", b"Bearer \xff\xfe"])
    )
    if authorization:
        headers.append((b"authorization", authorization))
    body = b""
    if body_kind == "provider":
        body = draw(bodies_of_any_kind["provider"])
        content_type = draw(st.sampled_from([b"application/json", b"text/plain", b"application/x+json", b""]))
        if content_type:
            headers.append((b"content-type", content_type))
    elif body_kind in bodies_of_any_kind:
        body = draw(bodies_of_any_kind[body_kind])
        content_type = draw(CONTROL_CONTENT_TYPES)
        if content_type:
            headers.append((b"content-type", content_type))
    elif body_kind == "upload":
        boundary = b"fuzzboundary"
        part_type = draw(st.sampled_from([b"image/png", b"image/jpeg", b"text/plain", b""]))
        data = draw(st.binary(max_size=200) | st.just(tiny_png()))
        name = quoted(draw(texts)).encode()
        body = (
            b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="' + name + b'"\r\n'
            b"Content-Type: " + part_type + b"\r\n\r\n" + data + b"\r\n--" + boundary + b"--\r\n"
        )
        if draw(st.booleans()):
            body = body[: draw(st.integers(0, len(body)))]
        headers.append((b"content-type", b"multipart/form-data; boundary=" + boundary))
    elif body_kind == "query":
        params = draw(
            st.dictionaries(
                st.sampled_from(
                    ["since", "limit", "offset", "status", "order", "token", "account", "path", "method", "refused"]
                ),
                texts | st.integers(-5, 10**15).map(str) | st.sampled_from(["true", "false"]),
                max_size=4,
            )
        )
        if params:
            path += "?" + "&".join(f"{k}={quoted(v)}" for k, v in params.items())
    elif body_kind == "state query" and draw(st.booleans()):
        path += "?upload_data=" + quoted(draw(st.sampled_from(["true", "false", "1", "0", "", "yes"]) | texts))
    if draw(st.booleans()):
        scenario = draw(
            st.sampled_from(SAFE_FAULTS) | texts.map(lambda t: t.encode("latin-1", "replace").decode("latin-1"))
        )
        headers.append((b"x-mock-scenario", scenario.replace("\r", " ").replace("\n", " ").encode("latin-1")))
    if draw(st.booleans()):
        headers.append((b"idempotency-key", draw(st.sampled_from([b"k1", b"k2", b" ", b"x" * 300]))))
    return Generated(method, path, headers, body, kind)


@dataclass
class Answer:
    """An answer as it came, its body not decoded (a canned response may say ``content-encoding:
    gzip`` of a body that is not: that is what it was told to send)."""

    status_code: int
    headers: httpx.Headers
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


WIRE_FAULT = 0  # the status of an answer cut off: a connection closed as a drop or truncate fault asked


def send(client: httpx.Client, method: str, path: str, headers: Any = (), body: bytes = b"") -> Answer:
    """The answer, or one of status ``WIRE_FAULT`` when the connection broke off as a wire fault does
    (asked for by a header, a rule or a prompt marker; or a canned response's ``x-mock-fault``
    header, which the in-process transport enacts as the edge's own; hypothesis finds the names)."""
    try:
        response = client.send(client.build_request(method, path, headers=headers, content=body), stream=True)
        try:
            content = b"".join(response.iter_raw())
        finally:
            response.close()
    except httpx.RemoteProtocolError:
        return Answer(WIRE_FAULT, httpx.Headers(), b"")
    return Answer(response.status_code, response.headers, content)


def canned_answered(client: httpx.Client) -> bool:
    """Whether a canned response answered the last provider request (the journal says which)."""
    entries = client.get("/__mock__/requests?limit=1").json()["requests"]
    return bool(entries) and "canned" in entries[-1]


def is_json_type(headers: list[tuple[bytes, bytes]]) -> bool | None:
    """Whether the request's Content-Type is JSON as the control plane reads it (None: none given)."""
    given = [v for k, v in headers if k == b"content-type"]
    if not given:
        return None
    kind = given[0].decode("latin-1").split(";")[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


def answer_problem(answer: Answer, method: str) -> str | None:
    """Why the answer is not one the fake may give on its own (None: it may): a 5xx that no
    simulated fault asked for, or a refusal not in the provider's error body."""
    if answer.status_code < 400 or method == "HEAD":
        return None
    try:
        body = answer.json()
    except ValueError:
        return "a refusal whose body is not JSON"
    if not isinstance(body, dict) or set(body) != {"error"} or not isinstance(body["error"].get("message"), str):
        return "a refusal not in the provider's error body"
    if answer.status_code >= 500 and not body["error"]["message"].endswith("(simulated)"):
        return "an unplanned 5xx"
    return None


def check_answer(answer: Answer | httpx.Response, request: Any, canned: Callable[[], bool] | None = None) -> str:
    """The answer's class ("ok", "simulated 5xx", "canned", "wire fault") or a failed assertion. ``canned``, when
    given, tells whether a canned response answered (which may answer anything it was told to)."""
    method, path = request[0], request[1]
    if answer.status_code == WIRE_FAULT:
        return "wire fault"
    problem = answer_problem(answer, method)  # type: ignore[arg-type]
    if problem is None:
        return "simulated 5xx" if answer.status_code >= 500 else "ok"
    if canned is not None and canned():
        return "canned"
    raise AssertionError((problem, method, path[:300], answer.status_code, answer.text[:300]))


@contextlib.contextmanager
def no_hang(seconds: float = 60) -> Iterator[None]:
    """A request still running after ``seconds`` (a loop that never ends) fails with its stack
    instead of holding the run: SIGALRM, in the main thread, where the in-process apps run."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield  # pragma: no cover
        return

    def expired(signum: int, frame: Any) -> None:
        raise TimeoutError(f"no answer within {seconds:g} s: a hang")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Fuzzed:
    """The in-process app under fuzzing and what was seen."""

    client: httpx.Client
    app: Starlette
    count: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    kind_statuses: Counter[tuple[str, str]] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)  # ok, simulated 5xx, canned, wire fault
    statuses: Counter[int] = field(default_factory=Counter)
    imports: Counter[str] = field(default_factory=Counter)  # state imports: accepted, refused
    slowest: tuple[float, str] = (0.0, "")

    @property
    def fake(self) -> Fake:
        fake: Fake = self.app.state.fake
        return fake

    def checked(self, method: str, path: str, headers: Any = (), body: bytes = b"") -> tuple[Answer, str, bool]:
        """Send one request; check it as any answer is checked (a canned one excepted). Also whether
        a canned response could have answered (one was kept when the request came)."""
        canned_before = self.fake.canned_possible()
        answer = send(self.client, method, path, headers, body)
        verdict = check_answer(
            answer, (method, path), (lambda: canned_answered(self.client)) if canned_before else None
        )
        return answer, verdict, canned_before


@pytest.fixture(scope="module")
def fuzzed_app() -> Iterator[Fuzzed]:
    app = create_app(Settings(task_seconds=0.0, journal_size=2000), clock=VirtualClock(), spec=SPEC)
    transport = SyncASGITransport(app, at_once=True)
    started = time.perf_counter()
    with httpx.Client(transport=transport, base_url="http://testserver", timeout=None) as client:
        fuzzed = Fuzzed(client, app)
        yield fuzzed
    transport.close()
    report = {
        "requests": fuzzed.count,
        "seconds": round(time.perf_counter() - started, 1),
        "by_kind": {
            kind: {"requests": n, **{c: m for (k, c), m in sorted(fuzzed.kind_statuses.items()) if k == kind}}
            for kind, n in fuzzed.kinds.most_common()
        },
        "answers": dict(fuzzed.answers.most_common()),
        "5xx": sum(n for status, n in fuzzed.statuses.items() if status >= 500),
        "statuses": {str(k): v for k, v in sorted(fuzzed.statuses.items())},
        "state_imports": dict(fuzzed.imports),
        "slowest_request": {"seconds": round(fuzzed.slowest[0], 3), "request": fuzzed.slowest[1]},
    }
    print("\nfuzz:", json.dumps(report))
    if os.environ.get("FUZZ_STATS"):
        Path(os.environ["FUZZ_STATS"]).write_text(json.dumps(report, indent=1) + "\n")


AUTH_FUZZ = [(b"authorization", f"Bearer {FUZZ_TOKEN}".encode())]
RELOAD_READS = ["/__mock__/tasks", "/__mock__/state", "/__mock__/state?upload_data=true", "/__mock__/ledger"]
RELOAD_READS += ["/__mock__/responses", "/__mock__/scenarios", "/__mock__/requests", "/__mock__/requests.har"]


def check_after_import(fuzzed: Fuzzed) -> None:
    """What an accepted state document holds can be read back, every way, with no 5xx: the control
    plane's lists, each task by every poll route and its media, each upload, a new submission
    (charged against the imported balance), and the export imports again."""
    for read in RELOAD_READS:
        answer = send(fuzzed.client, "GET", read)
        assert answer.status_code == 200, (read, answer.status_code, answer.text[:300])
    state = send(fuzzed.client, "GET", "/__mock__/state?upload_data=true").json()
    for task in state["tasks"][:6]:
        task_id = quoted(task["id"])
        assert send(fuzzed.client, "GET", f"/__mock__/tasks/{task_id}").status_code == 200, task["id"]
        for read in (f"/v1/tasks/{task_id}", f"/v1/midjourney/{task_id}", f"/media/{task_id}/0.mp4"):
            fuzzed.checked("GET", read, AUTH_FUZZ)
    for upload in state["uploads"][:2]:
        fuzzed.checked("GET", f"/media/uploads/{quoted(upload['id'])}/{quoted(upload['filename'])}", AUTH_FUZZ)
    body = json.dumps({"prompt": "a cat", "image_urls": [FRAME]}).encode()
    fuzzed.checked("POST", VIDEO, [*AUTH_FUZZ, (b"content-type", b"application/json")], body)
    # Without the bytes: an upload imported without them would export as "data": "", which PUT refuses.
    exported = send(fuzzed.client, "GET", "/__mock__/state").content
    again = send(fuzzed.client, "PUT", "/__mock__/state", [(b"content-type", b"application/json")], exported)
    assert again.status_code == 200, ("an export does not import again", again.text[:300])


@settings(
    max_examples=FUZZ_REQUESTS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(request=requests_to_any_route())
def test_any_request_to_any_route(fuzzed_app: Fuzzed, request: Generated) -> None:
    try:
        one_request(fuzzed_app, request)
    except (AssertionError, httpx.HTTPError) as exc:  # the request, to reproduce it (hypothesis shows no repr)
        rules = fuzzed_app.client.get("/__mock__/scenarios").json()["rules"]
        canned = fuzzed_app.client.get("/__mock__/responses").json()["responses"]
        raise AssertionError(f"{exc!r}\n{described(request)}\nrules: {rules}\ncanned: {canned}"[:20_000]) from exc


def described(request: Generated) -> str:
    method, path, headers, body, kind = request
    return f"request ({kind}): {method} {path[:500]!r}\nheaders: {headers!r}\nbody: {body[:3000]!r}"


def one_request(fuzzed: Fuzzed, request: Generated) -> None:
    client = fuzzed.client
    method, path, headers, body, kind = request
    started = time.perf_counter()
    with no_hang():
        answer, verdict, canned_before = fuzzed.checked(method, path, headers, body)
    took = time.perf_counter() - started
    fuzzed.slowest = max(fuzzed.slowest, (took, f"{method} {path[:200]} ({len(body)} body bytes)"))
    assert took < 10, ("a request took more than 10 s", method, path[:300])
    fuzzed.kinds[kind] += 1
    fuzzed.kind_statuses[kind, f"{answer.status_code // 100}xx"] += 1
    fuzzed.statuses[answer.status_code] += 1
    if path.startswith("/__mock__/") and method in ("POST", "PUT", "PATCH", "DELETE"):
        json_type = is_json_type(headers)
        not_json = json_type is False or (json_type is None and body != b"")
        sent = httpx.URL("http://testserver" + path).path  # as httpx sends it: dot segments resolved
        routed = sent.startswith("/__mock__/") and "\n" not in sent  # (a Mount's pattern stops at a newline)
        assert (answer.status_code == 415) == (not_json and routed), (method, path[:300], headers, answer.status_code)
    if verdict == "canned":
        pass
    elif answer.status_code == 200 and path in (VIDEO, IMAGINE, IMAGINE + "/imagine"):
        if canned_before and canned_answered(client):
            verdict = "canned"
        else:
            task_id = answer.json()["data"][0]["task_id"]  # what was accepted can be read back, every way
            auth = [h for h in headers if h[0] == b"authorization"]
            for read in (f"/v1/tasks/{task_id}", f"/v1/midjourney/{task_id}", f"/media/{task_id}/0.mp4"):
                fuzzed.checked("GET", read, auth)
            assert client.get(f"/__mock__/tasks/{task_id}").status_code == 200
    elif kind == "state import":
        fuzzed.imports["accepted" if answer.status_code == 200 else f"refused {answer.status_code}"] += 1
        if answer.status_code == 200:
            check_after_import(fuzzed)
    fuzzed.answers[verdict] += 1
    fuzzed.count += 1
    if fuzzed.count % 100 == 0:  # whatever was accepted can still be read back
        for read in ("/__mock__/tasks", "/__mock__/requests", "/__mock__/scenarios", "/__mock__/state"):
            assert client.get(read).status_code == 200, read
        assert client.post("/__mock__/reset", json={}).status_code == 200


# What the runs above found, as plain tests (each was a 500 "internal error").


def test_a_state_import_whose_aspect_is_not_a_string_is_refused(make_api: MakeApi) -> None:
    api = make_api()
    document = copy.deepcopy(base_state())
    aspects: list[Any] = [[], {}, ["16:9"]]
    for aspect in aspects:
        document["tasks"][0]["params"]["aspect"] = aspect
        answer = api.client.put("/__mock__/state", json=document)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["param"] == "tasks[0].params.aspect"


def test_a_canned_response_reads_a_body_that_is_not_utf8_as_no_json(make_api: MakeApi) -> None:
    """A canned response that matches reads the body (for its ``fields``, and for the journal):
    bytes that are not UTF-8 are no JSON body, as for malformed JSON, not an error."""
    api = make_api()
    for fields in ({}, {"prompt": "a"}):
        api.client.post("/__mock__/reset", json={})
        assert api.client.post(
            "/__mock__/responses", json={"path": IMAGINE, "status": 418, "fields": fields}
        ).is_success
        answer = api.client.post(IMAGINE, content=b'{"prompt": "\xff"}', headers={"content-type": "application/json"})
        assert answer.status_code == (418 if not fields else 400), answer.text


# -- through the proxy: any path spelling, nothing forwarded but canonical paths ----------------
#
# Generated requests (any method; a documented route or another path, spelt with dot segments,
# ``%2e``, ``//``, ``;x``, ``%00``, a trailing ``/``, escapes, case; JSON and other bodies) go to
# an in-process proxy (``mockserver.proxy.app.create_proxy_app``, as ``tests/proxy/test_proxy.py``
# builds it) in front of an in-process fake that counts what reaches it. Each request is an ASGI
# call with its path exactly as a server hands it over (``raw_path`` as sent, ``path`` its
# decoding, as uvicorn makes them): httpx would remove dot segments before sending.
#
# Three proxies share the fake: one forwarding every paid submission, one with the default
# ``--max-paid-tasks 0`` (402 locally), one ``--strict`` (a divergent answer becomes a 502).
# A 5xx passes only when planned: the proxy's 502/504 ``bad_gateway``, or a simulated fault of the
# fake (``X-Mock-Scenario``) passed on. FUZZ_PROXY_REQUESTS sets how many (default 300).

FUZZ_PROXY_REQUESTS = int(os.environ.get("FUZZ_PROXY_REQUESTS", "300"))
PROXY_TOKEN = "sk-fuzz-proxy-5c8e1a"
UPSTREAM = "http://upstream.test"
PAID = frozenset({VIDEO, IMAGINE, IMAGINE + "/imagine"})
UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
HEX = frozenset("0123456789ABCDEF")


def canonical(raw: str) -> bool:
    """The proxy's rule for a path it may forward, written out again (not imported: an oracle of
    its own): ``/``, or ``/``-separated segments, none empty, none of dots only, each of unreserved
    characters and upper-case escapes of characters that are neither unreserved, nor ``/ \\ ; ? #
    %``, nor control characters."""
    if raw == "/":
        return True
    if not raw.startswith("/"):
        return False
    for segment in raw[1:].split("/"):
        if not segment or set(segment) == {"."}:
            return False
        n = 0
        while n < len(segment):
            if segment[n] == "%":
                digits = segment[n + 1 : n + 3]
                if len(digits) != 2 or not set(digits) <= HEX:
                    return False
                value = int(digits, 16)
                if value < 0x80 and (
                    chr(value) in UNRESERVED or chr(value) in "/\\;?#%" or value < 0x20 or value == 0x7F
                ):
                    return False
                n += 3
            elif segment[n] in UNRESERVED:
                n += 1
            else:
                return False
    return True


class Counting:
    """The fake, counting the requests that reach it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.seen: list[tuple[str, bytes]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.seen.append((scope["method"], scope.get("raw_path") or scope["path"].encode()))
        await self.app(scope, receive, send)


class ProxyAnswer(NamedTuple):
    status: int
    headers: dict[str, str]
    content: bytes


async def call_asgi(
    app: ASGIApp, method: str, raw_path: str, query: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> ProxyAnswer:
    """One request to ``app`` with ``raw_path`` exactly as written (and ``path`` decoded as uvicorn does)."""
    raw = raw_path.encode("latin-1")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(raw_path),
        "raw_path": raw,
        "query_string": query.encode("latin-1"),
        "root_path": "",
        "headers": [(b"host", b"proxy.test"), (b"content-length", str(len(body)).encode()), *headers],
        "server": ("proxy.test", 80),
        "client": ("127.0.0.1", 50000),
    }
    sent = False
    status, answer_headers, parts = 0, {}, []

    async def receive() -> Message:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # no disconnect: the client waits for the whole answer
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status, answer_headers
        if message["type"] == "http.response.start":
            status = message["status"]
            answer_headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in message.get("headers", [])}
        elif message["type"] == "http.response.body":
            parts.append(message.get("body", b""))

    await asyncio.wait_for(app(scope, receive, send), timeout=30)  # a hang fails, it does not hold the run
    return ProxyAnswer(status, answer_headers, b"".join(parts))


@dataclass
class ProxyRig:
    loop: asyncio.AbstractEventLoop
    upstream: Counting
    fake: Fake
    proxies: dict[str, tuple[ASGIApp, Proxy]]
    task_ids: list[str] = field(default_factory=list)  # tasks the fake made, polled by their ids
    count: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)


@pytest.fixture(scope="module")
def proxy_rig() -> Iterator[ProxyRig]:
    loop = asyncio.new_event_loop()
    upstream_app = create_app(Settings(task_seconds=0.0, task_dialect="mj"), clock=VirtualClock(), spec=SPEC)
    upstream = Counting(upstream_app)
    proxies: dict[str, tuple[ASGIApp, Proxy]] = {}
    for name, config in (
        ("open", {"max_paid_tasks": 10**9}),
        ("capped", {"max_paid_tasks": 0}),
        ("strict", {"max_paid_tasks": 10**9, "strict": True}),
    ):
        app = create_proxy_app(
            ProxyConfig(upstream=UPSTREAM, **config),  # type: ignore[arg-type]
            transport=httpx.ASGITransport(app=upstream),
            media_transport=httpx.ASGITransport(app=upstream),
            emit=lambda line: None,
        )
        proxies[name] = (app, app.state.proxy)
    rig = ProxyRig(loop, upstream, upstream_app.state.fake, proxies)
    yield rig
    for _, proxy in proxies.values():
        loop.run_until_complete(proxy.aclose())
    loop.close()
    report = {
        "requests": rig.count,
        "by_kind": dict(rig.kinds.most_common()),
        "outcomes": dict(rig.outcomes.most_common()),
        "5xx": sum(n for status, n in rig.statuses.items() if status >= 500),
        "statuses": {str(k): v for k, v in sorted(rig.statuses.items())},
        "forwarded": len(upstream.seen),
    }
    print("\nfuzz proxy:", json.dumps(report))
    if os.environ.get("FUZZ_STATS"):
        with open(os.environ["FUZZ_STATS"] + ".proxy", "w") as out:
            out.write(json.dumps(report, indent=1) + "\n")


# -- the requests ---------------------------------------------------------------------------

TEMPLATES = [
    VIDEO,
    IMAGINE,
    IMAGINE + "/imagine",
    "/v1/tasks/{id}",
    "/v1/midjourney/{id}",
    "/v1/uploads/images",
    "/v1/balance",
    "/balance",
    "/v1/user/balance",
    "/user/balance",
    "/media/{id}/0.mp4",
    "/healthz",
    "/openapi.json",
    "/openapi.yaml",
    "/__mock__/spend",
    "/__mock__/divergences",
    "/__mock__/health",
    "/",
    "/v1",
    "/v1/tasks",
    "/nope/{id}",
]
ROUTES = frozenset(TEMPLATES[:11])  # the documented ones and the media
ODD = ["%", "%2", "%zz", "%25", "%2F", "%2f", "%5C", "%3B", "%3F", "%23", "%00", "%0A", "%7F", "%41", "%e2%82%ac"]
ODD += ["%E2%82%AC", "%C3%A9", "%FF", "~", "!", "$", "'", "(", "*", "+", ",", "=", ":", "@", "[", "]", "|", "^"]
ODD += ["`", "{", "}", '"', "<", ">", "\\", "#", ";", "\xe9", "\x7f"]


def escaped(char: str, upper: bool) -> str:
    text = f"%{ord(char):02X}"
    return text if upper else text.lower()


@st.composite
def spellings(draw: st.DrawFn, path: str) -> str:
    """``path`` as written, or spelt another way a lenient server might read as the same."""
    segments = path.split("/")[1:]
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3]))):
        at = draw(st.integers(0, max(len(segments) - 1, 0)))
        if not segments:
            segments = [""]
        how = draw(
            st.sampled_from(
                ["dot", "dotdot", "empty", "%2e", "params", "nul", "trailing", "upper", "escape", "slash", "odd"]
            )
        )
        if how == "dot":
            segments.insert(at, draw(st.sampled_from([".", "%2e", "%2E", ".%2e", "..."])))
        elif how == "dotdot":
            segments[at:at] = [
                draw(st.sampled_from(["x", "v1", "%2e"])),
                draw(st.sampled_from(["..", "%2e%2e", ".%2E"])),
            ]
        elif how == "empty":
            segments.insert(at, "")
        elif how == "%2e":
            segments[at] = segments[at].replace(".", draw(st.sampled_from(["%2e", "%2E"])))
        elif how == "params":
            segments[at] += draw(st.sampled_from([";x", ";", ";a=b", "%3Bx"]))
        elif how == "nul":
            segments[at] += draw(st.sampled_from(["%00", "%00.mp4", "%0a"]))
        elif how == "trailing":
            segments.append("")
        elif how == "upper":
            segments[at] = segments[at].upper()
        elif how == "escape" and segments[at]:
            n = draw(st.integers(0, len(segments[at]) - 1))
            segments[at] = segments[at][:n] + escaped(segments[at][n], draw(st.booleans())) + segments[at][n + 1 :]
        elif how == "slash" and len(segments) > 1:
            joined = draw(st.sampled_from(["%2F", "%2f", "\\", "%5C", "%5c"]))
            segments[at : at + 2] = [joined.join(segments[at : at + 2])]
        else:
            n = draw(st.integers(0, len(segments[at])))
            segments[at] = segments[at][:n] + draw(st.sampled_from(ODD)) + segments[at][n:]
    written = "/" + "/".join(segments)
    return draw(
        st.sampled_from([written] * 20 + ["//" + written.lstrip("/"), written.lstrip("/"), "*", UPSTREAM + written])
    )


class Sent(NamedTuple):
    proxy: str
    method: str
    raw_path: str
    query: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    template: str
    known: int | None


@st.composite
def requests_through_the_proxy(draw: st.DrawFn) -> Sent:
    template = draw(
        st.sampled_from(TEMPLATES) | st.sampled_from([VIDEO, IMAGINE, "/v1/tasks/{id}", "/v1/midjourney/{id}"])
    )
    task_id = draw(st.sampled_from(["task_x", "task_x", "a", "task_01KV52C0TEJSYZMCG0NCS4YWKK"]))
    path = template.replace("{id}", task_id)
    raw_path = draw(spellings(path))
    paid = template in PAID
    usual = ["POST"] * 6 + ["GET"] * 2 + ["post", "PUT"] if paid else ["GET"] * 6 + ["HEAD", "POST"]
    any_method = ["GET", "POST", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "get", "FOO", "M-SEARCH"]
    method = draw(st.sampled_from(usual) | st.sampled_from(usual) | st.sampled_from(any_method))
    headers: list[tuple[bytes, bytes]] = []
    authorization = draw(
        st.sampled_from([f"Bearer {PROXY_TOKEN}".encode()] * 9 + [b"", b"Bearer other", b"Basic eA=="])
    )
    if authorization:
        headers.append((b"authorization", authorization))
    body = b""
    if method.upper() in ("POST", "PUT", "PATCH") or draw(st.integers(0, 9)) == 0:
        body = draw(valid_bodies | valid_bodies | json_bodies(PROVIDER_FIELDS) | st.binary(max_size=200))
        kind = draw(st.sampled_from([b"application/json"] * 9 + [b"text/plain", b"application/x+json", b""]))
        if kind:
            headers.append((b"content-type", kind))
    if draw(st.integers(0, 4)) == 0:
        fault = draw(
            st.sampled_from(SAFE_FAULTS) | st.sampled_from(["error_500", "error_502", "error_503", "error_504"])
        )
        headers.append((b"x-mock-scenario", fault.encode()))
    if draw(st.integers(0, 4)) == 0:
        headers.append((b"accept-encoding", draw(st.sampled_from([b"gzip", b"identity", b"br", b"*"]))))
    query = draw(st.sampled_from(["", "", "", "a=1", "x=%2e%2e", "task_id=../x", "%00"]))
    proxy = draw(st.sampled_from(["open", "open", "capped", "strict"]))
    known = draw(st.none() | st.integers(0, 19))  # "task_x" stands for a task the fake made, if any
    return Sent(proxy, method, raw_path, query, headers, body, template, known)


def provider_error(answer: ProxyAnswer, where: tuple[Any, ...]) -> dict[str, Any]:
    """The provider's error body of a refusal, or a failed assertion."""
    try:
        body = json.loads(answer.content)
    except ValueError:
        raise AssertionError(("a refusal whose body is not JSON", *where)) from None
    assert isinstance(body, dict) and set(body) == {"error"}, ("a refusal not in the provider's error body", *where)
    error = body["error"]
    assert isinstance(error, dict) and isinstance(error.get("message"), str) and error["message"], where
    return error


@settings(
    max_examples=FUZZ_PROXY_REQUESTS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_any_request_through_the_proxy(proxy_rig: ProxyRig, data: st.DataObject) -> None:
    rig = proxy_rig
    sent = data.draw(requests_through_the_proxy(), label="request")
    if sent.known is not None and rig.task_ids:
        sent = sent._replace(raw_path=sent.raw_path.replace("task_x", rig.task_ids[sent.known % len(rig.task_ids)]))
    app, _ = rig.proxies[sent.proxy]
    forwarded_before, tasks_before = len(rig.upstream.seen), len(blocking(rig.fake.store).tasks())
    with no_hang():
        answer = rig.loop.run_until_complete(
            call_asgi(app, sent.method, sent.raw_path, sent.query, sent.headers, sent.body)
        )
    forwarded = len(rig.upstream.seen) - forwarded_before
    tasks_made = len(blocking(rig.fake.store).tasks()) - tasks_before
    where = (sent.proxy, sent.method, sent.raw_path, sent.query, answer.status, answer.content[:300])
    rig.count += 1
    group = "paid" if sent.template in PAID else "other route" if sent.template in ROUTES else "other path"
    rig.kinds[f"{group}, {'canonical' if canonical(sent.raw_path) else 'not canonical'}"] += 1
    rig.statuses[answer.status] += 1
    rig.outcomes["forwarded" if forwarded else "answered by the proxy"] += 1

    # Nothing reaches the upstream for a path not in canonical form; no task is made but by
    # a paid route spelt exactly as documented.
    if not canonical(sent.raw_path):
        assert forwarded == 0, ("forwarded a path not in canonical form", *where)
    assert tasks_made == 0 or sent.raw_path in PAID, ("a task made through another spelling", *where)
    assert forwarded <= 1, where

    # No 5xx but the planned ones; every refusal in the provider's error body.
    if answer.status >= 400 and sent.method.upper() != "HEAD":
        error = provider_error(answer, where)
        if answer.status >= 500:
            planned = (answer.status in (502, 504) and error.get("type") == BAD_GATEWAY) or (
                forwarded == 1 and error["message"].endswith("(simulated)")
            )
            assert planned, ("an unplanned 5xx", *where)
            rig.outcomes["planned 5xx"] += 1
    elif answer.status >= 500:  # (HEAD: no body to read)
        assert forwarded == 1 or answer.status in (502, 504), ("an unplanned 5xx", *where)
        rig.outcomes["planned 5xx"] += 1
    if forwarded == 0 and answer.status >= 400:
        rig.outcomes[f"refused by the proxy: {answer.status}"] += 1

    if answer.status == 200 and forwarded == 1 and sent.raw_path in PAID and tasks_made == 1:
        task_id = json.loads(answer.content)["data"][0]["task_id"]
        rig.task_ids.append(task_id)
    if rig.count % 200 == 0:  # the fake behind stays small
        rig.loop.run_until_complete(call_asgi(rig.upstream.app, "POST", "/__mock__/reset", "", [], b""))
        rig.task_ids.clear()


# -- against a real server: no request raises its memory by more than 50 MiB ------------------

FUZZ_E2E_REQUESTS = int(os.environ.get("FUZZ_E2E_REQUESTS", "300"))
MiB = 1024 * 1024


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")  # pragma: no cover


def grown_by(pid: int, before: int) -> int:
    """How much the server's RSS grew since ``before``, once the request is over: a request's own
    buffers are freed as its last frames unwind, a moment after the answer went out."""
    grown = rss(pid) - before
    deadline = time.monotonic() + 2
    while grown > 50 * MiB and time.monotonic() < deadline:
        time.sleep(0.05)
        grown = min(grown, rss(pid) - before)
    return grown


@pytest.fixture(scope="module")
def real_server() -> Iterator[tuple[httpx.Client, int, list[int]]]:
    with ServerProcess(["--task-seconds", "0"]) as server, httpx.Client(base_url=server.base_url, timeout=30) as c:
        assert server.process is not None
        yield c, server.process.pid, []


NASTY = [
    ("POST", VIDEO, b'{"prompt": "x", "image_urls": [' + b",".join([b"0"] * 1_000_000) + b"]}"),
    ("POST", VIDEO, b'{"prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    ("POST", VIDEO, b'{"prompt": "' + b"p" * (39 * MiB) + b'", "image_urls": ["https://e.com/a.png"]}'),
    ("POST", IMAGINE, b'{"prompt": "a", "image_urls": [' + b",".join([b'"https://e.com/a.png"'] * 300_000) + b"]}"),
    ("POST", "/__mock__/scenarios", b'{"scenario": "fail", "fields": {"a": "' + b"f" * (20 * MiB) + b'"}}'),
]


@pytest.mark.e2e
@pytest.mark.parametrize("nasty", range(len(NASTY)))
def test_nasty_requests_do_not_raise_the_memory_of_a_real_server(
    real_server: tuple[httpx.Client, int, list[int]], nasty: int
) -> None:
    client, pid, grown = real_server
    method, path, body = NASTY[nasty]
    headers = {"authorization": "Bearer t", "content-type": "application/json"}
    before = rss(pid)
    response = client.request(method, path, content=body, headers=headers)
    peak = rss(pid) - before
    assert response.status_code < 500, response.text[:300]
    grown.append(grown_by(pid, before))
    assert client.get("/__mock__/requests").status_code == 200
    size, answer = f"{len(body) / MiB:.1f} MiB", f"+{peak / MiB:.0f} MiB as it answered"
    print(f"\n{method} {path} ({size}): {response.status_code}; RSS {answer}, +{grown[-1] / MiB:.0f} MiB after")
    assert grown[-1] < 50 * MiB


@pytest.mark.e2e
@settings(
    max_examples=FUZZ_E2E_REQUESTS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(request=requests_to_any_route())
def test_generated_requests_do_not_raise_the_memory_of_a_real_server(
    real_server: tuple[httpx.Client, int, list[int]], request: Generated
) -> None:
    client, pid, grown = real_server
    method, path, headers, body, _ = request
    # On a socket, a header value must not start or end with white space nor hold control characters.
    headers = [(k, v.strip()) for k, v in headers if v.strip() and all(32 <= c != 127 for c in v.strip())]
    before = rss(pid)
    answer = send(client, method, path, headers, body)
    check_answer(answer, request, lambda: canned_answered(client))
    grown.append(grown_by(pid, before))
    assert grown[-1] < 50 * MiB, (method, path, grown[-1])
    if len(grown) % 100 == 0:
        assert client.post("/__mock__/reset", json={}).status_code == 200
