"""``mockserver serve --workers N``: uvicorn's worker supervisor, with a listening socket per worker.

uvicorn's workers accept connections from one socket they share, and the kernel hands each new
connection to whichever worker it wakes first: under a load that opens its connections at once
and keeps them (wrk, a client's connection pool) one worker often gets almost all of them (32
connections of wrk, counted over three runs: 25/7, 1/31, 31/1), and a second worker adds little.
On Linux each worker here gets a socket of its own, bound to the same address with
``SO_REUSEPORT``: the kernel spreads new connections over the sockets by a hash of each
connection's addresses, so every worker gets its share.

Everything else is uvicorn's ``Multiprocess``: start-up, health checks, restarts of a worker that
died (with a new socket), ``SIGHUP``/``SIGTTIN``/``SIGTTOU``. The supervisor closes its copy of
each socket once the worker holding it is started, so a worker's socket closes when the worker
does, and the kernel stops handing it connections. One difference follows: a connection the
kernel had handed to a worker's socket that the worker had not accepted yet when it stopped
(killed, or retired by ``SIGHUP``/``SIGTTOU``) is reset, where on one shared socket another
worker would accept it (unless the machine sets ``net.ipv4.tcp_migrate_req``). Elsewhere (no ``SO_REUSEPORT``: Windows;
macOS, whose ``SO_REUSEPORT`` does not spread connections) uvicorn's shared socket is used.
"""

from __future__ import annotations

import logging
import socket
import sys

from uvicorn import Config
from uvicorn.supervisors.multiprocess import Multiprocess

__all__ = ["BalancedWorkers", "balanced", "own_socket"]


def balanced() -> bool:
    """Whether this system spreads connections over sockets that share an address (Linux)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def own_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` with ``SO_REUSEPORT``, as uvicorn's ``Config.bind_socket``
    binds its shared one otherwise (listened on by the worker)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class BalancedWorkers(Multiprocess):
    """uvicorn's supervisor, each worker started with a socket of its own (``own_socket``)."""

    def __init__(self, config: Config) -> None:
        self._handed: list[socket.socket] = []  # given to workers being started: closed here once they are
        if config.port == 0:  # any free port: one for every worker, found once
            self._handed.append(own_socket(config.host, 0))
            config.port = self._handed[0].getsockname()[1]
            logging.getLogger("uvicorn.error").info("Workers listening on port %d", config.port)
        super().__init__(config, sockets=[])

    def run(self) -> None:
        """uvicorn's; an error out of it (a socket that could not be bound for a worker) stops the
        workers started so far instead of leaving them serving with nobody to stop them."""
        try:
            super().run()
        except BaseException:
            self.should_exit.set()
            self.terminate_all()
            self.join_all()
            raise
        finally:
            self._let_go()

    @property
    def sockets(self) -> list[socket.socket]:
        """Read by uvicorn for each worker it starts: a new socket each time."""
        sock = own_socket(self.config.host, self.config.port)
        self._handed.append(sock)
        return [sock]

    @sockets.setter
    def sockets(self, value: list[socket.socket]) -> None:
        """(uvicorn's ``__init__`` sets the shared sockets: there are none)"""

    def _let_go(self) -> None:
        """The workers started have their copies: the supervisor's are closed."""
        while self._handed:
            self._handed.pop().close()

    # Every place uvicorn starts workers, each followed by closing the supervisor's copies.

    def init_processes(self) -> None:
        try:
            super().init_processes()
        finally:
            self._let_go()

    def keep_subprocess_alive(self) -> None:
        try:
            super().keep_subprocess_alive()
        finally:
            self._let_go()

    def handle_signals(self) -> None:  # SIGHUP restarts every worker, SIGTTIN adds one
        try:
            super().handle_signals()
        finally:
            self._let_go()
