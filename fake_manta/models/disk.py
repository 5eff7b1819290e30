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
An MPU commit copies no byte (``DiskBackend.concat``): the new blob is a directory of hard links
to the part files, in order, read back as one; its MD5 was mostly worked out while the parts
arrived (``RunningDigest``).
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
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
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from fake_manta.models.backend import READ_CHUNK, Ingested, ListQuery, b64md5
from fake_manta.models.direct_io import DirectFile, hash_file, open_direct
from fake_manta.models.entry import Entry
from fake_manta.models.space import SpaceReserve, is_out_of_space, not_enough_space

if TYPE_CHECKING:
    from hashlib import _Hash

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
#: ``os.link`` refused by the filesystem (not a missing file or a full disk): copy instead.
_NO_HARD_LINKS = frozenset(
    {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK}
)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _DiskWriter:
    """One upload's bytes into ``tmp/``: ``direct``, around the page cache where the filesystem
    allows it (``DirectFile``), else through it."""

    def __init__(self, backend: DiskBackend, direct: bool = False) -> None:
        self._backend = backend
        self._fsync = backend.fsync
        self._tmp = backend.tmp_dir / uuid.uuid4().hex
        fd = open_direct(self._tmp) if direct else None
        self._direct = DirectFile(fd) if fd is not None else None
        self._file = None if fd is not None else open(self._tmp, "wb", buffering=0)
        self._written = 0
        self._flushed = 0

    def write(self, data: bytes | memoryview) -> None:
        if self._direct is not None:
            self._direct.write(data)
            return
        assert self._file is not None
        view = memoryview(data)
        while view:
            n = self._file.write(view)
            view = view[n or 0 :]
        self._wrote(len(data))

    def _wrote(self, n: int) -> None:
        assert self._file is not None
        self._written += n
        if (self._fsync and _sync_file_range is not None
                and self._written - self._flushed >= _WRITEBACK_STEP):
            _sync_file_range(self._file.fileno(), self._flushed, self._written - self._flushed,
                             _SYNC_FILE_RANGE_WRITE)
            self._flushed = self._written

    def _close(self) -> None:
        if self._direct is not None:
            self._direct.close()
        elif self._file is not None:
            self._file.close()

    def commit(self) -> str:
        if self._direct is not None:
            self._direct.finish()
            fd = self._direct.fd
        else:
            assert self._file is not None
            fd = self._file.fileno()
        if self._fsync:  # direct writes are past the page cache, not past the device's cache
            os.fsync(fd)
        self._close()
        blob = uuid.uuid4().hex
        target = self._backend.blob_path(blob)
        target.parent.mkdir(exist_ok=True)
        os.replace(self._tmp, target)
        if self._fsync:
            _fsync_dir(target.parent)
        return blob

    def discard(self) -> None:
        self._close()
        self._tmp.unlink(missing_ok=True)


def _close_all(files: Sequence[BinaryIO]) -> None:
    for f in files:
        f.close()


