"""Hostile ``--config`` and ``--replay`` files: refused at load time with a clear error, never a hang.

Each loader runs in a subprocess with a timeout, so a regression (a billion
laughs, a read of /dev/zero) fails the test instead of hanging the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CONFIG = "from mockserver import Settings; import sys; Settings.file_values(sys.argv[1])"
REPLAY = "from mockserver.core.replay import Replay; import sys; Replay.load(sys.argv[1])"
LAUGHS = (
    "log_level: [&a [lol,lol,lol,lol,lol,lol,lol,lol,lol], "
    + ", ".join(f"&{c} [{','.join(['*' + p] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi", strict=True))
    + "]\n"
)


def load(code: str, path: Path) -> str:
    """Run a loader on ``path`` in a subprocess (10 s at most); its stderr, which must name a refusal."""
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=10)
    assert done.returncode != 0, "the file was accepted"
    assert "ValueError" in done.stderr, done.stderr[-2000:]
    return done.stderr


def test_config_with_yaml_aliases_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(LAUGHS)
    assert "alias" in load(CONFIG, path) and str(path) in load(CONFIG, path)


def test_config_must_be_a_small_regular_file(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (2 << 20) + "\n")
    assert "bytes" in load(CONFIG, big)
    link = tmp_path / "zero.yaml"
    os.symlink("/dev/zero", link)
    assert "regular file" in load(CONFIG, link)


def recording(t: object = 1.0, clips: int = 1, reason: str = "") -> str:
    answer: dict[str, object] = {"id": "task_h", "action": "VIDEO", "status": "SUCCESS", "progress": "100%"}
    answer["video_urls"] = [f"https://cdn.example/{n}.mp4" for n in range(clips)]
    if reason:
        answer["fail_reason"] = reason
    body = {"prompt": "p", "image_urls": ["https://example.com/cat.png"]}
    data = {
        "format": "mockserver-recording/1",
        "kind": "task",
        "task_id": "task_h",
        "submitted_at": 1.0,
        "submission": {"endpoint": "video", "path": "/v1/midjourney/generations/video", "body": body, "status": 200},
        "polls": [{"t": "T", "status": 200, "body": answer}],
    }
    return json.dumps(data).replace('"T"', str(t))


@pytest.mark.parametrize("t", ["1e308", "Infinity", "NaN", "-5", "1e400"])
def test_replay_refuses_out_of_range_times(tmp_path: Path, t: str) -> None:
    (tmp_path / "task_h.json").write_text(recording(t))
    assert "task_h.json" in load(REPLAY, tmp_path)


def test_replay_bounds_urls_and_strings(tmp_path: Path) -> None:
    (tmp_path / "task_h.json").write_text(recording(clips=10_000))
    assert "URLs" in load(REPLAY, tmp_path)
    (tmp_path / "task_h.json").write_text(recording(reason="x" * 100_000))
    assert "characters" in load(REPLAY, tmp_path)


def test_replay_reads_only_small_regular_files(tmp_path: Path) -> None:
    os.symlink("/dev/zero", tmp_path / "zero.json")
    assert "regular file" in load(REPLAY, tmp_path)
    os.unlink(tmp_path / "zero.json")
    (tmp_path / "big.json").write_text(" " * (9 << 20) + "[]")
    assert "bytes" in load(REPLAY, tmp_path)


def test_replay_bounds_the_number_of_files(tmp_path: Path) -> None:
    for n in range(10_001):
        (tmp_path / f"{n}.json").write_text("[]")
    assert "files" in load(REPLAY, tmp_path)


def test_a_good_recording_still_loads(tmp_path: Path) -> None:
    (tmp_path / "task_h.json").write_text(recording(clips=4))
    code = REPLAY.replace("Replay.load(sys.argv[1])", "assert len(Replay.load(sys.argv[1])) == 1")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr
