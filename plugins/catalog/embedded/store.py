"""The embedded catalog: manifests in SQLite, files under ``<root>/<uuid>/file0``.

An import streams into a temporary file in ``<root>`` (same filesystem; ``plugin_kit.spool``
hashes sha1 and MD5 on the way in a worker thread), checks size and sha1 against the
manifest, then claims ``<root>/<uuid>`` with an atomic ``mkdir``, renames the file into it
and inserts the row. The row is the commit point; any failure before it removes everything
this import created.

A clone claims its directory the same way and hard-links the original's files into it (a copy
only where the filesystem refuses the link), then inserts its row. An update rewrites one row's
manifest in one transaction. Files are never rewritten in place, so two images may share them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from gateway.catalog import (
    CatalogError,
    FileProblem,
    Image,
    ImageAlreadyExists,
    ImageFile,
    ImageNotFound,
)
from gateway.plugin_kit.manifests import (
    FIXED_FIELDS,
    invalid_manifest,
    serialize_manifest,
    valid_changed_manifest,
    validate_manifest,
)
from gateway.plugin_kit.spool import SPOOL_PREFIX, spool

CHUNK_SIZE = 1024 * 1024
#: Images kept in memory for reads before the cache starts over.
READ_CACHE_LIMIT = 10_000
#: Seconds one look at the file's ``data_version`` stands for: another process's change is
#: seen by reads within this bound (this connection's own writes drop the cache at once).
RECHECK_AFTER = 0.001
#: Leftovers of a crashed import or delete older than this are swept when the catalog opens
#: (younger ones may belong to another process, e.g. a CLI import while the server runs).
STALE_AFTER = 24 * 3600.0
#: ``os.link`` failures that mean "this filesystem will not link here", so a clone copies:
#: another device under the root (EXDEV), no hard links at all (EPERM, ENOTSUP, ENOSYS), or
#: the file's link count at its maximum (EMLINK). Any other error is a real failure.
NO_LINK_ERRNOS = frozenset(
    {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS}
)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    uuid TEXT PRIMARY KEY,
    manifest TEXT NOT NULL,   -- the public IMGAPI serialization, key order kept
    files TEXT NOT NULL,      -- [{sha1, size, compression, content_md5, dataset_guid}]
    imported_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
)
"""


def _image_from_row(manifest_text: str, files_text: str) -> Image:
    files = tuple(ImageFile.from_record(f) for f in json.loads(files_text))
    return Image(manifest=json.loads(manifest_text), files=files)


