"""The README's examples run, as a user would paste them into their own test suite."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

README = Path(__file__).resolve().parent.parent / "README.md"
EXAMPLE = re.compile(r"<!-- readme-test: (?P<name>\w+) -->\n```python\n(?P<code>.*?)```", re.DOTALL)
EXAMPLES = {m.group("name"): m.group("code") for m in EXAMPLE.finditer(README.read_text(encoding="utf-8"))}


def test_readme_has_the_examples() -> None:
    assert set(EXAMPLES) == {
        "mock_sync",
        "mock_async",
        "clock",
        "fault",
        "ledger",
        "server",
        "verify",
        "strict",
        "seed",
        "respond",
    }


def test_examples_pass(pytester: pytest.Pytester) -> None:
    """All examples in one pytest session of their own (each is a separate test file there)."""
    pytester.makepyfile(**{f"test_{name}": code for name, code in EXAMPLES.items()})
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "-v")
    for name in EXAMPLES:
        result.stdout.fnmatch_lines([f"test_{name}.py::* PASSED*"])
    result.assert_outcomes(passed=len(EXAMPLES))
