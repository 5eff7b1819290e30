"""Settings of one fake Manta instance, and the typed app keys that carry them to handlers."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from aiohttp import web

from fake_manta.account_file import ACCOUNTS_FILE
from fake_manta.accounts import AccountRegistry
from fake_manta.faults import FaultInjector
from fake_manta.logs import RequestLog
from fake_manta.models.store import MIN_PART_SIZE, Store

DEFAULT_MAX_CONTENT_LENGTH = 5 * 1024**3


@dataclass
class FakeMantaConfig:
    """Everything ``create_app`` needs. ``data_dir=None`` selects the in-memory backend."""

    data_dir: Path | None = None
    no_auth: bool = False
    snaplinks: Literal["v1", "v2"] = "v1"
    max_content_length: int = DEFAULT_MAX_CONTENT_LENGTH
    #: on-disk backend: fsync every object (and SQLite FULL sync) before answering, for
    #: power-loss durability. Off by default: atomicity against a crashed process or a dropped
    #: connection does not need it (the page cache survives a kill -9).
    fsync: bool = False
    #: MPU minimum size of every part but the last (muskie: 5 MiB)
    min_part_size: int = MIN_PART_SIZE
    #: value of the ``x-server-name`` header
    server_name: str = field(default_factory=socket.gethostname)
    registry: AccountRegistry = field(default_factory=AccountRegistry)
    faults: FaultInjector = field(default_factory=FaultInjector)
    #: the latest audit records, one per Manta request (``FakeMantaServer.requests``)
    requests: RequestLog = field(default_factory=RequestLog)
    #: also send each request's records to the ``fake_manta.audit`` logger (the CLI does;
    #: an embedding host's logs stay its own unless it asks)
    log_requests: bool = False
    #: networks (CIDR) besides loopback whose clients may use the admin surface (``/_fake/``),
    #: e.g. a container's host; empty: loopback only
    admin_from: tuple[str, ...] = ()
    #: muskie's ``maxRequestAge`` (its config template: 600 s): a ``Date`` older than this is
    #: 400 ``RequestExpired`` (restify's ``dateParser``)
    max_request_age: float = 600.0
    admin_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(
        init=False, default=())

    def __post_init__(self) -> None:
        if self.snaplinks not in ("v1", "v2"):
            raise ValueError(f"snaplinks must be 'v1' or 'v2', not {self.snaplinks!r}")
        if self.max_content_length < 0:
            raise ValueError("max_content_length must be >= 0")
        if self.data_dir is not None:
            self.data_dir = Path(self.data_dir)
            if self.registry.path is None:  # accounts survive restarts too
                self.registry.persist_to(self.data_dir / ACCOUNTS_FILE)
        self.admin_from = tuple(self.admin_from)
        self.admin_networks = tuple(
            ipaddress.ip_network(net, strict=False) for net in self.admin_from)


CONFIG = web.AppKey("fake_manta.config", FakeMantaConfig)
STORE = web.AppKey("fake_manta.store", Store)
