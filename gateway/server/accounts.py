"""Accounts and their SSH public keys, in an embedded SQLite store.

The server reads this store on every authenticated request while ``cloudapi-gateway accounts``
and ``keys`` may write to it from another process. Reads are served from an in-memory cache
that is dropped whenever SQLite's ``PRAGMA data_version`` says another connection committed,
so new accounts, keys and disabled flags are seen at once without a restart, and a request
costs one tiny pragma query rather than several lookups.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import uuid as uuidlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gateway import httpsig
from gateway.actions import Account

#: CloudAPI logins, as UFDS validates them (sdc-ufds ``schema/sdcperson.js``): a letter, then
#: letters, digits, ``_``, ``.`` or ``@``; 3 to 32 long; ``local`` is reserved.
LOGIN_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.@]{2,31}$")
RESERVED_LOGINS = frozenset({"local"})
#: Key names: printable, no ``/`` (they travel inside keyIds), 1 to 128 long.
KEY_NAME_RE = re.compile(r"^[^/\s][^/]{0,127}$")
#: Cached lookups (misses included) before the cache starts over; bounds what a flood of
#: requests naming random logins can make the server keep.
CACHE_LIMIT = 10_000
FINGERPRINT_RE = re.compile(r"^([0-9a-f]{2}:){15}[0-9a-f]{2}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    uuid TEXT PRIMARY KEY,
    login TEXT NOT NULL UNIQUE,
    disabled INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS keys (
    login TEXT NOT NULL REFERENCES accounts(login) ON DELETE CASCADE,
    name TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    public_key TEXT NOT NULL,
    created TEXT NOT NULL,
    PRIMARY KEY (login, name),
    UNIQUE (login, fingerprint)
);
"""


@dataclass(frozen=True)
class KeyRecord:
    """One SSH public key of an account."""

    login: str
    name: str
    fingerprint: str  # colon-hex MD5
    public_key: str  # the OpenSSH line


class AccountError(ValueError):
    """Base of the store's refusals; the message is meant for the operator as it is."""


class InvalidLogin(AccountError):
    """The login does not follow CloudAPI's rules."""


class InvalidUUID(AccountError):
    """The account uuid is not a UUID."""


class AccountExists(AccountError):
    """The login or uuid is taken."""


class AccountNotFound(AccountError):
    """No account has that login."""


class InvalidKey(AccountError):
    """The public key line or key name cannot be used."""


class KeyExists(AccountError):
    """The account already has a key with that name or fingerprint."""


