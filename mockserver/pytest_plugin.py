"""pytest fixtures for testing clients of the provider's API (registered through ``pytest11``).

``apimart_mock``: every httpx call (sync or async) to ``https://api.apimart.ai``
is answered in-process by the fake; nothing leaves the process. Configure it
with ``@pytest.mark.apimart(task_seconds=10, base_url="https://…", …)`` (any
setting of ``mockserver serve``) or, indirectly, with a dict parameter.

``apimart_server``: the fake under uvicorn on a free loopback port, for any
client (requests, aiohttp, curl, a subprocess). Its process lives for the
session by default (ini ``apimart_server_scope = function`` for one per test);
its state is reset and its clock frozen before every test. Server flags come
from ini ``apimart_server_args`` (default ``--task-seconds 0``), then from the
test's ``@pytest.mark.apimart(...)``: a test whose settings differ gets a server
started with them (one per distinct set of flags, kept for the scope); a setting
the server cannot take (``base_url=``, an unknown name) fails the test, saying why.
With ini ``apimart_server_control_token`` the server requires that control token
and the control object sends it (as it does for ``--control-token`` in the args).

Both yield a ``MockControl``: ``.base_url``, ``.clock``, ``.faults``,
``.journal``, ``.ledger``, ``.responses``, ``.reset()``, ``.task(id)``, …

Three marker options belong to the fixtures rather than the server (each with an ini default):

- ``assert_all_faults_fired`` (ini ``apimart_assert_all_faults_fired``, default true): at
  teardown, every fault rule and canned response added with ``times=N`` must have fired N
  times (rules with a probability below 1 are not checked), or the test errors.
- ``block_network`` (ini ``apimart_block_network``, default false): an httpx request to a host
  that is neither the fake's base URL host nor loopback raises ``mockserver.NetworkBlocked``
  (an ``httpx.ConnectError``), and the test errors at teardown even if the client swallowed it.
  A request another respx router answers or passes through on purpose is that router's.
- ``snapshot="file.json"``: the test starts from that state (``GET /__mock__/state``); a
  relative path is read from the test file's directory.

Loading this plugin imports nothing but pytest: every pytest run of every project
that installs the package pays for it. The fake itself is imported by the fixtures.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import pytest

if TYPE_CHECKING:
    from .testing import MockControl


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("apimart_server_scope", "scope of the apimart_server process: session (default) or function")
    parser.addini("apimart_server_args", "flags of `mockserver serve` for apimart_server", default="--task-seconds 0")
    parser.addini(
        "apimart_server_control_token",
        "control token apimart_server's server requires and its control object sends (--control-token)",
        default="",
    )
    parser.addini(
        "apimart_assert_all_faults_fired",
        "at teardown, fail a test whose fault rules or canned responses added with times=N did not fire N times",
        type="bool",
        default=True,
    )
    parser.addini(
        "apimart_block_network",
        "httpx requests to hosts other than the fake's and loopback raise NetworkBlocked instead of going out",
        type="bool",
        default=False,
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "apimart(**settings): settings of the apimart_mock fake (base_url=, task_seconds=, …) and of "
        "apimart_server's server (any `mockserver serve` setting; a server per distinct set); and the "
        "fixtures' own assert_all_faults_fired=, block_network=, snapshot=",
    )


CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Note whether the test itself failed: the fixtures' teardown checks then stay quiet."""
    report = yield
    if report.when == "call":
        item.stash[CALL_FAILED] = report.failed
    return report


class FixtureOptions(NamedTuple):
    """What a test asks of the fixtures themselves (not of the server)."""

    assert_all_faults_fired: bool
    block_network: bool
    snapshot: Path | None


def fixture_options(request: pytest.FixtureRequest, options: dict[str, Any]) -> FixtureOptions:
    """Take the fixtures' own options out of a marker's settings; the ini gives their defaults."""
    config = request.config
    snapshot = options.pop("snapshot", None)
    path = None
    if snapshot is not None:
        path = Path(snapshot)
        if not path.is_absolute():
            path = Path(request.node.path).parent / path
    return FixtureOptions(
        bool(options.pop("assert_all_faults_fired", config.getini("apimart_assert_all_faults_fired"))),
        bool(options.pop("block_network", config.getini("apimart_block_network"))),
        path,
    )


