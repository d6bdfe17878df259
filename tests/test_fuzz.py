"""However malformed the request: never a 5xx, every refusal in the provider's body, no task from a refusal."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mockserver.core.clock import VirtualClock
from mockserver.core.faults import CATALOGUE
from mockserver.settings import Settings
from mockserver.testing.process import ServerProcess
from mockserver.testing.transport import SyncASGITransport
from mockserver.web.app import create_app

from .conftest import SPEC, MakeApi
from .helpers import FRAME, IMAGINE, VIDEO

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
# One generated request per example, against one in-process app per run. FUZZ_REQUESTS sets how
# many (default 1 500 in `make test`; the hardening figure was run with FUZZ_REQUESTS=20000). A 5xx
# passes only when the request asked for it (a simulated fault); after every 100 requests, every
# stored task and the journal must still be readable.

FUZZ_REQUESTS = int(os.environ.get("FUZZ_REQUESTS", "1500"))
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
bodies_of_any_kind = {
    "provider": valid_bodies | json_bodies(PROVIDER_FIELDS) | st.binary(max_size=300),
    "control": json_bodies(CONTROL_FIELDS) | st.binary(max_size=100) | st.just(b""),
}


def quoted(text: str) -> str:
    return quote(text, safe="", encoding="utf-8", errors="surrogatepass")


@st.composite
def requests_to_any_route(draw: st.DrawFn) -> tuple[str, str, list[tuple[bytes, bytes]], bytes]:
    """(method, path with query, headers, body) for any route of the provider's API, the media,
    the spec, the health check and the control plane, or a path nobody serves."""
    task_id = quoted(draw(TASK_IDS))
    route = draw(
        st.sampled_from(
            [
                ("POST", VIDEO, "provider"),
                ("POST", IMAGINE, "provider"),
                ("POST", IMAGINE + "/imagine", "provider"),
                ("GET", f"/v1/tasks/{task_id}", None),
                ("GET", f"/v1/midjourney/{task_id}", None),
                ("POST", "/v1/uploads/images", "upload"),
                ("GET", f"/media/{task_id}/{quoted(draw(MEDIA_NAMES))}", None),
                ("HEAD", f"/media/uploads/{task_id}/{quoted(draw(texts))}", None),
                ("GET", "/openapi.json", None),
                ("GET", "/healthz", None),
                ("POST", "/__mock__/reset", "control"),
                ("GET", "/__mock__/clock", None),
                ("POST", "/__mock__/clock", "control"),
                ("GET", "/__mock__/scenarios", None),
                ("POST", "/__mock__/scenarios", "control"),
                ("DELETE", f"/__mock__/scenarios/{task_id}", None),
                ("GET", "/__mock__/requests", "query"),
                ("GET", "/__mock__/requests.har", "query"),
                ("GET", "/__mock__/ledger", "query"),
                ("POST", "/__mock__/balances", "control"),
                ("GET", "/__mock__/tasks", "query"),
                ("GET", f"/__mock__/tasks/{task_id}", None),
                ("GET", "/__mock__/health", None),
                (draw(st.sampled_from(["GET", "PUT", "PATCH", "OPTIONS"])), f"/{quoted(draw(texts))}", None),
            ]
        )
    )
    method, path, kind = route
    headers: list[tuple[bytes, bytes]] = []
    authorization = draw(st.sampled_from([b"Bearer fuzz", b"Bearer other", b"", b"Basic eA==", b"Bearer \xff\xfe"]))
    if authorization:
        headers.append((b"authorization", authorization))
    body = b""
    if kind in ("provider", "control"):
        body = draw(bodies_of_any_kind[kind])
        content_type = draw(st.sampled_from([b"application/json", b"text/plain", b"application/x+json", b""]))
        if content_type:
            headers.append((b"content-type", content_type))
    elif kind == "upload":
        boundary = b"fuzzboundary"
        part_type = draw(st.sampled_from([b"image/png", b"image/jpeg", b"text/plain", b""]))
        data = draw(st.binary(max_size=200))
        name = quoted(draw(texts)).encode()
        body = (
            b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="' + name + b'"\r\n'
            b"Content-Type: " + part_type + b"\r\n\r\n" + data + b"\r\n--" + boundary + b"--\r\n"
        )
        if draw(st.booleans()):
            body = body[: draw(st.integers(0, len(body)))]
        headers.append((b"content-type", b"multipart/form-data; boundary=" + boundary))
    elif kind == "query":
        params = draw(
            st.dictionaries(
                st.sampled_from(["since", "limit", "offset", "status", "order", "token", "account", "path", "method"]),
                texts | st.integers(-5, 10**15).map(str),
                max_size=4,
            )
        )
        if params:
            path += "?" + "&".join(f"{k}={quoted(v)}" for k, v in params.items())
    if draw(st.booleans()):
        scenario = draw(
            st.sampled_from(SAFE_FAULTS) | texts.map(lambda t: t.encode("latin-1", "replace").decode("latin-1"))
        )
        headers.append((b"x-mock-scenario", scenario.replace("\r", " ").replace("\n", " ").encode("latin-1")))
    if draw(st.booleans()):
        headers.append((b"idempotency-key", draw(st.sampled_from([b"k1", b"k2", b" ", b"x" * 300]))))
    return method, path, headers, body


def check_answer(response: httpx.Response, request: tuple[str, str, list[tuple[bytes, bytes]], bytes]) -> None:
    method, path, _, _ = request
    if response.status_code >= 500:
        error = response.json()["error"]
        assert error["message"].endswith("(simulated)"), (method, path, response.status_code, response.text[:300])
    if response.status_code >= 400 and method != "HEAD":
        body = response.json()
        assert set(body) == {"error"}, (method, path, response.text[:300])
        assert isinstance(body["error"]["message"], str)


@pytest.fixture(scope="module")
def fuzzed_app() -> Iterator[tuple[httpx.Client, list[int]]]:
    app = create_app(Settings(task_seconds=0.0, journal_size=2000), clock=VirtualClock(), spec=SPEC)
    transport = SyncASGITransport(app)
    with httpx.Client(transport=transport, base_url="http://testserver", timeout=None) as client:
        yield client, [0]
    transport.close()


@settings(
    max_examples=FUZZ_REQUESTS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(request=requests_to_any_route())
def test_any_request_to_any_route(
    fuzzed_app: tuple[httpx.Client, list[int]], request: tuple[str, str, list[tuple[bytes, bytes]], bytes]
) -> None:
    client, count = fuzzed_app
    method, path, headers, body = request
    response = client.request(method, path, headers=headers, content=body)
    check_answer(response, request)
    if response.status_code == 200 and path in (VIDEO, IMAGINE, IMAGINE + "/imagine"):
        task_id = response.json()["data"][0]["task_id"]  # what was accepted can be read back, every way
        auth = [h for h in headers if h[0] == b"authorization"]
        for read in (f"/v1/tasks/{task_id}", f"/v1/midjourney/{task_id}", f"/media/{task_id}/0.mp4"):
            check_answer(client.get(read, headers=auth), ("GET", read, auth, b""))
        assert client.get(f"/__mock__/tasks/{task_id}").status_code == 200
    count[0] += 1
    if count[0] % 100 == 0:  # whatever was accepted can still be read back
        assert client.get("/__mock__/tasks").status_code == 200
        assert client.get("/__mock__/requests").status_code == 200
        assert client.get("/__mock__/scenarios").status_code == 200
        assert client.post("/__mock__/reset", json={}).status_code == 200


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
    real_server: tuple[httpx.Client, int, list[int]], request: tuple[str, str, list[tuple[bytes, bytes]], bytes]
) -> None:
    client, pid, grown = real_server
    method, path, headers, body = request
    # On a socket, a header value must not start or end with white space nor hold control characters.
    headers = [(k, v.strip()) for k, v in headers if v.strip() and all(32 <= c != 127 for c in v.strip())]
    before = rss(pid)
    response = client.request(method, path, headers=headers, content=body)
    check_answer(response, request)
    grown.append(grown_by(pid, before))
    assert grown[-1] < 50 * MiB, (method, path, grown[-1])
