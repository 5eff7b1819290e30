"""What plugins tell the host's logs and metrics, without importing the host.

Two context variables, set by the host for each request it handles (and for its background
work, such as the sweeper); tasks a request starts inherit them, as asyncio copies the context:

- ``request_id``: the id of the request being handled. Storage plugins send it to the store
  (``x-request-id``), and the host's log records carry it, so one id ties the gateway's, the
  plugins' and the store's logs together.
- ``events``: the listener of the app handling the request (its metrics). Plugins report to
  ``events()``; outside a request it is a listener that ignores everything, so a plugin never
  needs to check.
"""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["Events", "events", "request_id", "use_events"]


class Events:
    """What plugins report; the host's subclass counts it. Every method here does nothing."""

    def storage_request(self, target: str, operation: str, outcome: str) -> None:
        """One storage request ended: ``target`` its kind (``manta``), ``operation`` what it
        did (``put``, ``get``, ``head``, ``delete``, ``copy``, ``list``, ``mkdir``...),
        ``outcome`` ``ok``, ``retried`` (a transient failure that is tried again) or
        ``error``."""

    def storage_retry(self, target: str) -> None:
        """A storage request is tried again after a transient failure."""

    def export_started(self) -> None:
        """An export began writing."""

    def export_finished(self, outcome: str, size: int, seconds: float) -> None:
        """An export ended: ``outcome`` ``ok`` or the error code it answered; ``size`` the
        bytes written (0 when it failed)."""


_IGNORED = Events()

#: The id of the request being handled (None outside a request).
request_id: ContextVar[str | None] = ContextVar("cloudapi_gateway_request_id", default=None)
_events: ContextVar[Events] = ContextVar("cloudapi_gateway_events", default=_IGNORED)


def events() -> Events:
    """The listener of the app handling the current request (a no-op one outside requests)."""
    return _events.get()


def use_events(listener: Events) -> None:
    """Make ``listener`` the current one (the host calls this per request and per task)."""
    _events.set(listener)