Counted = tuple[Callable[[], list[dict[str, Any]]], Callable[[], list[dict[str, Any]]]]


def _teardown_checks(
    request: pytest.FixtureRequest, control: MockControl, wanted: FixtureOptions, counted: Counted | None = None
) -> None:
    """Fail the test (at teardown) for requests block_network refused, and for fault rules and canned
    responses added with times=N that did not fire N times; not when the test failed already.
    ``counted``: where to read those two lists (in-process: from the service, without a request)."""
    if request.node.stash.get(CALL_FAILED, False):
        return
    problems = []
    if control.blocked:
        problems.append(
            "block_network kept these requests from leaving (the client may have swallowed the error; a test "
            "that provokes one on purpose clears apimart_mock.blocked):\n"
            + "\n".join(f"  {line}" for line in control.blocked)
        )
    if wanted.assert_all_faults_fired:
        rules, responses = counted or (control.faults.unfired, control.responses.unused)
        for rule in rules():
            problems.append(
                f"the fault rule {rule['scenario']} on {rule['endpoint']} ({rule['id']}) was added with "
                f"times={rule['times']} but fired {rule.get('fired', 0)} time(s)"
            )
        for canned in responses():
            problems.append(
                f"the canned response for {canned.get('method') or 'any method'} {canned['path']} ({canned['id']}) "
                f"was added with times={canned['times']} but answered {canned.get('fired', 0)} time(s)"
            )
    if problems:
        hint = " (@pytest.mark.apimart(assert_all_faults_fired=False) turns the fire count check off)"
        pytest.fail("\n".join(problems) + (hint if wanted.assert_all_faults_fired else ""), pytrace=False)


@pytest.fixture
def apimart_mock(request: pytest.FixtureRequest) -> Iterator[MockControl]:
    from .testing import InProcessFake

    options: dict[str, Any] = {}
    marker = request.node.get_closest_marker("apimart")
    if marker is not None:
        options.update(marker.kwargs)
    options.update(getattr(request, "param", None) or {})
    wanted = fixture_options(request, options)
    refuse_unknown(options)
    fake = InProcessFake(block_network=wanted.block_network, **options)
    with fake as control:
        if wanted.snapshot is not None:
            control.load_state(wanted.snapshot)
        yield control
        _teardown_checks(request, control, wanted, fake.short_counts)


SECRET_FLAGS = ("--api-keys", "--shared-accounts", "--control-token")  # their values are keys: never shown


def shown_args(args: Sequence[str]) -> list[str]:
    """Command-line arguments as a message may show them: the values of ``SECRET_FLAGS`` hidden."""
    shown: list[str] = []
    for arg in args:
        flag = arg.split("=", 1)[0]
        if flag in SECRET_FLAGS and "=" in arg:
            shown.append(f"{flag}=…")
        elif shown and shown[-1] in SECRET_FLAGS:
            shown.append("…")
        else:
            shown.append(arg)
    return shown


Scope = Literal["session", "package", "module", "class", "function"]
SCOPES: tuple[Scope, ...] = ("session", "package", "module", "class", "function")


def _server_scope(fixture_name: str, config: pytest.Config) -> Scope:
    wanted = str(config.getini("apimart_server_scope") or "session")
    for scope in SCOPES:
        if scope == wanted:
            return scope
    raise pytest.UsageError(f"apimart_server_scope must be a pytest scope, not {wanted!r}")


