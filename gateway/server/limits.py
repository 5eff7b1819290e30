"""What one account, or one client address, may take of the gateway: the ``[limits]`` section.

- ``max_exports_per_account``: exports of one account running at once; one more is refused
  with 429 ``RequestThrottled`` (CloudAPI's throttling code) instead of queueing for storage
  connections that other accounts need. Below the cap, the storage target keeps part of its
  pool for the other accounts (``[storage] account_share``): ``action_slot`` marks an
  action's storage requests as the account's (``storage_account``).
- ``auth_*``: the slowdown of repeated authentication failures (``auth_throttle``).
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.actions import Account
from gateway.errors import GatewayError
from gateway.plugin_kit.config import read_section
from gateway.plugin_kit.network import storage_account
from gateway.server.plugin_manager import ConfigurationError
from gateway.settings import Settings


class RequestThrottled(GatewayError):
    """CloudAPI's throttling answer (``docs/index.md``: "RequestThrottled: You were
    throttled"; restify's ``RequestThrottledError``), 429."""

    status, code = 429, "RequestThrottled"


@dataclass(frozen=True)
class Limits:
    """The validated ``[limits]`` section."""

    #: 8: the export benchmark's and the test suite's concurrency for one account.
    max_exports_per_account: int = 8
    #: Off: authentication failures are never slowed down.
    auth_throttle: bool = True
    #: Failures an address may make within ``auth_failure_window`` before it is slowed down.
    auth_free_failures: int = 5
    auth_failure_window: float = 60.0
    #: First spacing between the verified requests of a penalised address; doubles per failure.
    auth_delay: float = 0.5
    auth_max_delay: float = 10.0
    #: Addresses whose failures are remembered (least recently seen forgotten first).
    auth_tracked_addresses: int = 10_000
    #: Networks never slowed down: the host's own tools and health checks (loopback). With a
    #: proxy on this host, set ``trusted_proxies`` so that clients keep their own addresses.
    auth_exempt: tuple[str, ...] = ("127.0.0.0/8", "::1/128")

    @classmethod
    def schema(cls) -> dict[str, Any]:
        """The section's JSON Schema, with this class's defaults."""

        def seconds(default: float) -> dict[str, Any]:
            return {"type": "number", "exclusiveMinimum": 0, "default": default}

        def count(default: int, minimum: int) -> dict[str, Any]:
            return {"type": "integer", "minimum": minimum, "default": default}

        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "max_exports_per_account": count(cls.max_exports_per_account, 1),
                "auth_throttle": {"type": "boolean", "default": cls.auth_throttle},
                "auth_free_failures": count(cls.auth_free_failures, 0),
                "auth_failure_window": seconds(cls.auth_failure_window),
                "auth_delay": seconds(cls.auth_delay),
                "auth_max_delay": seconds(cls.auth_max_delay),
                "auth_tracked_addresses": count(cls.auth_tracked_addresses, 1),
                "auth_exempt": {
                    "type": "array",
                    "items": {"type": "string"},
                    "default": list(cls.auth_exempt),
                    "x-must-be": 'a list of IP addresses or CIDR networks (such as "10.0.0.0/8")',
                },
            },
        }

    @classmethod
    def from_mapping(cls, section: Mapping[str, Any]) -> Limits:
        """Check every key and value (a ``ValueError`` names the wrong one)."""
        try:
            values = read_section(section, cls.schema())
        except ValueError as exc:
            raise ValueError(f"limits: {exc}") from None
        for network in values["auth_exempt"]:
            try:
                ipaddress.ip_network(network.strip(), strict=False)
            except ValueError:
                raise ValueError(
                    f"limits: auth_exempt must be a list of IP addresses or CIDR networks, "
                    f"got {network!r}"
                ) from None
        return cls(
            max_exports_per_account=int(values["max_exports_per_account"]),
            auth_throttle=bool(values["auth_throttle"]),
            auth_free_failures=int(values["auth_free_failures"]),
            auth_failure_window=float(values["auth_failure_window"]),
            auth_delay=float(values["auth_delay"]),
            auth_max_delay=float(values["auth_max_delay"]),
            auth_tracked_addresses=int(values["auth_tracked_addresses"]),
            auth_exempt=tuple(values["auth_exempt"]),
        )

    def exempt_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """``auth_exempt`` parsed (``from_mapping`` has checked every entry)."""
        return tuple(ipaddress.ip_network(n.strip(), strict=False) for n in self.auth_exempt)


class ExportLimiter:
    """Counts the exports each account runs; refuses one over ``max_exports_per_account``.

    Everything runs on the event loop, so plain counters need no lock.
    """

    def __init__(self, max_per_account: int) -> None:
        self.max_per_account = max_per_account
        self._running: dict[str, int] = {}

    def running(self, account: str) -> int:
        """Exports of ``account`` running now."""
        return self._running.get(account, 0)

    @contextlib.contextmanager
    def slot(self, account: str) -> Iterator[None]:
        """Hold one of ``account``'s export slots for the block, or raise ``RequestThrottled``."""
        held = self._running.get(account, 0)
        if held >= self.max_per_account:
            raise RequestThrottled(
                f"You have exceeded your limit of {self.max_per_account} concurrent image "
                "exports; try again when one has finished"
            )
        self._running[account] = held + 1
        try:
            yield
        finally:
            left = self._running[account] - 1
            if left:
                self._running[account] = left
            else:
                del self._running[account]


#: Set by ``create_app``: the app's ``[limits]`` and its export slots.
LIMITS = web.AppKey("limits", Limits)
EXPORT_LIMITER = web.AppKey("export_limiter", ExportLimiter)
#: The image actions that hold an export slot while they run (they write into storage).
EXPORTING_ACTIONS = frozenset({"export"})


@contextlib.contextmanager
def action_slot(app: web.Application, account: Account, action: str) -> Iterator[None]:
    """Run an image action as ``account``'s work: its storage requests count against the
    account's share of the pool (``storage_account``), and an exporting action holds one of
    the account's export slots (``RequestThrottled`` when none is free)."""
    limiter = app.get(EXPORT_LIMITER)
    slot: AbstractContextManager[None] = contextlib.nullcontext()
    if limiter is not None and action in EXPORTING_ACTIONS:
        slot = limiter.slot(account.uuid)
    with slot:
        token = storage_account.set(account.uuid)
        try:
            yield
        finally:
            storage_account.reset(token)


def install(app: web.Application, settings: Settings) -> Limits:
    """Read ``settings.limits`` and set the app's limits and export slots (``create_app``)."""
    try:
        limits = Limits.from_mapping(settings.limits)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    app[LIMITS] = limits
    app[EXPORT_LIMITER] = ExportLimiter(limits.max_exports_per_account)
    return limits
