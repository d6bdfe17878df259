"""Images are recognised from their bytes alone, and hostile bytes cost next to nothing."""

from __future__ import annotations

import base64
import fractions
import struct
import time
import zlib
from urllib.parse import quote_from_bytes

import av
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mockserver.core.images import GIF, JPEG, PNG, WEBP, ImageInfo, from_data_url, sniff

ASSETS_PNGS = ("image-0.png", "image-1.png", "image-2.png", "image-3.png")


# --- building real files ------------------------------------------------------------------------


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header(width: int, height: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))


def make_png(width: int, height: int) -> bytes:
    """A complete, decodable 8-bit RGB PNG."""
    rows = b"".join(b"\x00" + b"\x80\x40\x20" * width for _ in range(height))
    return png_header(width, height) + png_chunk(b"IDAT", zlib.compress(rows)) + png_chunk(b"IEND", b"")


def make_gif(width: int, height: int) -> bytes:
    """A complete one-pixel-colour GIF89a: header, logical screen, image, trailer."""
    screen = struct.pack("<HHBBB", width, height, 0x80, 0, 0)  # global colour table of 2 entries
    palette = b"\x00\x00\x00\xff\xff\xff"
    image = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)
    data = b"\x02\x02\x44\x01\x00"  # LZW min code size 2, one tiny sub-block, terminator
    return b"GIF89a" + screen + palette + image + data + b"\x3b"


def riff(chunk: bytes, payload: bytes) -> bytes:
    body = b"WEBP" + chunk + struct.pack("<I", len(payload)) + payload + b"\x00" * (len(payload) % 2)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def make_webp_vp8(width: int, height: int) -> bytes:
    # frame tag (key frame, version 0, show frame), start code, 14-bit sizes with scale bits set to 0
    return riff(b"VP8 ", b"\x10\x02\x00" + b"\x9d\x01\x2a" + struct.pack("<HH", width, height) + b"\x00" * 10)


def make_webp_vp8l(width: int, height: int) -> bytes:
    bits = (width - 1) | (height - 1) << 14  # then alpha_is_used (0) and version (0)
    return riff(b"VP8L", b"\x2f" + bits.to_bytes(4, "little") + b"\x00" * 8)


def make_webp_vp8x(width: int, height: int) -> bytes:
    payload = b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return riff(b"VP8X", payload)


def segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def exif(orientation: int, order: bytes = b"MM") -> bytes:
    e = ">" if order == b"MM" else "<"
    entries = [
        struct.pack(e + "HHI", 0x010F, 2, 4) + b"Cam\x00",  # Make: ASCII, 4 bytes inline
        struct.pack(e + "HHIH", 0x0112, 3, 1, orientation) + b"\x00\x00",
    ]
    ifd = struct.pack(e + "H", len(entries)) + b"".join(entries) + b"\x00\x00\x00\x00"
    return b"Exif\x00\x00" + order + struct.pack(e + "HI", 42, 8) + ifd


