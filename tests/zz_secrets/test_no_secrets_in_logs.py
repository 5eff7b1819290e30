"""The suite's last test: no secret any test made reached a log record of the session.

Every record (the root logger's, at DEBUG, for the whole session, the access log included) is
kept by ``tests/support/secrets.SINK``; every private key the tests made or signed with, and
every signature sent (HTTP Signature and S3 SigV4), is in ``secrets.REGISTRY``. The conftest
runs this module after every other one.
"""

from __future__ import annotations

import pytest

from tests.support import secrets


def test_no_secret_reached_a_log() -> None:
    if not secrets.REGISTRY.counts:
        pytest.skip("no other test ran: there is nothing to look for")
    leaks = list(secrets.REGISTRY.leaks(secrets.SINK.lines))
    shown = "\n".join(f"- {leak.what}: {leak.record}" for leak in leaks[:20])
    assert not leaks, (
        f"{len(leaks)} secrets in {len(secrets.SINK.lines)} log records "
        f"(secrets blanked out):\n{shown}"
    )
