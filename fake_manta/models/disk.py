"""On-disk backend: SQLite (WAL) for metadata, one file per blob.

Crash safety, the point of this module: bytes go to ``tmp/<uuid>``, are closed and renamed into
``blobs/`` (same filesystem) *before* the metadata row that names them is committed in one SQLite
transaction. A kill at any moment therefore leaves either the old row (old bytes intact) or the new
one (new bytes complete): a killed process loses nothing the kernel already holds in its page
cache, so this order alone makes writes atomic against process crashes and dropped connections.
With ``fsync=True`` the file is also fsynced before the rename, the directory after it, and SQLite
runs with ``synchronous=FULL``: then a power loss or kernel crash cannot lose an acknowledged
object either. Leftovers (temp files, blobs no row names) are swept at start-up.
SQLite runs on one dedicated thread, file I/O on the default executor: the event loop never blocks.
An MPU commit joins the part files in the kernel (``copy_file_range``) while another thread
hashes them (``DiskBackend.concat``), instead of streaming every byte back through ``ingest``.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import hashlib
import json
import os
import shutil
import sqlite3
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from fake_manta.models.backend import READ_CHUNK, Ingested, ListQuery, b64md5
from fake_manta.models.entry import EMPTY_MD5, Entry
from fake_manta.models.space import SpaceReserve, is_out_of_space, not_enough_space

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    path   TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    name   TEXT NOT NULL,
    type   TEXT NOT NULL,
    mtime  INTEGER NOT NULL,
    blob   TEXT,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS by_parent_name ON entries (parent, name);
CREATE INDEX IF NOT EXISTS by_parent_mtime ON entries (parent, mtime, name);
"""


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """Linux ``sync_file_range(2)``: start writeback of a range without waiting for it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_sync_file_range = _load_sync_file_range() if sys.platform.startswith("linux") else None
_SYNC_FILE_RANGE_WRITE = 2
#: Start writeback every this many bytes, so the final fsync has little left to wait for.
_WRITEBACK_STEP = 8 << 20
#: Joining blobs (MPU commit): bytes per ``copy_file_range`` call, and the buffer size of the
#: hashing thread and of the read/write fallback (big reads: hashlib releases the GIL).
_COPY_STEP = 64 << 20
_JOIN_BUFFER = 4 << 20
#: ``copy_file_range`` cannot copy between these files (old kernel, other filesystem, ...):
#: fall back to reads and writes. Anything else (ENOSPC, EIO) is a real error.
_NO_COPY_FILE_RANGE = frozenset(
    {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL}
)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _DiskWriter:
    def __init__(self, backend: DiskBackend) -> None:
        self._backend = backend
        self._fsync = backend.fsync
        self._tmp = backend.tmp_dir / uuid.uuid4().hex
        self._file = open(self._tmp, "wb", buffering=0)
        self._written = 0
        self._flushed = 0

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            n = self._file.write(view)
            view = view[n or 0 :]
        self._wrote(len(data))

    def _wrote(self, n: int) -> None:
        self._written += n
        if (self._fsync and _sync_file_range is not None
                and self._written - self._flushed >= _WRITEBACK_STEP):
            _sync_file_range(self._file.fileno(), self._flushed, self._written - self._flushed,
                             _SYNC_FILE_RANGE_WRITE)
            self._flushed = self._written

    def append_file(self, src: int, size: int, stop: threading.Event) -> int:
        """Append the first ``size`` bytes of the open file ``src``; the number appended.

        ``copy_file_range`` copies in the kernel (no pass through Python); where it is
        unsupported, or when ``backend.use_copy_file_range`` is off, plain reads and writes.
        Reads use explicit offsets, so another thread may read ``src`` at the same time.
        """
        offset = 0
        dst = self._file.fileno()
        while offset < size and self._backend.use_copy_file_range and not stop.is_set():
            try:  # offset_dst=None: the kernel appends at, and advances, dst's file position
                n = os.copy_file_range(src, dst, min(_COPY_STEP, size - offset), offset)
            except OSError as exc:
                if exc.errno not in _NO_COPY_FILE_RANGE:
                    raise
                n = 0
            if n == 0:  # unsupported here (or src ended early): the loop below decides
                break
            offset += n
            self._wrote(n)
        if offset < size:
            view = memoryview(bytearray(min(_JOIN_BUFFER, size - offset)))
            while offset < size and not stop.is_set():
                n = os.preadv(src, [view[: size - offset]], offset)
                if n == 0:
                    break
                self.write(view[:n])
                offset += n
        return offset

    def commit(self) -> str:
        if self._fsync:
            os.fsync(self._file.fileno())
        self._file.close()
        blob = uuid.uuid4().hex
        target = self._backend.blob_path(blob)
        target.parent.mkdir(exist_ok=True)
        os.replace(self._tmp, target)
        if self._fsync:
            _fsync_dir(target.parent)
        return blob

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a future's exception as seen (it is raised elsewhere, or moot after a cancel)."""
    if not future.cancelled():
        future.exception()


