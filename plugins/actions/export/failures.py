"""What the caller is told when an export fails: storage errors as CloudAPI errors, by step."""

from __future__ import annotations

from gateway.errors import (
    GatewayError,
    ImageFileCorrupt,
    InternalError,
    StorageFailed,
    StorageIsDown,
)
from gateway.storage import (
    AccessDenied,
    ChecksumMismatch,
    DirectoryDoesNotExist,
    ObjectInfo,
    ParentNotDirectory,
    StorageError,
    StorageRequestFailed,
    StorageTarget,
    StorageUnavailable,
)
from plugins.actions.export.integrity import BodyState, CatalogReadError, CorruptFile
from plugins.actions.export.paths import invalid_path


def storage_error(exc: StorageError, what: str) -> GatewayError:
    """Map a target's error to what the caller sees: the step that failed, no internals."""
    if isinstance(exc, StorageUnavailable):
        return StorageIsDown(f"storage is down at the moment ({what})")
    if isinstance(exc, DirectoryDoesNotExist):
        return invalid_path(
            f"{what}: directory {exc.path or '(unknown)'} does not exist", "DirectoryDoesNotExist"
        )
    if isinstance(exc, ParentNotDirectory):
        return invalid_path(
            f"{what}: {exc.path or 'the parent'} is an object, not a directory",
            "DirectoryDoesNotExist",
        )
    if isinstance(exc, AccessDenied):
        return StorageFailed(f"{what}: storage refused access to {exc.path or 'the path'}")
    if isinstance(exc, ChecksumMismatch):
        return StorageFailed(f"{what}: storage received bytes whose MD5 differs from the one sent")
    if isinstance(exc, StorageRequestFailed) and exc.code:
        return StorageFailed(f"{what}: storage answered {exc.code}")
    return StorageFailed(f"{what}: storage request failed")


def export_error(exc: BaseException, state: BodyState, uuid: str, step: str) -> GatewayError | None:
    """The client's error for a failed write; ``None`` means re-raise ``exc`` as it is."""
    if isinstance(state.error, CorruptFile):
        return ImageFileCorrupt(
            f"image file of {uuid} is corrupt in the catalog ({state.error}); nothing was exported"
        )
    if isinstance(state.error, CatalogReadError):
        return InternalError(f"error reading the image file of {uuid} from the catalog")
    if isinstance(exc, StorageError):
        return storage_error(exc, step)
    if isinstance(exc, GatewayError):
        return exc
    return None


async def stat_or_fail(storage: StorageTarget, path: str, what: str) -> ObjectInfo | None:
    try:
        return await storage.stat(path)
    except StorageError as exc:
        raise storage_error(exc, what) from exc
