"""The contract suite passes on the fake, fails on each broken variant naming the rule, and keeps to its budget."""

from __future__ import annotations

import ast
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import contract
from contract import Report, run_contract
from contract.report import FAIL, INFO, SKIP
from contract.suite import paid_plan
from mockserver import Settings, create_app
from mockserver.testing.process import ServerProcess
from mockserver.testing.transport import SyncASGITransport

from .broken import VARIANTS, Variant, fake
from .helpers import blocking

pytestmark = pytest.mark.slow  # runs the whole contract suite in-process, many times: `make unit` leaves it out

BASE = "http://fake.test"


def check(app: object, **options: object) -> tuple[Report, str]:
    out = io.StringIO()
    transport = SyncASGITransport(app)  # type: ignore[arg-type]
    try:
        report = run_contract(BASE, "contract-token", transport=transport, out=out, **options)  # type: ignore[arg-type]
    finally:
        transport.close()
    return report, out.getvalue()


def test_fake_passes_in_process() -> None:
    report, output = check(fake(), examples=15)
    assert report.failed == [], "\n".join(f"{f.rule}: {f.observed}" for f in report.failed)
    assert report.fake
    assert report.paid_tasks == 6
    verdicts = {f.rule: f.verdict for f in report.findings}
    for rule in ("lifecycle.batch1.video_urls_length", "lifecycle.batch4.video_urls_length", "reuse.prompt_inherited"):
        assert verdicts[rule] == "PASS"
    for rule in ("refuse.index_above_3", "refuse.frame_and_task", "refuse.oversize_frame", "upload.image"):
        assert verdicts[rule] == "PASS"
    for rule in ("open.batch_size_policy", "open.task_view_dialect", "open.upload_sniffing", "refuse.isolation"):
        assert verdicts[rule] == INFO
    assert any(rule.startswith("schemathesis POST /v1/midjourney/generations/video") for rule in verdicts)
    assert "passed, 0 failed" in output
    assert "schemathesis then submits generated bodies with the key" in output
    assert report.schemathesis_tasks > 0
    assert f"and {report.schemathesis_tasks} task(s) made by schemathesis" in output


CALIBRATIONS = [
    # the Midjourney-style body: nothing to say of the envelope's URLs
    {"task_dialect": "mj", "batch_size_policy": "coerce", "task_seconds": 0.0},
    {"task_dialect": "unified", "unified_url_shape": "string", "unified_video_items": "single",
     "batch_size_policy": "strict", "task_seconds": 0.3},
    {"task_dialect": "unified", "unified_url_shape": "list", "unified_video_items": "per-clip",
     "batch_size_policy": "coerce", "task_seconds": 0.0},
]  # fmt: skip


@pytest.mark.parametrize("settings", CALIBRATIONS, ids=lambda s: "-".join(str(v) for v in s.values()))
def test_calibration_reproduces_the_settings(tmp_path: Path, settings: dict[str, object]) -> None:
    """The calibration written against a fake with non-default settings names exactly those settings."""
    unobservable = {"unified_url_shape": "string"} if settings["task_dialect"] == "mj" else {}
    path = tmp_path / "calibration.yaml"
    report, output = check(fake(**settings, **unobservable), schemathesis=False, calibration_path=path)
    assert report.failed == [], [f"{f.rule}: {f.observed}" for f in report.failed]
    assert Settings.file_values(path) == settings
    assert f"calibration written to {path}" in output
    served = Settings().replace(**Settings.file_values(path)).validated()  # what `serve --config` would run
    assert {name: getattr(served, name) for name in settings} == settings


def test_calibration_keeps_to_what_was_observed(tmp_path: Path) -> None:
    """Without paid tasks nothing about tasks is observed, and nothing is written but the file's comment."""
    app, _ = live_like()
    path = tmp_path / "calibration.yaml"
    check(app, schemathesis=False, calibration_path=path)
    assert Settings.file_values(path) == {}
    assert path.read_text().startswith("# mockserver settings observed")


