"""Session-wide test configuration shared by every area of the suite."""

from __future__ import annotations

import os
import shutil

import pytest

import gateway.settings

# One moto server per session, shared by the contract and export suites (reset per test).
from tests.support.log_capture import audit_records, bunyan  # noqa: F401 - fixtures

# The database engines: a session PostgreSQL cluster, a fresh database per test, and the
# ``database`` parameter ({} for SQLite, {"url": ...}) the engine-parametrized suites request.
from tests.support.postgres import (  # noqa: F401 - fixtures
    database,
    postgres_cluster,
    postgres_url,
)
from tests.support.postgres import report_header as postgres_report_header
from tests.support.storage_targets import moto_s3  # noqa: F401 - fixture

# Every gateway the suite starts serves its metrics on a free port, never on the default
# 127.0.0.1:8881: many run at once (in this process, in its children, in other runs on the
# host). In this process through the default; `gateway serve` children through the variable,
# which also stops them at once on SIGTERM (tests/gateway/test_readiness.py tests draining).
gateway.settings.METRICS_LISTEN = "127.0.0.1:0"
os.environ["CLOUDAPI_GATEWAY_METRICS__LISTEN"] = "127.0.0.1:0"
os.environ["CLOUDAPI_GATEWAY_DRAIN_SECONDS"] = "0"


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say up front whether the Node.js client conformance tests can run here."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node and npm:
        return [f"Node.js clients: node at {node}, npm at {npm}", *postgres_report_header()]
    where = "CI=true: they will FAIL" if os.environ.get("CI") == "true" else "they will be SKIPPED"
    return [
        f"NOTICE: node/npm not found; the Node.js client conformance tests ({where})",
        *postgres_report_header(),
    ]


def pytest_configure(config: pytest.Config) -> None:
    """A DEBUG log sink on the root logger for the whole session, and the secrets registry's
    hooks (``tests/support/secrets.py``): the last test proves no secret reached a log."""
    from tests.support import secrets

    secrets.install()


#: The module that must run after every other test (it reads what they all logged).
LAST_MODULE = "tests/zz_secrets/"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run ``tests/zz_secrets`` last, whatever order the rest of the session has."""
    last = [item for item in items if item.nodeid.startswith(LAST_MODULE)]
    if last:
        items[:] = [item for item in items if not item.nodeid.startswith(LAST_MODULE)] + last
