"""Replacing what a destination holds, so that a failure or a crash leaves it as before or after.

An export writes two objects, the file and then its manifest, and neither store can write two
objects at once. What makes it safe is the journal entry recorded before the first write
(``ExportRecord``) and three rules:

- A manifest is never left beside a file it does not describe: the previous manifest is
  removed before the file is replaced, and written back only beside the previous file.
- The previous file survives a failure: Manta and S3 PUTs are atomic, so a failed upload
  leaves it untouched; once the new file has landed, it comes back from a safety copy the
  store made (``CopyingTarget``) before the upload. A store that cannot copy (Manta v2) ends
  empty instead.
- What is at the file path is recognised by size and MD5 (the previous file's as recorded,
  or the new one's), so a repair never trusts a step name for what a crash may have cut short.

``rollback`` restores "before"; ``roll_forward`` completes "after"; ``recover`` picks one for
an entry whose process died: forward when the new file is complete, back otherwise.
"""

from __future__ import annotations

import base64
import logging
import posixpath
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from gateway.plugin_kit import content_md5
from gateway.storage import (
    BodyFactory,
    CopyingTarget,
    CopyUnsupported,
    ObjectInfo,
    PartialUploadsTarget,
    StorageTarget,
)

log = logging.getLogger(__name__)

#: Journal states, each recorded *before* its step starts, so a state says what may have
#: happened since: "begun" nothing yet; "prepared" nothing destructive; "copying" a safety copy
#: may exist; "replacing" the manifest may be gone and the file replaced; "done" the new
#: manifest is written and only the safety copy is left; "rolling_back" an undo was started.
BEGUN = "begun"
PREPARED = "prepared"
COPYING = "copying"
REPLACING = "replacing"
DONE = "done"
ROLLING_BACK = "rolling_back"

#: The largest object at the manifest path that an export keeps to put back (an IMGAPI
#: manifest is a few KiB); anything larger is not replaced.
MAX_PREVIOUS_MANIFEST = 1024 * 1024


@dataclass(frozen=True)
class Fingerprint:
    """How an object is recognised without reading it: size, and MD5 or else ETag."""

    size: int
    md5: str | None = None
    etag: str | None = None

    @classmethod
    def of(cls, info: ObjectInfo) -> Fingerprint:
        return cls(size=info.size or 0, md5=info.content_md5, etag=info.etag)

    def matches(self, info: ObjectInfo | None) -> bool:
        if info is None or info.is_directory or info.size != self.size:
            return False
        if self.md5 and info.content_md5:
            return self.md5 == info.content_md5
        return bool(self.etag and info.etag and self.etag == info.etag)


@dataclass(frozen=True)
class ExportRecord:
    """What the journal keeps about one export: enough to finish it or undo it."""

    store: str
    manifest_path: str
    file_path: str
    image: str
    new_file: Fingerprint
    new_manifest: bytes
    previous_manifest: bytes | None = None
    previous_file: Fingerprint | None = None
    #: Where the previous file is copied before it is replaced (None: nothing to keep, or
    #: the store cannot copy); the copy exists once the state has passed "copied".
    safety_path: str | None = None
    safety_copied: bool = False

    def to_data(self) -> dict[str, Any]:
        data = asdict(self)
        data["new_manifest"] = _b64(self.new_manifest)
        data["previous_manifest"] = _b64(self.previous_manifest)
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> ExportRecord:
        previous = data.get("previous_file")
        return cls(
            store=data["store"],
            manifest_path=data["manifest_path"],
            file_path=data["file_path"],
            image=data["image"],
            new_file=Fingerprint(**data["new_file"]),
            new_manifest=base64.b64decode(data["new_manifest"]),
            previous_manifest=_unb64(data.get("previous_manifest")),
            previous_file=Fingerprint(**previous) if previous else None,
            safety_path=data.get("safety_path"),
            safety_copied=bool(data.get("safety_copied")),
        )