class _ServerPool:
    """Running servers by their flags: one per set of flags, started on first use."""

    def __init__(self, config: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.config = config
        self.tmp_path_factory = tmp_path_factory
        self.base_args = shlex.split(str(config.getini("apimart_server_args")))
        token = str(config.getini("apimart_server_control_token") or "").strip()
        if token and "--control-token" not in " ".join(self.base_args):
            self.base_args += ["--control-token", token]
        self._servers: dict[tuple[str, ...], tuple[Any, MockControl]] = {}

    def get(self, extra: list[str]) -> MockControl:
        args = tuple(self.base_args + extra)
        found = self._servers.get(args)
        if found is None:
            from .testing import RunningServer

            log = self.tmp_path_factory.mktemp("apimart_server") / "server.log"
            server = RunningServer(list(args), log=log)
            try:
                control = server.__enter__()
            except RuntimeError as exc:  # what the server printed is in the message already
                pytest.fail(f"apimart_server could not start with {' '.join(shown_args(args))}: {exc}", pytrace=False)
            found = self._servers[args] = (server, control)
        return found[1]

    def close(self) -> None:
        servers, self._servers = list(self._servers.values()), {}
        for server, _ in servers:
            server.__exit__(None, None, None)


# Settings apimart_server cannot take from a marker: the fixture chooses them, or they belong to apimart_mock.
NOT_FOR_SERVER = {
    "base_url": "base_url= names the host apimart_mock intercepts; apimart_server serves on its own loopback "
    "port (read apimart_server.base_url)",
    "host": "apimart_server always listens on 127.0.0.1",
    "port": "apimart_server picks a free port",
    "start": "start= sets apimart_mock's virtual clock; move apimart_server's with apimart_server.clock.set()",
}


def refuse_unknown(kwargs: dict[str, Any]) -> None:
    """Fail the test, naming the known settings, when a marker names a setting the server does not have:
    the same words under apimart_mock and apimart_server."""
    from dataclasses import fields
    from difflib import get_close_matches

    from .settings import Settings

    known = sorted(f.name for f in fields(Settings))
    for name in kwargs:
        if name not in known and name not in NOT_FOR_SERVER:
            close = get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            pytest.fail(
                f"@pytest.mark.apimart({name}=…): there is no setting {name!r}; {hint}(known: {', '.join(known)})",
                pytrace=False,
            )


def marker_flags(kwargs: dict[str, Any]) -> list[str]:
    """``@pytest.mark.apimart(task_seconds=60)`` as ``mockserver serve`` flags (``--task-seconds 60``);
    a setting the server does not have, or one it cannot take from a marker, fails the test loudly."""
    refuse_unknown(kwargs)
    flags: list[str] = []
    for name, value in kwargs.items():
        if name in NOT_FOR_SERVER:
            pytest.fail(
                f"@pytest.mark.apimart({name}=…) cannot apply to apimart_server: {NOT_FOR_SERVER[name]}",
                pytrace=False,
            )
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + name.replace("_", "-"))
        elif value is not None:
            flags += [flag, str(value)]
    return flags


@pytest.fixture(scope=_server_scope)
def apimart_server_pool(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[_ServerPool]:
    """The servers ``apimart_server`` hands out, by flags (ini ``apimart_server_args`` plus a test's
    ``@pytest.mark.apimart(...)`` settings); they live as long as ini ``apimart_server_scope`` says."""
    pool = _ServerPool(request.config, tmp_path_factory)
    yield pool
    pool.close()


@pytest.fixture(scope=_server_scope)
def apimart_server_process(apimart_server_pool: _ServerPool) -> MockControl:
    """The server with the ini's flags alone."""
    return apimart_server_pool.get([])


@pytest.fixture
def apimart_server(request: pytest.FixtureRequest, apimart_server_pool: _ServerPool) -> Iterator[MockControl]:
    """A real server with ini ``apimart_server_args`` and this test's ``@pytest.mark.apimart(...)``
    settings (a server per distinct set of flags, restarted never: cached for the scope), reset
    and with its clock frozen (then loaded from ``snapshot=``, if given)."""
    marker = request.node.get_closest_marker("apimart")
    options = dict(marker.kwargs) if marker is not None else {}
    wanted = fixture_options(request, options)
    extra = marker_flags(options)
    control = apimart_server_pool.get(extra) if extra else request.getfixturevalue("apimart_server_process")
    control.reset()
    control.clock.freeze()
    if wanted.snapshot is not None:
        control.load_state(wanted.snapshot)
    if not wanted.block_network:
        yield control
        _teardown_checks(request, control, wanted)
        return
    from .testing import network_guard

    guard = network_guard(control.base_url)
    control.blocked = guard.blocked
    try:
        with guard:
            yield control
        _teardown_checks(request, control, wanted)
    finally:
        control.blocked = []
