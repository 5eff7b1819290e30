"""The contract suite runs every test once per storage target (``storage_targets.TARGET_NAMES``).

Adding a target means adding it to ``TARGET_NAMES`` and ``open_target``; no test changes.
"""

from __future__ import annotations

import pytest

from tests.support.storage_targets import TargetHarness, storage_harness  # noqa: F401 - fixture


@pytest.fixture
def harness(storage_harness: TargetHarness) -> TargetHarness:  # noqa: F811 - fixture use
    """The target under test (parametrized over every target)."""
    return storage_harness
