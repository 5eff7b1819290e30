"""The layout's rules are enforced: import-linter fails on a wrong-way import, the CLI is plain.

import-linter runs on a scratch copy of the three packages (the working tree is never touched),
first as it is and then with one wrong-way import planted per contract in pyproject.toml.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "plugins", "fake_manta")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the packages and pyproject.toml; each test plants into a copy of its own."""
    base = tmp_path_factory.mktemp("layout")
    for package in PACKAGES:
        skip = shutil.ignore_patterns("__pycache__")
        shutil.copytree(ROOT / package, base / package, ignore=skip)
    shutil.copy(ROOT / "pyproject.toml", base / "pyproject.toml")
    return base


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` with ``tree`` first on the path, so it reads the copy, not the checkout."""
    code = "import sys; from importlinter.cli import lint_imports_command; lint_imports_command()"
    return subprocess.run(
        [sys.executable, "-c", code, "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin", "COLUMNS": "500"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_tree_keeps_every_contract(scratch: Path) -> None:
    result = lint_imports(scratch)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


#: (file to plant in, the import planted, words of the contract it must break)
PLANTS = [
    ("fake_manta/errors.py", "import gateway.errors", "fake_manta stands alone"),
    ("gateway/errors.py", "import gateway.server.app", "The contract modules"),
    ("gateway/plugin_kit/config.py", "import plugins.storage", "The contract modules"),
    ("gateway/storage.py", "import fake_manta", "The contract modules"),
    ("gateway/server/auth.py", "import gateway.cli.main", "The host (gateway.server)"),
    ("gateway/server/app.py", "import plugins.actions.export", "The host (gateway.server)"),
    ("plugins/actions/export/paths.py", "import gateway.server.appkeys", "Plugins import only"),
    ("plugins/catalog/embedded/__init__.py", "import fake_manta", "Plugins import only"),
    ("plugins/actions/export/paths.py", "import plugins.catalog.embedded", "plugin families"),
    ("plugins/storage/manta/__init__.py", "import plugins.storage.s3", "storage plugins are"),
]


@pytest.mark.parametrize(("where", "statement", "contract"), PLANTS)
def test_a_wrong_way_import_breaks_the_lint(
    scratch: Path, tmp_path: Path, where: str, statement: str, contract: str
) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(scratch, tree)
    target = tree / where
    # Inside a function: imports there count as much as at the top of a module.
    target.write_text(target.read_text() + f"\n\ndef _planted() -> None:\n    {statement}\n")
    result = lint_imports(tree)
    assert result.returncode != 0, result.stdout
    broken = [line for line in result.stdout.splitlines() if line.rstrip().endswith("BROKEN")]
    assert any(contract in line for line in broken), result.stdout


def _calls(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute):
                names.append(func.attr)
            elif isinstance(func, ast.Name):
                names.append(func.id)
    return names


def test_subcommands_are_imported_plainly() -> None:
    """No command module is loaded by a name in a string; ``main`` imports every one of them."""
    cli = ROOT / "gateway" / "cli"
    for path in sorted(cli.glob("*.py")):
        calls = _calls(ast.parse(path.read_text()))
        assert "import_module" not in calls and "__import__" not in calls, path
    main = ast.parse((cli / "main.py").read_text())
    imported = {
        alias.name
        for node in main.body
        if isinstance(node, ast.ImportFrom) and node.module == "gateway.cli"
        for alias in node.names
    }
    registering = {
        path.stem
        for path in cli.glob("*.py")
        if path.stem not in ("__init__", "main") and "def register(" in path.read_text()
    }
    assert registering and registering <= imported, (registering, imported)
