"""``--record DIR``: every task as one JSON file, rewritten as each exchange happens.

``DIR/<task_id>.json`` holds the submission (path, endpoint, body with
``data:`` URLs shortened, the answer), the poll answers with their times in
seconds after the submission, and once the task is final its result files
(status, size, content type, first 16 bytes; ``--record-media`` keeps the files
under ``DIR/media/<task_id>/``). Every refusal (a submission, upload or poll
answered with an error, or refused by the spend cap) is one file under
``DIR/refusals/``. Each write goes to a temporary file renamed over the old
one, so a killed proxy leaves whole files and loses at most the exchange in
flight. No header is ever written: the API key never reaches a file, and
anything that echoes it (a body, a result URL, a task id, a file name) has it
replaced by ``[redacted]`` (see :class:`Redactor` for keys under 6 characters).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import threading
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


MIN_SUBSTRING = 6  # keys this long are replaced wherever their text occurs
_WORD = "A-Za-z0-9"


class Redactor:
    """Replaces the API keys the proxy has seen in anything it writes (recordings, log lines,
    divergences) by ``[redacted]``.

    A key of :data:`MIN_SUBSTRING` (6) characters or more is replaced wherever its exact text
    occurs, inside longer words included. A shorter (but non-empty) key is replaced only where
    its exact text stands alone, not touching an ASCII letter or digit on either side
    (``?key=ab&``, ``/ab/``, ``"ab"``): replacing every occurrence of a one- or two-character
    key would mask every such letter in every text, while its occurrences inside longer words
    reveal nothing about it. Only strings are scrubbed (and dictionary keys), never numbers.
    An empty key is never learned. The newest ``keep`` keys are remembered.
    """

    def __init__(self, keep: int = 256) -> None:
        self.keep = keep
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def learn(self, key: str | None) -> None:
        if not key:
            return
        with self._lock:
            if key in self._keys:
                self._keys.move_to_end(key)
                return
            self._keys[key] = None
            while len(self._keys) > self.keep:
                self._keys.popitem(last=False)
            self._pattern = _pattern_of(list(self._keys))

    def text(self, text: str) -> str:
        pattern = self._pattern
        return pattern.sub(REDACTED, text) if pattern is not None and text else text

    def value(self, value: Any) -> Any:
        """A copy of ``value`` (JSON-like) in which no known key appears."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {(self.text(k) if isinstance(k, str) else k): self.value(v) for k, v in value.items()}
        return value


def _pattern_of(keys: list[str]) -> re.Pattern[str]:
    parts = [
        re.escape(key) if len(key) >= MIN_SUBSTRING else f"(?<![{_WORD}]){re.escape(key)}(?![{_WORD}])"
        for key in sorted(keys, key=len, reverse=True)
    ]
    return re.compile("|".join(parts))


def safe_name(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("._")[:120] or "unnamed"


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: never half a file."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temp, "wb") as handle:
        handle.write(data)
    os.replace(temp, path)


class Recorder:
    def __init__(
        self,
        directory: str | Path,
        *,
        upstream: str,
        media: bool = False,
        keep: int = 10_000,
        redactor: Redactor | None = None,
    ) -> None:
        self.root = Path(directory)
        self.redactor = redactor or Redactor()
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
        return self.root / f"{safe_name(self.redactor.text(task_id))}.json"

    def media_dir(self, task_id: str) -> Path:
        return self.root / "media" / safe_name(self.redactor.text(task_id))

    def _clean(self, value: Any, secret: str | None) -> Any:
        self.redactor.learn(secret)
        return self.redactor.value(value)

    def _task(self, task_id: str, at: float) -> dict[str, Any]:
        recording = self._tasks.get(task_id)
        if recording is None:
            recording = self._load(task_id) or {
                "format": FORMAT,
                "kind": "task",
                "task_id": self.redactor.text(task_id),
                "upstream": self.redactor.text(self.upstream),
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
        recording["submission"] = self._clean(
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
        self._write(task_id, recording)

    def poll(self, task_id: str, *, at: float, path: str, status: int, body: Any, secret: str | None) -> None:
        recording = self._task(task_id, at)
        polls: list[dict[str, Any]] = recording["polls"]
        if len(polls) >= MAX_POLLS:
            recording["polls_dropped"] = int(recording.get("polls_dropped", 0)) + 1
            return
        t = round(max(0.0, at - float(recording["submitted_at"])), 4)
        polls.append(self._clean({"t": t, "path": path, "status": status, "body": body}, secret))
        self._write(task_id, recording)

    def final(self, task_id: str, *, at: float, status: str, clips: int, fail_reason: str) -> None:
        recording = self._task(task_id, at)
        t = round(max(0.0, at - float(recording["submitted_at"])), 4)
        recording["final"] = self.redactor.value({"status": status, "t": t, "clips": clips, "fail_reason": fail_reason})
        self._write(task_id, recording)

    def results(self, task_id: str, results: list[dict[str, Any]]) -> None:
        recording = self._task(task_id, time.time())
        recording["results"] = self.redactor.value(results)
        self._write(task_id, recording)

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
        self._save(self.root / "refusals" / name, self._clean(record, secret))

    # -- writing ----------------------------------------------------------------------------

    def _write(self, task_id: str, recording: dict[str, Any]) -> None:
        self._save(self.path_of(task_id), recording)

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
