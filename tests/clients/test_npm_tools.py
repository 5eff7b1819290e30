"""``tests/support/npm_tools.py`` without Node.js: a visible skip locally, a failure under CI=true.

Not marked ``clients``: these run in the default test env, where node may well be missing.
"""

from __future__ import annotations

import pytest

from tests.support.npm_tools import NodeToolchainMissing, ensure_npm_package, in_ci, package_dir


def test_missing_node_skips_with_a_notice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CI", raising=False)
    with pytest.warns(NodeToolchainMissing, match="node and npm are required"), \
            pytest.raises(pytest.skip.Exception):
        ensure_npm_package("manta", "5.4.2")


@pytest.mark.parametrize("value", ["true", "1", "TRUE"])
def test_missing_node_fails_under_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("CI", value)
    assert in_ci()
    with pytest.raises(pytest.fail.Exception, match="CI=true and node and npm are required"):
        ensure_npm_package("manta", "5.4.2")


def test_versions_get_their_own_prefix() -> None:
    assert package_dir("manta", "5.4.2") != package_dir("manta", "5.4.1")
    assert "/" not in package_dir("@scope/pkg", "1.0.0").name
