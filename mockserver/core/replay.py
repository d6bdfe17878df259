"""Replaying recorded tasks: what ``mockserver serve --replay DIR`` answers a recorded submission with.

``mockserver proxy --record DIR`` writes one JSON file per task: the submission
(its body, ``data:`` URLs shortened), and every poll answer with its time
relative to the submission. This module reads those files and, for a
submission whose normalised body was recorded, gives the :class:`Script` the
recording tells: how long the task ran, how it ended, with how many result
URLs. The fake's own lifecycle then plays it on the fake's clock.

Pure but for reading the directory once: plain values in, plain values out. It
also holds what the proxy and ``mockserver calibrate`` share with the replay:
the normalisation a submission is matched on, and the reading of a poll answer
in either dialect (``mj``: a bare Midjourney-style body; ``unified``: the
``{"code": 200, "data": {...}}`` envelope).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import stat
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .lifecycle import CANCELLED, STATUS_ORDER, UNIFIED_STATUS, Status
from .records import CANCEL_OUTCOME, FAILURE_OUTCOME, NEVER_OUTCOME, SUCCESS_OUTCOME, VIDEO, TaskRecord

FORMAT = "mockserver-recording/1"
SHORTEN_OVER = 256  # data: URLs longer than this are kept as their head and a digest
DATA_URL_HEAD = 48
# Bounds on what ``--replay DIR`` reads: a recording breaking one is refused at load time.
MAX_FILES = 10_000  # *.json files in the directory
MAX_FILE_BYTES = 8 << 20  # per file
MAX_SECONDS = 10 * 86_400.0  # a poll's t (seconds after the submission): finite, >= 0 and at most 10 days
MAX_EPOCH = 1e11  # submitted_at (Unix seconds): finite, >= 0 and before the year 5000
MAX_URLS = 16  # result URLs in one poll answer (the API gives at most 4 clips)
MAX_STRING = 65_536  # characters in any string
MAX_DEPTH = 64  # nesting of lists and objects

# -- matching ------------------------------------------------------------------------------


def shorten_data_url(value: str) -> str:
    """A long ``data:`` URL as its head, its length and a digest: the same for the same URL,
    different for different ones, and short enough never to be shortened again."""
    if len(value) <= SHORTEN_OVER or value[:5].lower() != "data:":
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{value[:DATA_URL_HEAD]}…[{len(value)} chars, sha256 {digest}]"


def shortened(value: Any) -> Any:
    """A copy of a request body with every long ``data:`` URL shortened (recordings keep this)."""
    if isinstance(value, str):
        return shorten_data_url(value)
    if isinstance(value, list):
        return [shortened(v) for v in value]
    if isinstance(value, dict):
        return {k: shortened(v) for k, v in value.items()}
    return value


def match_key(body: Any) -> str:
    """What a submission is matched on: its body as JSON with sorted keys, data: URLs shortened."""
    return json.dumps(shortened(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# -- reading a poll answer -----------------------------------------------------------------

# The two vocabularies on one scale (core.lifecycle.STATUS_ORDER): a task's statuses never fall.
RANKS: dict[str, int] = {status.value: rank for status, rank in STATUS_ORDER.items()}
for _status, _word in UNIFIED_STATUS.items():
    RANKS[_word] = max(RANKS.get(_word, 0), STATUS_ORDER[_status])
RANKS["MODAL"] = STATUS_ORDER[Status.IN_PROGRESS]  # the Midjourney body's "waiting for an action"
RANKS[CANCELLED] = STATUS_ORDER[Status.FAILURE]
FINAL_RANK = STATUS_ORDER[Status.SUCCESS]
SUCCESSES = frozenset({Status.SUCCESS.value, UNIFIED_STATUS[Status.SUCCESS]})
NOT_STARTED = frozenset({Status.NOT_START.value})


@dataclass(frozen=True)
class PollReading:
    """What one poll answer says, whichever dialect it speaks."""

    dialect: str  # mj | unified
    status: str
    fail_reason: str = ""
    urls: tuple[str, ...] = ()  # the result URLs: clips (videos) or images
    media: str | None = None  # videos | images, when the answer carries results
    url_shapes: frozenset[str] = frozenset()  # unified: "string" and/or "list" (result items' url)
    items: int = 0  # unified: how many result items

    @property
    def rank(self) -> int | None:
        return RANKS.get(self.status)

    @property
    def final(self) -> bool:
        return self.rank == FINAL_RANK

    @property
    def success(self) -> bool:
        return self.status in SUCCESSES


def read_poll(body: Any) -> PollReading | None:
    """The status, result URLs and failure reason of a poll answer (None: not a task body)."""
    if not isinstance(body, dict):
        return None
    data = body.get("data")
    if "code" in body and isinstance(data, dict):
        return _read_unified(data)
    status = body.get("status")
    if not isinstance(status, str):
        return None
    urls: list[str] = []
    media = None
    if isinstance(body.get("video_urls"), list):
        urls, media = [u for u in body["video_urls"] if isinstance(u, str)], "videos"
    elif isinstance(body.get("video_url"), str) and body["video_url"]:
        urls, media = [body["video_url"]], "videos"
    elif isinstance(body.get("image_urls"), list):
        urls, media = [u for u in body["image_urls"] if isinstance(u, str)], "images"
    reason = body.get("fail_reason")
    return PollReading("mj", status, reason if isinstance(reason, str) else "", tuple(urls), media)


def _read_unified(data: dict[str, Any]) -> PollReading | None:
    status = data.get("status")
    if not isinstance(status, str):
        return None
    error = data.get("error")
    reason = error.get("message") if isinstance(error, dict) else None
    result = data.get("result")
    urls: list[str] = []
    shapes: set[str] = set()
    media = None
    items = 0
    if isinstance(result, dict):
        for name in ("videos", "images"):
            found = result.get(name)
            if not isinstance(found, list):
                continue
            media = name
            for item in found:
                items += 1
                url = item.get("url") if isinstance(item, dict) else None
                if isinstance(url, str):
                    shapes.add("string")
                    urls.append(url)
                elif isinstance(url, list):
                    shapes.add("list")
                    urls.extend(u for u in url if isinstance(u, str))
            break
    return PollReading(
        "unified", status, reason if isinstance(reason, str) else "", tuple(urls), media, frozenset(shapes), items
    )


# -- scripts -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Script:
    """How a recorded task went: replayed by the fake's lifecycle on the fake's clock.

    ``duration``: seconds from submission (after ``hold``) to the final status, estimated
    as the midpoint between the last poll that saw the task running and the first that
    saw it final. ``hold``: seconds it stayed ``NOT_START``. ``clips``: result URLs of
    the final answer (None: keep the fake's own count).
    """

    task_id: str
    duration: float
    outcome: str  # success | failure | cancel | never
    fail_reason: str = ""
    clips: int | None = None
    hold: float = 0.0
    statuses: tuple[tuple[float, str], ...] = ()

    def scaled(self, factor: float) -> Script:
        """The script at another pace; times stay within ``MAX_SECONDS`` whatever the factor."""
        duration, hold = min(self.duration * factor, MAX_SECONDS), min(self.hold * factor, MAX_SECONDS)
        return dataclasses.replace(self, duration=duration, hold=hold)

    def apply(self, record: TaskRecord) -> TaskRecord:
        """The fake's record of a matching submission, made to run as the recording did."""
        params = {**record.params, "replay": self.task_id}
        if self.hold > 0:
            params["not_start_seconds"] = self.hold
        changes: dict[str, Any] = {
            "duration": self.duration,
            "outcome": self.outcome,
            "fail_reason": self.fail_reason,
            "params": params,
        }
        if self.clips is not None and record.action == VIDEO:
            changes["clips"] = self.clips
        return dataclasses.replace(record, **changes)


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value >= 0 else None


def readings_of(recording: Mapping[str, Any]) -> list[tuple[float, PollReading]]:
    """The recording's successful (200) poll answers, read, in time order."""
    found: list[tuple[float, PollReading]] = []
    polls = recording.get("polls")
    for poll in polls if isinstance(polls, list) else []:
        if not isinstance(poll, dict) or poll.get("status") != 200:
            continue
        t = _seconds(poll.get("t"))
        reading = read_poll(poll.get("body"))
        if t is not None and reading is not None:
            found.append((t, reading))
    found.sort(key=lambda pair: pair[0])
    return found


def script_of(recording: Mapping[str, Any]) -> Script | None:
    """The script a task recording tells, or None when it saw no poll answer."""
    readings = readings_of(recording)
    if not readings:
        return None
    task_id = str(recording.get("task_id") or "")
    statuses = tuple((round(t, 3), r.status) for t, r in readings)
    hold = 0.0
    last_running: float | None = None
    for n, (t, reading) in enumerate(readings):
        if reading.status in NOT_STARTED:
            following = readings[n + 1][0] if n + 1 < len(readings) else t
            hold = (t + following) / 2
            continue
        if not reading.final:
            last_running = t
            continue
        end = (last_running + t) / 2 if last_running is not None else t
        if reading.success:
            outcome = SUCCESS_OUTCOME
        elif reading.status == CANCELLED:
            outcome = CANCEL_OUTCOME
        else:
            outcome = FAILURE_OUTCOME
        clips = len(reading.urls) if reading.success and reading.urls else None
        reason = reading.fail_reason if not reading.success else ""
        if not reading.success and not reason:
            reason = "Task failed"
        return Script(task_id, max(0.0, end - hold), outcome, reason, clips, hold, statuses)
    last = readings[-1][0]
    return Script(task_id, max(0.0, last - hold), NEVER_OUTCOME, "", None, hold, statuses)


def submission_of(recording: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(endpoint, match key)`` of an accepted recorded submission, or None."""
    submission = recording.get("submission")
    if not isinstance(submission, dict) or submission.get("status") != 200:
        return None
    endpoint = submission.get("endpoint")
    body = submission.get("body")
    if not isinstance(endpoint, str) or not isinstance(body, dict):
        return None
    return endpoint, match_key(body)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name} (numbers must be finite)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"non-finite number {text} (numbers must be finite)")
    return value


def _read_file(path: Path) -> bytes:
    """A file's bytes: a regular file (not followed through a symlink) of at most ``MAX_FILE_BYTES``."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise ValueError(f"recordings: {path}: not a regular file ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise ValueError(f"recordings: {path}: not a regular file")
        raw = handle.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise ValueError(f"recordings: {path}: larger than {MAX_FILE_BYTES} bytes")
    return raw


def _check_values(path: Path, data: Any) -> None:
    """Every string at most ``MAX_STRING`` characters, nesting at most ``MAX_DEPTH`` (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ValueError(f"recordings: {path}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, str) and len(value) > MAX_STRING:
            raise ValueError(f"recordings: {path}: a string longer than {MAX_STRING} characters")
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((child, depth + 1) for child in children)
        if isinstance(value, dict):
            stack.extend((key, depth + 1) for key in value)


def _check_time(path: Path, name: str, value: Any, limit: float = MAX_SECONDS) -> None:
    """A recorded time, when a number, is finite, >= 0 and at most ``limit``."""
    if isinstance(value, int | float) and not isinstance(value, bool) and not 0 <= value <= limit:
        raise ValueError(f"recordings: {path}: {name} {value!r} is not between 0 and {limit:g} seconds")


def check_recording(path: Path, recording: Mapping[str, Any]) -> None:
    """Refuse a task recording whose times, URL counts or strings are out of bounds: each would
    otherwise make every poll of its task fail or answer megabytes."""
    _check_values(path, recording)
    _check_time(path, "submitted_at", recording.get("submitted_at"), MAX_EPOCH)
    polls = recording.get("polls")
    for n, poll in enumerate(polls if isinstance(polls, list) else []):
        if not isinstance(poll, dict):
            continue
        _check_time(path, f"polls[{n}].t", poll.get("t"))
        reading = read_poll(poll.get("body"))
        if reading is not None and max(len(reading.urls), reading.items) > MAX_URLS:
            raise ValueError(f"recordings: {path}: polls[{n}] has more than {MAX_URLS} result URLs")


def _recording_paths(root: Path) -> list[Path]:
    """The directory's ``*.json`` entries, sorted; at most ``MAX_FILES`` of them."""
    found: list[Path] = []
    for path in root.glob("*.json"):
        found.append(path)
        if len(found) > MAX_FILES:
            raise ValueError(f"recordings: {root} holds more than {MAX_FILES} *.json files")
    return sorted(found)


def _parse(path: Path) -> Any:
    """A file's JSON (None: not JSON, skipped as before); non-finite numbers are refused."""
    raw = _read_file(path)
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite)
    except RecursionError:
        raise ValueError(f"recordings: {path}: nested too deeply") from None
    except ValueError as exc:
        if "non-finite" in str(exc):
            raise ValueError(f"recordings: {path}: {exc}") from None
        return None


def load_recordings(directory: str | Path) -> list[dict[str, Any]]:
    """Every task recording in ``directory`` (its ``*.json`` files; refusals and media live in
    sub-directories), oldest submission first. Files that are not JSON recordings are skipped;
    a hostile one (not a regular file, too large, out-of-bounds values) stops the load with a
    ``ValueError`` naming the file and the rule."""
    root = Path(directory)
    if not root.is_dir():
        raise ValueError(f"recordings: {root} is not a directory")
    found: list[dict[str, Any]] = []
    for path in _recording_paths(root):
        data = _parse(path)
        if isinstance(data, dict) and data.get("format") == FORMAT and data.get("kind") == "task":
            check_recording(path, data)
            found.append(data)
    found.sort(key=lambda r: (_seconds(r.get("submitted_at")) or 0.0, str(r.get("task_id"))))
    return found


class Replay:
    """Recorded scripts by submission. A body recorded several times replays its recordings in
    turn (first, second, …, then from the first again)."""

    def __init__(self, scripts: Mapping[tuple[str, str], Sequence[Script]]) -> None:
        self._scripts = {key: list(found) for key, found in scripts.items() if found}
        self._turn: dict[tuple[str, str], int] = {}

    @classmethod
    def from_recordings(cls, recordings: Iterable[Mapping[str, Any]], *, task_seconds: float | None = None) -> Replay:
        """``task_seconds`` (when given) scales every script so that the median recorded task lasts
        that long; the tasks keep their pace relative to each other."""
        scripts: dict[tuple[str, str], list[Script]] = {}
        for recording in recordings:
            key = submission_of(recording)
            script = script_of(recording) if key is not None else None
            if key is not None and script is not None:
                scripts.setdefault(key, []).append(script)
        if task_seconds is not None:
            durations = [s.hold + s.duration for found in scripts.values() for s in found if s.outcome != NEVER_OUTCOME]
            median = statistics.median(durations) if durations else 0.0
            if median > 0:
                factor = task_seconds / median
                scripts = {key: [s.scaled(factor) for s in found] for key, found in scripts.items()}
            else:
                scripts = {
                    key: [dataclasses.replace(s, duration=task_seconds, hold=0.0) for s in found]
                    for key, found in scripts.items()
                }
        return cls(scripts)

    @classmethod
    def load(cls, directory: str | Path, *, task_seconds: float | None = None) -> Replay:
        return cls.from_recordings(load_recordings(directory), task_seconds=task_seconds)

    def __len__(self) -> int:
        return sum(len(found) for found in self._scripts.values())

    def match(self, body: Any, endpoint: str = "video") -> Script | None:
        """The script of a recorded submission with this body, or None (the fake's own rules)."""
        key = (endpoint, match_key(body))
        found = self._scripts.get(key)
        if not found:
            return None
        turn = self._turn.get(key, 0)
        self._turn[key] = turn + 1
        return found[turn % len(found)]
