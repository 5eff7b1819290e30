"""Slowing down repeated authentication failures from one client address.

An address that has failed authentication ``auth_free_failures`` times within
``auth_failure_window`` seconds is *penalised*: its next requests are verified one at a time,
``auth_delay`` seconds apart at first, doubling with every further failure up to
``auth_max_delay``. Addresses in ``auth_exempt`` (loopback, by default) are never counted.
The wait comes before the signature is checked, so a guess that happens to be right waits
too (otherwise parallel guesses would run at full speed and only the answers to the wrong
ones would be late). A success clears the address's record; an address with no recent
failures, every well-behaved client, never waits. A request that would have to wait more than
``auth_max_delay`` (a flood of parallel guesses) is refused at once with 429
``RequestThrottled`` instead of queueing. Records are kept for at most
``auth_tracked_addresses`` addresses, least recently seen dropped first: memory stays bounded
whatever the number of addresses.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from gateway.server.client_address import client_address as forwarded_client_address
from gateway.server.limits import Limits, RequestThrottled


@dataclass
class _Record:
    """The recent failures of one address and when its next request may be verified."""

    window_start: float
    failures: int = 0
    #: ``clock()`` before which no further request from the address is verified.
    next_slot: float = 0.0


class AuthThrottle:
    """Per-address failure records (an LRU) and the waits they impose."""

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self._exempt = limits.exempt_networks()

    def _watched(self, address: str | None) -> str | None:
        """``address`` if it is to be throttled: known, throttling on, not exempt."""
        if address is None or not self.limits.auth_throttle:
            return None
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return address  # a Unix socket's peer or the like: counted by its name
        if any(ip in network for network in self._exempt):
            return None
        return address

    def __len__(self) -> int:
        return len(self._records)

    @property
    def idle(self) -> bool:
        """No address has recent failures: nobody waits, and a success has nothing to forget.

        Checked first on every request, so that the usual case (no failing clients) costs
        one attribute read: no address parsing, no record lookup, no coroutine.
        """
        return not self._records

    def _delay(self, record: _Record) -> float:
        """The spacing between verified requests of a penalised address (0: not penalised)."""
        over = record.failures - self.limits.auth_free_failures + 1
        if over <= 0:
            return 0.0
        return float(min(self.limits.auth_max_delay, self.limits.auth_delay * 2 ** (over - 1)))

    def _current(self, address: str, now: float) -> _Record | None:
        """The address's record, forgotten once its window has passed without a failure."""
        record = self._records.get(address)
        if record is None:
            return None
        if now - record.window_start > self.limits.auth_failure_window and now >= (
            record.next_slot
        ):
            del self._records[address]
            return None
        self._records.move_to_end(address)
        return record

    async def wait_turn(self, address: str | None) -> float:
        """Wait until a request from ``address`` may be verified; returns the seconds waited.

        Raises ``RequestThrottled`` when the turn is more than ``auth_max_delay`` away.
        """
        address = self._watched(address)
        if address is None:
            return 0.0
        now = self.clock()
        record = self._current(address, now)
        if record is None:
            return 0.0
        delay = self._delay(record)
        if delay <= 0:
            return 0.0
        turn = max(now, record.next_slot)
        if turn - now > self.limits.auth_max_delay:
            raise RequestThrottled(
                "Too many failed authentications from your address; try again later"
            )
        record.next_slot = turn + delay
        wait = turn - now
        if wait > 0:
            await asyncio.sleep(wait)
        return wait

    def failed(self, address: str | None) -> None:
        """Count one authentication failure of ``address``."""
        address = self._watched(address)
        if address is None:
            return
        now = self.clock()
        record = self._current(address, now)
        if record is None:
            record = self._records[address] = _Record(window_start=now)
            while len(self._records) > self.limits.auth_tracked_addresses:
                self._records.popitem(last=False)
        record.failures += 1
        record.next_slot = max(record.next_slot, now + self._delay(record))

    def succeeded(self, address: str | None) -> None:
        """The address authenticated: whoever it is, it knows a key; forget its failures."""
        if address is not None and self._records:
            self._records.pop(address, None)


#: Set by ``create_app`` (``install``).
AUTH_THROTTLE = web.AppKey("auth_throttle", AuthThrottle)


def install(app: web.Application, limits: Limits) -> None:
    """Give the app its authentication throttle (``create_app``)."""
    app[AUTH_THROTTLE] = AuthThrottle(limits)


def client_address(request: web.BaseRequest) -> str | None:
    """The address failures are counted against: the one the audit log records."""
    return forwarded_client_address(request)
