"""``make bench``: throughput and latency of the fake against a bare Starlette endpoint, measured in one run.

Every server runs alone on loopback with the same uvicorn settings (one worker)
and takes the same wrk load (2 threads, 32 connections): submissions, polls,
and a mix of one submission to ten polls. Figures are printed as ratios
against the bare endpoint of the same run, so a noisy machine moves both.
Stoplight Prism (mocking spec/openapi.yaml) and WireMock (static stubs for the
same two paths) are measured beside it when npm can install them.

    python -m bench.run [--seconds 5] [--connections 32] [--skip-tools]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mockserver.testing import free_port
from tests.servers import RedisUnavailable, redis_server

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "bench" / ".tools"
AUTH = "Bearer bench"
BODY = '{"prompt":"a cat","image_urls":["https://example.com/cat.png"],"batch_size":2}'


def wait_until_up(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # any HTTP answer means the server is up
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


@contextmanager
def running(command: list[str], probe: str, env: dict[str, str] | None = None) -> Iterator[None]:
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    try:
        wait_until_up(probe)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


# -- wrk --------------------------------------------------------------------------------------


def lua(ids: list[str], submit_share: float) -> str:
    listed = ",".join(json.dumps(i) for i in ids) or '"task_01KV52C0TEJSYZMCG0NCS4YWKK"'
    return f"""
