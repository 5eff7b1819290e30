"""The object-store catalog: records in the gateway's database, files in a storage target.

IMGAPI keeps image files in Manta under the operator's tree and their manifests in its own
database; this catalog does the same through the gateway's storage contract, so any gateway
instance reaches every file and an export into the same store is a copy the store makes.

An import receives the file into a local spool file (sha1, MD5 and size checked before any
byte leaves the gateway), uploads it with its Content-MD5 to a name no other import uses, and
only then inserts the record: the record is the commit point, and a failure before it deletes
what was uploaded. Files are never rewritten, so a clone shares its source's file by
reference; a file is deleted with the last record that uses it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from gateway.catalog import (
    CatalogError,
    FileProblem,
    Image,
    ImageAlreadyExists,
    ImageFile,
    ImageNotFound,
    ImageRecord,
    ImageRecords,
    StoredFile,
)
from gateway.plugin_kit.manifests import (
    FIXED_FIELDS,
    invalid_manifest,
    serialize_manifest,
    valid_changed_manifest,
    validate_manifest,
)
from gateway.plugin_kit.spool import SPOOL_PREFIX, SpooledFile, spool
from gateway.storage import LocalFile, ObjectNotFound, StorageError, StorageTarget

log = logging.getLogger(__package__)

CHUNK_SIZE = 1024 * 1024
FILE_TYPE = "application/octet-stream"


class SpoolBody:
    """The spooled file as a restartable upload body (``LocalFileBody``: sendfile where the
    target can, chunks read in a worker thread otherwise)."""

    def __init__(self, spooled: SpooledFile) -> None:
        self.spooled = spooled

    async def __call__(self) -> AsyncIterator[bytes]:
        fh = await asyncio.to_thread(self.spooled.path.open, "rb")
        try:
            while chunk := await asyncio.to_thread(fh.read, CHUNK_SIZE):
                yield chunk
        finally:
            await asyncio.to_thread(fh.close)

    @asynccontextmanager
    async def local_file(self) -> AsyncIterator[LocalFile | None]:
        fh = await asyncio.to_thread(self.spooled.path.open, "rb")
        try:
            yield LocalFile(fh, self.spooled.size, _already_verified)
        finally:
            await asyncio.to_thread(fh.close)


async def _already_verified() -> None:
    """The spool checked size and sha1 before the upload started."""


class ObjectStoreCatalog:
    """An ``EditableCatalog`` and ``StoredFileCatalog`` over a storage target."""

    def __init__(
        self, records: ImageRecords, storage: StorageTarget, prefix: str, spool_dir: Path
    ) -> None:
        self.records = records
        self.storage = storage
        self.prefix = prefix.rstrip("/")
        self.spool_dir = spool_dir

    # --- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        await asyncio.to_thread(self.spool_dir.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(_sweep_spool, self.spool_dir, time.time() - 24 * 3600)

    async def close(self) -> None:
        return None

    # --- reads ------------------------------------------------------------------------------

    async def list_images(self) -> list[Image]:
        return [record.image() for record in await self.records.list_records()]

    async def get_image(self, uuid: str) -> Image | None:
        record = await self.records.get_record(uuid)
        return record.image() if record else None

    async def _record(self, uuid: str) -> ImageRecord:
        record = await self.records.get_record(uuid)
        if record is None:
            raise ImageNotFound(f"image {uuid} not found")
        return record

    async def locate_file(self, uuid: str, index: int = 0) -> StoredFile:
        record = await self._record(uuid)
        if not 0 <= index < len(record.locations):
            raise CatalogError(f"image {uuid} has no file {index}")
        return StoredFile(self.storage, record.locations[index])

    async def open_file(self, uuid: str, index: int = 0) -> AsyncIterator[bytes]:
        """Stream the stored object (the target's streaming GET)."""
        stored = await self.locate_file(uuid, index)
        try:
            chunks = await self.storage.get_object(stored.path)
        except ObjectNotFound as exc:
            raise CatalogError(f"the file of image {uuid} is missing from the store") from exc
        async for chunk in chunks:
            yield chunk

    # --- writes -----------------------------------------------------------------------------

    def _location(self, uuid: str, index: int) -> str:
        """``<prefix>/<uuid>/file<index>.<import id>``: IMGAPI's layout, plus a part no other
        import has, so two imports of one uuid racing in two processes never share bytes."""
        return f"{self.prefix}/{uuid}/file{index}.{secrets.token_hex(6)}"

    async def _mkdirs(self, directory: str) -> None:
        """Make ``directory`` and the parents below the account's top directory."""
        parts = directory.strip("/").split("/")
        for depth in range(3, len(parts) + 1):  # /<login>/stor exists already
            await self.storage.mkdir("/" + "/".join(parts[:depth]))

    async def import_image(self, manifest: Mapping[str, Any], body: AsyncIterator[bytes]) -> Image:
        errors = validate_manifest(manifest)
        if errors:
            raise invalid_manifest(errors)
        public = serialize_manifest(manifest)
        uuid = str(public["uuid"])
        if await self.records.get_record(uuid) is not None:
            raise ImageAlreadyExists(f"image {uuid} already exists")
        expected = manifest["files"][0]
        spooled = await spool(body, self.spool_dir, expected["size"])
        try:
            spooled.check(expected["size"], expected["sha1"])
            location = self._location(uuid, 0)
            await self._mkdirs(location.rsplit("/", 1)[0])
            stored_info = await self.storage.put_object(
                location,
                SpoolBody(spooled),
                size=spooled.size,
                content_md5=spooled.content_md5,
                content_type=FILE_TYPE,
            )
            try:
                if stored_info.content_md5 not in (None, spooled.content_md5):
                    raise CatalogError(
                        f"the store holds MD5 {stored_info.content_md5} for {location}, "
                        f"not the {spooled.content_md5} sent"
                    )
                stored = {**public["files"][0], "content_md5": spooled.content_md5}
                record = ImageRecord(
                    manifest=public, files=(ImageFile.from_record(stored),), locations=(location,)
                )
                await self.records.insert_record(record)
            except BaseException:
                await self._forget(location)
                raise
        finally:
            await asyncio.to_thread(spooled.discard)
        return record.image()

    async def _forget(self, location: str) -> None:
        """Delete an object no record uses, and its directory once empty (best effort: a
        leftover is what ``images sweep`` removes)."""
        try:
            await self.storage.delete_object(location)
        except StorageError as exc:
            log.warning("could not delete %s; images sweep will: %s", location, exc)
            return
        with contextlib.suppress(StorageError):
            await self.storage.delete_object(location.rsplit("/", 1)[0])

    async def delete_image(self, uuid: str) -> bool:
        """Drop the record, then the files no other record uses."""
        deleted = await self.records.delete_record(uuid)
        if deleted is None:
            return False
        _, unused = deleted
        for location in sorted(unused):
            await self._forget(location)
        return True

    async def update_image(self, uuid: str, fields: Mapping[str, Any]) -> Image:
        fixed = [key for key in (*FIXED_FIELDS, "owner") if key in fields]
        if fixed:
            raise CatalogError(f"update_image cannot change {', '.join(fixed)}")
        record = await self.records.change_manifest(
            uuid, lambda stored: valid_changed_manifest(stored, fields)
        )
        if record is None:
            raise ImageNotFound(f"image {uuid} not found")
        return record.image()

    async def clone_image(self, uuid: str, *, new_uuid: str, fields: Mapping[str, Any]) -> Image:
        """A new record sharing the source's stored files by reference: nothing is copied."""
        fixed = [key for key in FIXED_FIELDS if key in fields]
        if fixed:
            raise CatalogError(f"clone_image cannot set {', '.join(fixed)}")
        source = await self._record(uuid)
        public = valid_changed_manifest({**source.manifest, "uuid": new_uuid}, fields)
        record = ImageRecord(public, source.files, source.locations)
        await self.records.clone_record(uuid, record)
        return record.image()

    # --- upkeep -----------------------------------------------------------------------------

    async def verify_files(self, *, read: bool) -> AsyncIterator[FileProblem]:
        for record in await self.records.list_records():
            for index, (image_file, location) in enumerate(
                zip(record.files, record.locations, strict=True)
            ):
                problem = await self._check(image_file, location, read)
                if problem:
                    yield FileProblem(record.uuid, index, problem)

    async def _check(self, image_file: ImageFile, location: str, read: bool) -> str | None:
        info = await self.storage.stat(location)
        if info is None:
            return f"missing: nothing at {location}"
        if info.size is not None and info.size != image_file.size:
            return f"size {info.size} at {location}, recorded {image_file.size}"
        if not read:
            if info.content_md5 is not None and info.content_md5 != image_file.content_md5:
                return f"MD5 {info.content_md5} at {location}, recorded {image_file.content_md5}"
            return None
        md5, sha1, size = hashlib.md5(), hashlib.sha1(), 0
        async for chunk in await self.storage.get_object(location):
            md5.update(chunk)
            sha1.update(chunk)
            size += len(chunk)
        content_md5 = base64.b64encode(md5.digest()).decode()
        if size != image_file.size:
            return f"{size} bytes read from {location}, recorded {image_file.size}"
        if sha1.hexdigest() != image_file.sha1:
            return f"sha1 {sha1.hexdigest()} read from {location}, recorded {image_file.sha1}"
        if content_md5 != image_file.content_md5:
            return f"MD5 {content_md5} read from {location}, recorded {image_file.content_md5}"
        return None

    async def sweep_orphans(self, *, older_than: float, dry_run: bool) -> list[str]:
        """Delete the objects under the prefix that no record uses and that were last changed
        more than ``older_than`` seconds ago (younger ones may be imports in flight); return
        their paths. ``dry_run`` only lists them."""
        used = await self.records.used_locations()
        cutoff = time.time() - older_than
        orphans: list[str] = []
        try:
            uuid_dirs = [info async for info in await self.storage.list_directory(self.prefix)]
        except ObjectNotFound:
            return []
        for directory in uuid_dirs:
            if not directory.is_directory:
                continue
            try:
                entries = [info async for info in await self.storage.list_directory(directory.path)]
            except ObjectNotFound:
                continue
            for info in entries:
                if info.is_directory or info.path in used:
                    continue
                if info.modified is None or info.modified > cutoff:
                    continue
                orphans.append(info.path)
        if not dry_run:
            for path in orphans:
                await self._forget(path)
        return orphans


def _sweep_spool(directory: Path, older_than: float) -> None:
    """Remove spool files a crashed import left (younger ones may be imports in flight)."""
    for entry in directory.glob(f"{SPOOL_PREFIX}*"):
        with contextlib.suppress(FileNotFoundError):
            if entry.stat().st_mtime < older_than:
                entry.unlink()
