"""The settings every networked storage target shares, and the deadlines they set.

``NetworkSettings`` are a target's timeouts and retries. ``ExchangeWatch`` holds one request
attempt to them: a deadline for the answer's head once the request has gone out, and a floor
under the rate of the body it sends. ``rate_floored`` holds a received body to the same floor.
Both raise ``StorageTooSlow`` (a ``StorageUnavailable``: retried, then a 503 StorageIsDown).
``ConnectionShares`` keeps part of a target's connection pool for the accounts that are not
using it (the host says whose work a request is with ``storage_account``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sized
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, TypedDict, TypeVar

import aiohttp

from gateway.storage import StorageUnavailable

T = TypeVar("T", bound=Sized)


class NetworkValues(TypedDict):
    """``NetworkSettings`` as read from a section, to pass on as keyword arguments."""

    connect_timeout: float
    read_timeout: float
    response_timeout: float
    min_rate_bytes: int
    min_rate_window: float
    account_share: float
    retries: int
    retry_delay: float
    retry_max_delay: float


@dataclass(frozen=True, kw_only=True)
class NetworkSettings:
    """Timeouts and retries, named, bounded and read alike by every target that has them.

    A target's config dataclass inherits these keyword-only fields, and satisfies
    ``RetryPolicy`` with them; it may give one another default with
    ``field(default=..., kw_only=True)``, which ``network_schema`` then uses.
    """

    #: Seconds to open a connection.
    connect_timeout: float = 10.0
    #: Seconds between two reads of an answer (never a total bound).
    read_timeout: float = 120.0
    #: Seconds from the end of a request (its last body byte sent) to its answer's last
    #: header byte: a store that drips its answer cannot hold a request longer.
    response_timeout: float = 60.0
    #: Bytes per second a body (sent or received) must move at, measured over each
    #: ``min_rate_window`` seconds; 0 turns the floor off.
    min_rate_bytes: int = 4096
    min_rate_window: float = 60.0
    #: Part of the connection pool one account's requests may hold at once: the rest stays
    #: for the other accounts (``ConnectionShares``); 1 lets one account take it all.
    account_share: float = 0.75
    retries: int = 3
    retry_delay: float = 0.2
    retry_max_delay: float = 5.0

    @classmethod
    def network_schema(cls) -> dict[str, Any]:
        """These settings as JSON Schema properties, with ``cls``'s defaults."""

        def seconds(default: float) -> dict[str, Any]:
            return {"type": "number", "minimum": 0, "default": default}

        return {
            "connect_timeout": seconds(cls.connect_timeout),
            "read_timeout": seconds(cls.read_timeout),
            "response_timeout": {
                "type": "number",
                "exclusiveMinimum": 0,
                "default": cls.response_timeout,
            },
            "min_rate_bytes": {"type": "integer", "minimum": 0, "default": cls.min_rate_bytes},
            "min_rate_window": {
                "type": "number",
                "exclusiveMinimum": 0,
                "default": cls.min_rate_window,
            },
            "account_share": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 1,
                "default": cls.account_share,
            },
            "retries": {"type": "integer", "minimum": 0, "default": cls.retries},
            "retry_delay": seconds(cls.retry_delay),
            "retry_max_delay": seconds(cls.retry_max_delay),
        }

    @classmethod
    def network_values(cls, values: Mapping[str, Any]) -> NetworkValues:
        """These settings out of a section ``read_section`` returned for ``network_schema``."""
        return NetworkValues(
            connect_timeout=float(values["connect_timeout"]),
            read_timeout=float(values["read_timeout"]),
            response_timeout=float(values["response_timeout"]),
            min_rate_bytes=int(values["min_rate_bytes"]),
            min_rate_window=float(values["min_rate_window"]),
            account_share=float(values["account_share"]),
            retries=int(values["retries"]),
            retry_delay=float(values["retry_delay"]),
            retry_max_delay=float(values["retry_max_delay"]),
        )


