"""The settings every networked storage target shares: its timeouts and its retries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict


class NetworkValues(TypedDict):
    """``NetworkSettings`` as read from a section, to pass on as keyword arguments."""

    connect_timeout: float
    read_timeout: float
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
            retries=int(values["retries"]),
            retry_delay=float(values["retry_delay"]),
            retry_max_delay=float(values["retry_max_delay"]),
        )
