"""The committed clips, their sizes per aspect ratio, per-task tags and byte ranges.

Clips are checked with a real decoder (PyAV, FFmpeg's libraries), not only by
reading their boxes.
"""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Iterator

import av
import pytest

from mockserver.core.clips import (
    ASPECTS,
    ASSETS,
    DEFAULT_ASPECT,
    TAG_UUID,
    TIERS,
    RangeNotSatisfiable,
    byte_range,
    clip_name,
    clip_names,
    clip_path,
    dimensions,
    nearest_aspect,
    read_tag,
    tag_box,
    tagged,
    tier_of,
)

from ..mp4 import boxes

BUDGET = {"480": 624 * 624, "720": 960 * 960}
ALL = [(tier, aspect) for tier in TIERS for aspect in ASPECTS]


# --- sizes --------------------------------------------------------------------------------------


def test_published_anchors() -> None:
    assert ASPECTS["1:1"] == {"480": (624, 624), "720": (960, 960)}
    assert ASPECTS["16:9"] == {"480": (832, 464), "720": (1280, 720)}
    assert ASPECTS["9:16"] == {"480": (464, 832), "720": (720, 1280)}
    assert ASPECTS["4:3"]["480"] == (720, 544)


@pytest.mark.parametrize(("tier", "aspect"), ALL)
def test_each_side_is_the_multiple_of_16_nearest_the_tiers_pixel_budget(tier: str, aspect: str) -> None:
    w, h = (int(v) for v in aspect.split(":"))
    width, height = dimensions(tier, aspect)
    assert width == 16 * round(math.sqrt(BUDGET[tier] * w / h) / 16)
    assert height == 16 * round(math.sqrt(BUDGET[tier] * h / w) / 16)
    assert width * height == pytest.approx(BUDGET[tier], rel=0.03)
    assert width / height == pytest.approx(w / h, rel=0.02)
    assert ASPECTS[":".join(reversed(aspect.split(":")))][tier] == (height, width)  # portrait mirrors landscape


@pytest.mark.parametrize(
    ("size", "aspect"),
    [
        ((1920, 1080), "16:9"),
        ((1456, 816), "16:9"),  # Midjourney's own 16:9 image
        ((1080, 1920), "9:16"),
        ((1024, 1024), "1:1"),
        ((1100, 1000), "1:1"),
        ((1232, 928), "4:3"),
        ((1024, 768), "4:3"),
        ((768, 1024), "3:4"),
        ((1344, 896), "3:2"),
        ((896, 1344), "2:3"),
        ((6000, 4000), "3:2"),
        ((10_000, 10), "16:9"),  # wider than any: the widest
        ((10, 10_000), "9:16"),
        ((1, 1), "1:1"),
        ((0, 100), DEFAULT_ASPECT),
        ((100, 0), DEFAULT_ASPECT),
        ((-4, 3), DEFAULT_ASPECT),
        ((None, 3), DEFAULT_ASPECT),
        ((None, None), DEFAULT_ASPECT),
    ],
)
def test_nearest_aspect(size: tuple[int | None, int | None], aspect: str) -> None:
    assert nearest_aspect(*size) == aspect


def test_default_aspect_is_16_9() -> None:
    assert DEFAULT_ASPECT == "16:9"


@pytest.mark.parametrize(
    ("video_type", "tier"),
    [
        ("vid_1.1_i2v_480", "480"),
        ("vid_1.1_i2v_start_end_480", "480"),
        ("vid_1.1_i2v_720", "720"),
        ("vid_1.1_i2v_start_end_720", "720"),
        (None, "480"),
        ("", "480"),
    ],
)
def test_tier_of(video_type: str | None, tier: str) -> None:
    assert tier_of(video_type) == tier


