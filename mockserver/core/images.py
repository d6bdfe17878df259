"""What image some bytes hold: format and pixel size, read from the headers alone.

Pure functions of plain values (standard library only). Every reader works on
untrusted bytes: it never raises, never reads past the end, and does a bounded
amount of work (a JPEG is walked for at most ``MAX_JPEG_SEGMENTS`` segments,
``MAX_JPEG_FILL`` fill bytes per marker, ``MAX_EXIF_ENTRIES`` EXIF entries);
whatever it cannot read gives None.
"""

from __future__ import annotations

import binascii
import re
import struct
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

PNG = "image/png"
JPEG = "image/jpeg"
GIF = "image/gif"
WEBP = "image/webp"

MAX_JPEG_SEGMENTS = 128
MAX_JPEG_FILL = 16
MAX_EXIF_ENTRIES = 64
MAX_SIDE = 2**31 - 1


@dataclass(frozen=True)
class ImageInfo:
    """A sniffed image: its real media type and stored pixel size.

    ``orientation`` is the EXIF Orientation (1–8; 1 = as stored) of a JPEG, else
    1. Values 5–8 mean the picture is shown turned a quarter: see
    :attr:`display_size`.
    """

    mime: str
    width: int
    height: int
    orientation: int = 1

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) as a viewer shows it, EXIF orientation applied."""
        if self.orientation in (5, 6, 7, 8):
            return self.height, self.width
        return self.width, self.height


def _info(mime: str, width: int, height: int, orientation: int = 1) -> ImageInfo | None:
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        return None
    return ImageInfo(mime, width, height, orientation if 1 <= orientation <= 8 else 1)


def _png(data: bytes) -> ImageInfo | None:
    # signature, then the first chunk must be IHDR: length 13, "IHDR", width, height (big-endian)
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack_from(">II", data, 16)
    return _info(PNG, width, height)


def _gif(data: bytes) -> ImageInfo | None:
    # "GIF87a"/"GIF89a", then the logical screen width and height (little-endian)
    if len(data) < 10:
        return None
    width, height = struct.unpack_from("<HH", data, 6)
    return _info(GIF, width, height)


def _webp(data: bytes) -> ImageInfo | None:
    # RIFF size "WEBP", then the first chunk: fourcc, size, payload from offset 20
    if len(data) < 30:
        return None
    chunk = data[12:16]
    if chunk == b"VP8 ":
        # frame tag (3 bytes), start code 9d 01 2a, 14-bit width and height (+2 bits of scale each)
        if data[23:26] != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack_from("<HH", data, 26)
        return _info(WEBP, width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L":
        # signature 0x2f, then 14 bits width-1 and 14 bits height-1, little-endian bit order
        if data[20] != 0x2F:
            return None
        bits = int.from_bytes(data[21:25], "little")
        return _info(WEBP, (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X":
        # flags (1), reserved (3), canvas width-1 and height-1 (24 bits each, little-endian)
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return _info(WEBP, width, height)
    return None


# Start-of-frame markers carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# Markers with no length field: TEM, RST0–7, SOI.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})
_EOI, _SOS, _APP1 = 0xD9, 0xDA, 0xE1


def _exif_orientation(segment: bytes) -> int:
    """EXIF Orientation from an APP1 payload, 1 if absent or unreadable."""
    if not segment.startswith(b"Exif\x00\x00"):
        return 1
    tiff = segment[6:]
    if len(tiff) < 8:
        return 1
    order = tiff[:2]
    if order == b"II":
        e = "<"
    elif order == b"MM":
        e = ">"
    else:
        return 1
    magic, ifd = struct.unpack_from(e + "HI", tiff, 2)
    if magic != 42 or ifd + 2 > len(tiff):
        return 1
    (count,) = struct.unpack_from(e + "H", tiff, ifd)
    for i in range(min(count, MAX_EXIF_ENTRIES)):
        entry = ifd + 2 + 12 * i
        if entry + 12 > len(tiff):
            return 1
        tag, kind, n = struct.unpack_from(e + "HHI", tiff, entry)
        if tag == 0x0112:
            if kind != 3 or n != 1:  # SHORT, one value, stored inline
                return 1
            (value,) = struct.unpack_from(e + "H", tiff, entry + 8)
            return value if 1 <= value <= 8 else 1
    return 1


def _jpeg(data: bytes) -> ImageInfo | None:
    end = len(data)
    pos = 2  # past SOI
    orientation = 1
    for _ in range(MAX_JPEG_SEGMENTS):
        if pos >= end or data[pos] != 0xFF:
            return None
        fill = 0  # a marker may be preceded by any number of 0xFF fill bytes: allow a few
        while pos + 1 < end and data[pos + 1] == 0xFF:
            pos += 1
            fill += 1
            if fill > MAX_JPEG_FILL:
                return None
        if pos + 1 >= end:
            return None
        marker = data[pos + 1]
        pos += 2
        if marker in _STANDALONE:
            continue
        if marker in (_EOI, _SOS, 0x00):  # no frame header before the image data: give up
            return None
        if pos + 2 > end:
            return None
        (length,) = struct.unpack_from(">H", data, pos)
        if length < 2 or (pos + length > end and marker not in _SOF):
            return None
        if marker in _SOF:
            # length, precision (1), height (2), width (2)
            if length < 7 or pos + 7 > end:
                return None
            height, width = struct.unpack_from(">HH", data, pos + 3)
            return _info(JPEG, width, height, orientation)
        if marker == _APP1 and orientation == 1:
            orientation = _exif_orientation(data[pos + 2 : pos + length])
        pos += length
    return None


def sniff(data: bytes) -> ImageInfo | None:
    """The image format and size of ``data`` from its first bytes, or None if not a readable image.

    Recognises PNG (IHDR), JPEG (first SOFn frame header, plus EXIF Orientation),
    GIF (logical screen) and WebP (VP8, VP8L, VP8X). A prefix of the file is
    enough as long as it holds those headers. Never raises on any input.
    """
    try:
        if data.startswith(b"\x89PNG\r\n\x1a\n"):
            return _png(data)
        if data.startswith(b"\xff\xd8\xff"):
            return _jpeg(data)
        if data.startswith((b"GIF87a", b"GIF89a")):
            return _gif(data)
        if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
            return _webp(data)
    except (struct.error, IndexError, ValueError):  # pragma: no cover - the readers check bounds first
        return None
    return None


# --- data: URLs ---------------------------------------------------------------------------------

_HEADER_LIMIT = 1024  # "data:" media type and parameters before the comma
# Decoded prefixes tried in turn: most headers sit in the first KB, a JPEG's frame
# header can follow tens of KB of EXIF/ICC data; past the last step we give up.
_STEPS = (4 * 1024, 96 * 1024, 1024 * 1024)
_NOT_B64 = re.compile(r"[^A-Za-z0-9+/]")
_URLSAFE = str.maketrans("-_", "+/")


def _b64_prefix(text: str, whole: bool) -> bytes:
    body = _NOT_B64.sub("", text.translate(_URLSAFE).split("=", 1)[0])
    body = body[: len(body) - len(body) % 4] if not whole or len(body) % 4 == 1 else body
    body += "=" * (-len(body) % 4)
    try:
        return binascii.a2b_base64(body)
    except (binascii.Error, ValueError):
        return b""


def _percent_prefix(text: str, whole: bool) -> bytes:
    if not whole:
        cut = text.rfind("%", max(0, len(text) - 2))
        if cut != -1:  # do not split an escape
            text = text[:cut]
    return unquote_to_bytes(text)


def from_data_url(url: str) -> ImageInfo | None:
    """The image in a ``data:`` URL (base64 or percent-encoded), or None.

    Only a prefix of the payload is decoded, growing while the image's headers
    lie further in. The declared media type is not trusted: the bytes decide.
    """
    if not isinstance(url, str) or url[:5].lower() != "data:":
        return None
    comma = url.find(",", 5, _HEADER_LIMIT)
    if comma == -1:
        return None
    is_base64 = url[5:comma].lower().rstrip().endswith(";base64")
    payload_at = comma + 1
    total = len(url) - payload_at
    for step in _STEPS:
        chars = step * 4 // 3 + 4 if is_base64 else step * 3
        whole = chars >= total
        text = url[payload_at : payload_at + chars]
        data = _b64_prefix(text, whole) if is_base64 else _percent_prefix(text, whole)
        info = sniff(data)
        if info is not None or whole or not data.startswith(b"\xff\xd8\xff"):
            return info  # only a JPEG's frame header can lie past the first few KB
    return None
