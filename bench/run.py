"""``make bench``: the fake's throughput and latency, as ratios against a bare Starlette endpoint of the same run.

Every server runs alone on loopback and takes the same wrk load: 1 thread, 32
connections, 6 s per figure after a 2 s warm-up of that server (the JVM of WireMock
gets 10 s: it needs seconds of traffic before its figures mean anything).
Scenarios: submissions, polls, and a mix of one submission to ten polls. Every
figure is printed as a ratio against the bare endpoint (``bench/bare.py``: the
same two paths answering fixed JSON under the same uvicorn) measured in the same
run, so a slower or busier machine moves both.

Measured: the bare endpoint (one and two workers, and, for reference, on the fake's own HTTP
protocol: ``mockserver.protocol``); mockserver with ``memory://`` (one worker),
``sqlite://`` and ``redis://`` (one worker and ``--workers 2``); WireMock (static
stubs in ``bench/wiremock``) and Stoplight Prism (mocking ``spec/openapi.yaml``),
installed from npm into ``bench/.tools`` when missing (WireMock runs on the
machine's Java). Then: submissions against a balance with 100 000 tasks already in
the account, against an empty store (memory and SQLite); start-up time; memory per
stored task. On Redis, the Redis server's own CPU per request (``INFO cpu`` around each
figure): the ceiling a fleet of instances sharing one Redis meets. The last run's figures are kept in ``bench/results/latest.json``.

    python -m bench.run [--seconds 6] [--warmup 2] [--connections 32] [--skip-tools] [--quick]
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mockserver.testing import free_port
from tests.servers import RedisUnavailable, redis_server

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "bench" / ".tools"
AUTH = "Bearer bench"
BODY = '{"prompt":"a cat","image_urls":["https://example.com/cat.png"],"batch_size":2}'
SCENARIOS = {"submit": 1.0, "poll": 0.0, "mix 1:10": 1 / 11}
HISTORY = 100_000  # tasks already in the account, for the figure of history independence


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
def running(command: list[str], probe: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    try:
        wait_until_up(probe)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def call(base: str, path: str, body: Any = None, token: str | None = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, headers=headers, method="GET" if data is None else "POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


# -- wrk --------------------------------------------------------------------------------------------


@dataclass
class Load:
    seconds: int
    warmup: int
    connections: int
    threads: int = 1


def lua(ids: list[str], submit_share: float, who: str = "bench") -> str:
    listed = ",".join(json.dumps(i) for i in ids) or '"task_01KV52C0TEJSYZMCG0NCS4YWKK"'
    return f"""
local ids = {{{listed}}}
local body = {json.dumps(BODY)}
local share = {submit_share}
wrk.headers["Authorization"] = "Bearer {who}"
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
    store_us: float | None = None  # the store server's CPU per request (Redis), when measured


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(base: str, script: str, seconds: float, load: Load) -> Figure:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        command = [
            "wrk",
            f"-t{load.threads}",
            f"-c{load.connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            f.name,
            base,
        ]
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


def seed_tasks(base: str, count: int = 200) -> list[str]:
    body = json.loads(BODY)
    return [call(base, "/v1/midjourney/generations/video", body, "bench")["data"][0]["task_id"] for _ in range(count)]


def measure(
    name: str,
    base: str,
    ids: list[str],
    load: Load,
    warmup: int | None = None,
    store_cpu: Callable[[], float] | None = None,
) -> dict[str, Figure]:
    """The server warmed up (the mix, ``warmup`` seconds), then each scenario for ``load.seconds``.
    ``store_cpu``: the store server's CPU seconds so far (Redis's ``INFO cpu``), read around each
    scenario to give the store's own cost per request (``Figure.store_us``)."""
    wrk(base, lua(ids, SCENARIOS["mix 1:10"]), warmup if warmup is not None else load.warmup, load)
    figures = {}
    for scenario, share in SCENARIOS.items():
        before = store_cpu() if store_cpu else 0.0
        f = figures[scenario] = wrk(base, lua(ids, share), load.seconds, load)
        if store_cpu is not None:
            f.store_us = (store_cpu() - before) / max(f.rps * load.seconds, 1.0) * 1e6
        store = f"  store {f.store_us:5.1f} µs/request" if f.store_us is not None else ""
        print(f"  {name:<31} {scenario:<9} {f.rps:>9.0f} req/s  p50 {f.p50_ms:6.2f} ms  p99 {f.p99_ms:6.2f} ms{store}",
              flush=True)  # fmt: skip
    return figures


