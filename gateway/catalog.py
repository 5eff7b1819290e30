"""The image-catalog contract: where the gateway finds images, their manifests and their files.

A catalog stores IMGAPI v2 manifests and streams image files. The embedded default is
``plugins.catalog.embedded``; an operator may replace it with one that talks to a real IMGAPI.
Visibility rules (owner, public, acl) and CloudAPI's image object live in the gateway, not here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, runtime_checkable

if TYPE_CHECKING:
    from gateway.settings import Settings
    from gateway.storage import StorageTarget


@dataclass(frozen=True)
class ImageFile:
    """One image file: the manifest's ``files[i]`` plus what only the catalog knows."""

    sha1: str
    size: int
    compression: str  # gzip | bzip2 | xz | none
    content_md5: str  # base64 MD5 of the bytes, recorded at import (IMGAPI's contentMD5)
    dataset_guid: str | None = None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ImageFile:
        """From the JSON object catalogs store (``to_record``)."""
        return cls(
            sha1=record["sha1"],
            size=record["size"],
            compression=record["compression"],
            content_md5=record["content_md5"],
            dataset_guid=record.get("dataset_guid"),
        )

    def to_record(self) -> dict[str, Any]:
        return {
            "sha1": self.sha1,
            "size": self.size,
            "compression": self.compression,
            "content_md5": self.content_md5,
            "dataset_guid": self.dataset_guid,
        }


@dataclass(frozen=True)
class Image:
    """A stored image: its public IMGAPI manifest and its files."""

    manifest: Mapping[str, Any]  # IMGAPI serialization; files[] without content_md5
    files: tuple[ImageFile, ...]

    @property
    def uuid(self) -> str:
        return str(self.manifest["uuid"])

    @property
    def owner(self) -> str:
        return str(self.manifest.get("owner", ""))

    @property
    def name(self) -> str:
        return str(self.manifest.get("name", ""))

    @property
    def version(self) -> str:
        return str(self.manifest.get("version", ""))

    @property
    def state(self) -> str:
        return str(self.manifest.get("state", "active"))

    @property
    def public(self) -> bool:
        return bool(self.manifest.get("public", False))

    @property
    def acl(self) -> tuple[str, ...]:
        return tuple(self.manifest.get("acl") or ())


class CatalogError(Exception):
    """Base of catalog failures."""


