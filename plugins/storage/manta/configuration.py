"""The validated ``[storage]`` section of a ``manta`` target, and the keyId it signs with."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.httpsig import PrivateKey, md5_fingerprint
from gateway.plugin_kit import NetworkSettings, read_section

#: Largest page muskie allows; the marker row repeats at the top of the next page.
LIST_LIMIT = 1024
MiB = 1024 * 1024
#: muskie's multipart limits: every part but the last has at least 5 MiB; parts 0..799.
MIN_PART_SIZE = 5 * MiB
MAX_PARTS = 800
#: Most parts one upload sends at once (each is a connection of the pool).
MAX_CONCURRENCY = 64


@dataclass(frozen=True)
class MantaConfig(NetworkSettings):
    """The validated ``[storage]`` section of a ``manta`` target."""

    url: str
    public_url: str
    user: str
    key_file: Path
    key_id: str | None = None
    #: Seconds to wait for ``100 Continue`` (or a final answer) before sending the body anyway.
    continue_timeout: float = 1.0
    max_connections: int = 64
    #: Accept any certificate from an ``https://`` Manta (tests and throwaway setups only).
    tls_insecure: bool = False
    #: PEM bundle of the CAs an ``https://`` Manta's certificate must chain to (default: the
    #: system's). Relative to the config file's directory.
    ca_file: Path | None = None
    #: Entries per listing request (muskie allows 1..1024).
    list_page_size: int = LIST_LIMIT
    #: Objects of at least this size go up as a multipart upload, smaller ones in one PUT.
    multipart_threshold: int = 256 * MiB
    #: Bytes per part (raised when the object would need more than ``MAX_PARTS``). Parts in
    #: flight finish together, and Manta hashes the last ones after they all arrived: smaller
    #: parts shorten that wait, more of them in flight fill a long link (bench/README.md, f).
    part_size: int = 32 * MiB
    #: Parts in flight at once; the streaming path buffers at most one more.
    max_concurrency: int = 6

    @classmethod
    def schema(cls) -> dict[str, Any]:
        """The section's JSON Schema, with this class's defaults."""
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "additionalProperties": False,
            "required": ["url", "user", "key_file"],
            "properties": {
                "kind": {"const": "manta"},
                "url": {
                    "type": "string",
                    "pattern": "^https?://",
                    "x-must-be": "a URL that starts with http:// or https://",
                },
                "public_url": {"type": "string", "minLength": 1},
                "user": {"type": "string", "minLength": 1},
                "key_file": {"type": "string", "minLength": 1},
                "key_id": {"type": "string"},
                "continue_timeout": {
                    "type": "number",
                    "minimum": 0,
                    "default": cls.continue_timeout,
                },
                "max_connections": {
                    "type": "integer",
                    "minimum": 1,
                    "default": cls.max_connections,
                },
                "tls_insecure": {"type": "boolean", "default": cls.tls_insecure},
                "ca_file": {"type": "string", "minLength": 1},
                "list_page_size": {
                    "type": "integer",
                    "minimum": 2,
                    "maximum": LIST_LIMIT,
                    "default": cls.list_page_size,
                },
                "multipart_threshold": {
                    "type": "integer",
                    "minimum": 1,
                    "default": cls.multipart_threshold,
                },
                "part_size": {
                    "type": "integer",
                    "minimum": MIN_PART_SIZE,
                    "default": cls.part_size,
                },
                "max_concurrency": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_CONCURRENCY,
                    "default": cls.max_concurrency,
                },
                **cls.network_schema(),
            },
        }

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> MantaConfig:
        """Check every key and value, and say which one is wrong."""
        values = read_section(config, cls.schema())
        url = values["url"].rstrip("/")
        return cls(
            url=url,
            public_url=values.get("public_url", url).rstrip("/"),
            user=values["user"],
            key_file=Path(values["key_file"]).expanduser(),
            key_id=values.get("key_id"),
            **cls.network_values(values),
            continue_timeout=float(values["continue_timeout"]),
            max_connections=values["max_connections"],
            tls_insecure=values["tls_insecure"],
            ca_file=Path(values["ca_file"]).expanduser() if "ca_file" in values else None,
            list_page_size=values["list_page_size"],
            multipart_threshold=values["multipart_threshold"],
            part_size=values["part_size"],
            max_concurrency=values["max_concurrency"],
        )


def client_ssl(config: MantaConfig) -> ssl.SSLContext | bool:
    """What the connector verifies an ``https://`` Manta with: ``False`` (nothing) when
    ``tls_insecure``, a context trusting only ``ca_file`` when set, else ``True`` (the system's
    CAs). Raises ``ValueError`` when ``ca_file`` cannot be read as PEM certificates."""
    if config.tls_insecure:
        return False
    if config.ca_file is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(config.ca_file))
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        raise ValueError(f"cannot load ca_file {config.ca_file}: {reason}") from None


def key_id_for(key: PrivateKey, user: str, key_id: str | None) -> str:
    """The keyId to sign with: ``key_id`` as given (``/login/keys/fp`` or an MD5 fingerprint),
    else ``/user/keys/<md5 fingerprint of key>``. Manta matches keys by MD5 fingerprint only."""
    fingerprint = md5_fingerprint(key)
    if key_id is None:
        return f"/{user}/keys/{fingerprint}"
    if key_id.startswith("/"):
        return key_id
    given = key_id.removeprefix("MD5:").lower()
    if given != fingerprint:
        raise ValueError(f"key_id {key_id} is not the MD5 fingerprint of key_file ({fingerprint})")
    return f"/{user}/keys/{fingerprint}"