def _md5_of_files(parts: Sequence[tuple[int, int]], stop: threading.Event) -> tuple[bytes, int]:
    """MD5 of the first ``size`` bytes of each ``(fd, size)``, back to back; and their length."""
    md5 = hashlib.md5()
    view = memoryview(bytearray(_JOIN_BUFFER))
    total = 0
    for fd, size in parts:
        offset = 0
        while offset < size and not stop.is_set():
            n = os.preadv(fd, [view[: size - offset]], offset)
            if n == 0:
                break
            md5.update(view[:n])  # > 2 KiB: hashlib releases the GIL
            offset += n
        total += offset
    return md5.digest(), total


class DiskBackend:
    """Persistent state under ``root``: ``meta.sqlite3``, ``blobs/xx/<id>``, ``tmp/``."""

    kind = "disk"

    def __init__(self, root: Path | str, *, fsync: bool = False) -> None:
        self.root = Path(root)
        #: fsync blobs and use SQLite synchronous=FULL (power-loss durability), see module doc
        self.fsync = fsync
        self.blob_dir = self.root / "blobs"
        self.tmp_dir = self.root / "tmp"
        #: dropped blobs wait here while a background task unlinks them (freeing a large file's
        #: pages takes ~0.1 s per GB, which a PUT that replaces an object need not wait for)
        self.trash_dir = self.root / "trash"
        self._unlinking: set[asyncio.Future[None]] = set()
        #: space only a delete may use: on a full disk, deletes must still commit (space.py)
        self.reserve = SpaceReserve(self.root)
        self._db: sqlite3.Connection | None = None
        self._db_thread = ThreadPoolExecutor(1, thread_name_prefix="fake-manta-sqlite")
        #: Internal switch: False makes ``concat`` join blobs with plain reads and writes, the
        #: path taken where ``copy_file_range`` is unsupported (tests turn it off to cover it).
        self.use_copy_file_range = hasattr(os, "copy_file_range")

    def blob_path(self, blob: str) -> Path:
        return self.blob_dir / blob[:2] / blob

    async def _db_call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()

        def run() -> T:
            assert self._db is not None, "DiskBackend used before open()"
            return fn(self._db)

        return await loop.run_in_executor(self._db_thread, run)

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    # -- lifecycle --------------------------------------------------------------------------
    async def open(self) -> None:
        def setup() -> None:
            self.root.mkdir(parents=True, exist_ok=True)
            self.blob_dir.mkdir(exist_ok=True)
            shutil.rmtree(self.tmp_dir, ignore_errors=True)  # half-written uploads of a crash
            self.tmp_dir.mkdir(exist_ok=True)
            shutil.rmtree(self.trash_dir, ignore_errors=True)  # drops a crash interrupted
            self.trash_dir.mkdir(exist_ok=True)
            db = sqlite3.connect(self.root / "meta.sqlite3", isolation_level=None,
                                 check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: commits are atomic, a crashed process loses none; only a power
            # loss may drop the last ones. FULL also syncs the WAL on every commit.
            db.execute(f"PRAGMA synchronous={'FULL' if self.fsync else 'NORMAL'}")
            try:
                db.executescript(_SCHEMA)
                self._sweep_orphans(db)
            except BaseException:
                db.close()
                raise
            self._db = db

        try:
            await self._db_call_raw(setup)
        except (sqlite3.Error, OSError) as exc:
            # A full disk after a restart: SQLite cannot even recreate its -wal/-shm files.
            if not is_out_of_space(exc) or not await self._io(self.reserve.release):
                raise
            await self._db_call_raw(setup)
        await self._io(self.reserve.ensure)

    async def _db_call_raw(self, fn: Callable[[], None]) -> None:
        await asyncio.get_running_loop().run_in_executor(self._db_thread, fn)

    def _sweep_orphans(self, db: sqlite3.Connection) -> None:
        """Delete blob files no row names (a crash between rename and commit)."""
        known = {row[0] for row in db.execute("SELECT blob FROM entries WHERE blob IS NOT NULL")}
        for sub in self.blob_dir.iterdir():
            for f in sub.iterdir() if sub.is_dir() else ():
                if f.name not in known:
                    f.unlink(missing_ok=True)

    async def close(self) -> None:
        if self._unlinking:
            await asyncio.wait(self._unlinking)

        def shut() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await self._db_call_raw(shut)
        self._db_thread.shutdown(wait=True)

    # -- metadata ---------------------------------------------------------------------------
    async def get(self, path: str) -> Entry | None:
        def q(db: sqlite3.Connection) -> Entry | None:
            row = db.execute("SELECT record FROM entries WHERE path = ?", (path,)).fetchone()
            return Entry.from_record(json.loads(row[0])) if row else None

        return await self._db_call(q)

    async def apply(self, put: Sequence[Entry] = (), delete: Sequence[str] = ()) -> None:
        rows = [
            (e.path, e.parent, e.name, e.type, e.mtime, e.blob, json.dumps(e.to_record()))
            for e in put
        ]
        gone = [(p,) for p in delete]

        def tx(db: sqlite3.Connection) -> None:
            with db:  # one transaction
                db.execute("BEGIN IMMEDIATE")
                db.executemany("DELETE FROM entries WHERE path = ?", gone)
                db.executemany("INSERT OR REPLACE INTO entries VALUES (?,?,?,?,?,?,?)", rows)

        try:
            await self._db_call(tx)
            return
        except (sqlite3.Error, OSError) as exc:
            if not is_out_of_space(exc):
                raise
            # Deletes free space, so they may spend the reserve to commit; writes may not.
            if not gone or not await self._io(self.reserve.release):
                raise not_enough_space(sum(e.size for e in put)) from exc
        try:
            await self._db_call(tx)
        except (sqlite3.Error, OSError) as exc:
            if is_out_of_space(exc):
                raise not_enough_space(0) from exc
            raise

    async def count_children(self, parent: str) -> int:
        def q(db: sqlite3.Connection) -> int:
            row = db.execute("SELECT COUNT(*) FROM entries WHERE parent = ?", (parent,)).fetchone()
            return int(row[0])

        return await self._db_call(q)

    async def list_children(self, parent: str, query: ListQuery) -> list[Entry]:
        where = ["parent = ?"]
        args: list[Any] = [parent]
        if query.kind is not None:
            where.append("type = ?")
            args.append(query.kind)
        direction = "DESC" if query.descending else "ASC"
        op = "<=" if query.descending else ">="
        if query.sort == "mtime":
            order = f"mtime {direction}, name {direction}"
            if query.marker_mtime is not None:
                where.append(f"mtime {op} ?")
                args.append(query.marker_mtime)
        else:
            order = f"name {direction}"
            if query.marker_name is not None:
                where.append(f"name {op} ?")
                args.append(query.marker_name)
        sql = f"SELECT record FROM entries WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?"
        args.append(query.limit)

        def q(db: sqlite3.Connection) -> list[Entry]:
            return [Entry.from_record(json.loads(r[0])) for r in db.execute(sql, args)]

        return await self._db_call(q)

    async def stats(self) -> dict[str, int]:
        def q(db: sqlite3.Connection) -> dict[str, int]:
            counts = dict(db.execute("SELECT type, COUNT(*) FROM entries GROUP BY type").fetchall())
            blobs = db.execute("SELECT COUNT(DISTINCT blob) FROM entries").fetchone()[0]
            return {"objects": counts.get("object", 0), "directories": counts.get("directory", 0),
                    "blobs": int(blobs)}

        return await self._db_call(q)

    async def reset(self) -> None:
        def wipe(db: sqlite3.Connection) -> None:
            with db:
                db.execute("BEGIN IMMEDIATE")
                db.execute("DELETE FROM entries")
            shutil.rmtree(self.blob_dir, ignore_errors=True)
            self.blob_dir.mkdir(exist_ok=True)

        await self._db_call(wipe)

    # -- bytes ------------------------------------------------------------------------------
    async def new_writer(self) -> _DiskWriter:
        if not self.reserve.held:  # spent by a delete: take it back once there is room
            await self._io(self.reserve.ensure)
        return await self._io(_DiskWriter, self)

    async def concat(self, blobs: Sequence[str]) -> Ingested:
        """``concat_blobs`` for files: the same result and errors, without re-ingesting.

        One thread appends the blob files to a temp file (``_DiskWriter.append_file``) while a
        second computes the whole object's MD5 from the same files; the temp file is then
        committed (renamed) like any upload, or discarded on any failure or cancellation, so a
        failed or interrupted commit leaves no half object and every blob intact.
        """
        loop = asyncio.get_running_loop()
        writer = await self.new_writer()
        stop = threading.Event()
        files: list[BinaryIO] = []
        jobs: list[asyncio.Future[Any]] = []
        size = 0
        try:
            # Opened before any byte is read: a concurrent delete cannot pull the bytes away.
            files = await self._io(self._open_blobs, blobs)
            parts = [(f.fileno(), os.fstat(f.fileno()).st_size) for f in files]
            size = sum(n for _, n in parts)

            def append_all() -> int:
                return sum(writer.append_file(fd, n, stop) for fd, n in parts)

            jobs = [
                loop.run_in_executor(None, append_all),
                loop.run_in_executor(None, _md5_of_files, parts, stop),
            ]
            joined = asyncio.gather(*jobs)
            joined.add_done_callback(_retrieve)  # even if we stop awaiting it (cancelled)
            copied, (digest, hashed) = await asyncio.shield(joined)
            if copied != hashed:  # blob files never change once named: a bug, or tampering
                raise RuntimeError(f"blobs changed while being joined ({copied} != {hashed})")
            if copied == 0:
                await self._io(writer.discard)
                return Ingested(None, 0, EMPTY_MD5)
            blob = await self._io(writer.commit)
            return Ingested(blob, copied, b64md5(digest))
        except BaseException as exc:
            stop.set()
            if jobs:  # the threads still use the files and the temp file: let them stop first
                await asyncio.wait(jobs)
            await asyncio.shield(self._io(writer.discard))
            if is_out_of_space(exc):
                raise not_enough_space(size) from exc
            raise
        finally:
            if files:
                await asyncio.shield(self._io(self._close_all, files))

    def _open_blobs(self, blobs: Sequence[str]) -> list[BinaryIO]:
        files: list[BinaryIO] = []
        try:
            for blob in blobs:
                files.append(self._open_blob(blob))
        except BaseException:
            self._close_all(files)
            raise
        return files

    @staticmethod
    def _close_all(files: Sequence[BinaryIO]) -> None:
        for f in files:
            f.close()

    async def read_blob(
        self, blob: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        # Opened before the first yield: a concurrent delete then cannot pull the bytes away.
        loop = asyncio.get_running_loop()
        f = await self._io(self._open_blob, blob)
        remaining = None if end is None else end - start

        def read_next() -> bytes:
            nonlocal remaining
            n = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
            if n <= 0:
                return b""
            chunk = f.read(n) or b""
            if remaining is not None:
                remaining -= len(chunk)
            return chunk

        ahead: asyncio.Future[bytes] | None = None
        try:
            if start:
                await self._io(f.seek, start)
            ahead = loop.run_in_executor(None, read_next)
            while True:
                chunk = await ahead
                ahead = None
                if not chunk:
                    break
                ahead = loop.run_in_executor(None, read_next)  # read-ahead while we send
                yield chunk
        finally:
            if ahead is not None:
                await asyncio.wait([ahead])
            await self._io(f.close)

    async def open_blob_file(self, blob: str) -> BinaryIO | None:
        return await self._io(self._open_blob, blob)

    def _open_blob(self, blob: str) -> BinaryIO:
        return open(self.blob_path(blob), "rb", buffering=0)

    async def link_blob(self, blob: str) -> str:
        new = uuid.uuid4().hex

        def link() -> None:
            target = self.blob_path(new)
            target.parent.mkdir(exist_ok=True)
            os.link(self.blob_path(blob), target)

        await self._io(link)
        return new

    async def drop_blobs(self, blobs: Sequence[str]) -> None:
        """Move the blobs out of ``blobs/`` now; unlink them in the background."""
        moved: list[Path] = []

        def drop() -> None:
            for blob in blobs:
                gone = self.trash_dir / blob
                try:
                    os.replace(self.blob_path(blob), gone)
                except FileNotFoundError:
                    continue
                moved.append(gone)

        def unlink() -> None:
            for path in moved:
                path.unlink(missing_ok=True)
            self.reserve.ensure()

        if not blobs:
            return
        await self._io(drop)
        if moved:
            task = asyncio.ensure_future(self._io(unlink))
            self._unlinking.add(task)
            task.add_done_callback(self._unlinking.discard)