class DeadlinePolicy(Protocol):
    """What the deadlines read of a target's settings (``NetworkSettings`` is one)."""

    @property
    def response_timeout(self) -> float: ...

    @property
    def min_rate_bytes(self) -> int: ...

    @property
    def min_rate_window(self) -> float: ...


class StorageTooSlow(StorageUnavailable):
    """No answer within ``response_timeout``, or a body below the rate floor: the store is
    treated as unavailable (the attempt is retried, and a lasting one is a 503)."""


class RateFloor:
    """The floor under one body's rate, checked without a timer per chunk.

    Each ``min_rate_bytes * min_rate_window`` bytes must move within ``min_rate_window``
    seconds; a window starts over as soon as its quota is met. Time while ``paused`` (the
    consumer busy with a received chunk) is not the store's and does not count.
    """

    def __init__(self, policy: DeadlinePolicy) -> None:
        self.window = policy.min_rate_window
        self.quota = policy.min_rate_bytes * policy.min_rate_window
        self.enabled = policy.min_rate_bytes > 0
        self._loop = asyncio.get_running_loop()
        self._start = self._loop.time()
        self._count = 0
        self._paused_at: float | None = None

    def moved(self, count: int) -> None:
        """``count`` more bytes went through."""
        self._count += count
        if self._count >= self.quota:
            self._start = self._loop.time()
            self._count = 0

    def deadline(self) -> float | None:
        """The loop time at which the current window fails (``None``: no floor)."""
        return self._start + self.window if self.enabled else None

    def pause(self) -> None:
        self._paused_at = self._loop.time()

    def resume(self) -> None:
        if self._paused_at is not None:
            self._start += self._loop.time() - self._paused_at
            self._paused_at = None

    def describe(self) -> str:
        return f"fewer than {self.quota:.0f} bytes in {self.window:g} s"


async def rate_floored(
    chunks: AsyncIterable[T], policy: DeadlinePolicy, *, what: str
) -> AsyncIterator[T]:
    """``chunks`` (a received body) held to the rate floor: ``StorageTooSlow`` below it."""
    floor = RateFloor(policy)
    iterator = aiter(chunks)
    while True:
        window = asyncio.timeout_at(floor.deadline())
        try:
            async with window:
                chunk = await anext(iterator)
        except StopAsyncIteration:
            return
        except TimeoutError:
            if not window.expired():
                raise  # the client's own read timeout
            raise StorageTooSlow(f"{what}: the body moved {floor.describe()}") from None
        floor.moved(len(chunk))
        floor.pause()
        yield chunk
        floor.resume()


class ExchangeWatch:
    """The deadlines of one request attempt, entered with ``async with`` around it.

    The clock starts when the request has gone out (``started``, from ``watch_trace_config``;
    waiting for a pooled connection is not the store's fault). A request body counted through
    ``counting`` is held to the rate floor; once it has been sent (``answer_due``), or at once
    without one, the answer's head must arrive within ``response_timeout``. ``answered`` stops
    the clock. An expired deadline cancels the request and leaves the block as
    ``StorageTooSlow``.
    """

    def __init__(
        self, policy: DeadlinePolicy, *, what: str, body: bool = False, allowance: float = 0.0
    ) -> None:
        self.policy = policy
        self.what = what
        self._body = body
        #: Seconds the answer may take beyond ``response_timeout`` (a commit the store does
        #: before it answers, such as a copy or the assembly of a multipart upload).
        self.allowance = allowance
        self._timeout = asyncio.timeout(None)
        self._active = False
        self._floor: RateFloor | None = None
        self._reason = ""

    async def __aenter__(self) -> ExchangeWatch:
        await self._timeout.__aenter__()
        self._active = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._active = False
        try:
            await self._timeout.__aexit__(exc_type, exc, traceback)
        except TimeoutError:  # raised only when this watch's deadline expired
            raise StorageTooSlow(f"{self.what}: {self._reason}") from None

    def _reschedule(self, when: float | None, reason: str) -> None:
        if self._active:
            self._reason = reason
            self._timeout.reschedule(when)

    def started(self) -> None:
        """The request's head is out: its body's floor, or its answer's clock, starts."""
        if not self._body:
            self.answer_due()
        elif self._floor is None:
            self._floor = RateFloor(self.policy)

    def sent(self, count: int) -> None:
        """``count`` more body bytes went out: the floor's deadline moves with them."""
        if self._floor is None:
            self._floor = RateFloor(self.policy)
        self._floor.moved(count)
        self._reschedule(self._floor.deadline(), f"the body moved {self._floor.describe()}")

    async def counting(self, chunks: AsyncIterable[T]) -> AsyncIterator[T]:
        """A request body as it is sent: each chunk counted, its end starts the answer's clock."""
        async for chunk in chunks:
            self.sent(len(chunk))
            yield chunk
        self.answer_due()

    def answer_due(self, allowance: float | None = None) -> None:
        """The answer's head is due within ``response_timeout`` plus ``allowance`` seconds (by
        default the watch's own)."""
        extra = self.allowance if allowance is None else allowance
        within = self.policy.response_timeout + extra
        loop = asyncio.get_running_loop()
        self._reschedule(loop.time() + within, f"no answer within {within:g} s")

    def answered(self) -> None:
        """The answer's head is in: nothing more is due."""
        self._reschedule(None, "")


