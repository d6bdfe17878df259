"""Just enough of an ISO-BMFF (MP4) reader to check the clips the fake serves."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}


def boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of each box between start and end."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise ValueError(f"broken box {kind!r} at {pos}")
        yield kind, pos + header, pos + size
        pos += size


def find(data: bytes, path: list[bytes], start: int = 0, end: int | None = None) -> tuple[int, int]:
    for kind, a, b in boxes(data, start, end):
        if kind == path[0]:
            return (a, b) if len(path) == 1 else find(data, path[1:], a, b)
    raise KeyError(path[0])


@dataclass
class Clip:
    major_brand: str
    codec: str
    width: int
    height: int
    duration: float
    frames: int

    @property
    def fps(self) -> float:
        return self.frames / self.duration


def read_clip(data: bytes) -> Clip:
    a, _ = find(data, [b"ftyp"])
    brand = data[a : a + 4].decode()
    a, _ = find(data, [b"moov", b"mvhd"])
    version = data[a]
    if version == 1:
        timescale, duration = struct.unpack(">IQ", data[a + 20 : a + 32])
    else:
        timescale, duration = struct.unpack(">II", data[a + 12 : a + 20])
    a, _ = find(data, [b"moov", b"trak", b"tkhd"])
    offset = a + (88 if data[a] == 1 else 76)
    width, height = (v >> 16 for v in struct.unpack(">II", data[offset : offset + 8]))
    a, _ = find(data, [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd"])
    codec = data[a + 12 : a + 16].decode()
    a, _ = find(data, [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stts"])
    entries = struct.unpack(">I", data[a + 4 : a + 8])[0]
    frames = sum(struct.unpack(">II", data[a + 8 + 8 * i : a + 16 + 8 * i])[0] for i in range(entries))
    return Clip(brand, codec, width, height, duration / timescale, frames)
