"""``--record DIR``: every task as one JSON file, rewritten as each exchange happens.

``DIR/<task_id>.json`` holds the submission (path, endpoint, body with
``data:`` URLs shortened, the answer), the poll answers with their times in
seconds after the submission, and once the task is final its result files
(status, size, content type, first 16 bytes; ``--record-media`` keeps the files
under ``DIR/media/<task_id>/``). Every refusal (a submission, upload or poll
answered with an error, or refused by the spend cap) is one file under
``DIR/refusals/``. Each write goes to a temporary file renamed over the old
one, so a killed proxy leaves whole files and loses at most the exchange in
flight. No header is ever written: the API key never reaches a file, and a
body that echoes it has it replaced by ``[redacted]``.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from ..core.replay import FORMAT, shortened

MAX_POLLS = 5_000  # polls kept per task (a client polling forever cannot grow a file without bound)
REDACTED = "[redacted]"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def scrubbed(value: Any, secret: str | None) -> Any:
    """A copy of ``value`` in which the secret (an API key) appears nowhere."""
    if not secret:
        return value
    if isinstance(value, str):
        return value.replace(secret, REDACTED) if secret in value else value
    if isinstance(value, list):
        return [scrubbed(v, secret) for v in value]
    if isinstance(value, dict):
        return {scrubbed(k, secret): scrubbed(v, secret) for k, v in value.items()}
    return value


def safe_name(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("._")[:120] or "unnamed"


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: never half a file."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temp, "wb") as handle:
        handle.write(data)
    os.replace(temp, path)


class Recorder:
    def __init__(self, directory: str | Path, *, upstream: str, media: bool = False, keep: int = 10_000) -> None:
        self.root = Path(directory)
        self.upstream = upstream
        self.media = media
        self.keep = keep
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "refusals").mkdir(exist_ok=True)
        if media:
            (self.root / "media").mkdir(exist_ok=True)
        self._tasks: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._seq = itertools.count(1)
        self.written = 0
        self.errors = 0
        self.on_error: Callable[[str], None] = lambda line: None

    # -- tasks ------------------------------------------------------------------------------

    def path_of(self, task_id: str) -> Path:
        return self.root / f"{safe_name(task_id)}.json"

    def media_dir(self, task_id: str) -> Path:
        return self.root / "media" / safe_name(task_id)

    def _task(self, task_id: str, at: float) -> dict[str, Any]:
        recording = self._tasks.get(task_id)
        if recording is None:
            recording = self._load(task_id) or {
                "format": FORMAT,
                "kind": "task",
                "task_id": task_id,
                "upstream": self.upstream,
                "submitted_at": at,
                "submission": None,
                "polls": [],
                "final": None,
                "results": None,
            }
            self._tasks[task_id] = recording
            while len(self._tasks) > self.keep:
                self._tasks.popitem(last=False)
        self._tasks.move_to_end(task_id)
        return recording

    def _load(self, task_id: str) -> dict[str, Any] | None:
        """A recording written earlier (by a proxy since restarted, or evicted from memory)."""
        try:
            data = json.loads(self.path_of(task_id).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and data.get("format") == FORMAT else None

    def knows(self, task_id: str) -> bool:
        return task_id in self._tasks or self.path_of(task_id).exists()

    def submission(
        self,
        task_id: str,
        *,
        at: float,
        method: str,
        path: str,
        endpoint: str,
        body: Any,
        status: int,
        answer: Any,
        elapsed: float,
        batch_size: int | None,
        price_key: str | None,
        secret: str | None,
    ) -> None:
        recording = self._task(task_id, at)
        if recording["submission"] is not None:
            return  # an idempotent replay of a recorded submission
        recording["submitted_at"] = at
        recording["submission"] = scrubbed(
            {
                "method": method,
                "path": path,
                "endpoint": endpoint,
                "body": shortened(body),
                "status": status,
                "answer": answer,
                "elapsed": round(elapsed, 4),
                "batch_size": batch_size,
                "price_key": price_key,
            },
            secret,
        )
        self._write(recording)

    def poll(self, task_id: str, *, at: float, path: str, status: int, body: Any, secret: str | None) -> None:
        recording = self._task(task_id, at)
        polls: list[dict[str, Any]] = recording["polls"]
        if len(polls) >= MAX_POLLS:
            recording["polls_dropped"] = int(recording.get("polls_dropped", 0)) + 1
            return
        t = round(max(0.0, at - float(recording["submitted_at"])), 4)
        polls.append(scrubbed({"t": t, "path": path, "status": status, "body": body}, secret))
        self._write(recording)

    def final(self, task_id: str, *, at: float, status: str, clips: int, fail_reason: str) -> None:
        recording = self._task(task_id, at)
        t = round(max(0.0, at - float(recording["submitted_at"])), 4)
        recording["final"] = {"status": status, "t": t, "clips": clips, "fail_reason": fail_reason}
        self._write(recording)

    def results(self, task_id: str, results: list[dict[str, Any]]) -> None:
        recording = self._task(task_id, time.time())
        recording["results"] = results
        self._write(recording)

    # -- refusals ---------------------------------------------------------------------------

    def refusal(
        self,
        *,
        method: str,
        path: str,
        endpoint: str,
        body: Any,
        status: int,
        answer: Any,
        source: str,
        secret: str | None,
    ) -> None:
        """A request answered with an error: by the upstream, or by the proxy (``source``)."""
        at = time.time()
        record = {
            "format": FORMAT,
            "kind": "refusal",
            "at": at,
            "upstream": self.upstream,
            "source": source,
            "method": method,
            "path": path,
            "endpoint": endpoint,
            "body": shortened(body),
            "status": status,
            "answer": answer,
        }
        name = f"{int(at * 1000)}-{os.getpid()}-{next(self._seq):06d}-{status}.json"
        self._save(self.root / "refusals" / name, scrubbed(record, secret))

    # -- writing ----------------------------------------------------------------------------

    def _write(self, recording: dict[str, Any]) -> None:
        self._save(self.path_of(str(recording["task_id"])), recording)

    def _save(self, path: Path, value: Any) -> None:
        try:
            write_atomically(path, _pretty(value))
            self.written += 1
        except OSError as exc:
            self.errors += 1
            self.on_error(f"mockserver proxy: could not write {path}: {exc}")


def _pretty(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2)
    except TypeError:  # integers beyond 64 bits, echoed from a request
        return json.dumps(value, ensure_ascii=False, indent=2).encode()
