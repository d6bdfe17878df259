"""The user's documentation, README.md and docs/*.md, and the examples in it.

An example is a python block right after a `<!-- readme-test: NAME -->` line, on any page; it is
a test file a user could paste into their own suite. tests/test_readme.py runs them in a pytest
session of their own, tests/test_packaging.py against the installed wheel. A block after
`<!-- container-test: NAME -->` needs the container image: tests/test_testcontainers.py runs it.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def marked(kind: str) -> re.Pattern[str]:
    """A python block after a ``<!-- KIND: NAME -->`` line."""
    return re.compile(rf"<!-- {kind}: (?P<name>\w+) -->\n```python\n(?P<code>.*?)```", re.DOTALL)


EXAMPLE = marked("readme-test")


def pages() -> list[Path]:
    """README.md, then every page under docs/, in name order."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def collect(pattern: re.Pattern[str] = EXAMPLE) -> tuple[dict[str, str], dict[str, str]]:
    """Each example's code, and the page it is on (relative to the repository), by name."""
    code: dict[str, str] = {}
    where: dict[str, str] = {}
    for page in pages():
        relative = page.relative_to(ROOT).as_posix()
        for m in pattern.finditer(page.read_text(encoding="utf-8")):
            name = m.group("name")
            if name in where:
                raise ValueError(f"the example {name!r} is on both {where[name]} and {relative}")
            code[name], where[name] = m.group("code"), relative
    return code, where


EXAMPLES, PAGES = collect()
