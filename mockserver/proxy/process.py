"""``mockserver proxy`` in a child process on a free loopback port (for tests and benchmarks)."""

from __future__ import annotations

import sys

from ..testing.process import ServerProcess


class ProxyProcess(ServerProcess):
    """``mockserver proxy --upstream URL …`` as a context manager, ready when it answers
    ``GET /openapi.json`` (served by the proxy itself, whatever the upstream)."""

    def command(self) -> list[str]:
        return [sys.executable, "-m", "mockserver", "proxy", "--host", self.host, "--port", str(self.port), *self.args]