def test_clip_names() -> None:
    assert clip_name("480", "16:9") == "video-480-16x9.mp4"
    assert clip_name("720", "2:3") == "video-720-2x3.mp4"
    assert clip_path("720", "1:1") == ASSETS / "video-720-1x1.mp4"
    assert len(set(clip_names())) == len(TIERS) * len(ASPECTS) == 14
    for bad in (("1080", "16:9"), ("480p", "16:9"), ("480", "21:9"), ("480", "16x9")):
        with pytest.raises(ValueError):
            clip_name(*bad)


# --- the committed clips ------------------------------------------------------------------------


def first_frame(data: bytes) -> tuple[int, int, list[bytes]]:
    with av.open(io.BytesIO(data), mode="r") as container:
        for frame in container.decode(video=0):
            return frame.width, frame.height, [bytes(plane) for plane in frame.planes]
    raise AssertionError("no frame decoded")


def frames(data: bytes) -> Iterator[list[bytes]]:
    with av.open(io.BytesIO(data), mode="r") as container:
        for frame in container.decode(video=0):
            yield [bytes(plane) for plane in frame.planes]


@pytest.mark.parametrize(("tier", "aspect"), ALL, ids=[clip_name(t, a) for t, a in ALL])
def test_committed_clip_decodes_as_the_provider_would_send_it(tier: str, aspect: str) -> None:
    data = clip_path(tier, aspect).read_bytes()
    assert len(data) < 60_000
    top = [kind for kind, _, _ in boxes(data)]
    assert top[0] == b"ftyp"
    assert top.index(b"moov") < top.index(b"mdat")  # faststart: playable while downloading
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        context = stream.codec_context
        assert context.name == "h264"
        assert context.profile == "Constrained Baseline"
        assert context.pix_fmt == "yuv420p"
        assert stream.average_rate == 24
        assert container.duration is not None
        assert container.duration / av.time_base == pytest.approx(5.0, abs=0.05)
        assert (stream.width, stream.height) == dimensions(tier, aspect)
        assert len(container.streams.audio) == 0
        assert sum(1 for packet in container.demux(stream) if packet.size) == 120
    width, height, _ = first_frame(data)
    assert (width, height) == dimensions(tier, aspect)


def test_assets_stay_small() -> None:
    total = sum(path.stat().st_size for path in ASSETS.iterdir() if path.is_file())
    assert total < 1_500_000


# --- per-task tags ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip() -> bytes:
    return clip_path("480", "16:9").read_bytes()


def test_tagged_clip_plays_the_same_frames(clip: bytes) -> None:
    tagged_clip = tagged(clip, "task_01J9ZX", 3)
    assert tagged_clip.startswith(clip)
    assert list(frames(tagged_clip)) == list(frames(clip))
    for tier, aspect in ALL:
        data = clip_path(tier, aspect).read_bytes()
        assert first_frame(tagged(data, "t", 0)) == first_frame(data)


def test_the_tag_is_one_trailing_top_level_uuid_box(clip: bytes) -> None:
    tagged_clip = tagged(clip, "task_abc", 2)
    kind, start, end = list(boxes(tagged_clip))[-1]
    assert kind == b"uuid"
    assert end == len(tagged_clip)
    assert tagged_clip[start : start + 16] == TAG_UUID
    assert tagged_clip[len(clip) :] == tag_box("task_abc", 2)
    assert [k for k, _, _ in boxes(tagged_clip)] == [k for k, _, _ in boxes(clip)] + [b"uuid"]


def test_tags_differ_by_task_and_index_and_read_back(clip: bytes) -> None:
    variants = {tagged(clip, task, index) for task in ("task_a", "task_b") for index in range(4)}
    assert len(variants) == 8
    assert read_tag(tagged(clip, "task_ä€", 7)) == ("task_ä€", 7)
    assert read_tag(tagged(clip, "", 0)) == ("", 0)
    assert read_tag(clip) is None
    assert read_tag(b"not an mp4") is None


def test_retagging_replaces_the_tag(clip: bytes) -> None:
    assert tagged(tagged(clip, "first", 0), "second", 1) == tagged(clip, "second", 1)


