"""Manta's namespace rules over a Backend: roots, parents, replacement, links, multipart uploads.

No HTTP here: callers pass decoded paths and already-parsed values, and get Entries or MantaErrors.
Every mutation runs under one asyncio lock, held only around metadata steps (never while bytes
stream), so check-then-write sequences such as conditional PUTs are atomic.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fake_manta.errors import (
    DirectoryDoesNotExist,
    DirectoryNotEmpty,
    InvalidMultipartUploadState,
    LinkNotObject,
    MultipartUploadInvalidArgument,
    OperationNotAllowedOnDirectory,
    OperationNotAllowedOnRootDirectory,
    ParentNotDirectory,
    ResourceNotFound,
    SourceObjectNotFound,
)
from fake_manta.models.backend import (
    Backend,
    Ingested,
    ListQuery,
    b64md5,
    concat_blobs,
)
from fake_manta.models.entry import Entry, now_ms, parent_of
from fake_manta.models.running_digest import RunningDigest

#: The storage trees under every login, in listing order.
ROOT_NAMES = ("public", "reports", "stor", "uploads")
#: muskie's ``getRootDirectory`` mtime: a fixed constant.
ROOT_MTIME = 1369244383714  # 2013-05-22T17:39:43.714Z
MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PART_NUM = 799
#: Length of the prefix directory of an upload (coal's 1; production uses 3).
UPLOAD_PREFIX_LEN = 1
#: Open uploads whose parts are hashed ahead of their commit (``RunningDigest``); past this
#: many, the oldest one's head start is forgotten (its commit then hashes every part).
RUNNING_DIGESTS = 256
UPLOAD_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

#: muskie ``PART_NUM_REGEX``: plain ASCII digits, no leading zero (``01`` and ``८`` are refused)
PART_NUM_RE = re.compile(r"[0-9]|[1-9][0-9]{0,2}")

Precondition = Callable[[Entry | None], None]


def segments(path: str) -> list[str]:
    return [s for s in path.split("/") if s]


def is_account_root(path: str) -> bool:
    return len(segments(path)) == 1


def is_root(path: str) -> bool:
    """``/:login`` or one of its storage trees (muskie ``ROOT_REGEXPS``)."""
    segs = segments(path)
    return len(segs) == 1 or (len(segs) == 2 and segs[1] in ROOT_NAMES)


def login_of(path: str) -> str:
    return segments(path)[0]


def new_upload_id(prefix_len: int = UPLOAD_PREFIX_LEN) -> str:
    """A uuid v4 whose last hex digit is replaced by the prefix length (muskie ``newUploadId``)."""
    return str(uuid.uuid4())[:-1] + format(prefix_len, "x")


def upload_dir(login: str, upload_id: str) -> str:
    prefix_len = int(upload_id[-1], 16)
    return f"/{login}/uploads/{upload_id[:prefix_len]}/{upload_id}"


@dataclass
class ObjectMeta:
    """What an object PUT stores besides its bytes."""

    content_type: str = "application/octet-stream"
    durability: int = 2
    headers: dict[str, str] = field(default_factory=dict)


class Store:
    """The namespace. Handlers call this; it calls the Backend."""

    def __init__(self, backend: Backend, *, min_part_size: int = MIN_PART_SIZE) -> None:
        self.backend = backend
        self.min_part_size = min_part_size
        self._lock = asyncio.Lock()
        #: upload path -> the MD5 of its parts so far, oldest first (``RUNNING_DIGESTS``)
        self._digests: dict[str, RunningDigest] = {}

    # -- lookups ----------------------------------------------------------------------------
    async def lookup(self, path: str) -> Entry | None:
        """The entry at ``path``; a root that has no record yet is an empty directory."""
        entry = await self.backend.get(path)
        if entry is None and is_root(path):
            return Entry(path=path, type="directory", owner=login_of(path), mtime=ROOT_MTIME)
        return entry

    async def check_parent(self, path: str) -> None:
        """404 DirectoryDoesNotExist / 400 ParentNotDirectory, muskie's ensureParent."""
        parent = parent_of(path)
        entry = await self.lookup(parent)
        if entry is None:
            raise DirectoryDoesNotExist(f"{parent} does not exist")
        if not entry.is_dir:
            raise ParentNotDirectory(f"{parent} is not a directory")

    async def list(self, path: str, query: ListQuery) -> tuple[int, list[Entry]]:
        """(total children, one page)."""
        total = await self.backend.count_children(path)
        rows = await self.backend.list_children(path, query) if total else []
        return total, rows

    # -- writes -----------------------------------------------------------------------------
    async def put_object(
        self,
        path: str,
        owner: str,
        data: Ingested,
        meta: ObjectMeta,
        check: Precondition | None = None,
        *,
        etag: str | None = None,
    ) -> Entry:
        """Commit received bytes at ``path``; on any refusal the bytes are dropped."""
        try:
            async with self._lock:
                await self.check_parent(path)
                old = await self.lookup(path)
                if old is not None and old.is_dir:
                    raise OperationNotAllowedOnDirectory(
                        f"{path} is a directory: PUT is not allowed")
                if check is not None:
                    check(old)
                entry = Entry(
                    path=path, type="object", owner=owner, headers=dict(meta.headers),
                    etag=etag or str(uuid.uuid4()), size=data.size,
                    content_type=meta.content_type, content_md5=data.md5,
                    durability=meta.durability, blob=data.blob,
                )
                await self.backend.apply(put=[entry])
        except BaseException:
            if data.blob is not None:
                await self.backend.drop_blobs([data.blob])
            raise
        if old is not None and old.blob is not None:
            await self.backend.drop_blobs([old.blob])
        return entry

    async def put_directory(self, path: str, owner: str, headers: dict[str, str]) -> Entry:
        """Idempotent mkdir; replaces an object (muskie "put then overwrite w/directory")."""
        async with self._lock:
            await self.check_parent(path)
            old = await self.lookup(path)
            if old is not None and old.is_dir:
                if old.headers == headers and not is_root(path):
                    return old
                old.headers = dict(headers)
                old.mtime = now_ms()
                await self.backend.apply(put=[old])
                return old
            entry = Entry(path=path, type="directory", owner=owner, headers=dict(headers))
            await self.backend.apply(put=[entry])
        if old is not None and old.blob is not None:
            await self.backend.drop_blobs([old.blob])
        return entry

    async def put_link(
        self, path: str, owner: str, source_path: str, check: Precondition | None = None,
        *, may_read: Callable[[Entry], None] | None = None,
    ) -> tuple[Entry, Entry]:
        """Manta v1 SnapLink: a new object sharing the source's bytes, etag and headers."""
        async with self._lock:
            old = await self.lookup(path)
            if old is not None and old.is_dir:
                raise OperationNotAllowedOnDirectory(f"{path} is a directory: PUT is not allowed")
            await self.check_parent(path)
            source = await self.lookup(source_path)
            if source is None:
                raise SourceObjectNotFound(f"{source_path} was not found")
            if source.is_dir:
                raise LinkNotObject(f"{source_path} is not an object")
            if may_read is not None:
                may_read(source)
            if check is not None:
                check(old)
            blob = await self.backend.link_blob(source.blob) if source.blob else None
            entry = Entry(
                path=path, type="object", owner=owner, headers=dict(source.headers),
                etag=source.etag, size=source.size, content_type=source.content_type,
                content_md5=source.content_md5, durability=source.durability, blob=blob,
            )
            await self.backend.apply(put=[entry])
        if old is not None and old.blob is not None:
            await self.backend.drop_blobs([old.blob])
        return entry, source

    async def update_metadata(
        self, path: str, headers: dict[str, str], content_type: str | None
    ) -> Entry:
        """mchattr: replace the stored headers, keep bytes and etag."""
        async with self._lock:
            entry = await self.lookup(path)
            if entry is None:
                raise ResourceNotFound(f"{path} was not found")
            entry.headers = dict(headers)
            if content_type is not None and not entry.is_dir:
                entry.content_type = content_type
            entry.mtime = now_ms()
            await self.backend.apply(put=[entry])
            return entry

    async def delete(self, path: str, check: Precondition | None = None) -> Entry:
        if is_root(path):
            raise OperationNotAllowedOnRootDirectory(f"DELETE is not allowed on {path}")
        async with self._lock:
            entry = await self.backend.get(path)
            if entry is None:
                raise ResourceNotFound(f"{path} was not found")
            if entry.is_dir:
                if await self.backend.count_children(path):
                    raise DirectoryNotEmpty(f"{path} is not empty")
            elif check is not None:
                check(entry)
            await self.backend.apply(delete=[path])
        if entry.blob is not None:
            await self.backend.drop_blobs([entry.blob])
        return entry

    async def reset(self) -> None:
        async with self._lock:
            for digest in self._digests.values():
                digest.close()
            self._digests.clear()
            await self.backend.reset()

    # -- multipart uploads ------------------------------------------------------------------
    async def create_upload(
        self, login: str, owner: str, object_path: str, headers: dict[str, Any], copies: int,
        object_headers: dict[str, str] | None = None,
    ) -> Entry:
        """Create the upload's prefix and parts directories; the upload dir carries the record."""
        upload_id = new_upload_id()
        path = upload_dir(login, upload_id)
        record = {
            "id": upload_id,
            "state": "created",
            "targetObject": object_path,
            "headers": headers,
            "numCopies": copies,
            "creationTimeMs": now_ms(),
            "objectId": str(uuid.uuid4()),
            #: what the final object will carry (m-*, cache-control, ...)
            "objectHeaders": dict(object_headers or {}),
        }
        async with self._lock:
            prefix = parent_of(path)
            puts = []
            if await self.backend.get(prefix) is None:
                puts.append(Entry(path=prefix, type="directory", owner=owner))
            entry = Entry(path=path, type="directory", owner=owner, upload=record)
            puts.append(entry)
            await self.backend.apply(put=puts)
        return entry

    async def get_upload(self, login: str, upload_id: str) -> Entry:
        entry = None
        if UPLOAD_ID_RE.match(upload_id) and 1 <= int(upload_id[-1], 16) <= 4:
            entry = await self.backend.get(upload_dir(login, upload_id))
        if entry is None or entry.upload is None:
            raise ResourceNotFound(f"/{login}/uploads/{upload_id} was not found")
        return entry

    def upload_state(self, entry: Entry) -> dict[str, Any]:
        """The JSON ``GET .../state`` returns (muskie ``getUpload``)."""
        u = entry.upload or {}
        body: dict[str, Any] = {
            "id": u["id"], "state": u["state"], "partsDirectory": entry.path,
            "targetObject": u["targetObject"], "headers": u["headers"],
            "numCopies": u["numCopies"], "creationTimeMs": u["creationTimeMs"],
        }
        if u["state"] == "done":
            del body["partsDirectory"]
            body["result"] = u["result"]
            if u["result"] == "committed":
                body["partsMD5Summary"] = u["partsMD5Summary"]
        elif u["state"] == "finalizing":
            body["type"] = u["type"]
        return body

    def check_part_number(self, upload: Entry, part: str) -> int:
        if not PART_NUM_RE.fullmatch(part) or not 0 <= int(part) <= MAX_PART_NUM:
            upload_id = (upload.upload or {}).get("id")
            raise MultipartUploadInvalidArgument(
                f"upload {upload_id}: {part} is not a valid part number")
        return int(part)

    def check_upload_open(self, entry: Entry) -> None:
        u = entry.upload or {}
        if u.get("state") != "created":
            raise InvalidMultipartUploadState(f"upload {u.get('id')}: already finalized")

    async def put_part(
        self, upload: Entry, part: int, owner: str, data: Ingested, meta: ObjectMeta
    ) -> Entry:
        path = f"{upload.path}/{part}"
        try:
            async with self._lock:
                fresh, _ = await self._reload_upload(upload)
                self.check_upload_open(fresh)
        except BaseException:
            if data.blob is not None:
                await self.backend.drop_blobs([data.blob])
            raise
        entry = await self.put_object(path, owner, data, meta)
        digest = self._digests.get(upload.path)
        if digest is None:
            digest = self._digests[upload.path] = RunningDigest(self.backend)
            while len(self._digests) > RUNNING_DIGESTS:
                self._digests.pop(next(iter(self._digests))).close()
        digest.offer(part, data.blob)
        return entry

    def _forget_digest(self, upload: Entry) -> None:
        digest = self._digests.pop(upload.path, None)
        if digest is not None:
            digest.close()

    async def commit_upload(self, upload: Entry, part_etags: Sequence[str]) -> Entry:
        """Concatenate the parts into the target object (true whole-object MD5, off the loop)."""
        summary = b64md5(hashlib.md5("".join(part_etags).encode()).digest())  # wire format
        async with self._lock:
            fresh, u = await self._reload_upload(upload)
            if u["state"] == "done":
                if u["result"] == "aborted":
                    raise InvalidMultipartUploadState(f"upload {u['id']}: already aborted")
                if u["partsMD5Summary"] != summary:
                    raise InvalidMultipartUploadState(
                        f"upload {u['id']}: already committed with a different part set")
                target = await self.backend.get(u["targetObject"])
                if target is not None and target.etag == u["objectId"]:
                    return target
                return Entry(path=u["targetObject"], type="object", owner=fresh.owner,
                             etag=u["objectId"], content_md5=u.get("computedMD5", ""))
            if u["state"] != "created":
                raise InvalidMultipartUploadState(f"upload {u['id']}: already finalized")
            u["state"], u["type"] = "finalizing", "commit"
            await self.backend.apply(put=[fresh])
        try:
            return await self._finish_commit(fresh, part_etags, summary)
        except BaseException:
            async with self._lock:
                u["state"] = "created"
                u.pop("type", None)
                await self.backend.apply(put=[fresh])
            raise

    async def _finish_commit(self, upload: Entry, part_etags: Sequence[str], summary: str) -> Entry:
        u = upload.upload or {}

        def invalid(msg: str) -> MultipartUploadInvalidArgument:
            return MultipartUploadInvalidArgument(f"upload {u['id']}: {msg}")

        if len(part_etags) > MAX_PART_NUM + 1:
            raise invalid(f"too many parts ({len(part_etags)})")
        parts: list[Entry] = []
        for i, etag in enumerate(part_etags):
            part = await self.backend.get(f"{upload.path}/{i}")
            if part is None:
                raise invalid(f"[part {i}] part does not exist")
            if part.etag != etag:
                raise invalid(f'[part {i}] invalid etag "{etag}"')
            if i < len(part_etags) - 1 and part.size < self.min_part_size:
                raise invalid(
                    f"[part {i}] part is too small (size {part.size})")
            parts.append(part)
        total = sum(p.size for p in parts)
        headers: dict[str, Any] = u["headers"]
        if "content-length" in headers and int(headers["content-length"]) != total:
            raise invalid(
                f"expected content-length {headers['content-length']}, but object was {total}")
        target_path: str = u["targetObject"]
        await self._check_commit_target(target_path)
        data = await concat_blobs(
            self.backend, [p.blob for p in parts], self._digests.get(upload.path)
        )
        if "content-md5" in headers and headers["content-md5"] != data.md5:
            if data.blob is not None:
                await self.backend.drop_blobs([data.blob])
            raise invalid(
                f'expected content-md5 "{headers["content-md5"]}", '
                f'but object has md5 "{data.md5}"')
        stored = dict(u.get("objectHeaders", {}))
        meta = ObjectMeta(content_type=str(headers.get("content-type", "application/octet-stream")),
                          durability=int(u["numCopies"]), headers=stored)

        def finalize(old: Entry | None) -> None:
            if old is not None and old.is_dir:
                raise OperationNotAllowedOnDirectory(f"{target_path} is a directory")

        entry = await self.put_object(target_path, upload.owner, data, meta, finalize,
                                      etag=u["objectId"])
        async with self._lock:
            u["state"], u["result"] = "done", "committed"
            u["partsMD5Summary"], u["computedMD5"] = summary, data.md5
            u.pop("type", None)
            await self.backend.apply(put=[upload], delete=[p.path for p in parts])
        self._forget_digest(upload)
        await self.backend.drop_blobs([p.blob for p in parts if p.blob])
        return entry

    async def _check_commit_target(self, path: str) -> None:
        if is_root(path):
            raise OperationNotAllowedOnRootDirectory(f"{path} is a root directory")
        existing = await self.backend.get(path)
        if existing is not None and existing.is_dir:
            raise OperationNotAllowedOnDirectory(f"{path} is a directory")
        await self.check_parent(path)

    async def _reload_upload(self, upload: Entry) -> tuple[Entry, dict[str, Any]]:
        """The upload's current entry and record (call under the lock): another request may
        have ended it since ``upload`` was read."""
        fresh = await self.backend.get(upload.path)
        if fresh is None or fresh.upload is None:
            raise ResourceNotFound(f"{upload.path} was not found")
        return fresh, fresh.upload

    async def abort_upload(self, upload: Entry) -> None:
        async with self._lock:
            fresh, u = await self._reload_upload(upload)
            if u["state"] == "done":
                if u["result"] == "committed":
                    raise InvalidMultipartUploadState(f"upload {u['id']}: already committed")
                return
            if u["state"] != "created":
                raise InvalidMultipartUploadState(f"upload {u['id']}: already finalized")
            parts = await self.backend.list_children(fresh.path, ListQuery(limit=MAX_PART_NUM + 1))
            u["state"], u["result"] = "done", "aborted"
            await self.backend.apply(put=[fresh], delete=[p.path for p in parts])
        self._forget_digest(fresh)
        await self.backend.drop_blobs([p.blob for p in parts if p.blob])