def make_jpeg(width: int, height: int, *, sof: int = 0xC0, before: bytes = b"") -> bytes:
    """JFIF header, any extra segments, a frame header and the end of the image."""
    jfif = segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    dqt = segment(0xDB, b"\x00" + bytes(range(1, 65)))
    frame = segment(sof, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")
    return b"\xff\xd8" + jfif + before + dqt + frame + b"\xff\xd9"


def encoded(codec: str, pix_fmt: str, width: int, height: int, **options: str) -> bytes:
    """One frame through FFmpeg's own encoder (whole-file packets for these codecs)."""
    if codec not in av.codecs_available:
        pytest.skip(f"this PyAV build has no {codec} encoder")
    context = av.CodecContext.create(codec, "w")
    assert isinstance(context, av.VideoCodecContext)
    context.width, context.height, context.pix_fmt = width, height, pix_fmt
    context.time_base = fractions.Fraction(1, 1)
    context.options = options
    frame = av.VideoFrame(width, height, "rgb24").reformat(format=pix_fmt)
    return b"".join(bytes(packet) for packet in [*context.encode(frame), *context.encode(None)])


# --- each format --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (make_png(3, 2), ImageInfo(PNG, 3, 2)),
        (make_png(1, 4097), ImageInfo(PNG, 1, 4097)),
        (make_gif(640, 480), ImageInfo(GIF, 640, 480)),
        (make_gif(65535, 1), ImageInfo(GIF, 65535, 1)),
        (make_webp_vp8(1456, 816), ImageInfo(WEBP, 1456, 816)),
        (make_webp_vp8l(16383, 1), ImageInfo(WEBP, 16383, 1)),
        (make_webp_vp8l(1, 16384), ImageInfo(WEBP, 1, 16384)),
        (make_webp_vp8x(16_777_216, 3), ImageInfo(WEBP, 16_777_216, 3)),
        (make_jpeg(1024, 768), ImageInfo(JPEG, 1024, 768)),
        (make_jpeg(600, 900, sof=0xC2), ImageInfo(JPEG, 600, 900)),  # progressive
        (make_jpeg(77, 33, sof=0xCF), ImageInfo(JPEG, 77, 33)),
        (make_jpeg(10, 20, before=segment(0xC4, b"\x00" * 20) + segment(0xCC, b"\x00\x00")), ImageInfo(JPEG, 10, 20)),
        (make_jpeg(10, 20, before=b"\xff\xff\xff" + segment(0xFE, b"fill bytes before me")), ImageInfo(JPEG, 10, 20)),
    ],
    ids=lambda v: v.mime + f"-{v.width}x{v.height}" if isinstance(v, ImageInfo) else "",
)
def test_sniffs_each_format(data: bytes, expected: ImageInfo) -> None:
    assert sniff(data) == expected


@pytest.mark.parametrize(
    ("codec", "pix_fmt", "options", "mime"),
    [
        ("png", "rgb24", {}, PNG),
        ("mjpeg", "yuvj420p", {}, JPEG),
        ("gif", "rgb8", {}, GIF),
        ("libwebp", "yuv420p", {}, WEBP),
        ("libwebp", "bgra", {"lossless": "1"}, WEBP),
    ],
)
@pytest.mark.parametrize(("width", "height"), [(37, 23), (23, 37), (832, 464)])
def test_sniffs_what_real_encoders_write(
    codec: str, pix_fmt: str, options: dict[str, str], mime: str, width: int, height: int
) -> None:
    assert sniff(encoded(codec, pix_fmt, width, height, **options)) == ImageInfo(mime, width, height)


def test_sniffs_the_committed_images() -> None:
    from mockserver.core.clips import ASSETS

    for name in ASSETS_PNGS:
        assert sniff((ASSETS / name).read_bytes()) == ImageInfo(PNG, 512, 512)
    assert sniff((ASSETS / "grid.png").read_bytes()) == ImageInfo(PNG, 1024, 1024)


@pytest.mark.parametrize(
    ("orientation", "order", "display"),
    [(1, b"MM", (400, 300)), (3, b"II", (400, 300)), (6, b"MM", (300, 400)), (8, b"II", (300, 400))],
)
def test_jpeg_exif_orientation_turns_the_display_size(orientation: int, order: bytes, display: tuple[int, int]) -> None:
    info = sniff(make_jpeg(400, 300, before=segment(0xE1, exif(orientation, order))))
    assert info == ImageInfo(JPEG, 400, 300, orientation)
    assert info.display_size == display


def test_broken_exif_is_ignored_not_fatal() -> None:
    hostile = [
        b"Exif\x00\x00MM\x00\x2a\xff\xff\xff\xff",  # IFD offset far past the end
        b"Exif\x00\x00II\x2a\x00\x08\x00\x00\x00\xff\xff",  # 65535 entries, none present
        b"Exif\x00\x00XX\x00\x2a\x00\x00\x00\x08",  # unknown byte order
        b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01\x00\x09\x00\x00",  # value 9
        b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\x00\x01\x01\x12\x00\x04\x00\x00\x00\x02\x00\x06\x00\x00",  # not SHORT
        b"Exif",
    ]
    for payload in hostile:
        assert sniff(make_jpeg(40, 30, before=segment(0xE1, payload))) == ImageInfo(JPEG, 40, 30, 1)


