"""The layers design.md promises, checked: a module may import only what its layer allows.

| layer | may import |
|---|---|
| ``core/`` | the standard library, a few small pure libraries, and ``core/`` |
| ``store/`` | the above, ``redis`` and ``hiredis``, and ``core/`` |
| ``service.py`` | ``core/``, ``store/``, ``settings`` |
| ``control.py``, ``files.py`` | the above and ``service`` (both work on the provider service) |
| ``web/`` | Starlette, ``core/``, ``service``, ``control``, ``settings``; never a store, never httpx |
| ``proxy/`` | httpx, Starlette, uvicorn, ``core/``; never the service or a store |
| ``testing/``, ``cli``, ``pytest_plugin`` | anything |

Every import counts, wherever it stands (inside functions and ``TYPE_CHECKING`` blocks too). The
whole package's import graph has no cycle, and no module reaches another module's private names.
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
        if layer in ("service", "control"):
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
        "control": inner in ("core", "store", "settings", "service"),
        "web": inner in ("core", "service", "control", "files", "settings", "web"),
        "proxy": inner in ("core", "proxy") or name == "mockserver.testing.process",
    }.get(layer, True)


def layer_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    if rel.parts[0] in ("core", "store", "web", "testing", "proxy"):
        return rel.parts[0]
    return {"service.py": "service", "control.py": "control", "files.py": "control"}.get(rel.name, "top")


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
    assert not allowed("service", "mockserver.control")
    assert not allowed("control", "starlette.requests")
    assert not allowed("proxy", "mockserver.store")
    assert not allowed("proxy", "mockserver.service")
    assert allowed("web", "mockserver.service")
    assert allowed("core", "mockserver.core.records")


def test_relative_imports_are_resolved() -> None:
    names = imports_of(PACKAGE / "web" / "app.py")
    assert "mockserver.service" in names
    assert "mockserver.core.spec" in names


def module_name(path: Path) -> str:
    return ("mockserver." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")


def import_graph() -> dict[str, set[str]]:
    """Each module's imports of the package's own modules (a name imported from a module counts as it)."""
    modules = {module_name(p): p for p in MODULES}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for target in imports_of(path):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target not in (name, "mockserver"):
                edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_has_no_cycle() -> None:
    assert cycles(import_graph()) == []


def test_the_cycle_check_finds_one() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_make"}  # public, underscored so as not to clash


def private_reaches(source: str) -> list[str]:
    """``x._name`` on anything but ``self``/``cls`` where the module defines no ``_name`` itself, and
    ``from m import _name``: a reach into another module's private names."""
    tree = ast.parse(source)
    own: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            own.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            own.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            own.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            own.add(node.target.id)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            found += [f"{node.lineno}: from {node.module} import {a.name}" for a in node.names if _private(a.name)]
        elif isinstance(node, ast.Attribute) and _private(node.attr) and node.attr not in NAMEDTUPLE_API:
            mine = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if not mine and node.attr not in own:
                found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_no_module_reaches_another_modules_private_names(path: Path) -> None:
    assert private_reaches(path.read_text()) == []


def test_the_private_check_finds_a_reach() -> None:
    assert private_reaches("import a\nclass C:\n    def f(self): return a.thing._guard") == ["3: a.thing._guard"]
    assert private_reaches("from a import _b") == ["1: from a import _b"]
    assert private_reaches("class C:\n    def f(self, o): o._x = 1; return o._x") == []
    assert private_reaches("def f(t): return t._replace(a=1)") == []
