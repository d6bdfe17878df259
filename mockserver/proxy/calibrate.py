"""``mockserver calibrate DIR --out FILE``: a recording turned into settings for ``serve --config FILE``.

From the poll answers the proxy recorded it reads which dialect the upstream
speaks, how it writes result URLs, and how long its tasks take:

* ``task_dialect``: ``unified`` when the polls came in the ``{"code": 200, "data": {...}}``
  envelope, else ``mj``;
* ``unified_url_shape``: ``string`` or ``list`` (``result.videos[].url``);
* ``unified_video_items``: ``per-clip`` (one item per clip) or ``single`` (one item listing
  every clip's URL);
* ``task_seconds``: the median time from submission to the final status (each task's the
  midpoint between the last poll that saw it running and the first that saw it final).

What the recording cannot tell keeps the fake's default, and the file says so.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

from ..core.records import NEVER_OUTCOME
from ..core.replay import load_recordings, readings_of, script_of

DEFAULTS = {
    "task_dialect": "unified",
    "unified_url_shape": "list",
    "unified_video_items": "per-clip",
    "task_seconds": 8.0,
}


def calibrate(directory: str | Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The settings a recording shows, and for each a note on what it was read from."""
    recordings = load_recordings(directory)
    dialects: Counter[str] = Counter()
    shapes: Counter[str] = Counter()
    items: Counter[str] = Counter()
    durations: list[float] = []
    polls = 0
    for recording in recordings:
        readings = readings_of(recording)
        polls += len(readings)
        for _, reading in readings:
            dialects[reading.dialect] += 1
            if reading.dialect != "unified" or not reading.success:
                continue
            for shape in reading.url_shapes:
                shapes[shape] += 1
            if reading.media == "videos" and len(reading.urls) > 1:
                items["single" if reading.items == 1 else "per-clip"] += 1
        script = script_of(recording)
        if script is not None and script.outcome != NEVER_OUTCOME:
            durations.append(script.hold + script.duration)
    if not polls:
        raise ValueError(
            f"{directory}: no recorded poll answer to calibrate from (record with mockserver proxy --record)"
        )
    values: dict[str, Any] = dict(DEFAULTS)
    notes: dict[str, str] = {}
    dialect, seen = dialects.most_common(1)[0]
    values["task_dialect"] = dialect
    notes["task_dialect"] = f"{seen} of {polls} poll answer(s) spoke {dialect}"
    for key, counter, what in (
        ("unified_url_shape", shapes, "finished answer(s)"),
        ("unified_video_items", items, "finished multi-clip answer(s)"),
    ):
        if counter:
            choice, n = counter.most_common(1)[0]
            values[key] = choice
            notes[key] = f"{choice} in {n} of {sum(counter.values())} {what}"
        else:
            notes[key] = "not observed: the fake's default"
    if durations:
        values["task_seconds"] = round(statistics.median(durations), 3)
        low, high = min(durations), max(durations)
        notes["task_seconds"] = f"median of {len(durations)} finished task(s), from {low:.3g} s to {high:.3g} s"
    else:
        notes["task_seconds"] = "no task finished: the fake's default"
    return values, notes


def render(values: dict[str, Any], notes: dict[str, str], directory: str | Path) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    lines = [
        f"# mockserver calibrate {directory}  ({stamp})",
        "# Load with: mockserver serve --config THIS_FILE",
    ]
    for key in DEFAULTS:
        lines.append(f"{key}: {values[key]}  # {notes[key]}")
    return "\n".join(lines) + "\n"
