"""Housekeeping: the license and its metadata, ``py.typed``, ``.gitignore``, self-contained docs."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "plugins", "fake_manta")
DOCS = [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_license_is_the_mpl_2_0_with_spdx_metadata() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("Mozilla Public License Version 2.0\n")
    assert 'Exhibit B - "Incompatible With Secondary Licenses" Notice' in text
    project = pyproject()["project"]
    assert isinstance(project, dict)
    assert project["license"] == "MPL-2.0"  # an SPDX expression (PEP 639)
    assert project["license-files"] == ["LICENSE"]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_is_marked_typed(package: str) -> None:
    assert (ROOT / package / "py.typed").is_file()
    tool = pyproject()["tool"]
    assert isinstance(tool, dict)
    assert "py.typed" in tool["setuptools"]["package-data"]["*"]


def test_gitignore_ignores_a_venv_file_too() -> None:
    """``.venv`` without a trailing ``/``: a virtualenv directory, or a file of that name."""
    lines = (ROOT / ".gitignore").read_text().splitlines()
    assert ".venv" in lines
    if shutil.which("git") and (ROOT / ".git").exists():
        result = subprocess.run(
            ["git", "check-ignore", "--no-index", "-q", ".venv"], cwd=ROOT, check=False
        )
        assert result.returncode == 0


#: What a doc may not cite: notes that live outside this repository.
OUTSIDE = re.compile(r"\.\./shared|shared/reference|reference/[\w-]+\.md|manta-protocol\.md|§")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_cite_only_this_repository_or_public_urls(doc: Path) -> None:
    text = doc.read_text()
    assert not OUTSIDE.search(text), OUTSIDE.search(text)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"https?://", target) or target.startswith("#"):
            continue
        path = (doc.parent / target.split("#")[0]).resolve()
        assert path.is_relative_to(ROOT), f"{doc.name} links outside the repository: {target}"
        assert path.exists(), f"{doc.name} links to a missing file: {target}"


def test_readme_says_what_the_tests_and_node_clients_need() -> None:
    text = " ".join((ROOT / "README.md").read_text().split())
    assert "Node.js and npm" in text
    assert "need an existing `~/.ssh`" in text
    assert "bench/cli_startup.py" in text
