"""Make the media the fake serves: H.264 MP4 clips and PNG images.

Run once, by hand, when the assets must change (needs ffmpeg on PATH):

    python scripts/make_media.py

The outputs are committed under ``mockserver/assets/``; the server only reads them.
Clips: 5 s, 24 fps, H.264 (constrained baseline, yuv420p, moov first), one per
tier (480, 720) × aspect ratio (1:1, 16:9, 9:16, 4:3, 3:4, 3:2, 2:3), sized and
named by ``mockserver/core/clips.py`` (e.g. ``video-480-16x9.mp4`` is 832×464).
Images: four 512×512 PNGs and their 2×2 grid, as an imagine task returns.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from mockserver.core import clips  # noqa: E402

ASSETS = ROOT / "mockserver" / "assets"
CLIPS = {
    clips.clip_name(tier, aspect): clips.dimensions(tier, aspect) for tier in clips.TIERS for aspect in clips.ASPECTS
}
COLOURS = ["0x3a6ea5", "0xc0504d", "0x9bbb59", "0xf79646"]


def run(*args: str) -> None:
    print("+", " ".join(args), flush=True)
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_clip(name: str, width: int, height: int) -> None:
    box = min(width, height) // 4
    scene = (
        f"color=c=0x1d2b3a:s={width}x{height}:r=24:d=5[bg];"
        f"color=c=0xf0c419:s={box}x{box}:r=24:d=5[box];"
        f"color=c=white:s={width}x8:r=24:d=5[bar];"
        "[bg][box]overlay=x='(W-w)*t/5':y='(H-h)/2'[moved];"
        "[moved][bar]overlay=x='-w+w*t/5':y='H-h'"
    )
    run(
        "ffmpeg",
        "-y",
        "-loglevel",
        "error",
        "-filter_complex",
        scene,
        "-c:v",
        "libx264",
        "-profile:v",
        "baseline",
        "-pix_fmt",
        "yuv420p",
        "-preset",
        "veryslow",
        "-crf",
        "40",
        "-g",
        "120",
        "-threads",
        "1",
        "-frames:v",
        "120",
        "-fflags",
        "+bitexact",
        "-flags:v",
        "+bitexact",
        "-movflags",
        "+faststart",
        "-an",
        str(ASSETS / name),
    )


def make_images() -> None:
    for i, colour in enumerate(COLOURS):
        run(
            "ffmpeg",
            "-y",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            f"color=c={colour}:s=512x512:d=1",
            "-frames:v",
            "1",
            str(ASSETS / f"image-{i}.png"),
        )
    inputs = [arg for i in range(4) for arg in ("-i", str(ASSETS / f"image-{i}.png"))]
    run(
        "ffmpeg",
        "-y",
        "-loglevel",
        "error",
        *inputs,
        "-filter_complex",
        "[0][1]hstack[top];[2][3]hstack[bottom];[top][bottom]vstack",
        "-frames:v",
        "1",
        str(ASSETS / "grid.png"),
    )


def main() -> int:
    if shutil.which("ffmpeg") is None:
        print("ffmpeg is needed to make the assets (apt-get install ffmpeg)", file=sys.stderr)
        return 1
    ASSETS.mkdir(parents=True, exist_ok=True)
    for name, (width, height) in CLIPS.items():
        make_clip(name, width, height)
    make_images()
    for path in sorted(ASSETS.iterdir()):
        print(f"{path.name:24} {path.stat().st_size:>8} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