def body_allowance(policy: DeadlinePolicy, size: int) -> float:
    """Seconds a body of ``size`` bytes may take at the floor rate (0 without a floor)."""
    if policy.min_rate_bytes <= 0:
        return 0.0
    return size / policy.min_rate_bytes


def watch_trace_config() -> aiohttp.TraceConfig:
    """An aiohttp trace that starts the ``ExchangeWatch`` passed as a request's
    ``trace_request_ctx`` once the request's head is written (its connection acquired)."""

    async def headers_sent(
        session: aiohttp.ClientSession,
        context: Any,
        params: aiohttp.TraceRequestHeadersSentParams,
    ) -> None:
        watch = context.trace_request_ctx
        if isinstance(watch, ExchangeWatch):
            watch.started()

    config = aiohttp.TraceConfig()
    config.on_request_headers_sent.append(headers_sent)
    return config


#: The account whose work the running task does (its uuid), set by the host around an image
#: action; ``None`` for the gateway's own work (sweeps, probes), which no share limits.
storage_account: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "storage_account", default=None
)


#: Set while a task holds a slot: a request it makes meanwhile (a cleanup inside an attempt)
#: takes no second one, which could otherwise wait forever for the first.
_holding_slot: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "holding_storage_slot", default=False
)


@dataclass
class _AccountQueue:
    """One account's connections: at most ``share`` held, the other requests waiting."""

    semaphore: asyncio.Semaphore
    users: int = 0  # requests holding or waiting for a connection
    held: int = 0


class ConnectionShares:
    """A target's pool, shared between accounts: one account's requests hold at most
    ``account_share`` of its ``pool`` connections at once, and wait in their own queue for
    more, so that another account's request always finds a connection free.

    Queues exist only while an account has requests: memory follows the work, not the
    number of accounts ever seen.
    """

    def __init__(self, pool: int, account_share: float) -> None:
        self.pool = pool
        self.share = max(1, min(pool, math.floor(pool * account_share)))
        self._queues: dict[str, _AccountQueue] = {}

    def holding(self, account: str) -> int:
        """Connections ``account``'s requests hold now."""
        queue = self._queues.get(account)
        return 0 if queue is None else queue.held

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the running account's connections for the block (wait if it has none)."""
        account = storage_account.get()
        if account is None or self.share >= self.pool or _holding_slot.get():
            yield  # the host's own work, no share to keep, or a request made while holding one
            return
        queue = self._queues.get(account)
        if queue is None:
            queue = self._queues[account] = _AccountQueue(asyncio.Semaphore(self.share))
        queue.users += 1
        try:
            async with queue.semaphore:
                queue.held += 1
                token = _holding_slot.set(True)
                try:
                    yield
                finally:
                    _holding_slot.reset(token)
                    queue.held -= 1
        finally:
            queue.users -= 1
            if queue.users == 0:
                del self._queues[account]