def test_zero_sizes_are_not_images() -> None:
    assert sniff(png_header(0, 5)) is None
    assert sniff(make_gif(0, 0)) is None
    assert sniff(make_jpeg(100, 0)) is None  # height given later by a DNL segment: unknown here
    assert sniff(png_header(2**31, 1)) is None  # PNG forbids sides past 2^31-1
    assert sniff(png_header(2**31 - 1, 1)) == ImageInfo(PNG, 2**31 - 1, 1)


@pytest.mark.parametrize(
    "data",
    [
        make_png(3, 2),
        make_gif(5, 6),
        make_webp_vp8(7, 8),
        make_webp_vp8l(9, 10),
        make_webp_vp8x(11, 12),
        make_jpeg(13, 14, before=segment(0xE1, exif(6))),
    ],
)
def test_every_truncation_gives_the_right_answer_or_none(data: bytes) -> None:
    whole = sniff(data)
    assert whole is not None
    for n in range(len(data)):
        assert sniff(data[:n]) in (None, whole)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDX" + b"\x00" * 20,  # first chunk not IHDR
        b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x00" * 20,  # bad VP8 start code
        b"RIFF\x00\x00\x00\x00WEBPVP8L\x00\x00\x00\x00\x2e" + b"\x00" * 20,  # bad VP8L signature
        b"RIFF\x00\x00\x00\x00WEBPALPH" + b"\x00" * 20,  # unknown first chunk
        b"RIFF\x00\x00\x00\x00AVI LIST" + b"\x00" * 20,
        b"BM" + b"\x00" * 60,  # BMP: not a format the provider takes
        b"\xff\xd8\xff\xd9",  # SOI then EOI
        b"\xff\xd8\xff\xda\x00\x08" + b"\x00" * 20,  # scan data before any frame header
        b"\xff\xd8\xff\x00" + b"\x00" * 20,  # a stuffed zero where a marker belongs
        b"\xff\xd8\xff\xe0\x00\x01" + b"\x00" * 20,  # segment length below 2
        b"\xff\xd8\xff\xe0\xff\xff" + b"\x00" * 20,  # segment longer than the data
        b"\xff\xd8\xff\xc0\x00\x05\x08\x00\x10",  # frame header too short to hold the sizes
        b"\xff\xd8\x00" * 10,
    ],
)
def test_not_images_or_broken_headers_are_none(data: bytes) -> None:
    assert sniff(data) is None


def _fast(data: bytes) -> None:
    started = time.perf_counter()
    assert sniff(data) is None
    assert time.perf_counter() - started < 0.05


def test_a_megabyte_of_jpeg_markers_is_rejected_fast() -> None:
    _fast(b"\xff\xd8" + b"\xff" * 1_000_000)
    _fast(b"\xff\xd8\xff" + b"\x01" * 1_000_000)  # a million standalone TEM markers (0xFF01 …)
    _fast(b"\xff\xd8" + b"\xff\x01" * 500_000)
    _fast(b"\xff\xd8" + b"\xff\xd0" * 500_000)  # restart markers
    _fast(b"\xff\xd8" + segment(0xE0, b"") * 300_000)  # endless empty APP0 segments
    _fast(b"\xff\xd8" + segment(0xE0, b"x" * 65533) * 16)  # a megabyte of maximal segments


def test_the_frame_header_is_found_after_many_segments() -> None:
    assert sniff(make_jpeg(5, 6, before=segment(0xED, b"x" * 65533) * 40)) == ImageInfo(JPEG, 5, 6)


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"RIFF\x00\x00\x00\x00WEBP"]),
    rest=st.binary(max_size=200),
)
def test_never_raises_on_arbitrary_bytes(prefix: bytes, rest: bytes) -> None:
    info = sniff(prefix + rest)
    assert info is None or (info.width > 0 and info.height > 0)


