"""The proxy forwards one spelling per documented route: no path spelling gets past the spend cap.

The clients here send paths exactly as written (``http.client``), as ``urllib.request``
does: httpx would remove the dot segments before sending.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections import Counter
from pathlib import Path

import pytest

from mockserver.proxy.paths import PathRules, is_canonical
from mockserver.proxy.process import ProxyProcess
from mockserver.testing import ServerProcess

TOKEN = "sk-paths-test-4b1d9e"
VIDEO = "/v1/midjourney/generations/video"
BODY = json.dumps({"prompt": "the cat turns its head", "image_urls": ["https://example.com/cat.png"]}).encode()

# Each is read as a paid route by some server, or by httpx on its way out.
SPELLINGS = [
    "/v1/midjourney/generations/./video",
    "/v1/./midjourney/generations/video",
    "/./v1/midjourney/generations/video",
    "/v1/midjourney/generations/x/../video",
    "/v1/midjourney/./generations",
    "/v1/midjourney/generations/video/",
    "/v1/midjourney//generations/video",
    "//v1/midjourney/generations/video",
    "/v1/midjourney/generations/%2e/video",
    "/v1/midjourney/generations/vide%6f",
    "/v1/midjourney/generations/video;x",
    "/v1/midjourney/generations/video%00",
    "/V1/midjourney/generations/video",
    "/v1/midjourney/generations%2Fvideo",
    "/v1/midjourney/generations/imagine/.",
]
RULES = PathRules(
    ["/v1/midjourney/generations/video", "/v1/midjourney/generations", "/v1/tasks/{task_id}", "/v1/images/generations"]
)


@pytest.mark.parametrize("path", SPELLINGS)
def test_every_other_spelling_of_a_route_is_refused(path: str) -> None:
    assert RULES.problem(path) is not None


@pytest.mark.parametrize(
    "path", [VIDEO, "/v1/midjourney/generations", "/v1/tasks/task_01HZX", "/media/task_1/0.mp4", "/healthz", "/"]
)
def test_canonical_paths_pass(path: str) -> None:
    """The routes themselves, and canonical paths outside the spec (result files), are forwarded."""
    assert RULES.problem(path) is None


@pytest.mark.parametrize("path", ["/a/%2e%2e/b", "/a/%2F", "/a/%3b", "/a/%41", "/a/%e2%82%ac", "/a/b c"])
def test_escapes_that_change_the_meaning_or_are_not_canonical_are_not(path: str) -> None:
    assert not is_canonical(path)


def send(port: int, method: str, path: str, body: bytes = BODY) -> tuple[int, bytes]:
    """One request with ``path`` sent byte for byte as written."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (
            ("Authorization", f"Bearer {TOKEN}"),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
        ):
            connection.putheader(name, value)
        connection.endheaders(body)
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def upstream_tasks(upstream: ServerProcess) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", int(upstream.base_url.rsplit(":", 1)[1]), timeout=10)
    connection.request("GET", "/__mock__/tasks")
    total: int = json.loads(connection.getresponse().read())["total"]
    connection.close()
    return total


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@pytest.mark.e2e
def test_e2e_no_spelling_of_a_paid_route_is_forwarded_past_a_cap_of_0(tmp_path: Path) -> None:
    with ServerProcess(["--task-seconds", "0"]) as upstream:
        proxy = ProxyProcess(["--upstream", upstream.base_url, "--max-paid-tasks", "0"], log=tmp_path / "proxy.log")
        with proxy:
            port = port_of(proxy.base_url)
            for path in SPELLINGS:
                status, raw = send(port, "POST", path)
                assert status == 400, (path, status, raw)
                error = json.loads(raw)["error"]
                assert error["type"] == "invalid_request_error" and "not forwarded" in error["message"], path
            status, raw = send(port, "post", VIDEO)  # a method in lower case is the same route
            assert status in (400, 402), (status, raw)
            assert send(port, "POST", VIDEO)[0] == 402
            spend = json.loads(send(port, "GET", "/__mock__/spend", b"")[1])
            assert spend["tasks"] == 0
            assert upstream_tasks(upstream) == 0
        output = proxy.stop()
    assert "spent 0 credit(s)" in output
    assert TOKEN not in output


@pytest.mark.e2e
def test_e2e_100_racing_submissions_over_every_spelling_forward_exactly_the_cap(tmp_path: Path) -> None:
    with ServerProcess(["--task-seconds", "0"]) as upstream:
        proxy = ProxyProcess(["--upstream", upstream.base_url, "--max-paid-tasks", "5"], log=tmp_path / "proxy.log")
        with proxy:
            port = port_of(proxy.base_url)
            paths = [([VIDEO, *SPELLINGS])[n % (len(SPELLINGS) + 1)] for n in range(100)]
            barrier = threading.Barrier(len(paths))
            seen: list[tuple[str, int]] = []
            lock = threading.Lock()

            def client(path: str) -> None:
                barrier.wait(timeout=30)
                status = send(port, "POST", path)[0]
                with lock:
                    seen.append((path, status))

            threads = [threading.Thread(target=client, args=(path,)) for path in paths]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
            assert len(seen) == 100
            canonical = Counter(status for path, status in seen if path == VIDEO)
            assert canonical == {200: 5, 402: paths.count(VIDEO) - 5}
            assert {status for path, status in seen if path != VIDEO} == {400}
            assert upstream_tasks(upstream) == 5
            assert json.loads(send(port, "GET", "/__mock__/spend", b"")[1])["tasks"] == 5
        proxy.stop()
