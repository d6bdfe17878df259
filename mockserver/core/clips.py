"""The clips a video task returns: their sizes, their files, per-task bytes and byte ranges.

Pure functions of plain values (standard library only); the web layer does the I/O.

The provider's clips are 5 s at 24 fps, and the frame follows the start frame's
aspect ratio. Each tier has a pixel budget (480: 624×624 ≈ 389k pixels, 720:
960×960 = 1280×720 ≈ 922k) and each side is the multiple of 16 nearest to the
ideal side for that budget and ratio; this reproduces the published anchors
(480: 1:1 → 624×624, 16:9 → 832×464, 4:3 → 720×544; 720: 16:9 → 1280×720).
``scripts/make_media.py`` makes one committed clip per tier × aspect, named by
:func:`clip_name`.
"""

from __future__ import annotations

import math
import re
import struct
from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "assets"

TIERS = ("480", "720")
DEFAULT_ASPECT = "16:9"

# aspect → tier → (width, height); see the module docstring for the rule.
ASPECTS: dict[str, dict[str, tuple[int, int]]] = {
    "1:1": {"480": (624, 624), "720": (960, 960)},
    "16:9": {"480": (832, 464), "720": (1280, 720)},
    "9:16": {"480": (464, 832), "720": (720, 1280)},
    "4:3": {"480": (720, 544), "720": (1104, 832)},
    "3:4": {"480": (544, 720), "720": (832, 1104)},
    "3:2": {"480": (768, 512), "720": (1168, 784)},
    "2:3": {"480": (512, 768), "720": (784, 1168)},
}


def _ratio(aspect: str) -> float:
    w, _, h = aspect.partition(":")
    return int(w) / int(h)


_LOG_RATIOS = {aspect: math.log(_ratio(aspect)) for aspect in ASPECTS}


def tier_of(video_type: str | None) -> str:
    """'720' for the 720p video types (any value containing 720), else '480'."""
    return "720" if video_type and "720" in video_type else "480"


def nearest_aspect(width: int | None, height: int | None) -> str:
    """The supported aspect ratio closest to width:height (compared as log ratios).

    Unknown or nonsensical sizes (None, zero, negative) give ``DEFAULT_ASPECT``.
    Ties go to the aspect listed first in ``ASPECTS``.
    """
    if not width or not height or width <= 0 or height <= 0:
        return DEFAULT_ASPECT
    target = math.log(width / height)
    return min(_LOG_RATIOS, key=lambda aspect: abs(_LOG_RATIOS[aspect] - target))


def _check(tier: str, aspect: str) -> None:
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r} (one of {', '.join(TIERS)})")
    if aspect not in ASPECTS:
        raise ValueError(f"unknown aspect {aspect!r} (one of {', '.join(ASPECTS)})")


def dimensions(tier: str, aspect: str) -> tuple[int, int]:
    """(width, height) of the tier's clip for that aspect, e.g. ('480', '16:9') → (832, 464)."""
    _check(tier, aspect)
    return ASPECTS[aspect][tier]


def clip_name(tier: str, aspect: str) -> str:
    """The committed asset's file name, e.g. ('480', '16:9') → 'video-480-16x9.mp4'."""
    _check(tier, aspect)
    return f"video-{tier}-{aspect.replace(':', 'x')}.mp4"


def clip_path(tier: str, aspect: str) -> Path:
    """The committed asset under ``mockserver/assets/``."""
    return ASSETS / clip_name(tier, aspect)


def clip_names() -> list[str]:
    """Every committed clip's name, tier by tier."""
    return [clip_name(tier, aspect) for tier in TIERS for aspect in ASPECTS]


# --- per-task bytes ---------------------------------------------------------------------------

# A top-level ISO-BMFF 'uuid' box with this extended type carries the tag. Readers
# (browsers, ffmpeg, PyAV, QuickTime) skip top-level boxes they do not know, and
# appending after the last box moves nothing, so moov's chunk offsets into mdat stay valid.
TAG_UUID = bytes.fromhex("6d6f636b-7365-7276-8001-617069746167".replace("-", ""))
TAG_MAGIC = b"apimart-mock-clip"
_MAX_TOP_BOXES = 64


def tag_box(task_id: str, index: int) -> bytes:
    """The box :func:`tagged` appends: ``size 'uuid' TAG_UUID magic 0x00 index(u32) task_id(utf-8)``."""
    if not 0 <= index < 2**32:
        raise ValueError(f"index out of range: {index}")
    payload = TAG_MAGIC + b"\x00" + struct.pack(">I", index) + task_id.encode("utf-8")
    return struct.pack(">I4s", 8 + len(TAG_UUID) + len(payload), b"uuid") + TAG_UUID + payload


