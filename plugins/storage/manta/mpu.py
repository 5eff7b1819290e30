"""Big objects as Manta multipart uploads, parts sent in parallel (the protocol ``mmpu`` speaks).

``POST /<operator>/uploads`` creates the upload (``objectPath``, and the object's
``content-length``, ``content-type`` and, when known, ``content-md5``, which Manta checks at
commit); each part is ``PUT <partsDirectory>/<n>`` (from 0) with its own ``Content-MD5``; ``POST
<partsDirectory>/commit`` with the parts' etags makes the object, atomically replacing what was
at the path; ``POST <partsDirectory>/abort`` drops the parts. Any failure, or a cancellation,
aborts the upload, so nothing is left at the path and no upload stays open.

Parts are prepared one after the other (read, hashed) and sent ``max_concurrency`` at a time.
A body that offers its local file sends each part from the file with ``sendfile``: nothing is
buffered, and up to ``max_concurrency`` parts are hashed ahead while the slots are busy (or
their MD5s come from an earlier upload of the same bytes, ``part_digests``). Any other body
is cut into in-memory parts; a part is filled only once a sending slot is free, so at most
``max_concurrency`` parts are held. Parts and their MD5s are retried as any request is; the
MD5 of the whole object is compared with the one Manta computed at commit.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import concurrent.futures
import contextlib
import functools
import hashlib
import json
import logging
import os
import posixpath
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.plugin_kit import ExactSizeBody, content_md5, exact_size_body
from gateway.plugin_kit.groups import most_telling
from gateway.storage import (
    BodyFactory,
    ChecksumMismatch,
    DirectoryDoesNotExist,
    LocalFile,
    LocalFileBody,
    ObjectInfo,
    ObjectNotFound,
    ParentNotDirectory,
    StorageRequestFailed,
)
from plugins.storage.manta.configuration import MAX_PARTS
from plugins.storage.manta.upload import FileRange

if TYPE_CHECKING:
    from plugins.storage.manta.target import MantaTarget

log = logging.getLogger(__package__)  # the plugin's logger, whichever module logs

T = TypeVar("T")

#: Bytes read per call while hashing a part of a local file.
HASH_READ = 1024 * 1024
#: A part held in memory is sent in slices of this size (the socket's buffer never copies more).
SEND_SLICE = 1024 * 1024
#: Commit and create bodies are small JSON documents.
JSON_TYPE = "application/json"


def part_size_for(size: int, part_size: int) -> int:
    """``part_size``, raised so that ``size`` bytes fit in Manta's ``MAX_PARTS`` parts."""
    return max(part_size, -(-size // MAX_PARTS))


def json_body(document: Any) -> tuple[BodyFactory, int]:
    """A small JSON request body and its length."""
    data = json.dumps(document, separators=(",", ":")).encode()

    async def chunks() -> AsyncIterator[bytes]:
        yield data

    return chunks, len(data)


@dataclass(frozen=True)
class Part:
    """One part: its number (from 0), its body, and the job that hashes it (in a thread)."""

    number: int
    body: BodyFactory
    size: int
    #: Returns (bytes hashed, base64 MD5); fewer bytes than ``size`` means the file was short.
    digest: Callable[[], tuple[int, str]]


class HashPool:
    """One upload's hashing threads: off the event loop and off the shared executor.

    Parts are hashed in parallel (a thread per part in flight and one more, but no more
    threads than cores), the whole object's MD5, when it is needed, in order among them.
    ``close`` stops file hashes between two reads and waits for the jobs running, so that no
    thread reads a descriptor after it is closed.
    """

    def __init__(self, threads: int) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="manta-mpu-md5"
        )
        self.stop = threading.Event()
        self._running: set[concurrent.futures.Future[Any]] = set()

    async def run(self, job: Callable[[], T]) -> T:
        future = self._executor.submit(job)
        self._running.add(future)
        future.add_done_callback(self._running.discard)
        return await asyncio.wrap_future(future)

    async def close(self) -> None:
        self.stop.set()
        self._executor.shutdown(wait=False, cancel_futures=True)
        running = [asyncio.wrap_future(f) for f in list(self._running) if not f.done()]
        if running:
            await asyncio.wait(running)


def _hash_range(
    fd: int, offset: int, length: int, stop: threading.Event, whole: Any = None
) -> tuple[int, str]:
    """(bytes read, base64 MD5) of ``length`` bytes at ``offset`` (positional reads: parts
    share the file); with ``whole``, feed that instead of a part's own MD5."""
    md5 = whole if whole is not None else hashlib.md5()  # MD5 is the wire format
    buffer = memoryview(bytearray(HASH_READ))
    done = 0
    while done < length and not stop.is_set():
        got = os.preadv(fd, [buffer[: min(HASH_READ, length - done)]], offset + done)
        if not got:
            break
        md5.update(buffer[:got])
        done += got
    return done, "" if whole is not None else content_md5_of(md5)


def _remembered(length: int, md5: str) -> tuple[int, str]:
    return length, md5


def _hash_data(data: bytearray) -> tuple[int, str]:
    return len(data), content_md5(data)


def content_md5_of(digest: Any) -> str:
    """The base64 form of a finished ``hashlib`` MD5."""
    return base64.b64encode(digest.digest()).decode()


def _slices(data: bytearray) -> BodyFactory:
    """A body over ``data`` in ``SEND_SLICE`` pieces, as often as it is called."""

    async def chunks() -> AsyncIterator[bytes]:
        view = memoryview(data)
        for start in range(0, len(data), SEND_SLICE):
            yield bytes(view[start : start + SEND_SLICE])

    return chunks


class _PartSource:
    """Cuts the body into parts, in order.

    ``whole`` hashes every byte in order, only when the caller gave no Content-MD5: one given
    is what the object's MD5 must be, and Manta checks it at commit.
    """

    #: Whether the next part may be made (and hashed) before a slot is free for it: only
    #: when that holds no memory.
    prepares_ahead = False

    def __init__(self, size: int, part_size: int, hasher: HashPool, whole: bool) -> None:
        self.size = size
        self.part_size = part_size
        self.hasher = hasher
        self.whole: Any = hashlib.md5() if whole else None  # MD5 is the wire format
        #: The producer's own exception (re-raised unchanged), once it has raised one.
        self.own_error: BaseException | None = None

    def parts(self) -> AsyncGenerator[Part, None]:  # pragma: no cover - interface
        raise NotImplementedError

    async def verified(self) -> None:
        """Return once the producer vouches for every byte (the commit waits for it)."""

    @property
    def md5(self) -> str | None:
        """The whole object's MD5, when it was computed."""
        return None if self.whole is None else content_md5_of(self.whole)


class _FileParts(_PartSource):
    """Parts as ranges of the body's local file: hashed by positional reads (or their MD5s
    ``remembered`` from an earlier upload of the same bytes, ``PartDigests``), sent with
    ``sendfile`` (or read again in a thread where it cannot be used)."""

    prepares_ahead = True

    def __init__(
        self,
        local: LocalFile,
        size: int,
        part_size: int,
        hasher: HashPool,
        whole: bool,
        remembered: tuple[str, ...] | None = None,
    ) -> None:
        super().__init__(size, part_size, hasher, whole)
        self.local = local
        self.remembered = remembered

    async def parts(self) -> AsyncGenerator[Part, None]:
        if self.local.size != self.size:
            raise StorageRequestFailed(f"the body has {self.local.size} bytes, not {self.size}")
        fd = self.local.file.fileno()
        stop = self.hasher.stop
        for number, offset in enumerate(range(0, self.size, self.part_size)):
            length = min(self.part_size, self.size - offset)
            if self.whole is not None:
                got, _ = await self.hasher.run(
                    functools.partial(_hash_range, fd, offset, length, stop, self.whole)
                )
                await self.check_length(offset, got, length)
            body = FileRange(self.local.file, offset, length)
            if self.remembered is not None:
                digest = functools.partial(_remembered, length, self.remembered[number])
            else:
                digest = functools.partial(_hash_range, fd, offset, length, stop)
            yield Part(number, body, length, digest)

    async def check_length(self, offset: int, got: int, length: int) -> None:
        """A range the file did not fill: the producer's verdict first, else the size error."""
        if got != length:
            await self.verified()
            raise StorageRequestFailed(f"the body ended after {offset + got} of {self.size} bytes")

    async def verified(self) -> None:
        try:
            await self.local.verified()
        except Exception as exc:
            self.own_error = exc
            raise


class _StreamParts(_PartSource):
    """Parts filled from the body's iterator (checked to be exactly ``size`` bytes)."""

    def __init__(
        self, checked: ExactSizeBody, size: int, part_size: int, hasher: HashPool, whole: bool
    ) -> None:
        super().__init__(size, part_size, hasher, whole)
        self.checked = checked

    async def parts(self) -> AsyncGenerator[Part, None]:
        number = 0
        buffer = bytearray()
        try:
            async for chunk in self.checked.stream():
                view = chunk
                while view:
                    take = self.part_size - len(buffer)
                    buffer += view[:take]
                    view = view[take:]
                    if len(buffer) == self.part_size:
                        data, buffer = buffer, bytearray()  # handed over, never copied
                        yield await self._part(number, data)
                        number += 1
        except Exception:
            self.own_error = self.checked.own_error
            raise
        if buffer:
            yield await self._part(number, buffer)

    async def _part(self, number: int, data: bytearray) -> Part:
        if self.whole is not None:
            await self.hasher.run(functools.partial(self.whole.update, data))
        return Part(number, _slices(data), len(data), functools.partial(_hash_data, data))


class MultipartUpload:
    """One ``put_object`` at or above ``multipart_threshold``."""

    def __init__(
        self,
        target: MantaTarget,
        path: str,
        body: BodyFactory,
        *,
        size: int,
        content_md5: str | None,
        content_type: str,
    ) -> None:
        self.target = target
        self.path = path
        self.body = body
        self.size = size
        self.content_md5 = content_md5
        self.content_type = content_type
        cfg = target.config
        self.part_size = part_size_for(size, cfg.part_size)
        self.concurrency = cfg.max_concurrency
        #: The parts' MD5s from an earlier upload of the same bytes, when there was one.
        self.remembered = target.part_digests.get(content_md5, size, self.part_size)
        #: Each part's MD5 as sent.
        self.sent_md5s: dict[int, str] = {}

    async def run(self) -> ObjectInfo:
        """Create, send the parts, commit; abort on any failure.

        The parent is looked up while the upload is created (one round trip instead of two:
        on a long link each costs its latency); no part goes out before it is found, and a
        missing parent is the error reported, whatever became of the create.
        """
        parent = asyncio.ensure_future(self._check_parent())
        try:
            directory = await self._create()
        except BaseException:
            await asyncio.wait([parent])
            failure = None if parent.cancelled() else parent.exception()
            if failure is not None:
                raise failure from None
            raise
        try:
            await parent
            async with self._parts() as source:
                etags = await self._send_all(directory, source)
                await source.verified()
                md5 = self.content_md5 or source.md5
            computed = await self._commit(directory, etags)
        except BaseException:
            self.target.part_digests.forget(self.content_md5, self.size, self.part_size)
            await abort_upload(self.target, directory, self.path)
            raise
        if computed is not None and computed != md5:
            # Manta stored other bytes than those hashed here: never leave them at the path.
            self.target.part_digests.forget(self.content_md5, self.size, self.part_size)
            await self.target.delete_object(self.path)
            raise ChecksumMismatch(
                f"Manta computed MD5 {computed} for {self.path}, the body has {md5}",
                path=self.path,
            )
        if computed is not None and md5 is not None:  # confirmed by Manta: worth keeping
            sent = [self.sent_md5s[n] for n in sorted(self.sent_md5s)]
            self.target.part_digests.remember(md5, self.size, self.part_size, sent)
        return ObjectInfo(
            path=self.path,
            type="object",
            size=self.size,
            content_md5=md5,
            content_type=self.content_type,
        )

    async def _check_parent(self) -> None:
        """Refuse a missing parent before any byte is sent (Manta checks it only at commit)."""
        parent = posixpath.dirname(self.path.rstrip("/")) or "/"
        info = await self.target.stat(parent)
        if info is None:
            raise DirectoryDoesNotExist(f"{parent} does not exist", path=parent)
        if not info.is_directory:
            raise ParentNotDirectory(f"{parent} is not a directory", path=parent)

    async def _create(self) -> str:
        """``POST /<operator>/uploads``; returns the upload's parts directory."""
        headers: dict[str, Any] = {
            "content-length": self.size,
            "content-type": self.content_type,
        }
        if self.content_md5:
            headers["content-md5"] = self.content_md5
        body, size = json_body({"objectPath": self.path, "headers": headers})
        response = await self.target._request(
            "POST",
            uploads_root(self.target),
            operation="put",
            ok=(201,),
            headers={"Accept": JSON_TYPE, "Content-Type": JSON_TYPE, "Content-Length": str(size)},
            body=body,
            size=size,
            expect_continue=False,  # a small document: waiting for 100 costs a round trip
        )
        try:
            created = await response.json(content_type=None)
        except ValueError as exc:
            raise StorageRequestFailed(
                f"Manta answered the upload of {self.path} with no JSON", path=self.path
            ) from exc
        finally:
            response.release()
        directory = created.get("partsDirectory") if isinstance(created, dict) else None
        if not isinstance(directory, str) or not directory.startswith("/"):
            raise StorageRequestFailed(
                f"Manta answered the upload of {self.path} without a parts directory",
                path=self.path,
            )
        return directory

    @contextlib.asynccontextmanager
    async def _parts(self) -> AsyncIterator[_PartSource]:
        """The body's local file when it offers one, else its iterator; its hashing threads."""
        # One thread per part in flight and one ahead, but no more than there are cores: more
        # threads only slow each part's hash (and so the first parts' start) down.
        hasher = HashPool(max(1, min(self.concurrency + 1, os.cpu_count() or 1)))
        whole = self.content_md5 is None
        try:
            if isinstance(self.body, LocalFileBody):
                async with self.body.local_file() as local:
                    if local is not None:
                        try:
                            yield _FileParts(
                                local, self.size, self.part_size, hasher, whole, self.remembered
                            )
                        finally:
                            await hasher.close()  # before the file is closed
                        return
            async with exact_size_body(self.body, self.size) as checked:
                yield _StreamParts(checked, self.size, self.part_size, hasher, whole)
        finally:
            await hasher.close()  # closing twice is harmless

    async def _send_all(self, directory: str, source: _PartSource) -> list[str]:
        """Prepare parts in order; send up to ``concurrency`` at once.

        Parts of a local file cost no memory, so up to ``concurrency`` of them are hashed
        ahead while every slot is busy: parts tend to finish together, and each freed slot
        then sends at once instead of hashing first. A part held in memory is filled only
        once a slot is free.
        """
        slots = asyncio.Semaphore(self.concurrency)
        etags: dict[int, str] = {}
        parts = source.parts()
        ready: collections.deque[tuple[Part, asyncio.Future[tuple[int, str]]]] = (
            collections.deque()
        )
        exhausted = False

        async def prepare() -> bool:
            """Make the next part and start hashing it; False when there is none."""
            try:
                part = await anext(parts)
            except StopAsyncIteration:
                return False
            ready.append((part, asyncio.ensure_future(source.hasher.run(part.digest))))
            return True

        try:
            async with asyncio.TaskGroup() as group:
                while True:
                    if source.prepares_ahead:
                        while not exhausted and len(ready) <= self.concurrency:
                            exhausted = not await prepare()
                        if not ready:
                            break
                        await slots.acquire()
                    else:
                        await slots.acquire()
                        try:
                            more = await prepare()
                        except BaseException:
                            slots.release()
                            raise
                        if not more:
                            slots.release()
                            break
                    part, digest = ready.popleft()
                    group.create_task(self._send(directory, source, part, digest, slots, etags))
        except BaseExceptionGroup as failures:
            if source.own_error is not None:
                raise source.own_error from None
            raise most_telling(failures) from None
        except Exception:
            if source.own_error is not None:
                raise source.own_error from None
            raise
        finally:
            for _, digest in ready:  # hashed ahead for parts that were never sent
                digest.cancel()
            if ready:
                await asyncio.wait([digest for _, digest in ready])
            await parts.aclose()
        return [etags[n] for n in sorted(etags)]

    async def _send(
        self,
        directory: str,
        source: _PartSource,
        part: Part,
        digest: Awaitable[tuple[int, str]],
        slots: asyncio.Semaphore,
        etags: dict[int, str],
    ) -> None:
        """``PUT <directory>/<n>`` with the part's Content-MD5 (``digest``); keep its etag."""
        try:
            hashed, md5 = await digest
            if hashed != part.size:
                await source.verified()  # a short file is the producer's error first
                raise StorageRequestFailed(
                    f"the body ended inside part {part.number} of {self.path}", path=self.path
                )
            response = await self.target._request(
                "PUT",
                f"{directory}/{part.number}",
                operation="put",
                ok=(200, 201, 204),
                headers={
                    "Accept": JSON_TYPE,
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(part.size),
                    "Content-MD5": md5,
                },
                body=part.body,
                size=part.size,
                # The upload was just created: a refusal is unlikely, and waiting for 100
                # costs each part a round trip, which on a long link is most of the point.
                expect_continue=False,
            )
            response.release()
            etag = response.headers.get("Etag")
            computed = response.headers.get("Computed-MD5")
            if not etag:
                raise StorageRequestFailed(
                    f"Manta took part {part.number} of {self.path} without an Etag",
                    path=self.path,
                )
            if computed is not None and computed != md5:
                raise ChecksumMismatch(
                    f"Manta computed MD5 {computed} for part {part.number} of {self.path}, "
                    f"not {md5}",
                    path=self.path,
                )
            etags[part.number] = etag
            self.sent_md5s[part.number] = md5
        finally:
            slots.release()

    async def _commit(self, directory: str, etags: list[str]) -> str | None:
        """``POST <directory>/commit``; the whole object's MD5 as Manta computed it."""
        body, size = json_body({"parts": etags})
        try:
            response = await self.target._request(
                "POST",
                f"{directory}/commit",
                operation="put",
                ok=(200, 201, 204),
                headers={
                    "Accept": JSON_TYPE,
                    "Content-Type": JSON_TYPE,
                    "Content-Length": str(size),
                },
                body=body,
                size=size,
                expect_continue=False,  # a small document, as the create's
            )
        except StorageRequestFailed as exc:
            if "content-md5" not in exc.message:
                raise
            # The object's bytes are not those of the Content-MD5 given: as a PUT says it.
            raise ChecksumMismatch(exc.message, path=self.path) from exc
        response.release()
        return response.headers.get("Computed-MD5")


def uploads_root(target: MantaTarget) -> str:
    """The operator's uploads tree: uploads are the signer's, as ``mmpu create`` makes them."""
    return f"/{target.config.user}/uploads"


async def abort_upload(target: MantaTarget, directory: str, path: str) -> None:
    """Abort the upload (even while being cancelled), so that Manta drops its parts."""
    try:
        response = await asyncio.shield(
            target._request(
                "POST",
                f"{directory}/abort",
                operation="abort",
                ok=(200, 204),
                headers={"Accept": JSON_TYPE},
            )
        )
        response.release()
    except Exception as exc:  # the original failure matters more; say that this one happened
        log.warning("could not abort multipart upload %s of %s: %s", directory, path, exc)


async def discard_partial_uploads(target: MantaTarget, path: str) -> int:
    """Abort every open upload to ``path`` in the operator's uploads tree; how many there were.

    Manta cannot list uploads by object path: this walks ``/<operator>/uploads/<prefix>/<id>``
    and reads each upload's state (one request per upload, finished ones included).
    """
    found = 0
    try:
        prefixes = await target.list_directory(uploads_root(target))
    except ObjectNotFound:
        return 0
    directories: list[str] = []
    async for prefix in prefixes:
        if not prefix.is_directory:
            continue
        try:
            uploads = await target.list_directory(prefix.path)
        except ObjectNotFound:
            continue
        directories += [entry.path async for entry in uploads if entry.is_directory]
    for directory in directories:
        state = await _upload_state(target, directory)
        if state is None or state.get("targetObject") != path or state.get("state") != "created":
            continue
        await abort_upload(target, directory, path)
        found += 1
    return found


async def _upload_state(target: MantaTarget, directory: str) -> dict[str, Any] | None:
    """``GET <directory>/state``, or None when the upload is gone (or is no upload)."""
    try:
        response = await target._request(
            "GET", f"{directory}/state", operation="get", ok=(200,), headers={"Accept": JSON_TYPE}
        )
    except ObjectNotFound:
        return None
    try:
        state = await response.json(content_type=None)
    except ValueError:
        return None
    finally:
        response.release()
    return state if isinstance(state, dict) else None