class InvalidManifest(CatalogError):
    """Not a valid IMGAPI v2 manifest; ``errors`` lists ``{field, code, message}``."""

    def __init__(self, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class ImageFileMismatch(CatalogError):
    """An imported file's size or sha1 differs from its manifest."""


class ImageAlreadyExists(CatalogError):
    """An image with that uuid is already stored."""


class ImageNotFound(CatalogError):
    """No image has that uuid."""


@runtime_checkable
class ImageCatalog(Protocol):
    """A store of images. Methods are async; none may block the event loop."""

    async def open(self) -> None:
        """Open databases and directories. Called once, inside the app's cleanup context."""

    async def close(self) -> None:
        """Release what ``open`` acquired."""

    async def list_images(self) -> list[Image]:
        """Every stored image (the gateway filters by visibility and query)."""

    async def get_image(self, uuid: str) -> Image | None:
        """The image with ``uuid``, or ``None``."""

    async def delete_image(self, uuid: str) -> bool:
        """Remove the image and its files; ``False`` when it did not exist."""

    async def import_image(self, manifest: Mapping[str, Any], body: AsyncIterator[bytes]) -> Image:
        """Validate ``manifest``, stream the file in, check its size and sha1, record its MD5.

        Atomic: on any failure nothing of this import remains.
        """

    def open_file(self, uuid: str, index: int = 0) -> AsyncIterator[bytes]:
        """Stream the bytes of ``files[index]`` of image ``uuid`` (an async generator)."""


@runtime_checkable
class EditableCatalog(ImageCatalog, Protocol):
    """Optional: a catalog whose images can be changed and cloned (UpdateImage, CloneImage).

    Every first-party catalog has it; an action that needs it answers ``501 NotImplemented``
    when the configured catalog does not.
    """

    async def update_image(self, uuid: str, fields: Mapping[str, Any]) -> Image:
        """Set the manifest fields in ``fields`` (a value of ``None`` removes the field).

        The caller has validated them; the catalog stores them in one transaction (readers see
        the image before or after, never between) and returns the updated image. An unknown
        ``uuid`` raises ``ImageNotFound``. Files, uuid and owner are never changed here.
        """

    async def clone_image(self, uuid: str, *, new_uuid: str, fields: Mapping[str, Any]) -> Image:
        """Record a new image ``new_uuid``: ``uuid``'s manifest with ``fields`` applied as in
        ``update_image`` (the caller sets owner, acl, ...), and the same file bytes.

        The file must not be read and written again where the catalog can avoid it (the embedded
        catalog hard-links it). The clone and the original each survive the other's deletion.
        An unknown ``uuid`` raises ``ImageNotFound``; a taken ``new_uuid`` ``ImageAlreadyExists``.
        """


@runtime_checkable
class LocalFileCatalog(Protocol):
    """Optional: a catalog that keeps image files on the gateway's own filesystem.

    Offering the open file lets a storage target send it with ``sendfile`` (no copy through
    Python) while the export hashes it in a thread. Catalogs without local files leave it out;
    ``open_file`` is always the fallback.
    """

    async def open_local_file(self, uuid: str, index: int = 0) -> BinaryIO:
        """Open ``files[index]`` of image ``uuid`` for reading; the caller closes it.

        Raises ``CatalogError`` for an unknown image or index, ``OSError`` when the file is
        unreadable. The file must not change while open (the embedded catalog never rewrites one).
        """


@dataclass(frozen=True)
class StoredFile:
    """Where an object-store catalog keeps one image file: a path in a storage target."""

    target: StorageTarget
    path: str


@runtime_checkable
class StoredFileCatalog(Protocol):
    """Optional: a catalog whose files live in a storage target rather than on local disk.

    An export asks where the file is so that, when the file and the destination are in the
    same store, the store copies it (a SnapLink, CopyObject) instead of the gateway streaming it.
    """

    async def locate_file(self, uuid: str, index: int = 0) -> StoredFile:
        """Where ``files[index]`` of image ``uuid`` is stored; ``ImageNotFound`` (or
        ``CatalogError`` for a bad index) otherwise."""


@dataclass(frozen=True)
class FileProblem:
    """One stored file that no longer matches its record (``images verify``)."""

    uuid: str
    index: int
    problem: str  # "missing", "size 12 != 13", "md5 ... != ..."


@runtime_checkable
class VerifiableCatalog(Protocol):
    """Optional: a catalog that can check its stored files against its records."""

    def verify_files(self, *, read: bool) -> AsyncIterator[FileProblem]:
        """Yield every file that is missing or differs from its record. ``read``: re-read and
        hash every byte; otherwise ask the store (size and MD5 it reports)."""


@runtime_checkable
class SweepableCatalog(Protocol):
    """Optional: a catalog whose store can hold objects no record points to (an import that
    died between its upload and its record, a delete that could not remove a file)."""

    async def sweep_orphans(self, *, older_than: float, dry_run: bool) -> list[str]:
        """Remove (``dry_run``: only list) the catalog's stored objects that no record uses and
        that are older than ``older_than`` seconds; return their paths."""


@dataclass(frozen=True)
class ImageRecord:
    """One image as a catalog keeps it in the gateway's database.

    ``locations`` holds, per file, where the catalog stored it (for an object-store catalog,
    a path in its target). Several records may share a location (a clone by reference).
    """

    manifest: Mapping[str, Any]
    files: tuple[ImageFile, ...]
    locations: tuple[str, ...]

    @property
    def uuid(self) -> str:
        return str(self.manifest["uuid"])

    def image(self) -> Image:
        return Image(manifest=self.manifest, files=self.files)


@runtime_checkable
class ImageRecords(Protocol):
    """The gateway's own table of image records, lent to catalogs that keep no database.

    The host implements it on the gateway's database (SQLite on one machine, PostgreSQL when
    several instances share it), so a catalog plugin gets transactions, migrations and
    multi-instance visibility without owning any of them. Every method is one transaction.
    """

    async def list_records(self) -> list[ImageRecord]:
        """Every record, oldest first."""

    async def get_record(self, uuid: str) -> ImageRecord | None:
        """The record of ``uuid``, or ``None``."""

    async def insert_record(self, record: ImageRecord) -> None:
        """Add ``record``; ``ImageAlreadyExists`` if its uuid is taken."""

    async def clone_record(self, source_uuid: str, record: ImageRecord) -> None:
        """Add ``record`` only while ``source_uuid`` exists, atomically (a clone that shares
        the source's locations can never outlive a concurrent delete of the last other user
        of them). ``ImageNotFound`` if the source is gone, ``ImageAlreadyExists`` if taken."""

    async def change_manifest(
        self, uuid: str, change: Callable[[Mapping[str, Any]], Mapping[str, Any]]
    ) -> ImageRecord | None:
        """Replace the manifest of ``uuid`` with ``change(stored manifest)``, read and written
        in one transaction (concurrent changes never lose each other's fields); an exception
        from ``change`` stores nothing and propagates. ``None`` if there is no such record."""

    async def delete_record(self, uuid: str) -> tuple[ImageRecord, frozenset[str]] | None:
        """Remove the record of ``uuid`` and return it with the subset of its locations that
        no remaining record uses (the files the caller may now delete); ``None`` if absent."""

    async def used_locations(self) -> frozenset[str]:
        """Every location some record uses (the orphan sweep keeps these)."""


@dataclass(frozen=True)
class CatalogHost:
    """What the gateway lends a ``HostedCatalogFactory``.

    ``records``: the gateway's database table for image records. ``storage``: the target the
    catalog's ``storage`` config selects: the gateway's own export target when the section has
    none (then exports can copy inside the store), else one built from that section. The host
    opens it before the catalog and closes it after.
    """

    records: ImageRecords
    storage: StorageTarget


@runtime_checkable
class HostedCatalogFactory(Protocol):
    """A catalog factory that builds on what the host lends (records table, storage target).

    The host calls ``create_hosted`` instead of ``create`` when a factory has it.
    """

    name: str

    def create_hosted(
        self, config: Mapping[str, Any], settings: Settings, host: CatalogHost
    ) -> ImageCatalog:
        """Validate ``config`` (``ValueError`` with a clear message) and build the catalog."""

    def storage_section(self, config: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The storage section ``config`` names for the files, or ``None`` for the gateway's
        own ``[storage]`` target."""


@runtime_checkable
class ImageCatalogFactory(Protocol):
    """What a catalog plugin registers."""

    #: The ``kind`` operators select in ``[catalog]``, e.g. ``"embedded"``.
    name: str

    def create(self, config: Mapping[str, Any], settings: Settings) -> ImageCatalog:
        """Validate ``config`` (raise ``ValueError`` with a clear message) and build the catalog."""