class EmbeddedCatalog:
    """The default ``ImageCatalog``.

    SQLite calls are tiny and run on the loop; file I/O and hashing never do.

    Reads are served from memory while the file is unchanged: every GetImage used to run a
    query and parse two JSON texts. ``PRAGMA data_version`` (read from the WAL index in shared
    memory) moves whenever another connection or process commits (a CLI import or delete); it
    is looked at once per millisecond at most, so such a change is seen within that bound.
    This connection's own writes do not move it, so each write method drops the cache itself.
    Images are immutable ``Mapping``s to their users, so one object can go to every caller.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._db: sqlite3.Connection | None = None
        self._images: dict[str, Image] = {}
        self._listing: list[Image] | None = None
        self._data_version: int | None = None
        self._next_check = 0.0

    # --- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(_sweep, self.root, time.time() - STALE_AFTER)
        db = sqlite3.connect(self.root / "catalog.sqlite", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA busy_timeout=5000")
        db.execute(_SCHEMA)
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self._forget()
        self._data_version = None
        self._next_check = 0.0

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise CatalogError("the catalog is not open")
        return self._db

    # --- reads ------------------------------------------------------------------------------

    def _check_cache(self) -> None:
        """Forget what was read if another connection has committed since (looked at once
        per ``RECHECK_AFTER``: each look is a statement, and a busy server reads a lot)."""
        now = time.monotonic()
        if now < self._next_check:
            return
        (version,) = self.db.execute("PRAGMA data_version").fetchone()
        self._next_check = now + RECHECK_AFTER
        if version != self._data_version:
            self._forget()
            self._data_version = version

    def _forget(self) -> None:
        self._images.clear()
        self._listing = None

    async def list_images(self) -> list[Image]:
        self._check_cache()
        if self._listing is None:
            rows = self.db.execute("SELECT manifest, files FROM images ORDER BY rowid").fetchall()
            self._listing = [_image_from_row(m, f) for m, f in rows]
        return list(self._listing)

    async def get_image(self, uuid: str) -> Image | None:
        self._check_cache()
        image = self._images.get(uuid)
        if image is not None:
            return image
        row = self.db.execute(
            "SELECT manifest, files FROM images WHERE uuid = ?", (uuid,)
        ).fetchone()
        if row is None:
            return None
        image = _image_from_row(*row)
        if len(self._images) >= READ_CACHE_LIMIT:
            self._images.clear()
        self._images[uuid] = image
        return image

    def file_path(self, uuid: str, index: int = 0) -> Path:
        """Where ``files[index]`` of ``uuid`` lives (whether or not it exists)."""
        return self.root / uuid / f"file{index}"

    async def open_local_file(self, uuid: str, index: int = 0) -> BinaryIO:
        """Open ``files[index]`` (``LocalFileCatalog``): files are renamed in whole and never
        rewritten, so what the caller reads is what was imported."""
        image = await self.get_image(uuid)
        if image is None:
            raise CatalogError(f"image {uuid} not found")
        if not 0 <= index < len(image.files):
            raise CatalogError(f"image {uuid} has no file {index}")
        return await asyncio.to_thread(open, self.file_path(uuid, index), "rb")

    async def open_file(self, uuid: str, index: int = 0) -> AsyncIterator[bytes]:
        """Stream ``files[index]`` in 1 MiB chunks, each read in a worker thread."""
        fh = await self.open_local_file(uuid, index)
        try:
            while chunk := await asyncio.to_thread(fh.read, CHUNK_SIZE):
                yield chunk
        finally:
            await asyncio.to_thread(fh.close)

    async def verify_files(self, *, read: bool) -> AsyncIterator[FileProblem]:
        """``VerifiableCatalog``: each file's size (``read``: and its sha1 and MD5, re-hashed)."""
        for image in await self.list_images():
            for index, expected in enumerate(image.files):
                path = self.file_path(image.uuid, index)
                problem = await asyncio.to_thread(_check_file, path, expected, read)
                if problem:
                    yield FileProblem(image.uuid, index, problem)

    # --- writes -----------------------------------------------------------------------------

    async def delete_image(self, uuid: str) -> bool:
        """Hide the files (atomic rename), drop the row, then remove the files."""
        if await self.get_image(uuid) is None:
            return False
        image_dir = self.root / uuid
        trash = self.root / f".trash-{uuid}-{secrets.token_hex(4)}"
        moved = await asyncio.to_thread(_rename_if_exists, image_dir, trash)
        try:
            cursor = self.db.execute("DELETE FROM images WHERE uuid = ?", (uuid,))
            self._forget()
        except BaseException:
            if moved:
                await asyncio.to_thread(os.rename, trash, image_dir)
            raise
        if moved:
            await asyncio.to_thread(shutil.rmtree, trash, True)
        return cursor.rowcount > 0

    async def import_image(self, manifest: Mapping[str, Any], body: AsyncIterator[bytes]) -> Image:
        """Validate, stream in, verify size and sha1, record MD5, commit by inserting the row."""
        errors = validate_manifest(manifest)
        if errors:
            raise invalid_manifest(errors)
        public = serialize_manifest(manifest)
        uuid = str(public["uuid"])
        if await self.get_image(uuid) is not None:
            raise ImageAlreadyExists(f"image {uuid} already exists")
        expected = manifest["files"][0]
        spooled = await spool(body, self.root, expected["size"])
        image_dir = self.root / uuid
        claimed = False
        try:
            spooled.check(expected["size"], expected["sha1"])
            await self._claim(image_dir)
            claimed = True
            await asyncio.to_thread(os.replace, spooled.path, image_dir / "file0")
            stored = dict(public["files"][0])
            stored["content_md5"] = spooled.content_md5
            manifest_text, files_text = json.dumps(public), json.dumps([stored])
            try:
                self.db.execute(
                    "INSERT INTO images (uuid, manifest, files) VALUES (?, ?, ?)",
                    (uuid, manifest_text, files_text),
                )
                self._forget()
            except sqlite3.IntegrityError:
                raise ImageAlreadyExists(f"image {uuid} already exists") from None
        except BaseException:
            await asyncio.to_thread(spooled.discard)
            if claimed:
                await asyncio.to_thread(shutil.rmtree, image_dir, True)
            raise
        return _image_from_row(manifest_text, files_text)

    async def update_image(self, uuid: str, fields: Mapping[str, Any]) -> Image:
        """Set ``fields`` in the stored manifest (``None`` removes one) in one transaction.

        Read, change and write run in one ``BEGIN IMMEDIATE`` transaction with no ``await``
        inside it, so neither another process nor another task on this connection can slip a
        write in between. Keys keep IMGAPI's serialization order; a new key lands where IMGAPI
        puts it. A result that is not a valid manifest raises ``InvalidManifest`` and stores
        nothing.
        """
        fixed = [key for key in (*FIXED_FIELDS, "owner") if key in fields]
        if fixed:
            raise CatalogError(f"update_image cannot change {', '.join(fixed)}")
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute(
                "SELECT manifest, files FROM images WHERE uuid = ?", (uuid,)
            ).fetchone()
            if row is None:
                raise ImageNotFound(f"image {uuid} not found")
            manifest_text = json.dumps(valid_changed_manifest(json.loads(row[0]), fields))
            db.execute("UPDATE images SET manifest = ? WHERE uuid = ?", (manifest_text, uuid))
            db.execute("COMMIT")
            self._forget()
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return _image_from_row(manifest_text, row[1])

    async def clone_image(self, uuid: str, *, new_uuid: str, fields: Mapping[str, Any]) -> Image:
        """Record ``new_uuid``: ``uuid``'s manifest with ``fields`` applied, and its files.

        Each file is **hard-linked** (``os.link``) into ``<root>/<new_uuid>/``: no byte is read
        or written, and since neither catalog file is ever rewritten in place, deleting either
        image only drops its own link and leaves the other's file intact. Only where the
        filesystem refuses the link (``NO_LINK_ERRNOS``: another device, no hard links, too many
        links) is the file **copied** instead, in a worker thread, and fsynced. The directory is
        claimed with the same atomic ``mkdir`` as an import and the row is the commit point: a
        failure before it removes the new directory.
        """
        fixed = [key for key in FIXED_FIELDS if key in fields]
        if fixed:
            raise CatalogError(f"clone_image cannot set {', '.join(fixed)}")
        row = self.db.execute(
            "SELECT manifest, files FROM images WHERE uuid = ?", (uuid,)
        ).fetchone()
        if row is None:
            raise ImageNotFound(f"image {uuid} not found")
        if await self.get_image(new_uuid) is not None:
            raise ImageAlreadyExists(f"image {new_uuid} already exists")
        public = valid_changed_manifest({**json.loads(row[0]), "uuid": new_uuid}, fields)
        files_text = row[1]  # the same bytes, so the same sha1, size and MD5
        image_dir = self.root / new_uuid
        await self._claim(image_dir)
        try:
            for index in range(len(json.loads(files_text))):
                try:
                    await asyncio.to_thread(
                        link_or_copy, self.file_path(uuid, index), image_dir / f"file{index}"
                    )
                except FileNotFoundError:
                    if await self.get_image(uuid) is None:  # deleted while we cloned it
                        raise ImageNotFound(f"image {uuid} not found") from None
                    raise
            manifest_text = json.dumps(public)
            try:
                self.db.execute(
                    "INSERT INTO images (uuid, manifest, files) VALUES (?, ?, ?)",
                    (new_uuid, manifest_text, files_text),
                )
                self._forget()
            except sqlite3.IntegrityError:
                raise ImageAlreadyExists(f"image {new_uuid} already exists") from None
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, image_dir, True)
            raise
        return _image_from_row(manifest_text, files_text)

    async def _claim(self, image_dir: Path) -> None:
        """``mkdir`` the image's directory: atomic, so one import wins, even across processes.

        A directory with no row that is older than ``STALE_AFTER`` is a crashed import's
        leftover and is replaced; a younger one is another import in flight.
        """
        uuid = image_dir.name
        for _ in range(2):
            try:
                await asyncio.to_thread(image_dir.mkdir)
                return
            except FileExistsError:
                if await self.get_image(uuid) is not None:
                    break
                stale = await asyncio.to_thread(_older_than, image_dir, time.time() - STALE_AFTER)
                if not stale:
                    break
                await asyncio.to_thread(shutil.rmtree, image_dir, True)
        raise ImageAlreadyExists(f"image {uuid} already exists or is being imported")