def test_an_open_ended_last_box_is_closed_before_tagging(clip: bytes) -> None:
    kind, start, _ = list(boxes(clip))[-1]
    assert kind == b"mdat"
    open_ended = clip[: start - 8] + struct.pack(">I", 0) + clip[start - 4 :]
    tagged_clip = tagged(open_ended, "task", 1)
    assert tagged_clip == tagged(clip, "task", 1)
    assert first_frame(tagged_clip) == first_frame(clip)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00\x00\x00\x10moov", b"\x00\x00\x00\x08mdat", b"\x00\x00\x00\x20ftypisom" + b"\x00" * 4, b"x" * 100],
)
def test_tagging_refuses_what_is_not_an_mp4(data: bytes) -> None:
    with pytest.raises(ValueError):
        tagged(data, "task", 0)


def test_tag_index_bounds(clip: bytes) -> None:
    with pytest.raises(ValueError):
        tag_box("task", -1)
    with pytest.raises(ValueError):
        tag_box("task", 2**32)


# --- byte ranges --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", (0, 99)),
        ("bytes=0-0", (0, 0)),
        ("bytes=100-", (100, 999)),
        ("bytes=0-", (0, 999)),
        ("bytes=500-5000", (500, 999)),  # last past the end is clamped
        ("bytes=999-999", (999, 999)),
        ("bytes=-100", (900, 999)),
        ("bytes=-1", (999, 999)),
        ("bytes=-5000", (0, 999)),  # suffix longer than the file: all of it
        ("bytes=0-99999999999999999999999999", (0, 999)),
        ("Bytes=10-20", (10, 20)),  # the unit is case-insensitive
        ("  bytes=10-20  ", (10, 20)),
        ("bytes= 10-20", (10, 20)),
        ("bytes=10-20,", (10, 20)),  # empty list elements are allowed
        ("bytes=, 10-20", (10, 20)),
        ("bytes=00010-0020", (10, 20)),
        # ignored (None): the whole file with 200
        (None, None),
        ("", None),
        ("bytes", None),
        ("bytes=", None),
        ("bytes=,", None),
        ("items=0-10", None),  # unknown unit
        ("bytes 0-10", None),
        ("bytes=0-10,20-30", None),  # multiple ranges: a server may answer with the whole file
        ("bytes=-10,0-5", None),
        ("bytes=20-10", None),  # last before first: invalid
        ("bytes=a-b", None),
        ("bytes=1-2-3", None),
        ("bytes=-", None),
        ("bytes=--5", None),
        ("bytes=+1-2", None),
        ("bytes=1 - 2", None),
        ("bytes=١-٢", None),  # non-ASCII digits
        ("bytes=0x10-20", None),
    ],
)
def test_byte_range(header: str | None, expected: tuple[int, int] | None) -> None:
    assert byte_range(header, 1000) == expected


@pytest.mark.parametrize(
    "header",
    ["bytes=1000-", "bytes=1000-1001", "bytes=5000-6000", "bytes=-0", "bytes=" + "9" * 5000 + "-"],
)
def test_unsatisfiable_range(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable) as raised:
        byte_range(header, 1000)
    assert raised.value.size == 1000
    assert raised.value.content_range == "bytes */1000"


def test_ranges_of_an_empty_file() -> None:
    with pytest.raises(RangeNotSatisfiable):
        byte_range("bytes=0-", 0)
    with pytest.raises(RangeNotSatisfiable):
        byte_range("bytes=-0", 0)
    assert byte_range("bytes=-10", 0) is None  # nothing to slice: send the (empty) whole


def test_range_slices_a_tagged_clip(clip: bytes) -> None:
    body = tagged(clip, "task", 0)
    first, last = byte_range("bytes=-100", len(body)) or (0, 0)
    assert body[first : last + 1] == body[-100:]
    assert body[first : last + 1].endswith(b"task")
