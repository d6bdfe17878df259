"""The pytest entry point of the ``apimart-mockserver`` distribution, and its name-clash check.

The import package ``mockserver`` is also what MockServer's Python client
(``mockserver-client``) installs, with a pytest plugin at the same module path:
with both in one environment their files overwrite each other. This module lives
outside that package, so it can say so in one sentence instead of a traceback.
It imports nothing heavy: the fixtures come from ``mockserver.pytest_plugin``.
"""

from __future__ import annotations

from importlib import metadata
from importlib.util import find_spec
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

DISTRIBUTION = "apimart-mockserver"
CLASHING = ("mockserver-client",)


def clash() -> str | None:
    """One sentence naming the clash, or None when ``mockserver`` is ours and nothing overwrites it."""
    spec = find_spec("mockserver")
    ours = False
    if spec is not None and spec.origin:
        with open(spec.origin, encoding="utf-8", errors="replace") as init:
            ours = f'__distribution__ = "{DISTRIBUTION}"' in init.read()
    for name in CLASHING:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        return (
            f"{DISTRIBUTION}: the distribution {name} {version} (MockServer's Python client) is installed in this "
            f"environment and also installs the Python package 'mockserver', so the two overwrite each other's "
            f"files; uninstall one (pip uninstall {name}) or keep them in separate virtual environments."
        )
    if not ours:
        where = spec.origin if spec is not None else "nowhere"
        return (
            f"{DISTRIBUTION}: the Python package 'mockserver' found at {where} is not ours; reinstall "
            f'{DISTRIBUTION} (pip install --force-reinstall "{DISTRIBUTION}[testing]") in a clean environment.'
        )
    return None


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    """Fail the pytest run at once, with the sentence, when the package is not ours; else load the
    fixtures (registering the plugin replays this hook for it, so its ini options are added too)."""
    problem = clash()
    if problem is not None:
        import pytest

        raise pytest.UsageError(problem)
    from mockserver import pytest_plugin

    if not pluginmanager.is_registered(pytest_plugin):
        pluginmanager.register(pytest_plugin, "mockserver.pytest_plugin")
