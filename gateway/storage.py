"""The storage-target contract: what an export writes into (Manta, S3, ...).

Paths are always Manta-style absolute paths (``/login/stor/dir/name``); a target that is not
Manta maps them onto its own namespace. Bodies stream: a target never holds a whole object
in memory. Targets raise the ``StorageError`` subclasses below, never their client library's
exceptions, so the export action can map them to CloudAPI errors the same way for every target.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from gateway.settings import Settings

#: Returns a fresh iterator over the whole body each time it is called, so that a target may
#: restart an upload from the first byte when it retries.
BodyFactory = Callable[[], AsyncIterator[bytes]]


@dataclass(frozen=True)
class LocalFile:
    """A body's bytes as an open local file, ready for ``sendfile``.

    ``verified`` resolves once the producer knows the bytes are good (the export's sha1 runs
    in a thread beside the upload) and raises the producer's error otherwise. A target sends
    at most ``size - 1`` bytes before awaiting it, so a bad file is never committed.
    """

    file: BinaryIO
    size: int
    verified: Callable[[], Awaitable[None]]


@runtime_checkable
class LocalFileBody(Protocol):
    """A ``BodyFactory`` that can also offer its bytes as a ``LocalFile``.

    Targets that can use ``sendfile`` enter ``local_file()`` once per attempt; when it yields
    ``None`` (the catalog keeps no local copy), or for any other target, calling the body gives
    the usual iterator.
    """

    def __call__(self) -> AsyncIterator[bytes]: ...

    def local_file(self) -> AbstractAsyncContextManager[LocalFile | None]: ...


@dataclass(frozen=True)
class ObjectInfo:
    """What a target knows about one path."""

    path: str
    type: Literal["object", "directory"]
    size: int | None = None
    content_md5: str | None = None  # base64, as in the Content-MD5 header
    etag: str | None = None
    content_type: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Last modification, seconds since the epoch, where the store reports it (listings).
    modified: float | None = None

    @property
    def is_directory(self) -> bool:
        return self.type == "directory"


class StorageError(Exception):
    """Base of every error a storage target raises."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path


class StorageUnavailable(StorageError):
    """Unreachable, timed out, throttled or 503: retry it; a 503 StorageIsDown if it lasts."""


class ObjectNotFound(StorageError):
    """The path does not exist."""


class DirectoryDoesNotExist(StorageError):
    """The parent directory of the path being written does not exist (``path`` names it)."""


class ParentNotDirectory(StorageError):
    """The parent of the path being written is an object (``path`` names it)."""


class AccessDenied(StorageError):
    """The target refused the credentials or the path."""


class ChecksumMismatch(StorageError):
    """The target computed a different MD5 than the one sent."""


class CopyUnsupported(StorageError):
    """The store cannot copy inside itself (Manta v2 answers ``403 SnaplinksDisabledError``).

    Not a failure of the store: a caller that wanted a cheap copy goes on without one.
    """


class StorageRequestFailed(StorageError):
    """Any other refusal; ``code`` is the target's own error code when it gave one."""

    def __init__(self, message: str, *, path: str | None = None, code: str | None = None) -> None:
        super().__init__(message, path=path)
        self.code = code


