"""Session-wide test configuration shared by every area of the suite."""

from __future__ import annotations

import os
import shutil

import pytest

# One moto server per session, shared by the contract and export suites (reset per test).
from tests.support.storage_targets import moto_s3  # noqa: F401 - fixture


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say up front whether the Node.js client conformance tests can run here."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node and npm:
        return [f"Node.js clients: node at {node}, npm at {npm}"]
    where = "CI=true: they will FAIL" if os.environ.get("CI") == "true" else "they will be SKIPPED"
    return [f"NOTICE: node/npm not found; the Node.js client conformance tests ({where})"]
