"""The examples of the README and of docs/*.md run, as a user would paste them into their own test suite."""

from __future__ import annotations

import pytest

from .docs_examples import EXAMPLES, PAGES

pytest_plugins = ["pytester"]


def test_readme_has_the_examples() -> None:
    assert PAGES == {
        "mock_sync": "README.md",
        "mock_async": "README.md",
        "clock": "README.md",
        "fault": "README.md",
        "ledger": "README.md",
        "server": "README.md",
        "verify": "docs/control-plane.md",
        "seed": "docs/control-plane.md",
        "respond": "docs/control-plane.md",
        "strict": "docs/python-api.md",
    }


def test_examples_pass(pytester: pytest.Pytester) -> None:
    """All examples in one pytest session of their own (each is a separate test file there)."""
    pytester.makepyfile(**{f"test_{name}": code for name, code in EXAMPLES.items()})
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "-v")
    for name in EXAMPLES:
        result.stdout.fnmatch_lines([f"test_{name}.py::* PASSED*"])
    result.assert_outcomes(passed=len(EXAMPLES))
