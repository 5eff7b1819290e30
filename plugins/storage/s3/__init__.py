"""The ``s3`` storage kind: Manta-style paths written into one S3 bucket with aiobotocore.

aiobotocore is the optional ``s3`` extra: without it the kind still exists and ``create`` says
so. One module a job: ``configuration`` (the ``[storage]`` section), ``keys`` (paths as keys),
``objects`` (S3's answers as ``ObjectInfo``), ``target`` (``S3Target``), ``upload`` (single and
multipart PUTs), ``copy`` (copies inside the bucket: CopyObject and UploadPartCopy), ``errors``
(botocore's errors as ``StorageError``s), ``client`` (the aiobotocore client) and
``botocore_internals`` (every reliance on the libraries beyond their documented API).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gateway import hookimpl
from gateway.storage import StorageTarget
from plugins.storage.s3.configuration import S3Config
from plugins.storage.s3.keys import path_to_key

__all__ = [
    "S3Config",
    "S3Target",
    "S3TargetFactory",
    "gateway_register_storage_targets",
    "map_error",
    "path_to_key",
]

try:
    import aiobotocore  # noqa: F401  (only: is the optional extra installed?)
except ImportError:
    HAVE_AIOBOTOCORE = False
else:
    HAVE_AIOBOTOCORE = True
    from plugins.storage.s3.errors import map_error
    from plugins.storage.s3.target import S3Target

if TYPE_CHECKING:
    from gateway.settings import Settings


class S3TargetFactory:
    """Builds ``S3Target``s from ``[storage] kind = "s3"``."""

    name = "s3"

    def create(self, config: Mapping[str, Any], settings: Settings) -> StorageTarget:
        """Validate the section and build the target (nothing is contacted yet)."""
        if not HAVE_AIOBOTOCORE:
            raise ValueError("this kind needs aiobotocore: pip install 'cloudapi-gateway[s3]'")
        return S3Target(S3Config.from_mapping(config))


@hookimpl
def gateway_register_storage_targets() -> list[S3TargetFactory]:
    """Provide the ``s3`` storage kind."""
    return [S3TargetFactory()]