def _b64(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode("ascii")


def _unb64(value: str | None) -> bytes | None:
    return None if value is None else base64.b64decode(value)


def safety_path_for(file_path: str, entry_id: str) -> str:
    """Beside the file (same directory, so same owner and permissions), hidden by its dot."""
    directory, name = posixpath.split(file_path)
    return posixpath.join(directory, f".{name}.{entry_id[:16]}.previous")


def bytes_body(data: bytes) -> BodyFactory:
    async def body() -> AsyncIterator[bytes]:
        yield data

    return body


async def read_small(storage: StorageTarget, path: str, limit: int) -> bytes | None:
    """The object's bytes if it has at most ``limit`` of them, else None."""
    chunks: list[bytes] = []
    total = 0
    async for chunk in await storage.get_object(path):
        total += len(chunk)
        if total > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def make_safety_copy(storage: StorageTarget, record: ExportRecord) -> bool:
    """Copy the previous file to ``safety_path``; False when the store cannot copy."""
    if record.safety_path is None or not isinstance(storage, CopyingTarget):
        return False
    try:
        await storage.copy_object(record.file_path, record.safety_path)
    except CopyUnsupported:
        return False
    return True


async def put_manifest(storage: StorageTarget, path: str, document: bytes) -> None:
    await storage.put_object(
        path,
        bytes_body(document),
        size=len(document),
        content_md5=content_md5(document),
        content_type="application/json",
    )


async def rollback(storage: StorageTarget, record: ExportRecord) -> None:
    """Put the destination back as it was; raises a StorageError if the store refuses.

    Idempotent: each step looks at what is there first, so a repeat after a partial rollback
    (or a crash inside one) finishes it.
    """
    info = await storage.stat(record.file_path)
    previous = record.previous_file
    if not (previous.matches(info) if previous else info is None):
        if record.safety_copied and record.safety_path and isinstance(storage, CopyingTarget):
            await storage.copy_object(record.safety_path, record.file_path)
            info = await storage.stat(record.file_path)
        elif record.new_file.matches(info):
            await storage.delete_object(record.file_path)
            info = None
        else:
            log.warning("export rollback: %s holds an unknown object; left as is", record.file_path)
    back_in_place = previous.matches(info) if previous else info is None
    if record.previous_manifest is not None and back_in_place:
        await put_manifest(storage, record.manifest_path, record.previous_manifest)
    await remove_safety_copy(storage, record)


async def roll_forward(storage: StorageTarget, record: ExportRecord) -> None:
    """Complete an export whose new file is in place: its manifest, then drop the safety copy."""
    await put_manifest(storage, record.manifest_path, record.new_manifest)
    await remove_safety_copy(storage, record)


async def remove_safety_copy(storage: StorageTarget, record: ExportRecord) -> None:
    if record.safety_path is not None:
        await storage.delete_object(record.safety_path)


async def repair(storage: StorageTarget, state: str, record: ExportRecord) -> str:
    """Finish or undo an export whose process stopped in ``state``; returns which it did.

    Parts of uploads the dead process left (S3 multipart) are aborted first.
    """
    if isinstance(storage, PartialUploadsTarget):
        for path in (record.file_path, record.safety_path):
            if path is not None:
                await storage.discard_partial_uploads(path)
    if state == DONE:
        await remove_safety_copy(storage, record)
        return "finished"
    if state in (PREPARED, COPYING):  # the destination was not touched yet
        await remove_safety_copy(storage, record)
        return "undone"
    if state == REPLACING:
        info = await storage.stat(record.file_path)
        previous = record.previous_file
        already_previous = previous.matches(info) if previous else info is None
        if not already_previous and record.new_file.matches(info):
            await roll_forward(storage, record)
            return "finished"
    await rollback(storage, record)
    return "undone"


def observed(info: ObjectInfo | None) -> Fingerprint | None:
    """The fingerprint of an object found at a path (None for nothing there)."""
    return None if info is None else Fingerprint.of(info)