@runtime_checkable
class StorageTarget(Protocol):
    """One configured object store. Created by a ``StorageTargetFactory``; methods are async."""

    #: The URL users should use to reach what was written (the export's ``manta_url``).
    public_url: str

    async def open(self) -> None:
        """Open pooled connections. Called once, inside the app's cleanup context."""

    async def close(self) -> None:
        """Release everything ``open`` acquired."""

    async def stat(self, path: str) -> ObjectInfo | None:
        """Describe ``path``, or ``None`` when nothing is there."""

    async def put_object(
        self,
        path: str,
        body: BodyFactory,
        *,
        size: int,
        content_md5: str | None,
        content_type: str,
    ) -> ObjectInfo:
        """Write ``size`` bytes from ``body()`` at ``path``; the parent must exist.

        ``content_md5`` (base64) is sent so that the store verifies what it received. The
        target retries transient failures itself, calling ``body`` again to restart from the
        first byte. An exception raised by the body iterator aborts the upload and is re-raised
        unchanged, and nothing is left at ``path`` from this call.
        """

    async def get_object(self, path: str) -> AsyncIterator[bytes]:
        """Open the object and return an iterator over its bytes.

        Called as ``async for chunk in await target.get_object(path)``; a missing path raises
        ``ObjectNotFound`` at the ``await``, before any byte is yielded.
        """

    async def delete_object(self, path: str) -> None:
        """Remove the object at ``path``; a missing object is not an error."""

    async def mkdir(self, path: str) -> None:
        """Make the directory ``path`` (its parent must exist); an existing one is kept."""

    async def list_directory(self, path: str) -> AsyncIterator[ObjectInfo]:
        """Return an iterator over the entries directly under the directory ``path``.

        Called as ``async for info in await target.list_directory(path)``.
        """


@runtime_checkable
class CopyingTarget(StorageTarget, Protocol):
    """The optional capability to copy an object inside the store, bytes never leaving it.

    Check it with ``isinstance(target, CopyingTarget)``; a target that has the method may
    still raise ``CopyUnsupported`` when the store itself refuses (Manta v2).
    """

    def can_copy_from(self, source: StorageTarget) -> bool:
        """Whether this store can copy an object of ``source`` (another configured target, or
        this one) with ``copy_object``: the same store, reached with the same credentials.
        A ``True`` is a promise to try; the copy itself may still raise ``CopyUnsupported``,
        and a target remembers that answer so that later copies are refused at once."""

    async def copy_object(self, source: str, destination: str) -> ObjectInfo:
        """Make ``destination`` an object with ``source``'s bytes, content type and MD5.

        The store does the copy (Manta: a SnapLink; S3: CopyObject, or UploadPartCopy parts
        above the target's threshold); nothing passes through the gateway. Like ``put_object``
        it is atomic: ``destination`` holds what it held before or the whole copy, never part
        of it, and an existing object there is replaced. ``source`` missing raises
        ``ObjectNotFound``; a directory at ``source`` raises ``StorageRequestFailed``. The
        destination's parent must exist, as for ``put_object``. Transient failures are retried
        like every other request; the returned info describes ``destination``.
        """


@runtime_checkable
class PartialUploadsTarget(StorageTarget, Protocol):
    """The optional capability to drop uploads that were started and never completed.

    A store whose large writes are several requests (S3 multipart uploads) keeps the parts of
    a writer that died until someone aborts them; they are invisible in listings but stored
    (and billed). Repairs call this for the paths a dead writer was writing.
    """

    async def discard_partial_uploads(self, path: str) -> int:
        """Abort every incomplete upload to exactly ``path``; return how many there were.

        Only for a path no live writer is uploading to (the caller holds its journal entry).
        """


@runtime_checkable
class ProbedTarget(StorageTarget, Protocol):
    """The optional capability to tell cheaply whether the store answers (``GET /--ready``).

    The gateway calls it every few seconds at most (the answer is cached), with a short
    timeout of its own. A target without it is taken to be ready.
    """

    async def probe(self) -> None:
        """Send one cheap request, not retried (Manta: a HEAD of the operator's directory;
        S3: HeadBucket); return if the store answered it, else raise the ``StorageError``."""


@runtime_checkable
class StorageTargetFactory(Protocol):
    """What a storage plugin registers: a named kind of target, built from its config section."""

    #: The ``kind`` operators select in ``[storage]``, e.g. ``"manta"`` or ``"s3"``.
    name: str

    def create(self, config: Mapping[str, Any], settings: Settings) -> StorageTarget:
        """Validate ``config`` (raise ``ValueError`` with a clear message) and build the target."""
