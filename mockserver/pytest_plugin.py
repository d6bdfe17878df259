"""pytest fixtures for testing clients of the provider's API (registered through ``pytest11``).

``apimart_mock``: every httpx call (sync or async) to ``https://api.apimart.ai``
is answered in-process by the fake; nothing leaves the process. Configure it
with ``@pytest.mark.apimart(task_seconds=10, base_url="https://…", …)`` (any
setting of ``mockserver serve``) or, indirectly, with a dict parameter.

``apimart_server``: the fake under uvicorn on a free loopback port, for any
client (requests, aiohttp, curl, a subprocess). Its process lives for the
session by default (ini ``apimart_server_scope = function`` for one per test);
its state is reset and its clock frozen before every test. Server flags come
from ini ``apimart_server_args`` (default ``--task-seconds 0``).

Both yield a ``MockControl``: ``.base_url``, ``.clock``, ``.faults``,
``.journal``, ``.ledger``, ``.reset()``, ``.task(id)``.

Loading this plugin imports nothing but pytest: every pytest run of every project
that installs the package pays for it. The fake itself is imported by the fixtures.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

import pytest

if TYPE_CHECKING:
    from .testing import MockControl


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("apimart_server_scope", "scope of the apimart_server process: session (default) or function")
    parser.addini("apimart_server_args", "flags of `mockserver serve` for apimart_server", default="--task-seconds 0")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "apimart(**settings): settings of the apimart_mock fake (base_url=, task_seconds=, …)"
    )


@pytest.fixture
def apimart_mock(request: pytest.FixtureRequest) -> Iterator[MockControl]:
    from .testing import InProcessFake

    options: dict[str, Any] = {}
    marker = request.node.get_closest_marker("apimart")
    if marker is not None:
        options.update(marker.kwargs)
    options.update(getattr(request, "param", None) or {})
    with InProcessFake(**options) as control:
        yield control


Scope = Literal["session", "package", "module", "class", "function"]
SCOPES: tuple[Scope, ...] = ("session", "package", "module", "class", "function")


def _server_scope(fixture_name: str, config: pytest.Config) -> Scope:
    wanted = str(config.getini("apimart_server_scope") or "session")
    for scope in SCOPES:
        if scope == wanted:
            return scope
    raise pytest.UsageError(f"apimart_server_scope must be a pytest scope, not {wanted!r}")


@pytest.fixture(scope=_server_scope)
def apimart_server_process(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MockControl]:
    from .testing import RunningServer

    args = shlex.split(str(request.config.getini("apimart_server_args")))
    log = tmp_path_factory.mktemp("apimart_server") / "server.log"
    with RunningServer(args, log=log) as control:
        yield control


@pytest.fixture
def apimart_server(apimart_server_process: MockControl) -> MockControl:
    control = apimart_server_process
    control.reset()
    control.clock.freeze()
    return control
