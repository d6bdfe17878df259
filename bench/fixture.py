"""Time per test as a user's suite feels it: the fixtures against respx stubs, side by side.

python -m bench.fixture [--tests N] [--rounds N]

Writes a test file of N identical tests (each submits a video and polls it once
through one shared httpx client) in three forms: with the ``apimart_mock``
fixture, with ``apimart_server`` (one real server for the run, reset before each
test), and with ``respx_mock`` and two stub routes, the baseline. Each form runs
in its own ``pytest`` process; the first round is a warm-up, and the median of
the other rounds is reported as milliseconds per test, with the ratio to the
baseline. Collection and start-up are inside the time, as a user feels them
(for ``apimart_server`` that includes starting its server once); the empty run
is measured too and subtracted. Last, the reset that ``apimart_server`` does
before each test is timed alone against a running server.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAD = """
import httpx
import pytest

BASE = "https://api.apimart.ai"
BODY = {"prompt": "the cat turns its head", "image_urls": ["https://example.com/cat.png"]}
CLIENT = httpx.Client(base_url=BASE, headers={"Authorization": "Bearer bench"})
"""

FAKE = """
@pytest.mark.parametrize("n", range({n}))
def test_fake(apimart_mock, n):
    task_id = CLIENT.post("/v1/midjourney/generations/video", json=BODY).json()["data"][0]["task_id"]
    assert CLIENT.get(f"/v1/tasks/{{task_id}}").json()["data"]["status"] == "completed"
"""

RESPX = """
SUBMITTED = {{"code": 200, "data": [{{"status": "submitted", "task_id": "task_1"}}]}}
DONE = {{"code": 200, "data": {{"id": "task_1", "status": "completed"}}}}


@pytest.mark.parametrize("n", range({n}))
def test_respx(respx_mock, n):
    respx_mock.post(BASE + "/v1/midjourney/generations/video").respond(json=SUBMITTED)
    respx_mock.get(BASE + "/v1/tasks/task_1").respond(json=DONE)
    task_id = CLIENT.post("/v1/midjourney/generations/video", json=BODY).json()["data"][0]["task_id"]
    assert CLIENT.get(f"/v1/tasks/{{task_id}}").json()["data"]["status"] == "completed"
"""

SERVER = """
CLIENTS = {{}}


@pytest.mark.parametrize("n", range({n}))
def test_server(apimart_server, n):
    client = CLIENTS.get(apimart_server.base_url) or CLIENTS.setdefault(
        apimart_server.base_url,
        httpx.Client(base_url=apimart_server.base_url, headers={{"Authorization": "Bearer bench"}}),
    )
    task_id = client.post("/v1/midjourney/generations/video", json=BODY).json()["data"][0]["task_id"]
    assert client.get(f"/v1/tasks/{{task_id}}").json()["data"]["status"] == "completed"
"""

EMPTY = """
@pytest.mark.parametrize("n", range({n}))
def test_empty(n):
    pass
"""


def run(folder: Path, name: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", name],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=4, help="rounds after the warm-up")
    args = parser.parse_args(argv)
    forms = {"empty": EMPTY, "respx_mock": RESPX, "apimart_mock": FAKE, "apimart_server": SERVER}
    with tempfile.TemporaryDirectory(prefix="bench-fixture-") as tmp:
        folder = Path(tmp)
        (folder / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
        for form, body in forms.items():
            (folder / f"test_{form}.py").write_text(HEAD + body.format(n=args.tests))
        times: dict[str, list[float]] = {form: [] for form in forms}
        for round_no in range(args.rounds + 1):
            for form in forms:
                took = run(folder, f"test_{form}.py")
                if round_no:
                    times[form].append(took)
            print(f"round {round_no}/{args.rounds} done", file=sys.stderr, flush=True)
    empty = statistics.median(times["empty"])
    per_test = {form: (statistics.median(times[form]) - empty) / args.tests * 1000 for form in forms if form != "empty"}
    print(f"{args.tests} tests per run, median of {args.rounds} runs, start-up ({empty:.2f} s) subtracted")
    for form, ms in per_test.items():
        print(f"{form:>14}: {ms:6.2f} ms per test  ({ms / per_test['respx_mock']:.2f} x respx_mock)")
    print(f"apimart_server's reset before each test: {reset_ms(args.tests):.2f} ms (median of {args.tests})")
    return 0


def reset_ms(count: int) -> float:
    """What ``apimart_server`` does before each test (reset, freeze the clock), timed alone, warmed first."""
    from mockserver.testing import RunningServer

    with RunningServer(["--task-seconds", "0"]) as control:
        took = []
        for _ in range(count + 20):
            started = time.perf_counter()
            control.reset()
            control.clock.freeze()
            took.append(time.perf_counter() - started)
    return statistics.median(took[20:]) * 1000


if __name__ == "__main__":
    raise SystemExit(main())