def _top_boxes(mp4: bytes) -> list[tuple[bytes, int, int, int]]:
    """(type, start, header size, declared size; 0 = to the end) of each top-level box.

    Raises ValueError if the bytes are not a sequence of whole boxes.
    """
    found: list[tuple[bytes, int, int, int]] = []
    pos, end = 0, len(mp4)
    while pos < end:
        if len(found) >= _MAX_TOP_BOXES or pos + 8 > end:
            raise ValueError("not an MP4 file (too many or truncated top-level boxes)")
        size, kind = struct.unpack_from(">I4s", mp4, pos)
        header = 8
        if size == 1:
            if pos + 16 > end:
                raise ValueError("truncated 64-bit box header")
            size = struct.unpack_from(">Q", mp4, pos + 8)[0]
            header = 16
        found.append((kind, pos, header, size))
        if size == 0:
            break
        if size < header or pos + size > end:
            raise ValueError(f"broken top-level box {kind!r} at {pos}")
        pos += size
    return found


def _is_tag(mp4: bytes, kind: bytes, start: int, header: int) -> bool:
    return kind == b"uuid" and mp4[start + header : start + header + 16] == TAG_UUID


def tagged(mp4: bytes, task_id: str, index: int) -> bytes:
    """The clip with one trailing tag box naming the task and the clip's index.

    Every task and index thus gets distinct bytes (and hashes, ETags) while any
    player still plays the same frames. A tag already at the end is replaced, so
    re-tagging is idempotent. A last box declared "to the end of the file" (size
    0) is given its explicit size first so that it does not swallow the tag.
    Raises ValueError for bytes that are not a sequence of MP4 boxes.
    """
    boxes = _top_boxes(mp4)
    if not boxes or boxes[0][0] != b"ftyp":
        raise ValueError("not an MP4 file (no leading ftyp box)")
    kind, start, header, size = boxes[-1]
    body = mp4
    if _is_tag(mp4, kind, start, header):
        body = mp4[:start]
    elif size == 0:
        length = len(mp4) - start
        if header != 8 or length >= 2**32:
            raise ValueError("cannot close an open-ended last box")
        body = mp4[:start] + struct.pack(">I", length) + mp4[start + 4 :]
    return body + tag_box(task_id, index)


def read_tag(mp4: bytes) -> tuple[str, int] | None:
    """(task_id, index) from a clip made by :func:`tagged`, or None if it carries no tag."""
    try:
        boxes = _top_boxes(mp4)
    except ValueError:
        return None
    if not boxes:
        return None
    kind, start, header, size = boxes[-1]
    if not _is_tag(mp4, kind, start, header):
        return None
    payload = mp4[start + header + 16 : start + (size or len(mp4) - start)]
    magic, sep, rest = payload.partition(b"\x00")
    if magic != TAG_MAGIC or not sep or len(rest) < 4:
        return None
    try:
        return rest[4:].decode("utf-8"), struct.unpack(">I", rest[:4])[0]
    except UnicodeDecodeError:
        return None


# --- byte ranges (RFC 9110 §14) -----------------------------------------------------------------


class RangeNotSatisfiable(Exception):
    """A valid single byte range that selects nothing: answer 416 with ``content_range``."""

    def __init__(self, size: int) -> None:
        super().__init__(f"range not satisfiable for {size} bytes")
        self.size = size

    @property
    def content_range(self) -> str:
        return f"bytes */{self.size}"


_RANGE = re.compile(r"(?:(?P<first>[0-9]+)-(?P<last>[0-9]*)|-(?P<suffix>[0-9]+))")
_MAX_DIGITS = 18  # longer positions are treated as "beyond any file": no int() of hostile digit runs


def _position(digits: str) -> int:
    return int(digits) if len(digits) <= _MAX_DIGITS else 10**_MAX_DIGITS


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte positions a ``Range`` header asks of ``size`` bytes.

    Returns None when the whole representation should be sent (200): no header,
    another range unit, a malformed or invalid specifier (e.g. last < first),
    or more than one range, all of which RFC 9110 lets a server ignore. Also
    None for a suffix range of an empty representation (nothing to slice).
    Raises :class:`RangeNotSatisfiable` (416) for a single valid range starting
    at or past the end, or a zero-length suffix ``bytes=-0``.

    >>> byte_range("bytes=0-99", 1000), byte_range("bytes=900-", 1000), byte_range("bytes=-100", 1000)
    ((0, 99), (900, 999), (900, 999))
    """
    if header is None:
        return None
    unit, eq, ranges = header.strip().partition("=")
    if not eq or unit.strip().lower() != "bytes":
        return None
    specs = [spec.strip(" \t") for spec in ranges.split(",")]
    specs = [spec for spec in specs if spec]  # the #list rule allows empty elements
    if len(specs) != 1:
        return None
    match = _RANGE.fullmatch(specs[0])
    if match is None:
        return None
    if match["suffix"] is not None:
        length = _position(match["suffix"])
        if length == 0:
            raise RangeNotSatisfiable(size)
        if size == 0:
            return None
        return max(0, size - length), size - 1
    first = _position(match["first"])
    last = _position(match["last"]) if match["last"] else None
    if last is not None and last < first:
        return None
    if first >= size:
        raise RangeNotSatisfiable(size)
    return first, size - 1 if last is None else min(last, size - 1)
