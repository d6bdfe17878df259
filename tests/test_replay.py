"""``serve --replay DIR`` and ``mockserver calibrate``: recorded tasks played back by the fake.

The pure part (``core.replay``: matching, reading poll answers, scripts) is
tested on hand-written recordings; the whole flow records the fake (as the
upstream, with non-default settings) through ``mockserver proxy --record``,
calibrates, replays with ``mockserver serve --replay``, and checks that a
client sees the same statuses, shapes and URL counts.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mockserver import Settings
from mockserver.core.replay import FORMAT, Replay, match_key, read_poll, script_of, shorten_data_url
from mockserver.proxy.calibrate import calibrate
from mockserver.proxy.process import ProxyProcess
from mockserver.testing import InProcessFake, ServerProcess

TOKEN = "sk-replay-test-0c1d2e3f4a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
VIDEO = "/v1/midjourney/generations/video"
FRAME = "https://example.com/cat.png"


def mj(status: str, clips: int = 0, reason: str = "") -> dict[str, Any]:
    answer: dict[str, Any] = {"id": "task_r", "action": "VIDEO", "status": status, "progress": "0%"}
    if clips:
        answer["video_urls"] = [f"https://cdn.example/{n}.mp4" for n in range(clips)]
        answer["video_url"] = answer["video_urls"][0]
    if reason:
        answer["fail_reason"] = reason
    return answer


def unified(status: str, urls: list[Any] | None = None, reason: str = "") -> dict[str, Any]:
    data: dict[str, Any] = {"id": "task_r", "status": status, "progress": 0, "created": 1}
    if urls is not None:
        data["result"] = {"videos": [{"url": u} for u in urls]}
    if reason:
        data["error"] = {"code": 500, "message": reason, "type": "task_failed"}
    return {"code": 200, "data": data}


def recording(
    task_id: str, body: dict[str, Any], polls: list[tuple[float, dict[str, Any]]], *, at: float = 1.0
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "kind": "task",
        "task_id": task_id,
        "submitted_at": at,
        "submission": {"endpoint": "video", "path": VIDEO, "body": body, "status": 200},
        "polls": [{"t": t, "status": 200, "body": answer} for t, answer in polls],
    }


# -- matching -------------------------------------------------------------------------------


def test_submissions_match_on_sorted_keys_and_shortened_data_urls() -> None:
    frame = "data:image/png;base64," + "QUJD" * 5000
    assert match_key({"b": 1, "a": [frame]}) == match_key({"a": [frame], "b": 1})
    assert match_key({"a": [frame]}) != match_key({"a": [frame[:-4] + "QUJE"]})
    short = shorten_data_url(frame)
    assert short.startswith("data:image/png;base64,QUJD") and len(short) < 120
    assert shorten_data_url(short) == short  # a recorded (shortened) body matches itself
    assert match_key({"a": [short]}) == match_key({"a": [frame]})
    assert shorten_data_url("https://e.x/" + "a" * 500) == "https://e.x/" + "a" * 500


def test_poll_answers_are_read_in_both_dialects() -> None:
    running = read_poll(mj("IN_PROGRESS"))
    assert running is not None and (running.dialect, running.final, running.rank) == ("mj", False, 2)
    done = read_poll(mj("SUCCESS", clips=2))
    assert done is not None and done.success and len(done.urls) == 2 and done.media == "videos"
    listed = read_poll(unified("completed", [["https://c/0.mp4"], ["https://c/1.mp4"]]))
    assert listed is not None and listed.urls == ("https://c/0.mp4", "https://c/1.mp4")
    assert (listed.url_shapes, listed.items) == (frozenset({"list"}), 2)
    single = read_poll(unified("completed", [["https://c/0.mp4", "https://c/1.mp4"]]))
    assert single is not None and (single.items, len(single.urls)) == (1, 2)
    cancelled = read_poll(unified("cancelled", reason="Task timeout"))
    assert cancelled is not None and cancelled.final and not cancelled.success
    assert read_poll({"error": {"message": "x"}}) is None and read_poll("nope") is None


def test_a_recording_tells_its_script() -> None:
    body = {"prompt": "p", "image_urls": [FRAME]}
    polls = [(0.1, mj("SUBMITTED")), (2.0, mj("IN_PROGRESS")), (6.0, mj("IN_PROGRESS")), (7.0, mj("SUCCESS", 3))]
    script = script_of(recording("task_a", body, polls))
    assert script is not None
    assert (script.duration, script.outcome, script.clips, script.hold) == (6.5, "success", 3, 0.0)
    assert [s for _, s in script.statuses] == ["SUBMITTED", "IN_PROGRESS", "IN_PROGRESS", "SUCCESS"]
    failed = script_of(recording("b", body, [(1.0, unified("processing")), (3.0, unified("failed", reason="GPU"))]))
    assert failed is not None and (failed.duration, failed.outcome, failed.fail_reason) == (2.0, "failure", "GPU")
    cancelled = script_of(recording("c", body, [(4.0, unified("cancelled", reason="Task timeout"))]))
    assert cancelled is not None and (cancelled.duration, cancelled.outcome) == (4.0, "cancel")
    held = script_of(recording("d", body, [(1.0, mj("NOT_START")), (3.0, mj("IN_PROGRESS")), (5.0, mj("SUCCESS", 1))]))
    assert held is not None and (held.hold, held.duration) == (2.0, 2.0)
    running = script_of(recording("e", body, [(1.0, mj("SUBMITTED")), (9.0, mj("IN_PROGRESS"))]))
    assert running is not None and (running.outcome, running.duration) == ("never", 9.0)
    assert script_of(recording("f", body, [])) is None


def test_replay_scales_to_task_seconds_and_takes_recordings_in_turn() -> None:
    body = {"prompt": "p", "image_urls": [FRAME]}
    first = recording("task_1", body, [(10.0, mj("SUCCESS", 1))], at=1)
    second = recording("task_2", body, [(30.0, mj("FAILURE", reason="no"))], at=2)
    other = recording("task_3", {**body, "prompt": "q"}, [(20.0, mj("SUCCESS", 4))], at=3)
    replay = Replay.from_recordings([first, second, other])
    assert len(replay) == 3
    turns = [replay.match({"image_urls": [FRAME], "prompt": "p"}) for _ in range(3)]
    assert [s.task_id if s else None for s in turns] == ["task_1", "task_2", "task_1"]
    assert replay.match(body, "imagine") is None and replay.match({"prompt": "r"}) is None
    scaled = Replay.from_recordings([first, second, other], task_seconds=2.0)  # the median (20 s) becomes 2 s
    matched = [scaled.match(body), scaled.match(body), scaled.match({**body, "prompt": "q"})]
    durations = [s.duration if s else None for s in matched]
    assert durations == pytest.approx([1.0, 3.0, 2.0])


def test_replay_must_name_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="replay must be a directory"):
        Settings(replay=str(tmp_path / "missing")).validated()


def write(directory: Path, *recordings: dict[str, Any]) -> None:
    for r in recordings:
        (directory / f"{r['task_id']}.json").write_text(json.dumps(r))
    (directory / "notes.json").write_text("[]")  # not a recording: skipped


def test_the_fake_replays_a_recorded_submission_at_its_pace(tmp_path: Path) -> None:
    body = {"prompt": "p", "image_urls": [FRAME], "batch_size": 2}
    polls = [(0.5, mj("SUBMITTED")), (5.0, mj("IN_PROGRESS")), (19.0, mj("IN_PROGRESS")), (21.0, mj("SUCCESS", 1))]
    failing = {"prompt": "f", "image_urls": [FRAME]}
    write(
        tmp_path,
        recording("task_rec1", body, polls),
        recording("task_rec2", failing, [(1.0, mj("IN_PROGRESS")), (3.0, mj("FAILURE", reason="GPU melted"))]),
    )
    # task_seconds 8 is the default: the recorded pace is kept (20 s and 2 s here)
    with InProcessFake(replay=str(tmp_path), task_seconds=8, task_dialect="mj") as mock:
        client = httpx.Client(base_url=mock.base_url, headers=AUTH)
        task_id = client.post(VIDEO, json=body).json()["data"][0]["task_id"]
        seen = []
        for step in (0.0, 1.0, 10.0, 8.5, 1.5):  # at 0, 1, 11, 19.5 and 21 s
            mock.clock.advance(step)
            seen.append(client.get(f"/v1/tasks/{task_id}").json()["status"])
        assert seen == ["SUBMITTED", "SUBMITTED", "IN_PROGRESS", "IN_PROGRESS", "SUCCESS"]
        done = client.get(f"/v1/tasks/{task_id}").json()
        assert len(done["video_urls"]) == 1  # as recorded, though 2 were asked for
        internal = mock.task(task_id)["record"]
        assert internal["params"]["replay"] == "task_rec1" and internal["duration"] == pytest.approx(20.0)
        failed_id = client.post(VIDEO, json=failing).json()["data"][0]["task_id"]
        mock.clock.advance(2.0)
        failed = client.get(f"/v1/tasks/{failed_id}").json()
        assert (failed["status"], failed["fail_reason"]) == ("FAILURE", "GPU melted")
        other = client.post(VIDEO, json={**body, "prompt": "unrecorded"}).json()["data"][0]["task_id"]
        assert "replay" not in mock.task(other)["record"]["params"]
        assert mock.task(other)["record"]["duration"] == 8
        client.close()
    # a chosen --task-seconds scales the recorded pace (the median task lasts that long)
    with InProcessFake(replay=str(tmp_path), task_seconds=0, task_dialect="mj") as mock:
        client = httpx.Client(base_url=mock.base_url, headers=AUTH)
        task_id = client.post(VIDEO, json=body).json()["data"][0]["task_id"]
        assert len(client.get(f"/v1/tasks/{task_id}").json()["video_urls"]) == 1
        client.close()


# -- the whole flow: proxy --record → calibrate → serve --replay ----------------------------

BODIES = [
    {"prompt": "one clip", "image_urls": [FRAME]},
    {"prompt": "two clips", "image_urls": [FRAME], "batch_size": 2},
    {"prompt": "four clips, 720p", "image_urls": [FRAME], "batch_size": 4, "video_type": "vid_1.1_i2v_720"},
    {"prompt": "it fails [mock:fail reason=melted]", "image_urls": ["data:image/png;base64," + "iVBO" * 200]},
    {"prompt": "it is cancelled [mock:cancel]", "image_urls": [FRAME], "batch_size": 2},
]
FINAL = ("completed", "failed", "cancelled")


def distinct(statuses: list[str]) -> list[str]:
    return [s for n, s in enumerate(statuses) if n == 0 or statuses[n - 1] != s]


def shape(task: dict[str, Any]) -> tuple[str, int, tuple[str, ...], str]:
    data = task["data"]
    videos = data.get("result", {}).get("videos", [])
    kinds = tuple(type(v["url"]).__name__ for v in videos)
    urls = sum(1 if isinstance(v["url"], str) else len(v["url"]) for v in videos)
    return data["status"], urls, kinds, data.get("error", {}).get("message", "")


def run_flow(base_url: str, *, timeout: float = 30.0) -> list[tuple[list[str], tuple[str, int, tuple[str, ...], str]]]:
    """Submit every body (each polled at once), poll all until final; each task's statuses and last answer."""
    seen: list[list[str]] = []
    last: list[dict[str, Any]] = []
    ids: list[str] = []
    with httpx.Client(base_url=base_url, headers=AUTH, timeout=10) as client:
        for body in BODIES:
            answer = client.post(VIDEO, json=body)
            assert answer.status_code == 200, answer.text
            ids.append(answer.json()["data"][0]["task_id"])
            task = client.get(f"/v1/tasks/{ids[-1]}").json()
            seen.append([task["data"]["status"]])
            last.append(task)
        deadline = time.monotonic() + timeout
        while not all(t["data"]["status"] in FINAL for t in last):
            assert time.monotonic() < deadline, "tasks did not finish"
            time.sleep(0.04)
            for n, task_id in enumerate(ids):
                if last[n]["data"]["status"] not in FINAL:
                    last[n] = client.get(f"/v1/tasks/{task_id}").json()
                    seen[n].append(last[n]["data"]["status"])
    return [(distinct(s), shape(t)) for s, t in zip(seen, last, strict=True)]


