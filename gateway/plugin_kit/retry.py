"""Retrying a storage request: jittered exponential backoff around its attempts."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from gateway.storage import ObjectNotFound, StorageError, StorageUnavailable
from gateway.telemetry import events

T = TypeVar("T")


class RetryPolicy(Protocol):
    """How a target retries: its validated config usually is one."""

    @property
    def retries(self) -> int:
        """Retries after the first attempt (``retries + 1`` attempts in all)."""

    @property
    def retry_delay(self) -> float:
        """Base of the backoff, in seconds."""

    @property
    def retry_max_delay(self) -> float:
        """Longest wait between two attempts, in seconds."""


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter: about ``base * 2**attempt``, never above ``cap``."""
    return min(cap, base * 2**attempt) * (0.5 + random.random() / 2)  # jitter


async def with_retries(
    attempt: Callable[[], Awaitable[T | StorageError]],
    policy: RetryPolicy,
    *,
    log: logging.Logger,
    what: str,
    target: str | None = None,
    operation: str | None = None,
) -> T:
    """Await ``attempt()`` until it succeeds, as ``gateway.storage`` asks of every target.

    ``attempt`` returns its result, or the ``StorageError`` that ended it. A
    ``StorageUnavailable`` is tried again after ``backoff_delay``, at most ``policy.retries``
    times, each retry logged at WARNING as ``"<what>: <message>; retry <n> in <delay>s"``; any
    other ``StorageError``, or the last one, is raised. What ``attempt`` raises itself (a body's
    own exception, a cancellation) is final and passes through unchanged.

    With ``target`` (the target's kind, ``manta``) and ``operation`` (``put``, ``head``...),
    each attempt is reported to ``gateway.telemetry.events()``: ``storage_request`` with the
    outcome ``ok`` (an answer: a missing path, ``ObjectNotFound``, is one too), ``retried``
    (followed by ``storage_retry``) or ``error`` (what ``attempt`` raised included, but not a
    cancellation).
    """
    labels = (target, operation) if target is not None and operation is not None else None

    def report(outcome: str) -> None:
        if labels is not None:
            events().storage_request(*labels, outcome)

    retry = 0
    while True:
        try:
            outcome = await attempt()
        except Exception:
            report("error")
            raise
        if not isinstance(outcome, StorageError):
            report("ok")
            return outcome
        if not isinstance(outcome, StorageUnavailable) or retry >= policy.retries:
            report("ok" if isinstance(outcome, ObjectNotFound) else "error")
            raise outcome
        report("retried")
        if labels is not None:
            events().storage_retry(labels[0])
        delay = backoff_delay(retry, policy.retry_delay, policy.retry_max_delay)
        log.warning("%s: %s; retry %d in %.2fs", what, outcome.message, retry + 1, delay)
        retry += 1
        await asyncio.sleep(delay)