local ids = {{{listed}}}
local body = {json.dumps(BODY)}
local share = {submit_share}
wrk.headers["Authorization"] = "{AUTH}"
wrk.headers["Content-Type"] = "application/json"
request = function()
  if math.random() < share then
    return wrk.format("POST", "/v1/midjourney/generations/video", nil, body)
  end
  return wrk.format("GET", "/v1/tasks/" .. ids[math.random(#ids)])
end
"""


@dataclass
class Figure:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(base: str, script: str, seconds: int, connections: int) -> Figure:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", f.name, base]
        subprocess.run([*command[:3], "-d1s", *command[4:]], capture_output=True, check=True)  # warm-up
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(f.name)
    try:
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE).group(1))  # type: ignore[union-attr]
        p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE).group(1))  # type: ignore[union-attr]
    except (AttributeError, KeyError) as exc:
        raise RuntimeError(f"could not read wrk's output:\n{out}") from exc
    errors = sum(int(n) for n in re.findall(r"(?:Non-2xx or 3xx responses|Socket errors:.*?timeout)\s*:?\s*(\d+)", out))
    return Figure(rps, p50, p99, errors)


SCENARIOS = {"submit": 1.0, "poll": 0.0, "mix 1:10": 1 / 11}


def seed_tasks(base: str, count: int = 200) -> list[str]:
    ids = []
    for _ in range(count):
        request = urllib.request.Request(
            base + "/v1/midjourney/generations/video",
            data=BODY.encode(),
            headers={"Authorization": AUTH, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request) as response:
            ids.append(json.loads(response.read())["data"][0]["task_id"])
    return ids


def measure(name: str, base: str, ids: list[str], seconds: int, connections: int) -> dict[str, Figure]:
    figures = {}
    for scenario, share in SCENARIOS.items():
        figures[scenario] = wrk(base, lua(ids, share), seconds, connections)
        f = figures[scenario]
        print(
            f"  {name:<24} {scenario:<9} {f.rps:>9.0f} req/s  p50 {f.p50_ms:6.2f} ms  p99 {f.p99_ms:6.2f} ms",
            flush=True,
        )
    return figures


# -- the servers ----------------------------------------------------------------------------------


UVICORN = ["--host", "127.0.0.1", "--log-level", "warning", "--no-access-log", "--workers", "1"]


def bare(seconds: int, connections: int) -> dict[str, Figure]:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "bench.bare:app", "--port", str(port), *UVICORN]
    base = f"http://127.0.0.1:{port}"
    with running(command, base + "/v1/tasks/x"):
        return measure("bare Starlette", base, [], seconds, connections)


def fake(state: str, seconds: int, connections: int) -> dict[str, Figure]:
    port = free_port()
    command = [sys.executable, "-m", "mockserver", "serve", "--port", str(port), "--task-seconds", "0",
               "--state", state, "--log-level", "warning"]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    with running(command, base + "/__mock__/health"):
        ids = seed_tasks(base)
        return measure(f"mockserver {state.split(':')[0]}", base, ids, seconds, connections)


def tools() -> Path | None:
    """Prism and WireMock from the npm registry, installed once under bench/.tools."""
    if (TOOLS / "node_modules" / ".bin" / "prism").exists():
        return TOOLS
    if shutil.which("npm") is None:
        return None
    print("installing @stoplight/prism-cli and wiremock from npm into bench/.tools ...", flush=True)
    TOOLS.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["npm", "install", "--prefix", str(TOOLS), "--no-audit", "--no-fund", "--silent",
         "@stoplight/prism-cli@5", "wiremock@3"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    return TOOLS if result.returncode == 0 else None


def prism(root: Path, seconds: int, connections: int) -> dict[str, Figure]:
    port = free_port()
    command = [str(root / "node_modules" / ".bin" / "prism"), "mock", str(ROOT / "spec" / "openapi.yaml"),
               "--port", str(port), "--host", "127.0.0.1", "--errors", "false"]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    with running(command, base + "/openapi-does-not-exist-but-answers"):
        return measure("Stoplight Prism", base, [], seconds, connections)


def wiremock(root: Path, seconds: int, connections: int) -> dict[str, Figure] | None:
    jars = sorted((root / "node_modules" / "wiremock").rglob("wiremock-standalone-*.jar"))
    if not jars or shutil.which("java") is None:
        return None
    port = free_port()
    command = ["java", "-jar", str(jars[-1]), "--port", str(port), "--bind-address", "127.0.0.1",
               "--root-dir", str(ROOT / "bench" / "wiremock"), "--disable-banner", "--disable-request-logging"]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    with running(command, base + "/__admin/mappings"):
        return measure("WireMock", base, [], seconds, connections)


# -- start-up ------------------------------------------------------------------------------------------


def startup_seconds(command: list[str], probe: str, runs: int = 5) -> float:
    """Median time from starting the process to its first answered request."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until_up(probe, timeout=30)
            times.append(time.perf_counter() - started)
        finally:
            process.terminate()
            process.wait(timeout=15)
    return sorted(times)[len(times) // 2]


def startup() -> tuple[float, float]:
    port = free_port()
    bare_s = startup_seconds(
        [sys.executable, "-m", "uvicorn", "bench.bare:app", "--port", str(port), *UVICORN],
        f"http://127.0.0.1:{port}/v1/tasks/x",
    )
    ours_s = startup_seconds(
        [sys.executable, "-m", "mockserver", "serve", "--port", str(port)], f"http://127.0.0.1:{port}/v1/tasks/x"
    )
    print(f"  start-up to the first answered request: mockserver {ours_s * 1000:.0f} ms, "
          f"bare Starlette {bare_s * 1000:.0f} ms (× {ours_s / bare_s:.2f})", flush=True)  # fmt: skip
    return ours_s, bare_s


# -- memory -------------------------------------------------------------------------------------------


def memory_per_task(counts: tuple[int, ...] = (100_000, 1_000_000)) -> dict[int, tuple[float, float]]:
    """Resident size of the memory store after N tasks, in a fresh process: (MiB, bytes per task)."""
    out = {}
    for count in counts:
        result = subprocess.run(
            [sys.executable, "-m", "bench.memory", str(count)], capture_output=True, text=True, check=True, cwd=ROOT
        )
        mib, per_task = (float(x) for x in result.stdout.split())
        out[count] = (mib, per_task)
        print(f"  memory store, {count:>9,} tasks: {mib:8.1f} MiB resident growth, {per_task:6.0f} bytes per task",
              flush=True)  # fmt: skip
    return out


# -- report -----------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--skip-tools", action="store_true", help="do not measure Prism and WireMock")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is needed (apt-get install wrk)", file=sys.stderr)
        return 2
    s, c = args.seconds, args.connections
    print(f"load: wrk, 2 threads, {c} connections, {s} s per figure (after a 1 s warm-up); one uvicorn worker each",
          flush=True)  # fmt: skip
    results: dict[str, dict[str, Figure]] = {"bare Starlette": bare(s, c)}
    with tempfile.TemporaryDirectory() as tmp:
        results["mockserver memory"] = fake("memory://", s, c)
        results["mockserver sqlite"] = fake(f"sqlite:///{tmp}/bench.db", s, c)
        try:
            with redis_server() as url:
                results["mockserver redis"] = fake(url, s, c)
        except RedisUnavailable as exc:
            print(f"  mockserver redis: not measured ({exc})")
    if not args.skip_tools:
        root = tools()
        if root is None:
            print("  Prism, WireMock: not measured (npm could not install them)")
        else:
            for name, run in (("Stoplight Prism", prism), ("WireMock", wiremock)):
                try:
                    measured = run(root, s, c)
                except (RuntimeError, subprocess.CalledProcessError) as exc:
                    print(f"  {name}: not measured ({exc})")
                    continue
                if measured:
                    results[name] = measured
    print("\nstart-up", flush=True)
    started, bare_started = startup()
    print("\nmemory", flush=True)
    memory = memory_per_task()

    base = results["bare Starlette"]
    print(f"\n{'server':<22} {'scenario':<9} {'req/s':>8} {'× bare':>7} {'p50 ms':>7} {'p99 ms':>7} {'non-2xx':>8}")
    for name, figures in results.items():
        for scenario, f in figures.items():
            ratio = f.rps / base[scenario].rps
            print(
                f"{name:<22} {scenario:<9} {f.rps:>8.0f} {ratio:>7.2f} {f.p50_ms:>7.2f} {f.p99_ms:>7.2f} {f.errors:>8}"
            )
    ours = results["mockserver memory"]
    print("\ntargets (memory store, one worker):")
    checks = [
        ("submit ≥ 60% of bare", ours["submit"].rps / base["submit"].rps, 0.60),
        ("poll ≥ 70% of bare", ours["poll"].rps / base["poll"].rps, 0.70),
    ]
    for label, value, target in checks:
        print(f"  {label:<28} {value:6.0%}  {'met' if value >= target else 'NOT met'}")
    worst_p99 = max(f.p99_ms for f in ours.values())
    print(
        f"  {'p99 < 10 ms at ' + str(c) + ' connections':<28} {worst_p99:5.2f} ms  {'met' if worst_p99 < 10 else 'NOT met'}"
    )
    print(f"  {'start-up well under 1 s':<28} {started * 1000:5.0f} ms  {'met' if started < 1 else 'NOT met'}")
    per_task = max(v[1] for v in memory.values())
    print(f"  {'< 1 KiB per stored task':<28} {per_task:5.0f} B  {'met' if per_task < 1024 else 'NOT met'}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "load": {"seconds": s, "connections": c},
                "servers": {n: {k: vars(f) for k, f in figs.items()} for n, figs in results.items()},
                "memory": {str(k): {"mib": v[0], "bytes_per_task": v[1]} for k, v in memory.items()},
                "startup_seconds": {"mockserver": started, "bare": bare_started},
            },
            indent=2,
        )
    )
    print(f"\nfigures written to {args.json.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
