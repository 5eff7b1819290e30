"""Retrying a storage request: jittered exponential backoff."""

from __future__ import annotations

import random


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter: about ``base * 2**attempt``, never above ``cap``."""
    return min(cap, base * 2**attempt) * (0.5 + random.random() / 2)  # jitter