# --- data: URLs ---------------------------------------------------------------------------------


def b64_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


@pytest.mark.parametrize(
    ("data", "size"),
    [(make_png(31, 17), (31, 17)), (make_gif(2, 3), (2, 3)), (make_webp_vp8x(4000, 3000), (4000, 3000))],
)
def test_data_url_base64(data: bytes, size: tuple[int, int]) -> None:
    info = from_data_url(b64_url(data))
    assert info is not None
    assert (info.width, info.height) == size


def test_data_url_trusts_the_bytes_not_the_declared_type() -> None:
    assert from_data_url(b64_url(make_gif(8, 9), "image/png")) == ImageInfo(GIF, 8, 9)
    assert from_data_url(b64_url(make_png(8, 9), "text/plain")) == ImageInfo(PNG, 8, 9)


def test_data_url_spellings() -> None:
    png = make_png(12, 34)
    text = base64.b64encode(png).decode()
    wrapped = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    expected = ImageInfo(PNG, 12, 34)
    assert from_data_url("DATA:image/png;BASE64," + text) == expected
    assert from_data_url("data:image/png;name=a.png;base64," + wrapped) == expected
    assert from_data_url("data:image/png;base64," + base64.urlsafe_b64encode(png).decode()) == expected
    assert from_data_url("data:image/png;base64," + text.rstrip("=")) == expected  # unpadded
    assert from_data_url("data:image/png," + quote_from_bytes(png)) == expected  # percent-encoded
    assert from_data_url("data:," + quote_from_bytes(make_gif(5, 5))) == ImageInfo(GIF, 5, 5)


def test_data_url_jpeg_with_a_large_exif_block_before_the_frame() -> None:
    bulky = segment(0xE1, exif(6) + b"\x00" * 60_000) + segment(0xE2, b"ICC_PROFILE\x00" + b"\x01" * 60_000)
    data = make_jpeg(4032, 3024, before=bulky)
    assert len(data) > 100_000
    info = from_data_url(b64_url(data, "image/jpeg"))
    assert info == ImageInfo(JPEG, 4032, 3024, 6)
    assert info.display_size == (3024, 4032)
    assert from_data_url("data:image/jpeg," + quote_from_bytes(data)) == info


def test_data_url_percent_escapes_cut_at_a_prefix_boundary() -> None:
    # Put the frame header across the end of the first decoded prefix (4 KiB, 12288
    # characters of a percent-encoded URL) at every alignment of "%XX" escapes.
    def encode(data: bytes) -> str:
        return "".join("a" if b == ord("a") else f"%{b:02X}" for b in data)

    for literal in range(4):
        for escaped in range(4040, 4090, 3):
            data = make_jpeg(321, 123, before=segment(0xFE, b"\xff" * escaped + b"a" * literal))
            assert from_data_url("data:image/jpeg," + encode(data)) == ImageInfo(JPEG, 321, 123)


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/a.png",
        "data:image/png;base64",  # no comma
        "data:image/png;base64,",
        "data:image/png;base64,!!!!",
        "data:image/png;base64,iVBORw0K",  # a PNG signature and no more
        "data:" + "x" * 5000 + ",AAAA",  # no comma within the header limit
        "",
    ],
)
def test_data_url_not_an_image(url: str) -> None:
    assert from_data_url(url) is None


def test_large_hostile_data_urls_are_rejected_fast() -> None:
    for url in (
        "data:image/png;base64," + "A" * 8_000_000,
        "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8" + b"\xff" * 3_000_000).decode(),
        "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8" + segment(0xE0, b"x" * 65533) * 60).decode(),
    ):
        started = time.perf_counter()
        assert from_data_url(url) is None
        assert time.perf_counter() - started < 0.5
