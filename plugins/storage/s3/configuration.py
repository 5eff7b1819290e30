"""The validated ``[storage]`` section of an ``s3`` target, and S3's limits it is checked by."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.plugin_kit import NetworkSettings, read_section

MiB = 1024 * 1024
#: S3's limits on multipart uploads.
MIN_PART_SIZE = 5 * MiB
MAX_PARTS = 10_000
MAX_SINGLE_PUT = 5 * 1024 * MiB
#: S3's limits on copies: one CopyObject, and one UploadPartCopy part, copy at most 5 GiB.
MAX_SINGLE_COPY = 5 * 1024 * MiB
MAX_PART_SIZE = 5 * 1024 * MiB


@dataclass(frozen=True)
class S3Config(NetworkSettings):
    """The validated ``[storage]`` section of an ``s3`` target."""

    bucket: str
    public_url: str
    endpoint_url: str | None = None
    region: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    session_token: str | None = None
    profile: str | None = None
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    multipart_threshold: int = 16 * MiB
    part_size: int = 16 * MiB
    max_concurrency: int = 4
    #: Objects up to this size are copied with one CopyObject, bigger ones part by part.
    copy_multipart_threshold: int = 5 * 1024 * MiB  # S3's CopyObject limit
    copy_part_size: int = 512 * MiB
    retries: int = field(default=4, kw_only=True)
    #: SigV4-sign the body's SHA-256 (botocore hashes it on the event loop). Off: the body is
    #: sent as UNSIGNED-PAYLOAD and protected by its Content-MD5, which S3 verifies.
    sign_payload: bool = False

    @classmethod
    def schema(cls) -> dict[str, Any]:
        """The section's JSON Schema, with this class's defaults and S3's limits."""
        text: dict[str, Any] = {"type": "string"}
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "additionalProperties": False,
            "required": ["bucket"],
            "properties": {
                "kind": {"const": "s3"},
                "bucket": {"type": "string", "minLength": 1},
                "endpoint_url": text,
                "region": text,
                "access_key": text,
                "secret_key": text,
                "session_token": text,
                "profile": text,
                "public_url": text,
                "addressing_style": {
                    "enum": ["auto", "path", "virtual"],
                    "default": cls.addressing_style,
                },
                # Objects below it are buffered whole for one PUT: S3 takes at most 5 GiB so.
                "multipart_threshold": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_SINGLE_PUT,
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
                    "default": cls.max_concurrency,
                },
                # Copies happen inside S3: no gateway memory, only S3's own limits.
                "copy_multipart_threshold": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_SINGLE_COPY,
                    "default": cls.copy_multipart_threshold,
                },
                "copy_part_size": {
                    "type": "integer",
                    "minimum": MIN_PART_SIZE,
                    "maximum": MAX_PART_SIZE,
                    "default": cls.copy_part_size,
                },
                "sign_payload": {"type": "boolean", "default": cls.sign_payload},
                **cls.network_schema(),
            },
        }

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> S3Config:
        """Check every key and value, and say which one is wrong."""
        values = read_section(config, cls.schema())
        if ("access_key" in values) != ("secret_key" in values):
            raise ValueError("give both access_key and secret_key, or neither")
        bucket = values["bucket"]
        endpoint, region = values.get("endpoint_url"), values.get("region")
        public_url = values.get("public_url") or _default_public_url(bucket, endpoint, region)
        return cls(
            bucket=bucket,
            public_url=public_url.rstrip("/"),
            endpoint_url=endpoint,
            region=region,
            access_key=values.get("access_key"),
            secret_key=values.get("secret_key"),
            session_token=values.get("session_token"),
            profile=values.get("profile"),
            addressing_style=values["addressing_style"],
            multipart_threshold=values["multipart_threshold"],
            part_size=values["part_size"],
            max_concurrency=values["max_concurrency"],
            copy_multipart_threshold=values["copy_multipart_threshold"],
            copy_part_size=values["copy_part_size"],
            **cls.network_values(values),
            sign_payload=values["sign_payload"],
        )


def _default_public_url(bucket: str, endpoint: str | None, region: str | None) -> str:
    """Where a user finds the bucket: the endpoint (path style) or AWS's virtual-host URL."""
    if endpoint:
        return f"{endpoint.rstrip('/')}/{bucket}"
    return f"https://{bucket}.s3.{region or 'us-east-1'}.amazonaws.com"