def _remove(path: Path) -> None:
    """Delete a blob's file, or a joined blob's directory of links."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


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
        #: Internal switch: False makes ``concat`` and ``link_blob`` copy files instead of
        #: linking them, the path taken where the filesystem refuses hard links (tests turn it
        #: off to cover it).
        self.use_hard_links = True
        #: Internal switch: False writes multipart parts through the page cache too, the path
        #: taken where the filesystem refuses ``O_DIRECT`` (tests turn it off to cover it).
        self.use_direct_io = True

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
                    _remove(f)

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
    async def new_writer(self, *, read_once: bool = False) -> _DiskWriter:
        """A blob read back once at most (a multipart part: by the commit's digest, which
        reads it direct too) is written around the page cache; any other through it, where
        the GETs that tend to follow a PUT find it."""
        if not self.reserve.held:  # spent by a delete: take it back once there is room
            await self._io(self.reserve.ensure)
        return await self._io(_DiskWriter, self, read_once and self.use_direct_io)

    async def concat(self, blobs: Sequence[str], md5: bytes, size: int) -> Ingested:
        """``concat_blobs`` for files: a new blob made of ``blobs`` without copying a byte.

        One file is hard-linked as the new blob; several become a directory of hard links to
        them, named in order (``_members`` reads it back as one). It is built in ``tmp/`` and
        renamed into ``blobs/`` whole, so a failed or interrupted join leaves no half object,
        and the parts' blobs may be dropped afterwards: the links keep their bytes.
        """
        staged = self.tmp_dir / uuid.uuid4().hex

        def join() -> str:
            members = [m for blob in blobs for m in self._members(blob)]
            sizes = [m.stat().st_size for m in members]
            if sum(sizes) != size:  # blob files never change once named: a bug, or tampering
                raise RuntimeError(f"blobs changed while being joined ({sum(sizes)} != {size})")
            members = [m for m, n in zip(members, sizes, strict=True) if n]
            if len(members) == 1:
                self._link(members[0], staged)
            else:
                staged.mkdir()
                for number, member in enumerate(members):
                    self._link(member, staged / f"{number:05d}")
                if self.fsync:
                    _fsync_dir(staged)
            blob = uuid.uuid4().hex
            target = self.blob_path(blob)
            target.parent.mkdir(exist_ok=True)
            os.replace(staged, target)
            if self.fsync:
                _fsync_dir(target.parent)
            return blob

        def discard() -> None:
            if staged.is_dir():
                shutil.rmtree(staged, ignore_errors=True)
            else:
                staged.unlink(missing_ok=True)

        job = asyncio.ensure_future(self._io(join))
        try:
            blob = await asyncio.shield(job)
        except BaseException as exc:
            if not job.done():  # cancelled: let the thread finish before cleaning up after it
                await asyncio.wait([job])
                if not job.cancelled() and job.exception() is None:
                    await self.drop_blobs([job.result()])
            await asyncio.shield(self._io(discard))
            if is_out_of_space(exc):
                raise not_enough_space(size) from exc
            raise
        return Ingested(blob, size, b64md5(md5))

    def _link(self, source: Path, target: Path) -> None:
        """``target`` becomes another name of ``source``'s bytes (a copy where links fail)."""
        if self.use_hard_links:
            try:
                os.link(source, target)
                return
            except OSError as exc:
                if exc.errno not in _NO_HARD_LINKS:
                    raise
        shutil.copyfile(source, target)
        if self.fsync:
            with open(target, "rb") as f:
                os.fsync(f.fileno())

    def _members(self, blob: str) -> list[Path]:
        """The files holding ``blob``'s bytes, in order: itself, or a joined blob's links."""
        path = self.blob_path(blob)
        if path.is_dir():
            return [path / name for name in sorted(os.listdir(path))]
        if not path.exists():
            raise FileNotFoundError(errno.ENOENT, "no such blob", str(path))
        return [path]

    def _open_members(self, blob: str) -> list[BinaryIO]:
        files: list[BinaryIO] = []
        try:
            for member in self._members(blob):
                files.append(open(member, "rb", buffering=0))
        except BaseException:
            _close_all(files)
            raise
        return files

    async def hash_blob(self, blob: str, md5: _Hash, stop: threading.Event) -> int:
        def run() -> int:
            return sum(hash_file(member, md5, stop) for member in self._members(blob))

        return await self._io(run)

    async def read_blob(
        self, blob: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        # Opened before the first yield: a concurrent delete then cannot pull the bytes away.
        loop = asyncio.get_running_loop()
        files = await self._io(self._open_members, blob)
        spans = []  # (file, first byte, end) of each member within the blob
        offset = 0
        for f in files:
            n = os.fstat(f.fileno()).st_size
            spans.append((f, offset, offset + n))
            offset += n
        stop = offset if end is None else min(end, offset)
        position = start

        def read_next() -> bytes:
            nonlocal position
            for f, first, last in spans:
                if first <= position < last:
                    n = min(READ_CHUNK, last - position, stop - position)
                    chunk = os.pread(f.fileno(), n, position - first) if n > 0 else b""
                    position += len(chunk)
                    return chunk
            return b""

        ahead: asyncio.Future[bytes] | None = None
        try:
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
            await self._io(_close_all, files)

    async def open_blob_file(self, blob: str) -> BinaryIO | None:
        """The blob's file for ``sendfile``; None for a joined blob (several files)."""
        try:
            return await self._io(self._open_blob, blob)
        except IsADirectoryError:
            return None

    def _open_blob(self, blob: str) -> BinaryIO:
        return open(self.blob_path(blob), "rb", buffering=0)

    async def link_blob(self, blob: str) -> str:
        new = uuid.uuid4().hex

        def link() -> None:
            source, target = self.blob_path(blob), self.blob_path(new)
            target.parent.mkdir(exist_ok=True)
            if not source.is_dir():
                self._link(source, target)
                return
            staged = self.tmp_dir / new
            staged.mkdir()
            try:
                for member in self._members(blob):
                    self._link(member, staged / member.name)
                os.replace(staged, target)
            except BaseException:
                shutil.rmtree(staged, ignore_errors=True)
                raise

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
                _remove(path)
            self.reserve.ensure()

        if not blobs:
            return
        await self._io(drop)
        if moved:
            task = asyncio.ensure_future(self._io(unlink))
            self._unlinking.add(task)
            task.add_done_callback(self._unlinking.discard)
