"""Bounds on canned responses: globs match in linear time, and what cannot be sent is refused.

A glob used to become a regular expression with one ``.*`` per ``**``, which backtracks
polynomially on a long path (a 2 KB path held the server for seconds). A canned response with a
header that cannot go on the wire (CR/LF in a value, a space in a name), an interim status (1xx),
a body on a bodiless status or a ``content-length`` that lies was accepted, and then every request
it matched was dropped unanswered: now it is refused when it is made, naming the field.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mockserver import Settings, create_app
from mockserver.core import matching
from mockserver.core.clock import VirtualClock
from mockserver.testing.transport import SyncASGITransport

LONG = 64 * 1024
BOUND = 0.5  # seconds: generous, the matcher takes milliseconds


def backtracking_regex(pattern: str) -> re.Pattern[str]:
    """The glob's semantics as the old implementation spelt them: the reference to agree with."""
    parts = re.split(r"(\*\*|\*|\?)", pattern)
    wild = {"**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(wild.get(p, re.escape(p)) for p in parts), re.DOTALL)


# -- globs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    ["/media/**/**/**/*.mp4", "/**/**/**/**/x", "/media/*a*a*a*a*b", "/**a**a**a**a**b", "/?*?*?*/**/*?*.mp4"],
)
@pytest.mark.parametrize("path", ["/media/" + "a/" * (LONG // 2), "/media/" + "a" * LONG, "/" + "a/a" * (LONG // 3)])
def test_globs_match_a_long_path_quickly(pattern: str, path: str) -> None:
    started = time.perf_counter()
    matched = matching.path_matches(pattern, path + "!")  # no match: the worst case for backtracking
    elapsed = time.perf_counter() - started
    assert not matched
    assert elapsed < BOUND, f"{pattern} took {elapsed:.2f}s over {len(path)} characters"


def test_verify_over_long_paths_is_quick() -> None:
    entries = [{"seq": n, "method": "GET", "path": "/media/" + "a/" * 2048 + "x", "status": 200} for n in range(3)]
    started = time.perf_counter()
    result = matching.verification(matching.Expectation(path="/media/**/**/**/*.mp4"), entries)
    assert time.perf_counter() - started < BOUND
    assert result["ok"] is False


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("/v1/tasks/*", "/v1/tasks/task_1", True),
        ("/v1/tasks/*", "/v1/tasks/a/b", False),
        ("/v1/tasks/*", "/v1/tasks/", True),
        ("/media/**", "/media/task_1/0.mp4", True),
        ("/media/**", "/media/", True),
        ("/media/**", "/media", False),
        ("/media/task_?/0.mp4", "/media/task_1/0.mp4", True),
        ("/media/task_?/0.mp4", "/media/task_/0.mp4", False),
        ("/v1/tasks/task.1", "/v1/tasks/task_1", False),
        ("/media/**/**/**/*.mp4", "/media/a/b/c/d.mp4", True),
        ("/media/**/**/**/*.mp4", "/media/a/b/d.mp4", False),
        ("/a**b", "/a/x/b", True),
        ("/a***b", "/a/x/b", True),
        ("/a*b", "/a/x/b", False),
        ("/a?b", "/a/b", False),
        ("/[a]", "/[a]", True),
        ("/x\n", "/x\n", True),
    ],
)
def test_glob_semantics_are_kept(pattern: str, path: str, expected: bool) -> None:
    assert matching.path_matches(pattern, path) is expected
    assert (backtracking_regex(pattern).fullmatch(path) is not None) is expected


def test_globs_agree_with_the_old_regular_expressions() -> None:
    rng = random.Random(9110)
    pieces = ["*", "**", "?", "/", "a", "b", "."]
    for _ in range(4000):
        pattern = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 8)))
        path = "".join(rng.choice("ab/.") for _ in range(rng.randint(0, 10)))
        wanted = backtracking_regex(pattern).fullmatch(path) is not None if any(c in pattern for c in "*?") else None
        assert matching.path_matches(pattern, path) is (pattern == path if wanted is None else wanted), (pattern, path)


# -- what a canned response may say -----------------------------------------------------------


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    app = create_app(Settings(task_seconds=0.0), clock=VirtualClock())
    with httpx.Client(transport=SyncASGITransport(app), base_url="http://testserver") as c:
        yield c


