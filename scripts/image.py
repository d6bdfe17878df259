"""Build the container image from the repository's Dockerfile, with Docker or, where none runs, podman.

`make image` calls `python scripts/image.py build`; the image test uses the same functions.
With a Docker engine the build is the README's `docker build -t mockserver .` on the official
base. Without one (these machines), podman builds it on a base made locally with debootstrap,
since no image registry may be reachable: the base is made once and kept in podman's storage.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
TAG = "mockserver"
LOCAL_BASE = "localhost/mockserver-base:bookworm"
CONF = Path(tempfile.gettempdir()) / "mockserver-containers.conf"
# What podman needs on a machine without systemd or settable ulimits.
CONF_TEXT = '[containers]\ndefault_ulimits = []\n\n[engine]\ncgroup_manager = "cgroupfs"\n'
PACKAGES = ["podman", "runc", "debootstrap"]
VENV_PATH = "/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def say(text: str) -> None:
    """Progress on stderr, so long steps show what they are doing."""
    print(f"== {text}", file=sys.stderr, flush=True)


def docker_runs() -> bool:
    """Whether a Docker engine answers here (then the official base is used)."""
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


def ensure_podman() -> None:
    """Install podman, runc and debootstrap from the Debian packages when missing and root."""
    if all(shutil.which(name) for name in ("podman", "runc", "debootstrap")):
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise SystemExit(
            "building the image needs podman, runc and debootstrap (apt-get install podman runc debootstrap)"
        )
    say("installing podman, runc and debootstrap from the Debian packages")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *PACKAGES], check=True, env=env, stdout=subprocess.DEVNULL)


def podman(
    *args: str, check: bool = True, capture: bool = False, stdin: IO[bytes] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run podman with runc and this machine's containers.conf."""
    CONF.write_text(CONF_TEXT)
    env = {**os.environ, "CONTAINERS_CONF": str(CONF)}
    return subprocess.run(
        ["podman", "--runtime", "runc", *args],
        check=check,
        env=env,
        capture_output=capture,
        stdin=stdin,
        text=stdin is None,
    )


def debian_mirror() -> str:
    """The Debian mirror apt already uses (debootstrap takes the same)."""
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        text = path.read_text() if path.is_file() else ""
        for line in text.splitlines():
            words = line.split()
            if words[:1] == ["URIs:"] and "debian" in words[1] and "security" not in words[1]:
                return words[1]
            if words[:1] == ["deb"] and "debian" in line and "security" not in line:
                return next(word for word in words[1:] if word.startswith("http"))
    return "http://deb.debian.org/debian"


def make_base() -> str:
    """A python:3.11-slim stand-in made with debootstrap: python and pip on PATH, this machine's CA and pip index."""
    if podman("image", "exists", LOCAL_BASE, check=False).returncode == 0:
        return LOCAL_BASE
    with tempfile.TemporaryDirectory(prefix="mockserver-base-") as tmp:
        root = Path(tmp) / "root"
        say(f"making the base image with debootstrap from {debian_mirror()} (about 90 s, once per machine)")
        include = "--include=python3,python3-venv,python3-pip,ca-certificates,passwd"
        subprocess.run(
            ["debootstrap", "--variant=minbase", include, "bookworm", str(root), debian_mirror()],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        subprocess.run(["chroot", str(root), "python3", "-m", "venv", "/opt/python"], check=True)
        copy_pip_access(root)
        say("importing the base image into podman")
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        podman("import", "--change", f"ENV PATH={VENV_PATH}", "-", LOCAL_BASE, capture=True, stdin=tar.stdout)
        if tar.wait() != 0:
            raise SystemExit("tar of the base image failed")
    return LOCAL_BASE


def copy_pip_access(root: Path) -> None:
    """What pip needs inside to reach the package index from this machine: its CA bundle."""
    bundle = Path(os.environ.get("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt"))
    if bundle.is_file():
        target = root / "etc/ssl/certs/mockserver-ca.crt"
        shutil.copyfile(bundle, target)
        (root / "etc/pip.conf").write_text(f"[global]\ncert = /{target.relative_to(root)}\n")


def build(tag: str = TAG) -> str:
    """Build the repository's Dockerfile as `tag`, and return the tool that holds it."""
    if docker_runs():
        say(f"docker build -t {tag} .")
        subprocess.run(["docker", "build", "-t", tag, str(ROOT)], check=True)
        return "docker"
    ensure_podman()
    base = make_base()
    say(f"podman build -t {tag} on {base}")
    podman("build", "--network", "host", "--format", "docker", "--build-arg", f"BASE={base}", "-t", tag, str(ROOT))
    return "podman"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["build"])
    parser.add_argument("--tag", default=TAG)
    args = parser.parse_args()
    build(args.tag)


if __name__ == "__main__":
    main()
