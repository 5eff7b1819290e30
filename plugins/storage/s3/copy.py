"""Copying one object inside S3: one CopyObject up to the threshold, UploadPartCopy parts above it.

No byte passes through the gateway. Every copy request carries the source's ETag as
``CopySourceIfMatch``, so a source replaced during the copy fails it (S3 answers 412) instead of
mixing two versions into the destination. A multipart copy whose ETag is no MD5 keeps the
whole object's MD5 in the ``content-md5`` metadata, and is aborted on any failure, so that no
orphaned parts remain and the destination keeps what it held.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.plugin_kit.groups import most_telling
from gateway.storage import ObjectInfo, ObjectNotFound, StorageRequestFailed
from plugins.storage.s3.configuration import MAX_PARTS
from plugins.storage.s3.keys import is_root
from plugins.storage.s3.objects import MD5_METADATA, from_head
from plugins.storage.s3.upload import abort_multipart

if TYPE_CHECKING:
    from plugins.storage.s3.target import S3Target

T = TypeVar("T")

#: What ``MetadataDirective=COPY`` carries over besides the user metadata, passed on to
#: ``CreateMultipartUpload`` so that a big copy keeps the same as a small one.
CARRIED_HEADERS = (
    "ContentType",
    "CacheControl",
    "ContentDisposition",
    "ContentEncoding",
    "ContentLanguage",
)


@dataclass(frozen=True)
class Copy:
    """One ``copy_object`` call: the source's and the destination's paths and keys."""

    target: S3Target
    source: str
    source_key: str
    destination: str
    key: str

    async def run(self) -> ObjectInfo:
        """HEAD the source, then one CopyObject or a multipart copy, by the source's size."""
        head = await self._head_source()
        source = from_head(self.source, head)
        if self.source_key == self.key:  # S3 refuses to copy a key onto itself unchanged
            return source
        size: int = head["ContentLength"]
        condition = {"CopySourceIfMatch": head["ETag"]} if head.get("ETag") else {}
        if size <= self.target.config.copy_multipart_threshold:
            new_etag = await self._copy_single(condition, size)
        else:
            new_etag = await self._copy_multipart(head, source, size, condition)
        return ObjectInfo(
            path=self.destination,
            type="object",
            size=size,
            content_md5=source.content_md5,
            etag=new_etag.strip('"') if new_etag else None,
            content_type=source.content_type,
        )

    async def _head_source(self) -> Mapping[str, Any]:
        """The source's ``HeadObject``; a missing source or a "directory" is refused."""
        if not is_root(self.source_key):
            head = await self.target.head(self.source, self.source_key)
            if head is not None:
                return head
        if await self.target.is_directory(self.source, self.source_key):
            raise StorageRequestFailed(
                f"{self.source} is a directory: only objects can be copied", path=self.source
            )
        raise ObjectNotFound(f"{self.source} was not found", path=self.source)

    async def _call(self, make: Callable[[], Awaitable[T]], size: int) -> T:
        """``target.call`` for a request that reads the source and writes the destination.

        Such a request's 404 ``NoSuchKey`` is about the source, and its 412 means the source's
        ETag is no longer the one the copy started from. S3 answers once it has copied the
        ``size`` bytes: the answer's deadline allows their time at the rate floor.
        """
        try:
            return await self.target.call(self.destination, make, operation="copy", size=size)
        except ObjectNotFound as exc:
            raise ObjectNotFound(f"{self.source} was not found", path=self.source) from exc
        except StorageRequestFailed as exc:
            if exc.code != "PreconditionFailed":
                raise
            raise StorageRequestFailed(
                f"{self.source} changed while it was being copied to {self.destination}",
                path=self.source,
                code=exc.code,
            ) from exc

    def _copy_source(self) -> dict[str, str]:
        return {"Bucket": self.target.config.bucket, "Key": self.source_key}

    async def _copy_single(self, condition: Mapping[str, str], size: int) -> str | None:
        """One CopyObject; ``COPY`` keeps the source's content type and MD5 metadata."""
        response = await self._call(
            lambda: self.target.client.copy_object(
                Bucket=self.target.config.bucket,
                Key=self.key,
                CopySource=self._copy_source(),
                MetadataDirective="COPY",
                **condition,
            ),
            size,
        )
        result: str | None = response.get("CopyObjectResult", {}).get("ETag")
        return result

    async def _copy_multipart(
        self, head: Mapping[str, Any], source: ObjectInfo, size: int, condition: Mapping[str, str]
    ) -> str | None:
        """Create the upload, copy its parts, complete it; abort it on any failure."""
        cfg = self.target.config
        part_size = max(cfg.copy_part_size, -(-size // MAX_PARTS))
        metadata = dict(head.get("Metadata") or {})
        if source.content_md5:  # a multipart ETag is not an MD5: keep the whole object's
            metadata[MD5_METADATA] = source.content_md5
        carried = {name: head[name] for name in CARRIED_HEADERS if head.get(name)}
        created = await self.target.call(
            self.destination,
            lambda: self.target.client.create_multipart_upload(
                Bucket=cfg.bucket, Key=self.key, Metadata=metadata, **carried
            ),
            operation="copy",
        )
        upload_id: str = created["UploadId"]
        try:
            parts = await self._copy_parts(upload_id, size, part_size, condition)
            done = await self.target.call(
                self.destination,
                lambda: self.target.client.complete_multipart_upload(
                    Bucket=cfg.bucket,
                    Key=self.key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                ),
                operation="copy",
            )
        except BaseException:
            await abort_multipart(self.target, self.destination, self.key, upload_id)
            raise
        result: str | None = done.get("ETag")
        return result

    async def _copy_parts(
        self, upload_id: str, size: int, part_size: int, condition: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        """Copy every part, ``max_concurrency`` workers taking the next range in turn."""
        ranges = iter(enumerate(range(0, size, part_size), start=1))
        results: dict[int, str] = {}

        async def worker() -> None:
            for number, start in ranges:
                end = min(start + part_size, size) - 1
                results[number] = await self._copy_part(upload_id, number, start, end, condition)

        workers = min(self.target.config.max_concurrency, -(-size // part_size))
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(workers):
                    group.create_task(worker())
        except BaseExceptionGroup as failures:
            raise most_telling(failures) from None
        return [{"PartNumber": n, "ETag": results[n]} for n in sorted(results)]

    async def _copy_part(
        self, upload_id: str, number: int, start: int, end: int, condition: Mapping[str, str]
    ) -> str:
        """One UploadPartCopy of the source's bytes ``start``..``end`` (inclusive)."""
        response = await self._call(
            lambda: self.target.client.upload_part_copy(
                Bucket=self.target.config.bucket,
                Key=self.key,
                UploadId=upload_id,
                PartNumber=number,
                CopySource=self._copy_source(),
                CopySourceRange=f"bytes={start}-{end}",
                **condition,
            ),
            end - start + 1,
        )
        part_etag: str = response["CopyPartResult"]["ETag"]
        return part_etag
