"""Run the fake as a real server in a child process, on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """``mockserver serve`` in a child process; a context manager that starts and stops it.

    ``args`` are extra command-line flags (``["--task-seconds", "0"]``). The
    server is ready when it answers ``GET /openapi.json`` (served even with the
    control plane off).
    """

    def __init__(
        self,
        args: Sequence[str] = (),
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 20.0,
        log: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.args = list(args)
        self.env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None
        self._output: Any = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "mockserver", "serve", "--host", self.host, "--port", str(self.port), *self.args]

    def start(self) -> ServerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOCKSERVER_")}
        env.update(self.env)
        # What it prints goes to the log, or to a file of its own: a server that stops at start says why.
        self._output = open(self.log, "w+b") if self.log else tempfile.TemporaryFile()  # noqa: SIM115 - stop()
        started = time.perf_counter()
        self.process = subprocess.Popen(  # noqa: S603
            self.command(), env=env, stdout=self._output, stderr=subprocess.STDOUT
        )
        deadline = started + self.startup_timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"mockserver exited with {code} before it was ready{self._said()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/openapi.json", timeout=1) as response:  # noqa: S310
                    if response.status == 200:
                        self.startup_seconds = time.perf_counter() - started
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mockserver did not answer on {self.base_url} within {self.startup_timeout} s")

    def _said(self) -> str:
        """The end of what the server printed, for an error message ("" when it printed nothing)."""
        output = self._output
        if output is None:
            return ""
        output.flush()
        output.seek(0)
        text = output.read()[-2000:].decode(errors="replace").strip()
        return f": {text}" if text else ""

    def stop(self) -> str:
        """Stop the server (SIGINT, as Ctrl-C does); return what it printed when a log was kept."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        output, self._output = self._output, None
        if output is not None:
            output.close()
        return self.log.read_text(errors="replace") if self.log and self.log.exists() else ""

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
