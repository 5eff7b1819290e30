"""The aiobotocore S3 client a target opens: its session, its config, its connection pool."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session

from plugins.storage.s3.botocore_internals import NoResendSession
from plugins.storage.s3.configuration import S3Config

_SESSIONS: dict[str | None, AioSession] = {}


def session_for(profile: str | None) -> AioSession:
    """One botocore session per profile: loading the service model is the slow part of a client."""
    session = _SESSIONS.get(profile)
    if session is None:
        session = get_session()
        if profile:
            session.set_config_variable("profile", profile)
        _SESSIONS[profile] = session
    return session


def pool_size(cfg: S3Config) -> int:
    """Connections the client keeps: two per part in flight, at least ten."""
    return max(10, cfg.max_concurrency * 2)


def create_client(cfg: S3Config) -> AbstractAsyncContextManager[Any]:
    """The S3 client for ``cfg``, to be entered (it owns its aiohttp connection pool)."""
    aio_config = AioConfig(
        region_name=cfg.region,
        connect_timeout=cfg.connect_timeout,
        read_timeout=cfg.read_timeout,
        max_pool_connections=pool_size(cfg),
        # The target retries itself (``with_retries``): no botocore retries, no aiohttp resends.
        retries={"total_max_attempts": 1, "mode": "standard"},
        http_session_cls=NoResendSession,
        s3={
            "addressing_style": cfg.addressing_style,
            "payload_signing_enabled": cfg.sign_payload,
        },
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    client: AbstractAsyncContextManager[Any] = session_for(cfg.profile).create_client(
        "s3",
        endpoint_url=cfg.endpoint_url,
        region_name=cfg.region,
        aws_access_key_id=cfg.access_key,
        aws_secret_access_key=cfg.secret_key,
        aws_session_token=cfg.session_token,
        config=aio_config,
    )
    return client
