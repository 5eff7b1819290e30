"""One log record per export: what was written where, how fast, with how many retries, and how
it ended. An export that fails is a warning carrying the reason.

The record (logger ``plugins.actions.export``; fields beside the message)::

    export: true, image, manta_path, manifest_path, image_path, storage (the target's kind),
    storage_url, bytes, duration (seconds), throughput (bytes per second), retries,
    outcome ("ok" or "failed"), code (the error code the caller got; null when ok),
    reason (the error's message; failed exports only)

Retries are counted through the contract's events: for the length of the export, the current
listener is wrapped in a ``RetryCounter`` (in the export's own task, so nothing else sees it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from gateway.errors import GatewayError
from gateway.telemetry import Events, events, use_events

log = logging.getLogger(__package__)

T = TypeVar("T")


class RetryCounter(Events):
    """A listener that counts ``storage_retry`` and hands every report on to ``inner``."""

    def __init__(self, inner: Events) -> None:
        self.inner = inner
        self.retries = 0

    def storage_retry(self, target: str) -> None:
        self.retries += 1
        self.inner.storage_retry(target)


def _pass_on(name: str) -> Callable[..., Any]:
    def method(self: RetryCounter, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.inner, name)(*args, **kwargs)

    method.__name__ = name
    return method


# Every other report goes to the listener unchanged, including ones Events gains later.
for _name, _value in vars(Events).items():
    if not _name.startswith("_") and callable(_value) and _name not in vars(RetryCounter):
        setattr(RetryCounter, _name, _pass_on(_name))


def error_code(exc: BaseException) -> str:
    """The code a caller got for ``exc`` (``InternalError`` for what is not a GatewayError)."""
    if isinstance(exc, GatewayError):
        return exc.code
    if isinstance(exc, asyncio.CancelledError):
        return "Cancelled"
    return "InternalError"


@dataclass
class ExportReport:
    """What one export's record says, filled in as the export goes."""

    image: str
    manta_path: Any
    storage: str | None
    storage_url: str | None
    manifest_path: str | None = None
    image_path: str | None = None
    started: float = field(default_factory=time.monotonic)
    counter: RetryCounter | None = None
    done: bool = False
    #: How the file got there: ``copy`` (inside the store) or ``stream`` (through the gateway).
    method: str | None = None

    async def logged(self, size: int, export: Awaitable[T]) -> T:
        """Await ``export`` (``size`` bytes), counting its storage retries, and log the record
        however it ends. Await it in the export's own task: the counting listener is set in
        that task's context only."""
        self.counter = RetryCounter(events())
        use_events(self.counter)
        try:
            result = await export
        except BaseException as exc:
            self.failed(exc)
            raise
        self.succeeded(size)
        return result

    def _fields(self, outcome: str, size: int) -> dict[str, Any]:
        duration = time.monotonic() - self.started
        return {
            "export": True,
            "image": self.image,
            "manta_path": self.manta_path,
            "manifest_path": self.manifest_path,
            "image_path": self.image_path,
            "storage": self.storage,
            "storage_url": self.storage_url,
            "bytes": size,
            "duration": round(duration, 3),
            "throughput": int(size / duration) if duration > 0 else 0,
            "retries": self.counter.retries if self.counter is not None else 0,
            "outcome": outcome,
            "method": self.method,
        }

    def succeeded(self, size: int) -> None:
        """Log the export's record (INFO)."""
        if self.done:
            return
        self.done = True
        record = self._fields("ok", size)
        record["code"] = None
        log.info(
            "export of %s to %s: ok, %d bytes in %.3f s (%d bytes/s), %d retries",
            self.image,
            self.manta_path,
            size,
            record["duration"],
            record["throughput"],
            record["retries"],
            extra=record,
        )

    def failed(self, exc: BaseException) -> None:
        """Log the export's record as a warning with the reason (the error the caller got)."""
        if self.done:
            return
        self.done = True
        record = self._fields("failed", 0)
        record["code"] = error_code(exc)
        reason = exc.message if isinstance(exc, GatewayError) else str(exc) or type(exc).__name__
        record["reason"] = reason
        log.warning(
            "export of %s to %s failed: %s: %s (%d retries)",
            self.image,
            self.manta_path,
            record["code"],
            reason,
            record["retries"],
            extra=record,
        )
