"""Writing one object into S3: a single PUT below the threshold, a multipart upload above it.

Uploads never hold more than ``max(multipart_threshold, part_size * (max_concurrency + 1))``
bytes: below the threshold one PUT with Content-MD5, above it a multipart upload whose parts each
carry their Content-MD5 and which is aborted on any failure, so that no orphaned parts remain.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.plugin_kit import ExactSizeBody, content_md5, exact_size_body
from gateway.plugin_kit.groups import most_telling
from gateway.storage import BodyFactory, ChecksumMismatch, ObjectInfo
from plugins.storage.s3.configuration import MAX_PARTS
from plugins.storage.s3.objects import MD5_METADATA, written

if TYPE_CHECKING:
    from plugins.storage.s3.target import S3Target

log = logging.getLogger(__package__)  # the plugin's logger, whichever module logs

T = TypeVar("T")

#: Hash big buffers in a thread: hashlib releases the GIL, and the loop stays responsive.
THREAD_HASH_THRESHOLD = 256 * 1024


@dataclass(frozen=True)
class Upload:
    """One ``put_object`` call: where its bytes go and what the caller said about them."""

    target: S3Target
    path: str
    key: str
    body: BodyFactory
    size: int
    content_md5: str | None
    content_type: str

    async def put(self) -> ObjectInfo:
        """One PUT below ``multipart_threshold``, a multipart upload above it."""
        if self.size < self.target.config.multipart_threshold:
            return await self._put_single()
        return await self._put_multipart()

    def _call(self, make: Callable[[], Awaitable[T]], size: int = 0) -> Awaitable[T]:
        """One ``put`` call; ``size``: the bytes it sends (its deadline allows their time)."""
        return self.target.call(self.path, make, operation="put", size=size)

    def _check(self, md5: str) -> None:
        """Refuse a body whose MD5 is not the one the caller announced."""
        if self.content_md5 is not None and md5 != self.content_md5:
            raise ChecksumMismatch(
                f"Content-MD5 expected {self.content_md5}, but the body has {md5}", path=self.path
            )

    async def _put_single(self) -> ObjectInfo:
        buffer = bytearray()
        async with exact_size_body(self.body, self.size) as checked:
            async for chunk in checked.stream():
                buffer.extend(chunk)
        data = bytes(buffer)
        del buffer
        md5 = await _hash(data)
        self._check(md5)
        response = await self._call(
            lambda: self.target.client.put_object(
                Bucket=self.target.config.bucket,
                Key=self.key,
                Body=data,
                ContentLength=self.size,
                ContentMD5=md5,
                ContentType=self.content_type,
                Metadata={MD5_METADATA: md5},
            ),
            size=self.size,
        )
        return written(self.path, self.size, md5, response.get("ETag"), self.content_type)

    async def _put_multipart(self) -> ObjectInfo:
        cfg = self.target.config
        part_size = max(cfg.part_size, -(-self.size // MAX_PARTS))
        metadata = {MD5_METADATA: self.content_md5} if self.content_md5 else {}
        created = await self._call(
            lambda: self.target.client.create_multipart_upload(
                Bucket=cfg.bucket, Key=self.key, ContentType=self.content_type, Metadata=metadata
            )
        )
        upload_id: str = created["UploadId"]
        try:
            whole, parts = await self._upload_parts(upload_id, part_size)
            md5 = base64.b64encode(whole).decode()
            self._check(md5)
            done = await self._call(
                lambda: self.target.client.complete_multipart_upload(
                    Bucket=cfg.bucket,
                    Key=self.key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
            )
        except BaseException:
            await self._abort(upload_id)
            raise
        return written(self.path, self.size, md5, done.get("ETag"), self.content_type)

    async def _upload_parts(
        self, upload_id: str, part_size: int
    ) -> tuple[bytes, list[dict[str, Any]]]:
        """Read parts into bounded buffers and upload up to ``max_concurrency`` at once."""
        cfg = self.target.config
        whole = hashlib.md5()  # MD5 is the wire format
        slots = asyncio.Semaphore(cfg.max_concurrency)
        results: dict[int, str] = {}

        async def send(number: int, data: bytes, md5: str) -> None:
            try:
                response = await self._call(
                    lambda: self.target.client.upload_part(
                        Bucket=cfg.bucket,
                        Key=self.key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=data,
                        ContentLength=len(data),
                        ContentMD5=md5,
                    ),
                    size=len(data),
                )
                results[number] = response["ETag"]
            finally:
                slots.release()

        async with exact_size_body(self.body, self.size) as checked:
            try:
                async with asyncio.TaskGroup() as group:
                    await _feed_parts(group, send, slots, whole, checked, part_size)
            except BaseExceptionGroup as failures:
                raise _most_telling(failures, checked) from None
        parts = [{"PartNumber": n, "ETag": results[n]} for n in sorted(results)]
        return whole.digest(), parts

    async def _abort(self, upload_id: str) -> None:
        await abort_multipart(self.target, self.path, self.key, upload_id)


async def abort_multipart(target: S3Target, path: str, key: str, upload_id: str) -> None:
    """Abort the upload (even while being cancelled), so that S3 keeps no orphaned parts."""
    try:
        await asyncio.shield(
            target.call(
                path,
                lambda: target.client.abort_multipart_upload(
                    Bucket=target.config.bucket, Key=key, UploadId=upload_id
                ),
                operation="abort",
            )
        )
    except Exception as exc:  # the original failure matters more; say that this one happened
        log.warning("could not abort multipart upload %s of %s: %s", upload_id, path, exc)


async def _feed_parts(
    group: asyncio.TaskGroup,
    send: Callable[[int, bytes, str], Coroutine[Any, Any, None]],
    slots: asyncio.Semaphore,
    whole: Any,
    checked: ExactSizeBody,
    part_size: int,
) -> None:
    """Cut the body into parts; a slot is taken before a buffer is filled, bounding memory."""
    number = 0
    buffer = bytearray()
    await slots.acquire()
    async for chunk in checked.stream():
        view = chunk
        while view:
            take = part_size - len(buffer)
            buffer.extend(view[:take])
            view = view[take:]
            if len(buffer) == part_size:
                number += 1
                data = bytes(buffer)
                buffer.clear()
                md5 = await _hash(data, whole)
                group.create_task(send(number, data, md5))
                await slots.acquire()
    if buffer or number == 0:
        number += 1
        data = bytes(buffer)
        md5 = await _hash(data, whole)
        group.create_task(send(number, data, md5))
    else:
        slots.release()


def _most_telling(failures: BaseExceptionGroup, checked: ExactSizeBody) -> BaseException:
    """The exception to re-raise from a failed part group: the body's own, else a StorageError."""
    if checked.own_error is not None:
        return checked.own_error
    return most_telling(failures)


async def _hash(data: bytes, whole: Any = None) -> str:
    """Base64 MD5 of ``data`` (and feed ``whole``), in a thread when the buffer is big."""

    def work() -> str:
        if whole is not None:
            whole.update(data)
        return content_md5(data)

    if len(data) >= THREAD_HASH_THRESHOLD:
        return await asyncio.to_thread(work)
    return work()