@pytest.mark.e2e
def test_e2e_record_calibrate_replay(tmp_path: Path) -> None:
    record = tmp_path / "recording"
    upstream_args = ["--task-seconds", "2.5", "--task-dialect", "unified", "--unified-url-shape", "string"]
    with ServerProcess(upstream_args) as upstream:
        proxy = ProxyProcess(
            ["--upstream", upstream.base_url, "--max-paid-tasks", str(len(BODIES)), "--record", str(record)],
            log=tmp_path / "proxy.log",
        )
        with proxy:
            recorded = run_flow(proxy.base_url)
    assert [s[1][0] for s in recorded] == ["completed", "completed", "completed", "failed", "cancelled"]
    assert [s[1][1] for s in recorded] == [1, 2, 4, 0, 0]
    assert all(s[0][-2:][0] == "processing" for s in recorded)

    settings_file = tmp_path / "calibrated.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "mockserver", "calibrate", str(record), "--out", str(settings_file)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[-1] == f"mockserver calibrate: wrote {settings_file}", done.stderr
    calibrated = yaml.safe_load(settings_file.read_text())
    assert set(calibrated) == {"task_dialect", "unified_url_shape", "unified_video_items", "task_seconds"}
    assert calibrated["task_dialect"] == "unified" and calibrated["unified_url_shape"] == "string"
    assert calibrated["unified_video_items"] == "per-clip"
    assert 2.2 < calibrated["task_seconds"] < 3.2
    assert calibrate(record)[0] == calibrated

    replaying = ServerProcess(["--replay", str(record), "--config", str(settings_file)], log=tmp_path / "replay.log")
    with replaying:
        replayed = run_flow(replaying.base_url)
        with httpx.Client(base_url=replaying.base_url, headers=AUTH, timeout=10) as client:
            fresh = client.post(VIDEO, json={"prompt": "never recorded", "image_urls": [FRAME]}).json()
            internal = client.get(f"/__mock__/tasks/{fresh['data'][0]['task_id']}").json()["record"]
            assert "replay" not in internal["params"]  # the fake's own rules
    assert replayed == recorded
    assert f"mockserver: replaying {len(BODIES)} recorded submission(s) from {record}" in replaying.stop()


def test_calibrate_reads_the_mj_dialect_and_refuses_an_empty_recording(tmp_path: Path) -> None:
    body = {"prompt": "p", "image_urls": [FRAME]}
    write(tmp_path, recording("task_1", body, [(1.0, mj("IN_PROGRESS")), (3.0, mj("SUCCESS", 2))]))
    values, notes = calibrate(tmp_path)
    assert values == {
        "task_dialect": "mj",
        "unified_url_shape": "list",
        "unified_video_items": "per-clip",
        "task_seconds": 2.0,
    }
    assert notes["unified_url_shape"].startswith("not observed")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no recorded poll answer"):
        calibrate(empty)