def test_open_points_report_the_reading() -> None:
    report, _ = check(fake(batch_size_policy="coerce", task_dialect="unified"), schemathesis=False)
    assert report.failed == []
    observed = {f.rule: f.observed for f in report.findings}
    assert observed["open.batch_size_policy"].startswith("coerce")
    assert "envelope" in observed["open.task_view_dialect"]


def test_lifecycle_seen_in_progress() -> None:
    """With a real duration the checker sees the task run and its progress rise."""
    report, _ = check(fake(task_seconds=0.3), schemathesis=False)
    assert report.failed == []
    statuses = next(f.observed for f in report.findings if f.rule == "lifecycle.batch1.status_forward")
    assert "IN_PROGRESS" in statuses


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_broken_variant_is_caught(monkeypatch: pytest.MonkeyPatch, variant: Variant) -> None:
    report, _ = check(variant.build(monkeypatch), schemathesis=False)
    failed = {f.rule for f in report.failed}
    assert variant.caught_by in failed, f"{variant.name} not caught by {variant.caught_by}; failed: {sorted(failed)}"


def test_schemathesis_catches_a_server_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from mockserver.core import submission

    def crash(*args: object, **kwargs: object) -> submission.VideoJob:
        raise RuntimeError("boom")

    monkeypatch.setattr(submission, "video_job", crash)  # every valid video submission now crashes
    report, _ = check(fake(), examples=10)
    failed = {f.rule for f in report.failed}
    assert "schemathesis POST /v1/midjourney/generations/video: Server error" in failed


# -- the spend guard ----------------------------------------------------------------------------


def live_like(**settings: object) -> tuple[object, Any]:
    """A fake that does not say it is one (no control plane): the checker treats it as live."""
    app = create_app(Settings(task_seconds=0, control=False, **settings))  # type: ignore[arg-type]
    return app, blocking(app.state.fake.store)


def test_live_target_spends_nothing_by_default() -> None:
    app, store = live_like()
    report, output = check(app, examples=10)
    assert not report.fake
    assert report.paid_tasks == 0
    assert store.tasks() == []
    assert report.failed == []
    skipped = {f.rule for f in report.findings if f.verdict == SKIP}
    assert {"lifecycle.batch1", "reuse", "open.batch_size_policy", "refuse.isolation"} <= skipped
    # Probes about task_id / index need a real imagine task: without one they would prove nothing.
    assert {"refuse.frame_and_task", "refuse.index_above_3", "refuse.auto_without_index"} <= skipped
    assert "about to use 0 paid task(s)" in output
    assert "schemathesis sends the paid operations without the key" in output and report.schemathesis_tasks == 0
    assert [line.split(": ", 1)[1] for line in output.splitlines() if "skipped for the budget" in line] == [
        check.title for check in paid_plan()
    ]


def test_budget_is_a_hard_cap() -> None:
    app, store = live_like()
    report, output = check(app, max_paid_tasks=2, schemathesis=False)
    assert len(store.tasks()) == 2
    assert report.paid_tasks == 2
    assert "about to use 2 paid task(s): 1 × midjourney@video, 1 × midjourney@imagine" in output


def test_accepted_refusal_counts_and_stops_submissions() -> None:
    app = create_app(Settings(task_seconds=0, control=False, max_frame_bytes=64 * 1024 * 1024))
    store = blocking(app.state.fake.store)  # frames are never measured: the oversize one is accepted
    report, _ = check(app, schemathesis=False)
    assert len(store.tasks()) == 1  # one mistaken acceptance, then nothing more
    assert report.paid_tasks == 1
    assert report.verdict_of("refuse.oversize_frame") == FAIL
    assert report.verdict_of("refuse.malformed_json") == SKIP


