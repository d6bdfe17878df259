"""The result files are real media: H.264 MP4 clips of ~5 s at 24 fps, PNG images."""

from __future__ import annotations

import struct

import pytest

from mockserver.core.media import GRID_PNG, IMAGE_PNGS, clip_file, safe_filename, upload_id_of

from ..mp4 import read_clip


@pytest.mark.parametrize(
    ("video_type", "aspect", "size"),
    [
        ("vid_1.1_i2v_480", "16:9", (832, 464)),
        ("vid_1.1_i2v_720", "16:9", (1280, 720)),
        ("vid_1.1_i2v_480", "1:1", (624, 624)),
    ],
)
def test_clip_is_h264_5s_24fps(video_type: str, aspect: str, size: tuple[int, int]) -> None:
    data = clip_file(video_type, aspect).read_bytes()
    assert data[4:8] == b"ftyp"
    clip = read_clip(data)
    assert clip.codec == "avc1"
    assert (clip.width, clip.height) == size
    assert clip.duration == pytest.approx(5.0, abs=0.1)
    assert clip.fps == pytest.approx(24.0, abs=0.1)
    assert len(data) < 100_000


def test_moov_comes_first_for_streaming() -> None:
    data = clip_file("vid_1.1_i2v_720").read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_images_are_pngs() -> None:
    for path in IMAGE_PNGS:
        assert png_size(path.read_bytes()) == (512, 512)
    assert png_size(GRID_PNG.read_bytes()) == (1024, 1024)


@pytest.mark.parametrize(
    ("video_type", "name"),
    [
        ("vid_1.1_i2v_480", "video-480-16x9.mp4"),
        ("vid_1.1_i2v_start_end_480", "video-480-16x9.mp4"),
        ("vid_1.1_i2v_720", "video-720-16x9.mp4"),
        ("vid_1.1_i2v_start_end_720", "video-720-16x9.mp4"),
    ],
)
def test_tier_picks_the_clip(video_type: str, name: str) -> None:
    assert clip_file(video_type).name == name
    assert clip_file(video_type, "9:16").name == name.replace("16x9", "9x16")


def test_upload_links() -> None:
    assert upload_id_of("http://h:1/media/uploads/upl_01ABC/a.png") == "upl_01ABC"
    assert upload_id_of("https://example.com/cat.png") is None
    assert upload_id_of("data:image/png;base64,AAAA") is None
    assert upload_id_of("http://[") is None  # found by schemathesis: urlsplit raises on it
    assert safe_filename("../../etc/pass wd", "image/png") == "pass_wd.png"
    assert safe_filename(None, "image/jpeg") == "image.jpeg"
