"""Every relative link of README.md and docs/*.md points at a file of the repository, and at a heading of
that page when it names one; the README links to every page under docs/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .docs_examples import ROOT, pages

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.DOTALL | re.MULTILINE)
CODE_SPAN = re.compile(r"(`+).+?\1")
# [text](target) and ![alt](target), with an optional "title"; text may hold one level of brackets.
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\((?P<target><[^>]*>|[^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(?P<text>.+?)\s*#*\s*$", re.MULTILINE)
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def prose(text: str) -> str:
    """The page without its code blocks and code spans, where brackets are not links."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def links(page: Path) -> list[str]:
    return [m.group("target").strip("<>") for m in LINK.finditer(prose(page.read_text(encoding="utf-8")))]


def anchors(text: str) -> set[str]:
    """The anchors GitHub gives a page's headings: lowercase, punctuation dropped, spaces to hyphens,
    and -1, -2, ... on repeats."""
    seen: dict[str, int] = {}
    found = set()
    for m in HEADING.finditer(FENCE.sub("", text)):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group("text"))  # a link in a heading: its text
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def problem(page: Path, target: str) -> str | None:
    """Why a link of the page does not resolve, or None."""
    path, _, anchor = target.partition("#")
    if path.startswith("/"):
        resolved = (ROOT / path.lstrip("/")).resolve()
    else:
        resolved = (page.parent / path).resolve() if path else page
    if not resolved.is_relative_to(ROOT):
        return f"{target}: outside the repository"
    if not resolved.exists():
        return f"{target}: no such file"
    if anchor and resolved.suffix == ".md" and anchor not in anchors(resolved.read_text(encoding="utf-8")):
        return f"{target}: no heading #{anchor} in {resolved.relative_to(ROOT)}"
    return None


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page: Path) -> None:
    relative = [t for t in links(page) if not SCHEME.match(t)]
    broken = [p for t in relative if (p := problem(page, t))]
    assert not broken, "\n".join(broken)


def test_the_readme_links_every_page() -> None:
    readme = ROOT / "README.md"
    linked = {(readme.parent / t.partition("#")[0]).resolve() for t in links(readme) if not SCHEME.match(t)}
    missing = [p.relative_to(ROOT).as_posix() for p in pages()[1:] if p.resolve() not in linked]
    assert not missing, f"README.md does not link to {missing}"


def test_the_checks_see_links_anchors_and_images(tmp_path: Path) -> None:
    """The checks themselves: a link in code is not a link; a missing file, anchor or picture is found."""
    page = ROOT / "docs" / "x.md"
    text = "# A: b → c\n\n## Two `words`\n\n## Two words\n\n```sh\n# not a heading [x](nowhere.md)\n```\n"
    assert anchors(text) == {"a-b--c", "two-words", "two-words-1"}
    assert problem(page, "evidence.md#prices") is None
    assert problem(page, "../README.md#testing-your-client") is None
    assert problem(page, "screenshots/tasks.png") is None
    assert problem(page, "docs/screenshots/tasks.png") == "docs/screenshots/tasks.png: no such file"
    assert problem(page, "evidence.md#nowhere") == "evidence.md#nowhere: no heading #nowhere in docs/evidence.md"
    assert problem(page, "../../outside.md") == "../../outside.md: outside the repository"
    (tmp_path / "p.md").write_text(text + '`[y](nowhere.md)` [a](#two-words) ![b](<pic.png> "t") [c](https://e.x)\n')
    assert links(tmp_path / "p.md") == ["#two-words", "pic.png", "https://e.x"]