def validate_login(login: str) -> str:
    """Return ``login`` if CloudAPI would accept it, else raise ``InvalidLogin``."""
    if not isinstance(login, str) or not LOGIN_RE.match(login):
        raise InvalidLogin(
            f"invalid login {login!r}: 3 to 32 characters, a letter first, then letters, "
            "digits, '_', '.' or '@'"
        )
    if login in RESERVED_LOGINS:
        raise InvalidLogin(f"invalid login {login!r}: reserved")
    return login


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class AccountStore:
    """The embedded account store (SQLite), safe across threads and processes.

    One connection per store guarded by a lock (calls are short); WAL mode and a busy timeout
    let the CLI write while the server reads. Refusals raise ``AccountError`` subclasses.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            str(path), timeout=10.0, check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA busy_timeout = 10000")
        try:
            self._db.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError:  # pragma: no cover - e.g. a filesystem without mmap
            pass
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.executescript(SCHEMA)
        self._version = -1
        self._by_login: dict[str, Account | None] = {}
        self._by_uuid: dict[str, Account | None] = {}
        self._keys: dict[str, tuple[KeyRecord, ...]] = {}

    # --- cache ---------------------------------------------------------------------------

    def _fresh(self) -> None:
        """Drop the caches if any connection (another process included) committed since."""
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        cached = len(self._by_login) + len(self._by_uuid) + len(self._keys)
        if version != self._version or cached > CACHE_LIMIT:
            self._version = version
            self._forget()

    def _forget(self) -> None:
        self._by_login.clear()
        self._by_uuid.clear()
        self._keys.clear()

    @staticmethod
    def _account(row: tuple[str, str, int, str]) -> Account:
        return Account(uuid=row[0], login=row[1], disabled=bool(row[2]), created=row[3])

    # --- accounts ------------------------------------------------------------------------

    def add_account(self, login: str, uuid: str | None = None) -> Account:
        """Create an account; ``uuid`` defaults to a fresh one. Login and uuid must be free."""
        validate_login(login)
        if uuid is None:
            uuid = str(uuidlib.uuid4())
        else:
            try:
                uuid = str(uuidlib.UUID(str(uuid)))
            except ValueError:
                raise InvalidUUID(f"invalid uuid {uuid!r}") from None
        account = Account(uuid=uuid, login=login, disabled=False, created=_now())
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO accounts (uuid, login, disabled, created) VALUES (?, ?, 0, ?)",
                    (account.uuid, account.login, account.created),
                )
            except sqlite3.IntegrityError:
                taken = self._db.execute(
                    "SELECT login FROM accounts WHERE login = ? OR uuid = ?", (login, uuid)
                ).fetchone()
                what = f"login {login!r}" if taken and taken[0] == login else f"uuid {uuid}"
                raise AccountExists(f"an account with {what} already exists") from None
            finally:
                self._forget()
        return account

    def _account_of(self, login: str) -> Account | None:
        """The cached account of ``login``; the caller holds the lock and has called ``_fresh``."""
        if login not in self._by_login:
            row = self._db.execute(
                "SELECT uuid, login, disabled, created FROM accounts WHERE login = ?", (login,)
            ).fetchone()
            self._by_login[login] = self._account(row) if row else None
        return self._by_login[login]

    def get_account(self, login: str) -> Account | None:
        """The account with this login, or ``None`` (also for strings that are not logins)."""
        if not isinstance(login, str) or not LOGIN_RE.match(login):
            return None
        with self._lock:
            self._fresh()
            return self._account_of(login)

    def get_account_by_uuid(self, uuid: str) -> Account | None:
        """The account with this uuid, or ``None`` (also for strings that are not UUIDs)."""
        try:
            uuid = str(uuidlib.UUID(str(uuid)))
        except ValueError:
            return None
        with self._lock:
            self._fresh()
            if uuid not in self._by_uuid:
                row = self._db.execute(
                    "SELECT uuid, login, disabled, created FROM accounts WHERE uuid = ?", (uuid,)
                ).fetchone()
                self._by_uuid[uuid] = self._account(row) if row else None
            return self._by_uuid[uuid]

    def list_accounts(self) -> list[Account]:
        """Every account, by login."""
        with self._lock:
            rows = self._db.execute(
                "SELECT uuid, login, disabled, created FROM accounts ORDER BY login"
            ).fetchall()
        return [self._account(row) for row in rows]

    def set_disabled(self, login: str, disabled: bool) -> Account:
        """Disable (403 on every request) or enable an account; returns it as it now is."""
        with self._lock:
            try:
                cursor = self._db.execute(
                    "UPDATE accounts SET disabled = ? WHERE login = ?", (int(disabled), login)
                )
            finally:
                self._forget()
            if cursor.rowcount == 0:
                raise AccountNotFound(f"no account with login {login!r}")
        account = self.get_account(login)
        assert account is not None
        return account

    # --- keys ----------------------------------------------------------------------------

    def add_key(self, login: str, public_key_line: str, name: str | None = None) -> KeyRecord:
        """Add an OpenSSH public key (RSA, ECDSA or Ed25519); ``name`` defaults to its MD5
        fingerprint. Name and fingerprint must both be new for this account."""
        line = public_key_line.strip() if isinstance(public_key_line, str) else ""
        if not line or "\n" in line:
            raise InvalidKey("expected exactly one OpenSSH public key line")
        try:
            key = httpsig.load_public_key(line)
        except (ValueError, TypeError) as e:
            raise InvalidKey(f"cannot parse the public key: {e}") from None
        fingerprint = httpsig.md5_fingerprint(key)
        if name is None:
            name = fingerprint
        if not KEY_NAME_RE.match(name):
            raise InvalidKey(
                f"invalid key name {name!r}: 1 to 128 characters, no '/', not starting blank"
            )
        record = KeyRecord(login=login, name=name, fingerprint=fingerprint, public_key=line)
        with self._lock:
            try:
                if not self._db.execute(
                    "SELECT 1 FROM accounts WHERE login = ?", (login,)
                ).fetchone():
                    raise AccountNotFound(f"no account with login {login!r}")
                self._db.execute(
                    "INSERT INTO keys (login, name, fingerprint, public_key, created)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (login, name, fingerprint, line, _now()),
                )
            except sqlite3.IntegrityError:
                row = self._db.execute(
                    "SELECT name FROM keys WHERE login = ? AND fingerprint = ?",
                    (login, fingerprint),
                ).fetchone()
                if row:
                    raise KeyExists(
                        f"account {login!r} already has this key ({fingerprint}) as {row[0]!r}"
                    ) from None
                raise KeyExists(f"account {login!r} already has a key named {name!r}") from None
            finally:
                self._forget()
        return record

    def _keys_of(self, login: str) -> tuple[KeyRecord, ...]:
        """The cached keys of ``login``; the caller holds the lock and has called ``_fresh``."""
        keys = self._keys.get(login)
        if keys is None:
            rows = self._db.execute(
                "SELECT login, name, fingerprint, public_key FROM keys WHERE login = ?"
                " ORDER BY created, name",
                (login,),
            ).fetchall()
            keys = self._keys[login] = tuple(KeyRecord(*row) for row in rows)
        return keys

    def list_keys(self, login: str) -> list[KeyRecord]:
        """The account's keys, oldest first (empty for an unknown login)."""
        if not isinstance(login, str) or not LOGIN_RE.match(login):
            return []
        with self._lock:
            self._fresh()
            return list(self._keys_of(login))

    @staticmethod
    def _match(keys: tuple[KeyRecord, ...], name_or_fingerprint: str) -> KeyRecord | None:
        wanted = name_or_fingerprint.lower().removeprefix("md5:")
        if FINGERPRINT_RE.match(wanted):
            for key in keys:
                if key.fingerprint == wanted:
                    return key
        for key in keys:
            if key.name == name_or_fingerprint:
                return key
        return None

    def find_key(self, login: str, name_or_fingerprint: str) -> KeyRecord | None:
        """The key a keyId names: by MD5 fingerprint (any case, optional ``MD5:``) or name."""
        if not isinstance(login, str) or not LOGIN_RE.match(login):
            return None
        with self._lock:
            self._fresh()
            return self._match(self._keys_of(login), name_or_fingerprint)

    def credentials(
        self, login: str, name_or_fingerprint: str
    ) -> tuple[Account | None, KeyRecord | None]:
        """``get_account`` and ``find_key`` in one consistent read (the per-request path)."""
        if not isinstance(login, str) or not LOGIN_RE.match(login):
            return None, None
        with self._lock:
            self._fresh()
            account = self._account_of(login)
            if account is None:
                return None, None
            return account, self._match(self._keys_of(login), name_or_fingerprint)

    def check(self) -> None:
        """One trivial query (readiness); raises ``sqlite3.Error`` if the database fails it."""
        with self._lock:
            self._db.execute("SELECT 1 FROM accounts LIMIT 1").fetchall()

    def close(self) -> None:
        """Close the connection; the store cannot be used afterwards."""
        with self._lock:
            self._db.close()
