"""Gateway settings: one frozen object built from a TOML file, environment and flags.

Each plugin section (``storage``, ``catalog``) is a plain mapping whose ``kind`` selects the
plugin; the plugin validates the rest of its section itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    #: Where the embedded stores live (accounts database, catalog).
    data_dir: Path = Path("data")
    #: ``Triton-Datacenter-Name`` on Ping.
    datacenter_name: str = "cloudapi-gateway"
    #: ``{"kind": "manta", ...}``; empty means no storage (exports answer 503 StorageUnsupported).
    storage: Mapping[str, Any] = field(default_factory=dict)
    #: ``{"kind": "embedded", ...}``.
    catalog: Mapping[str, Any] = field(default_factory=lambda: {"kind": "embedded"})
    #: Plugin names (entry-point names or module names) that must not be loaded.
    disabled_plugins: tuple[str, ...] = ()
    #: Load third-party plugins from the ``cloudapi_gateway`` entry-point group.
    load_entrypoints: bool = True
    #: Largest JSON request body accepted, in bytes.
    max_body_size: int = 1024 * 1024

    @property
    def accounts_db(self) -> Path:
        return self.data_dir / "accounts.sqlite"
