"""The gateway's log records as ``serve`` writes them (bunyan JSON), captured and parsed back.

Several suites read what the gateway logs: ``logs.configure`` installs the JSON handler on a
string stream, and the fixtures here hand out the parsed records, then restore the root
logger's level and the access logger's as they were.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gateway.server import logs

Records = Callable[[], list[dict[str, Any]]]


def _captured(level: str, *, audit_only: bool = False) -> Iterator[Records]:
    stream = io.StringIO()
    root = logging.getLogger()
    root_level = root.level
    access = logging.getLogger(logs.ACCESS_LOGGER)
    access_level = access.level
    handler = logs.configure(level, "json", stream=stream)

    def records() -> list[dict[str, Any]]:
        handler.flush()  # the lines it still holds (it writes every few milliseconds)
        parsed = [json.loads(line) for line in stream.getvalue().splitlines()]
        return [r for r in parsed if r.get("audit") is True] if audit_only else parsed

    try:
        yield records
    finally:
        root.removeHandler(handler)
        root.setLevel(root_level)
        access.setLevel(access_level)


@pytest.fixture
def bunyan() -> Iterator[Records]:
    """Every record at DEBUG and above, parsed back."""
    yield from _captured("debug")


@pytest.fixture
def audit_records() -> Iterator[Records]:
    """The audit records (logging at INFO, as ``serve`` does by default), parsed back."""
    yield from _captured("info", audit_only=True)