def test_token_is_never_printed_or_written(tmp_path: Path) -> None:
    out = io.StringIO()
    path = tmp_path / "report.json"
    transport = SyncASGITransport(fake())
    run_contract(BASE, "s3cret-token-value", transport=transport, out=out, report_path=path, examples=5)
    transport.close()
    assert "s3cret-token-value" not in out.getvalue()
    assert "s3cret-token-value" not in path.read_text()
    assert json.loads(path.read_text())["counts"]["FAIL"] == 0


def test_contract_never_imports_mockserver() -> None:
    for source in Path(contract.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            assert not any(n.split(".")[0] == "mockserver" for n in names), f"{source.name} imports {names}"


# -- the command line against a real server -------------------------------------------------------


@pytest.mark.e2e
def test_command_line_against_the_server(tmp_path: Path) -> None:
    report, calibration = tmp_path / "report.json", tmp_path / "calibration.yaml"
    with ServerProcess(["--task-seconds", "0", "--batch-size-policy", "coerce"]) as server:
        result = subprocess.run(
            [sys.executable, "-m", "contract", "--base-url", server.base_url, "--max-paid-tasks", "20",
             "--report", str(report), "--examples", "10", "--write-calibration", str(calibration)],
            capture_output=True, text=True, timeout=300, env={"APIMART_TOKEN": "t", "PATH": ""},
        )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "rule" in result.stdout and "documentation says" in result.stdout
    assert json.loads(report.read_text())["counts"]["FAIL"] == 0
    assert Settings.file_values(calibration)["batch_size_policy"] == "coerce"


def test_command_line_needs_a_token() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "contract", "--base-url", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": ""},
    )
    assert result.returncode == 2
    assert "APIMART_TOKEN" in result.stderr


@pytest.mark.parametrize(
    ("limit", "reading"), [(20 * 1024 * 1024, "20 MiB: 20 000 001 bytes accepted"), (20_000_000, "20 MB decimal")]
)
def test_the_upload_probe_settles_20_mb_against_20_mib(limit: int, reading: str) -> None:
    """Both oversize uploads are sent, so the live run says which reading of '20MB' holds."""
    report, _ = check(fake(max_upload_bytes=limit), examples=1, max_paid_tasks=0)
    observed = {f.rule: (f.verdict, f.observed) for f in report.findings}
    verdict, text = observed["open.upload_size_limit"]
    assert verdict == INFO and text.startswith(reading), text
    verdict, text = observed["open.retry_table_codes"]
    assert verdict == INFO and "none of the table's codes" in text, text


@pytest.mark.parametrize("clock", ["record", "end"])
def test_the_run_reads_which_media_clock_the_target_follows(clock: str) -> None:
    """expires_at against the task's own times tells the two readings of the media lifetime apart."""
    report, _ = check(fake(media_clock=clock), examples=1)
    observed = {f.rule: (f.verdict, f.observed) for f in report.findings}
    verdict, text = observed["open.media_clock"]
    assert verdict == INFO and text.endswith(f"--media-clock {clock}"), text


@pytest.mark.parametrize(("reading", "seen"), [("accept", "was accepted"), ("refuse", "was refused (400")])
def test_the_run_reads_whether_a_data_url_frame_is_taken(reading: str, seen: str) -> None:
    """The run's paid start-frame submission uses a data: URL: its answer settles the base64 reading."""
    report, _ = check(fake(data_url_frames=reading), examples=1)
    observed = {f.rule: (f.verdict, f.observed) for f in report.findings}
    verdict, text = observed["open.data_url_frames"]
    assert verdict == INFO and seen in text and text.endswith(f"--data-url-frames {reading}"), text


def test_a_paid_submission_refused_for_another_reason_leaves_the_base64_reading_open() -> None:
    """A 402 (no balance) says nothing of the data: URL frame: the row is a SKIP, not a reading."""
    report, _ = check(fake(default_balance=0), examples=1)
    observed = {f.rule: (f.verdict, f.observed) for f in report.findings}
    verdict, text = observed["open.data_url_frames"]
    assert verdict == SKIP and "not settled" in text, text