def redis_cpu(url: str) -> Callable[[], float]:
    """Redis's own CPU seconds (user + system, every thread), as ``INFO cpu`` says."""
    import redis

    client = redis.Redis.from_url(url)

    def seconds() -> float:
        info = client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    return seconds


# -- the servers ----------------------------------------------------------------------------------------


UVICORN = ["--host", "127.0.0.1", "--log-level", "warning", "--no-access-log"]


PROTOCOL = "mockserver.protocol:BoundedHttpToolsProtocol"  # the fake's HTTP protocol (uvicorn's, lighter per request)


def bare(load: Load, workers: int = 1, protocol: bool = False) -> dict[str, Figure]:
    """The baseline: the same paths answering fixed JSON under the same uvicorn (``workers`` 2: the
    most any Python server on Starlette and uvicorn could answer on this machine's cores). With
    ``protocol``, on the fake's own HTTP protocol in place of uvicorn's: how much of the fake's
    figures its protocol accounts for."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "bench.bare:app", "--port", str(port), *UVICORN,
               "--workers", str(workers), *(["--http", PROTOCOL] if protocol else [])]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    with running(command, base + "/v1/tasks/x"):
        return measure(bare_name(workers, protocol), base, [], load)


def bare_name(workers: int = 1, protocol: bool = False) -> str:
    return (
        "bare Starlette" + (f" --workers {workers}" if workers > 1 else "") + (", fake's protocol" if protocol else "")
    )


@contextmanager
def mockserver(state: str, workers: int = 1) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "mockserver", "serve", "--port", str(port), "--task-seconds", "0",
               "--state", state, "--workers", str(workers), "--log-level", "warning"]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    with running(command, base + "/__mock__/health"):
        yield base


def fake(name: str, state: str, load: Load, workers: int = 1) -> dict[str, Figure]:
    store_cpu = redis_cpu(state) if state.startswith("redis://") else None
    with mockserver(state, workers) as base:
        return measure(name, base, seed_tasks(base), load, store_cpu=store_cpu)


def history(name: str, state: str, load: Load, rounds: int = 2) -> tuple[Figure, Figure, int]:
    """Submissions against a balance: on a store emptied first (``POST /__mock__/reset``), and on a
    second server whose account holds HISTORY tasks (filled by the same submissions) before each
    round; the rounds alternate between the two, and the best of each is kept."""
    script = lua([], 1.0, "bench-history")
    balance = {"token": "bench-history", "balance": 1e12}
    with mockserver(state) as empty_base, mockserver(state.replace(".db", "-full.db")) as full_base:
        call(full_base, "/__mock__/balances", balance)
        while (held := call(full_base, "/__mock__/tasks?token=bench-history&limit=1")["total"]) < HISTORY:
            wrk(full_base, script, 3, load)
        best: dict[str, Figure] = {}
        for _ in range(rounds):
            call(empty_base, "/__mock__/reset", {})
            call(empty_base, "/__mock__/balances", balance)
            for kind, base in (("empty", empty_base), ("full", full_base)):
                wrk(base, script, load.warmup, load)
                found = wrk(base, script, load.seconds, load)
                if kind not in best or found.rps > best[kind].rps:
                    best[kind] = found
        total = call(full_base, "/__mock__/tasks?limit=1")["total"]
    empty, full = best["empty"], best["full"]
    print(f"  {name:<26} empty store {empty.rps:>7.0f} req/s; {held:,} tasks in the account ({total:,} stored "
          f"at the end): {full.rps:>7.0f} req/s (× {full.rps / empty.rps:.2f})", flush=True)  # fmt: skip
    return empty, full, held


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


def prism(root: Path, load: Load) -> dict[str, Figure]:
    port = free_port()
    command = [str(root / "node_modules" / ".bin" / "prism"), "mock", str(ROOT / "spec" / "openapi.yaml"),
               "--port", str(port), "--host", "127.0.0.1", "--errors", "false"]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    with running(command, base + "/openapi-does-not-exist-but-answers"):
        return measure("Stoplight Prism", base, [], load)


def wiremock(root: Path, load: Load) -> dict[str, Figure] | None:
    jars = sorted((root / "node_modules" / "wiremock").rglob("wiremock-standalone-*.jar"))
    if not jars or shutil.which("java") is None:
        return None
    port = free_port()
    command = ["java", "-jar", str(jars[-1]), "--port", str(port), "--bind-address", "127.0.0.1",
               "--root-dir", str(ROOT / "bench" / "wiremock"), "--disable-banner", "--disable-request-logging",
               "--no-request-journal"]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    with running(command, base + "/__admin/mappings"):
        return measure("WireMock", base, [], load, warmup=max(load.warmup, 10))


# -- start-up ------------------------------------------------------------------------------------------------


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


# -- memory ----------------------------------------------------------------------------------------------------


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


# -- report --------------------------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def report(results: dict[str, dict[str, Figure]], load: Load) -> list[dict[str, Any]]:
    base = results[bare_name()]
    print(f"\n{'server':<32} {'scenario':<9} {'req/s':>8} {'× bare':>7} {'p50 ms':>7} {'p99 ms':>7} {'non-2xx':>8}")
    for name, figures in results.items():
        for scenario, f in figures.items():
            ratio = f.rps / base[scenario].rps
            print(
                f"{name:<32} {scenario:<9} {f.rps:>8.0f} {ratio:>7.2f} {f.p50_ms:>7.2f} {f.p99_ms:>7.2f} {f.errors:>8}"
            )
    checks: list[dict[str, Any]] = []

    def check(label: str, value: float, target: float, shown: str, higher: bool = True) -> None:
        ok = value >= target if higher else value < target
        checks.append({"target": label, "value": value, "met": ok})
        print(f"  {label:<52} {shown:>10}  {verdict(ok)}")

    def ratio_of(name: str, scenario: str) -> float | None:
        found = results.get(name, {}).get(scenario)
        return None if found is None else found.rps / base[scenario].rps

    costs = [(n, k, f.store_us) for n, figs in results.items() for k, f in figs.items() if f.store_us]
    if costs:
        print("\nRedis's own CPU per request, and the ceiling it puts on a fleet sharing one Redis:")
        for name, scenario, us in costs:
            print(f"  {name:<28} {scenario:<9} {us:6.1f} µs  → at most {1e6 / us:>9,.0f} req/s per Redis core")
    print("\ntargets (ratios against the bare endpoint of this run):")
    for name, submit, poll in (
        ("mockserver memory", 0.60, 0.70),
        ("mockserver sqlite", 0.35, 0.50),
        ("mockserver redis", 0.35, 0.50),
    ):
        for scenario, target in (("submit", submit), ("poll", poll)):
            value = ratio_of(name, scenario)
            if value is not None:
                check(f"{name}, {scenario} ≥ {target:.2f}× bare", value, target, f"{value:.2f}×")
    memory = results.get("mockserver memory")
    if memory:
        worst = max(f.p99_ms for f in memory.values())
        check(f"mockserver memory, p99 < 10 ms at {load.connections} connections", worst, 10.0, f"{worst:.2f} ms",
              higher=False)  # fmt: skip
    for state in ("sqlite", "redis"):
        one, two = results.get(f"mockserver {state}"), results.get(f"mockserver {state} --workers 2")
        if one and two:
            for scenario in ("submit", "poll"):
                gain = two[scenario].rps / one[scenario].rps
                check(f"mockserver {state}, {scenario}: 2 workers > 1 worker", gain, 1.0, f"{gain:.2f}×")
    lighter = results.get(bare_name(protocol=True))
    if memory and lighter:
        for scenario in ("submit", "poll"):
            share = memory[scenario].rps / lighter[scenario].rps
            label = f"(for reference) mockserver memory, {scenario} / bare on the fake's protocol"
            print(f"  {label:<74} {share:>6.2f}×")
    wire = results.get("WireMock")
    if wire:
        for state in ("sqlite", "redis"):
            two = results.get(f"mockserver {state} --workers 2")
            if two:
                for scenario in ("submit", "poll"):
                    share = two[scenario].rps / wire[scenario].rps
                    check(f"mockserver {state} --workers 2, {scenario} > WireMock", share, 1.0, f"{share:.2f}×")
        ceiling = results.get(bare_name(2))
        if ceiling:
            for scenario in ("submit", "poll"):
                share = ceiling[scenario].rps / wire[scenario].rps
                print(
                    f"  {'(for reference) bare Starlette --workers 2, ' + scenario + ' / WireMock':<74} {share:>9.2f}×"
                )
    return checks


def _commit() -> str:
    """The commit measured (with ``+`` when the work tree differs from it), or "" outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "mockserver", "bench", ":(exclude)bench/results"],
                               cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    except OSError:
        return ""
    return head.stdout.strip() + ("+" if dirty.stdout.strip() else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--skip-tools", action="store_true", help="do not measure Prism and WireMock")
    parser.add_argument("--quick", action="store_true", help="no history, start-up or memory figures")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is needed (apt-get install wrk)", file=sys.stderr)
        return 2
    load = Load(args.seconds, args.warmup, args.connections)
    print(f"load: wrk, {load.threads} thread, {load.connections} connections, {load.seconds} s per figure after "
          f"a {load.warmup} s warm-up of each server (WireMock: 10 s); {os.cpu_count()} cores", flush=True)  # fmt: skip
    results: dict[str, dict[str, Figure]] = {
        bare_name(): bare(load),
        bare_name(2): bare(load, 2),
        bare_name(protocol=True): bare(load, protocol=True),
    }
    histories: dict[str, tuple[Figure, Figure, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["mockserver memory"] = fake("mockserver memory", "memory://", load)
        for workers in (1, 2):
            name = "mockserver sqlite" + (f" --workers {workers}" if workers > 1 else "")
            results[name] = fake(name, f"sqlite:///{tmp}/bench-{workers}.db", load, workers)
        try:
            for workers in (1, 2):
                with redis_server(Path(tmp)) as url:
                    name = "mockserver redis" + (f" --workers {workers}" if workers > 1 else "")
                    results[name] = fake(name, url, load, workers)
        except RedisUnavailable as exc:
            print(f"  mockserver redis: not measured ({exc})")
        if not args.skip_tools:
            root = tools()
            if root is None:
                print("  Prism, WireMock: not measured (npm could not install them)")
            else:
                for name, run in (("WireMock", wiremock), ("Stoplight Prism", prism)):
                    try:
                        measured = run(root, load)
                    except (RuntimeError, subprocess.CalledProcessError) as exc:
                        print(f"  {name}: not measured ({exc})")
                        continue
                    if measured:
                        results[name] = measured
        if not args.quick:
            print(f"\nsubmissions against a balance: an empty store, then {HISTORY:,} tasks in the account", flush=True)
            histories["memory"] = history("mockserver memory", "memory://", load)
            histories["sqlite"] = history("mockserver sqlite", f"sqlite:///{tmp}/history.db", load)
    started = bare_started = 0.0
    memory: dict[int, tuple[float, float]] = {}
    if not args.quick:
        print("\nstart-up", flush=True)
        started, bare_started = startup()
        print("\nmemory", flush=True)
        memory = memory_per_task()
    checks = report(results, load)
    for store, (empty, full, _) in histories.items():
        value = full.rps / empty.rps
        ok = value >= 0.9
        checks.append(
            {"target": f"{store}: submit with {HISTORY:,} tasks within 10% of empty", "value": value, "met": ok}
        )
        print(f"  {store + ': submit with ' + format(HISTORY, ',') + ' tasks within 10% of empty':<52} "
              f"{value:>9.2f}×  {verdict(ok)}")  # fmt: skip
    if started:
        print(f"  {'start-up well under 1 s':<52} {started * 1000:>7.0f} ms  {verdict(started < 1)}")
    if memory:
        per_task = max(v[1] for v in memory.values())
        print(f"  {'< 1 KiB per stored task':<52} {per_task:>8.0f} B  {verdict(per_task < 1024)}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "commit": _commit(),
                "load": vars(load),
                "cores": os.cpu_count(),
                "servers": {n: {k: vars(f) for k, f in figs.items()} for n, figs in results.items()},
                "ratios": {
                    n: {k: f.rps / results[bare_name()][k].rps for k, f in figs.items()} for n, figs in results.items()
                },
                "history": {
                    store: {"empty": vars(empty), "full": vars(full), "tasks_in_account": held}
                    for store, (empty, full, held) in histories.items()
                },
                "targets": checks,
                "memory": {str(k): {"mib": v[0], "bytes_per_task": v[1]} for k, v in memory.items()},
                "startup_seconds": {"mockserver": started, "bare": bare_started},
            },
            indent=2,
        )
    )
    print(f"\nfigures written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
