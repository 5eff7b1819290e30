"""The ``manta`` storage kind: Triton Manta (or ``fake-manta``), signed with the operator's key.

One module a job: ``configuration`` (the ``[storage]`` section), ``target`` (``MantaTarget``),
``upload`` (a PUT's body, with ``sendfile`` when it can), ``mpu`` (big objects as multipart
uploads, parts in parallel), ``errors`` (Manta's answers as
``StorageError``s) and ``aiohttp_internals`` (every reliance on aiohttp beyond its documented API).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gateway import hookimpl
from gateway.httpsig import RequestSigner, load_private_key
from gateway.storage import StorageTarget
from plugins.storage.manta.configuration import MantaConfig, client_ssl, key_id_for
from plugins.storage.manta.target import MantaTarget, encode_path

if TYPE_CHECKING:
    from gateway.settings import Settings

__all__ = [
    "MantaConfig",
    "MantaTarget",
    "MantaTargetFactory",
    "encode_path",
    "gateway_register_storage_targets",
    "key_id_for",
]


class MantaTargetFactory:
    """Builds ``MantaTarget``s from ``[storage] kind = "manta"``."""

    name = "manta"

    def create(self, config: Mapping[str, Any], settings: Settings) -> StorageTarget:
        """Validate the section and load the key now, so that a bad key stops the start.

        A relative ``key_file`` is taken from the config file's directory, as ``data_dir`` is.
        """
        cfg = MantaConfig.from_mapping(config)
        cfg = dataclasses.replace(cfg, key_file=settings.path(cfg.key_file))
        if cfg.ca_file is not None:  # relative, like key_file; a bad bundle stops the start
            cfg = dataclasses.replace(cfg, ca_file=settings.path(cfg.ca_file))
        client_ssl(cfg)
        try:
            key = load_private_key(cfg.key_file)
        except (OSError, ValueError, TypeError) as exc:
            raise ValueError(f"cannot load key_file {cfg.key_file}: {exc}") from exc
        signer = RequestSigner(key, key_id_for(key, cfg.user, cfg.key_id))
        return MantaTarget(cfg, signer)


@hookimpl
def gateway_register_storage_targets() -> list[MantaTargetFactory]:
    """Provide the ``manta`` storage kind."""
    return [MantaTargetFactory()]
