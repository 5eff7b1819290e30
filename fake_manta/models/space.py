"""A full disk, for the on-disk backend: tell it apart from other errors, and keep a reserve.

Every write needs space, SQLite's deletes included (a DELETE appends pages to the WAL, and
after a restart SQLite must recreate its ``-wal`` and ``-shm`` files before it can read). So on
a full disk nothing could be deleted, ever, and space could not be freed through the API. The
backend therefore keeps ``reserve``, a file of :data:`RESERVE_BYTES` that only a delete (or
start-up) may give back: it is unlinked, the delete retried, and the file recreated as soon as
there is room again (after the deleted blobs are unlinked, or before the next upload).
"""

from __future__ import annotations

import errno
import math
import os
import sqlite3
import threading
from pathlib import Path

from fake_manta.errors import NotEnoughSpace

#: Room for a few deletes' WAL pages and SQLite's ``-shm`` file (32 KiB) after a restart.
RESERVE_BYTES = 128 << 10
_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_ZEROS = bytes(64 << 10)


def is_out_of_space(exc: BaseException) -> bool:
    """ENOSPC/EDQUOT, or SQLite's SQLITE_FULL (or an I/O error that a full disk explains)."""
    if isinstance(exc, OSError):
        return exc.errno in _SPACE_ERRNOS
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        # SQLITE_IOERR_*: growing the -shm file or the WAL on a full tmpfs fails this way
        return code is not None and (code == sqlite3.SQLITE_FULL
                                     or code & 0xFF == sqlite3.SQLITE_IOERR)
    return False


def not_enough_space(size: int | None) -> NotEnoughSpace:
    """muskie's error: ``not enough free space for N MB`` (the object's size, rounded up)."""
    return NotEnoughSpace(f"not enough free space for {math.ceil((size or 0) / (1 << 20))} MB")


class SpaceReserve:
    """The reserve file under a data directory. Every method blocks (call from a thread)."""

    def __init__(self, root: Path) -> None:
        self.path = root / "reserve"
        self._lock = threading.Lock()

    @property
    def held(self) -> bool:
        return self.path.exists()

    def ensure(self) -> bool:
        """Create the reserve if it is missing and there is room; True if it is held."""
        with self._lock:
            if self.path.exists():
                return True
            tmp = self.path.with_name("reserve.tmp")
            try:
                with open(tmp, "wb") as f:
                    for _ in range(RESERVE_BYTES // len(_ZEROS)):
                        f.write(_ZEROS)
                os.replace(tmp, self.path)
            except OSError:
                tmp.unlink(missing_ok=True)
                return False
            return True

    def release(self) -> bool:
        """Give the reserve's space back; True if there was one to give."""
        with self._lock:
            try:
                self.path.unlink()
            except FileNotFoundError:
                return False
            return True