def _check_file(path: Path, expected: ImageFile, read: bool) -> str | None:
    """What is wrong with the local file ``path`` (``None``: nothing); a worker thread."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return f"missing: no file at {path}"
    if size != expected.size:
        return f"size {size} at {path}, recorded {expected.size}"
    if not read:
        return None
    sha1, md5 = hashlib.sha1(), hashlib.md5()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK_SIZE):
            sha1.update(chunk)
            md5.update(chunk)
    if sha1.hexdigest() != expected.sha1:
        return f"sha1 {sha1.hexdigest()} read from {path}, recorded {expected.sha1}"
    content_md5 = base64.b64encode(md5.digest()).decode()
    if content_md5 != expected.content_md5:
        return f"MD5 {content_md5} read from {path}, recorded {expected.content_md5}"
    return None


def _sweep(root: Path, older_than: float) -> None:
    """Remove temp files and trash left by a crash (a row is the only commit point)."""
    for entry in root.iterdir():
        if not entry.name.startswith((SPOOL_PREFIX, ".trash-")):
            continue
        with contextlib.suppress(FileNotFoundError):
            if entry.lstat().st_mtime >= older_than:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink()


def link_or_copy(source: Path, destination: Path) -> str:
    """Hard-link ``source`` at ``destination``; copy it only if the filesystem refuses the link.

    Returns ``"link"`` or ``"copy"``. Runs in a worker thread. ``destination`` must not exist.
    """
    try:
        os.link(source, destination)
        return "link"
    except OSError as exc:
        if exc.errno not in NO_LINK_ERRNOS:
            raise
    try:
        shutil.copyfile(source, destination)
        with open(destination, "rb") as fh:
            os.fsync(fh.fileno())
    except BaseException:
        destination.unlink(missing_ok=True)
        raise
    return "copy"


def _older_than(path: Path, when: float) -> bool:
    try:
        return path.lstat().st_mtime < when
    except FileNotFoundError:
        return True


def _rename_if_exists(src: Path, dst: Path) -> bool:
    with contextlib.suppress(FileNotFoundError):
        os.rename(src, dst)
        return True
    return False