def refused(client: httpx.Client, **spec: Any) -> dict[str, Any]:
    response = client.post("/__mock__/responses", json={"path": "/v1/anything", **spec})
    assert response.status_code == 400, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == 400
    assert client.get("/__mock__/responses").json()["responses"] == []  # nothing kept
    return error


@pytest.mark.parametrize(
    ("headers", "param", "rule"),
    [
        ({"X Bad": "1"}, "headers.x bad", "token"),
        ({"X-Ok": "a\r\nSet-Cookie: x=1"}, "headers.x-ok", "control character"),
        ({"X-Ok": "a\nb"}, "headers.x-ok", "control character"),
        ({"X-Ok": "a\x00b"}, "headers.x-ok", "control character"),
        ({"X-Ok": " padded"}, "headers.x-ok", "whitespace"),
        ({"X-Ok": "snow ☃"}, "headers.x-ok", "latin-1"),
        ({"X(y)": "1"}, "headers.x(y)", "token"),
        ({"": "1"}, "headers.", "token"),
    ],
)
def test_headers_that_cannot_be_sent_are_refused(
    client: httpx.Client, headers: dict[str, str], param: str, rule: str
) -> None:
    error = refused(client, headers=headers, text="x")
    assert error["param"] == param
    assert rule in error["message"] and param in error["message"]


@pytest.mark.parametrize("status", [100, 101, 103, 199])
def test_interim_statuses_are_refused(client: httpx.Client, status: int) -> None:
    error = refused(client, status=status)
    assert error["param"] == "status"
    assert "status must be >= 200" in error["message"]  # spec/control.yaml: a final status only


@pytest.mark.parametrize(("status", "spec"), [(204, {"text": "hi"}), (304, {"body": {"a": 1}}), (204, {"body": None})])
def test_a_body_on_a_bodiless_status_is_refused(client: httpx.Client, status: int, spec: dict[str, Any]) -> None:
    error = refused(client, status=status, **spec)
    assert error["param"] == "status"
    assert "no body" in error["message"]


def test_what_can_be_sent_is_still_accepted_and_sent(client: httpx.Client) -> None:
    headers = {"X-Fine": "tab\tand space, \xe9", "Retry-After": "2", "X-Empty": ""}
    made = client.post("/__mock__/responses", json={"path": "/v1/t**", "status": 299, "headers": headers, "text": "ok"})
    assert made.status_code == 200, made.text
    answered = client.get("/v1/tasks/x")
    assert answered.status_code == 299 and answered.text == "ok"
    assert answered.headers["x-fine"] == "tab\tand space, é" and answered.headers["x-empty"] == ""
    bare = client.post("/__mock__/responses", json={"path": "/v1/none", "status": 204})
    assert bare.status_code == 200, bare.text
    assert client.get("/v1/none").status_code == 204


def imported(client: httpx.Client, **canned: Any) -> httpx.Response:
    """PUT a state document holding one canned response (the other way canned responses are made)."""
    document = client.get("/__mock__/state").json()
    document["canned_responses"] = [{"id": "resp_1", "path": "/v1/x", **canned}]
    return client.put("/__mock__/state", json=document)


@pytest.mark.parametrize(
    ("canned", "param"),
    [
        ({"headers": {"Content-Length": "3"}, "text": "hello"}, "headers.Content-Length"),  # named as given
        ({"headers": {"content-length": "5"}}, "headers.content-length"),
        ({"headers": {"Transfer-Encoding": "chunked"}, "text": "x"}, "headers.Transfer-Encoding"),
        ({"headers": {"X-A": "1\r\n"}}, "headers.X-A"),
        ({"status": 101}, "status"),
    ],
)
def test_imported_canned_responses_are_checked_too(client: httpx.Client, canned: dict[str, Any], param: str) -> None:
    response = imported(client, **canned)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] in (param, f"canned_responses[0].{param}")
    assert client.get("/__mock__/responses").json()["responses"] == []


def test_a_truthful_content_length_may_be_imported(client: httpx.Client) -> None:
    response = imported(client, headers={"Content-Length": "5"}, text="hello")
    assert response.status_code == 200, response.text
    answered = client.get("/v1/x")
    assert answered.text == "hello" and answered.headers["content-length"] == "5"
