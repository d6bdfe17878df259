"""Task records packed and as text, and records made without their ``__init__`` (``core/records.py``)."""

from __future__ import annotations

import dataclasses
import json

from mockserver import Settings
from mockserver.core import submission
from mockserver.core.faults import Fault
from mockserver.core.records import TaskRecord
from mockserver.service import Fake

from ..store.test_conformance import task

BODY = {"prompt": "p", "image_urls": ["https://example.com/a.png"]}


# -- packed records ----------------------------------------------------------------------------------


def test_records_round_trip_packed_and_as_text() -> None:
    record = task("t1", params={"notes": ["n"], "big": 2**70, "é": 1.5})
    assert TaskRecord.unpack(record.pack()) == record
    assert TaskRecord.unpack(record.pack()).params["big"] == 2**70
    assert TaskRecord.from_json(record.to_json()) == record
    assert TaskRecord.from_json(json.dumps(record.to_dict())) == record  # what the stores kept before
    assert TaskRecord.of(record.to_dict()) == record


def test_the_records_a_submission_makes_without_init_have_every_field_and_no_other() -> None:
    fake = Fake.open(Settings().validated())
    job = submission.video_job(
        BODY, policy="strict", allowed_batch_sizes=(1, 2, 4), defaults={"video_type": "v", "motion": "low",
        "animate_mode": "manual"}, parent=None, max_frame_bytes=1000, measure_upload=lambda url: None,
    )  # fmt: skip
    made = [
        fake.video_record("acct", None, job, {}),
        fake.video_record("acct", Fault("fail"), job, {}),
        fake.imagine_record("acct", None, {"prompt": "p"}, {}),
    ]
    names = [f.name for f in dataclasses.fields(TaskRecord)]
    for record in made:
        assert list(vars(record)) == names  # every field, in order, and nothing else
        assert record == TaskRecord(**vars(record))  # as the generated __init__ makes it


def test_a_video_job_made_without_its_init_has_every_field() -> None:
    job = submission.video_job(
        BODY, policy="strict", allowed_batch_sizes=(1, 2, 4), defaults={"video_type": "v", "motion": "low",
        "animate_mode": "manual"}, parent=None, max_frame_bytes=1000, measure_upload=lambda url: None,
    )  # fmt: skip
    assert {f.name for f in dataclasses.fields(job)} <= set(vars(job))
    assert job == dataclasses.replace(job) and job.quantity == 1
