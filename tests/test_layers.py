"""The layers design.md promises, checked: a module may import only what its layer allows.

| layer | may import |
|---|---|
| ``core/`` | the standard library, a few small pure libraries, and ``core/`` |
| ``store/`` | the above, ``redis`` and ``hiredis``, and ``core/`` |
| ``service.py`` | ``core/``, ``store/``, ``settings`` |
| ``web/`` | Starlette, ``core/``, ``service``, ``settings``; never a store, never httpx |
| ``proxy/`` | httpx, Starlette, uvicorn, ``core/``; never the service or a store |
| ``testing/``, ``cli``, ``pytest_plugin`` | anything |

Every import counts, wherever it stands (inside functions and ``TYPE_CHECKING`` blocks too).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mockserver"
PURE_LIBRARIES = {"yaml", "orjson", "ulid", "jsonschema_rs"}


def imports_of(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports."""
    module = "mockserver." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    package = package.removesuffix(".__init__")
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base)
                target = f"{prefix}.{node.module}" if node.module else prefix
                if node.module:
                    found.add(target)
                else:
                    found.update(f"{target}.{alias.name}" for alias in node.names)
            elif node.module:
                found.add(node.module)
    return found


def allowed(layer: str, name: str) -> bool:
    top = name.split(".")[0]
    if top != "mockserver":
        if top in sys.stdlib_module_names or top == "__future__":
            return True
        if layer == "core":
            return top in PURE_LIBRARIES
        if layer == "store":
            return top in PURE_LIBRARIES or top in ("redis", "hiredis")
        if layer == "service":
            return top in PURE_LIBRARIES
        if layer == "web":
            return top in PURE_LIBRARIES or top == "starlette"
        if layer == "proxy":
            return top in PURE_LIBRARIES or top in ("httpx", "starlette", "uvicorn")
        return True
    inner = name.split(".")[1] if "." in name else ""
    return {
        "core": inner == "core",
        "store": inner in ("core", "store"),
        "service": inner in ("core", "store", "settings"),
        "web": inner in ("core", "service", "settings", "web"),
        "proxy": inner in ("core", "proxy") or name == "mockserver.testing.process",
    }.get(layer, True)


def layer_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    if rel.parts[0] in ("core", "store", "web", "testing", "proxy"):
        return rel.parts[0]
    return "service" if rel.name == "service.py" else "top"


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_module_keeps_its_layer(path: Path) -> None:
    layer = layer_of(path)
    wrong = sorted(name for name in imports_of(path) if not allowed(layer, name))
    assert not wrong, f"{path.relative_to(PACKAGE)} ({layer}/) must not import {', '.join(wrong)}"


def test_the_check_would_catch_a_reach_upward(tmp_path: Path) -> None:
    assert not allowed("core", "starlette.requests")
    assert not allowed("core", "httpx")
    assert not allowed("core", "mockserver.store.memory")
    assert not allowed("web", "mockserver.store")
    assert not allowed("web", "mockserver.store.sqlite")
    assert not allowed("web", "httpx")
    assert not allowed("service", "starlette.responses")
    assert not allowed("proxy", "mockserver.store")
    assert not allowed("proxy", "mockserver.service")
    assert allowed("web", "mockserver.service")
    assert allowed("core", "mockserver.core.records")


def test_relative_imports_are_resolved() -> None:
    names = imports_of(PACKAGE / "web" / "app.py")
    assert "mockserver.service" in names
    assert "mockserver.core.spec" in names
