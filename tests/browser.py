"""Drive the dashboard in a real Chromium: Playwright for Python on the system's browser.

Playwright's own browser downloads are never used (``playwright install`` is not run): the
browser is the distribution's ``chromium`` (Debian: ``apt-get install chromium``), found on
``MOCKSERVER_CHROMIUM``, then the usual paths, then ``PATH``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
)
CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
# `make screenshots` (MOCKSERVER_SCREENSHOTS=docs/screenshots) refreshes the README's pictures;
# an ordinary run writes them beside the other temporary files, leaving the work tree clean.
SCREENSHOTS = Path(os.environ.get("MOCKSERVER_SCREENSHOTS") or Path(tempfile.gettempdir()) / "mockserver-screenshots")
VIEWPORT = {"width": 1400, "height": 900}


def chromium_path() -> str | None:
    """The browser binary, or None when this machine has none."""
    explicit = os.environ.get("MOCKSERVER_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else None
    for candidate in CANDIDATES:
        if Path(candidate).exists():
            return candidate
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def why_no_browser() -> str | None:
    """A reason to skip browser tests (no browser binary), or None when they can run.

    A missing ``playwright`` package is no reason to skip: it is a dev dependency, and the
    tests fail on its import instead of hiding a broken set-up.
    """
    if chromium_path() is None:
        return "no Chromium binary (apt-get install chromium, or set MOCKSERVER_CHROMIUM to one)"
    return None


@contextmanager
def browser() -> Iterator[Browser]:
    """One headless Chromium for as long as the block runs."""
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    if path is None:
        raise RuntimeError(why_no_browser() or "no browser")
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=path, args=list(CHROMIUM_ARGS), headless=True)
        try:
            yield instance
        finally:
            instance.close()


@contextmanager
def page(instance: Browser, **options: Any) -> Iterator[Page]:
    """A fresh page (its own context: no storage shared with other tests); console errors are kept."""
    context = instance.new_context(viewport=VIEWPORT, **options)  # type: ignore[arg-type]
    tab = context.new_page()
    tab.set_default_timeout(10_000)
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.errors = errors  # type: ignore[attr-defined]
    try:
        yield tab
    finally:
        context.close()


def screenshot(tab: Page, name: str) -> Path:
    """<name>.png of the whole page, in SCREENSHOTS."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    target = SCREENSHOTS / f"{name}.png"
    tab.screenshot(path=str(target), full_page=True)
    return target
