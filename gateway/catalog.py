"""The image-catalog contract: where the gateway finds images, their manifests and their files.

A catalog stores IMGAPI v2 manifests and streams image files. The embedded default is
``plugins.catalog.embedded``; an operator may replace it with one that talks to a real IMGAPI.
Visibility rules (owner, public, acl) and CloudAPI's image object live in the gateway, not here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, runtime_checkable

if TYPE_CHECKING:
    from gateway.settings import Settings


@dataclass(frozen=True)
class ImageFile:
    """One image file: the manifest's ``files[i]`` plus what only the catalog knows."""

    sha1: str
    size: int
    compression: str  # gzip | bzip2 | xz | none
    content_md5: str  # base64 MD5 of the bytes, recorded at import (IMGAPI's contentMD5)
    dataset_guid: str | None = None


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


@runtime_checkable
class ImageCatalogFactory(Protocol):
    """What a catalog plugin registers."""

    #: The ``kind`` operators select in ``[catalog]``, e.g. ``"embedded"``.
    name: str

    def create(self, config: Mapping[str, Any], settings: Settings) -> ImageCatalog:
        """Validate ``config`` (raise ``ValueError`` with a clear message) and build the catalog."""
