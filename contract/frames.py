"""The images the suite sends, made here (no file, no network): valid PNGs of a chosen size.

A size probe must be refused for its size alone, so the oversized frames and
uploads are real PNGs, padded with an ancillary chunk that decoders skip.
"""

from __future__ import annotations

import base64
import struct
import zlib
from functools import lru_cache

PNG = "image/png"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def tiny_png(size: int = 16) -> bytes:
    """A valid PNG of ``size``×``size`` grey pixels."""
    rows = b"".join(b"\x00" + b"\x80" * size for _ in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows)) + _chunk(b"IEND", b"")


@lru_cache(maxsize=4)
def padded_png(total: int) -> bytes:
    """The tiny PNG grown to exactly ``total`` bytes by a private ancillary chunk (``paDd``) before IEND."""
    png = tiny_png()
    end = _chunk(b"IEND", b"")
    head = png[: -len(end)]
    padding = total - len(head) - len(end) - 12
    if padding < 0:
        raise ValueError(f"a padded PNG is at least {len(png) + 12} bytes")
    return head + _chunk(b"paDd", b"\x00" * padding) + end


def data_url(data: bytes, media_type: str = PNG) -> str:
    return f"data:{media_type};base64," + base64.b64encode(data).decode()


DEFAULT_FRAME = data_url(tiny_png())
