"""Accounts and their SSH public keys, in the gateway's database (SQLite or PostgreSQL).

The server reads this store on every authenticated request while ``cloudapi-gateway accounts``
and ``keys`` (on this host or any other sharing the database) may write to it. Reads are
served from an in-memory cache, dropped when the ``account_changes`` counter moved: triggers
bump it on every write to ``accounts`` or ``keys``, whoever writes. Each instance reads the
counter at most once per ``refresh_interval`` (SQLite: on every request; PostgreSQL: once a
second by default), so a change made anywhere is seen everywhere within that bound, with no
restart, and a request costs at most one tiny query.
"""

from __future__ import annotations

import re
import time
import uuid as uuidlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gateway import httpsig
from gateway.actions import Account
from gateway.server.database import Database, IntegrityError
from gateway.server.database.sqlite import SQLiteDatabase

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
    """Accounts and keys on a ``Database``, with the cache described above.

    ``AccountStore(path)`` opens (and migrates) a SQLite file of its own, which ``close``
    closes; a store given a ``Database`` leaves closing it to the owner. Refusals raise
    ``AccountError`` subclasses; a database that is down raises ``DatabaseUnavailable`` (503).
    """

    def __init__(self, db: Database | str | Path, *, refresh_interval: float = 0.0) -> None:
        if isinstance(db, str | Path):
            self.path: Path | None = Path(db)
            self.db: Database = SQLiteDatabase.open(db, ("accounts",))
            self._owned = True
        else:
            self.path = None
            self.db = db
            self._owned = False
        #: Seconds between two reads of the change counter (the cross-instance bound).
        self.refresh_interval = refresh_interval
        self._serial: int | None = None
        self._next_check = 0.0
        #: Bumped by every ``_forget``: a lookup started before it must not refill the cache.
        self._generation = 0
        self._writes = 0
        self._by_login: dict[str, Account | None] = {}
        self._by_uuid: dict[str, Account | None] = {}
        self._keys: dict[str, tuple[KeyRecord, ...]] = {}

    @property
    def writes(self) -> int:
        """How many writes this store has made (others' are seen through the database)."""
        return self._writes

    # --- cache ---------------------------------------------------------------------------

    async def _fresh(self) -> None:
        """Drop the caches if anyone (this instance, another, the CLI) wrote since."""
        cached = len(self._by_login) + len(self._by_uuid) + len(self._keys)
        if cached > CACHE_LIMIT:
            self._forget()
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + self.refresh_interval
        row = await self.db.fetchone("SELECT serial FROM account_changes WHERE id = 1")
        serial = int(row[0]) if row else 0
        if serial != self._serial:
            self._serial = serial
            self._forget()

    def _wrote(self) -> None:
        """After one of this store's own writes (successful or not)."""
        self._writes += 1
        self._forget()

    def _forget(self) -> None:
        self._generation += 1
        self._by_login.clear()
        self._by_uuid.clear()
        self._keys.clear()

    @staticmethod
    def _account(row: tuple[object, ...]) -> Account:
        return Account(
            uuid=str(row[0]), login=str(row[1]), disabled=bool(row[2]), created=str(row[3])
        )

    # --- accounts ------------------------------------------------------------------------

    async def add_account(self, login: str, uuid: str | None = None) -> Account:
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
        try:
            await self.db.execute(
                "INSERT INTO accounts (uuid, login, disabled, created) VALUES (?, ?, 0, ?)",
                account.uuid,
                account.login,
                account.created,
            )
        except IntegrityError:
            taken = await self.db.fetchone(
                "SELECT login FROM accounts WHERE login = ? OR uuid = ?", login, uuid
            )
            what = f"login {login!r}" if taken and taken[0] == login else f"uuid {uuid}"
            raise AccountExists(f"an account with {what} already exists") from None
        finally:
            self._wrote()
        return account

    async def _account_of(self, login: str) -> Account | None:
        """The cached account of ``login`` (the caller has called ``_fresh``)."""
        if login in self._by_login:
            return self._by_login[login]
        generation = self._generation
        row = await self.db.fetchone(
            "SELECT uuid, login, disabled, created FROM accounts WHERE login = ?", login
        )
        account = self._account(row) if row else None
        if generation == self._generation:
            self._by_login[login] = account
        return account

    async def get_account(self, login: str) -> Account | None:
        """The account with this login, or ``None`` (also for strings that are not logins)."""
        if not isinstance(login, str) or not LOGIN_RE.match(login):
            return None
        await self._fresh()
        return await self._account_of(login)

    async def get_account_by_uuid(self, uuid: str) -> Account | None:
        """The account with this uuid, or ``None`` (also for strings that are not UUIDs)."""
        try:
            uuid = str(uuidlib.UUID(str(uuid)))
        except ValueError:
            return None
        await self._fresh()
        if uuid in self._by_uuid:
            return self._by_uuid[uuid]
        generation = self._generation
        row = await self.db.fetchone(
            "SELECT uuid, login, disabled, created FROM accounts WHERE uuid = ?", uuid
        )
        account = self._account(row) if row else None
        if generation == self._generation:
            self._by_uuid[uuid] = account
        return account

    async def list_accounts(self) -> list[Account]:
        """Every account, by login."""
        rows = await self.db.fetch(
            "SELECT uuid, login, disabled, created FROM accounts ORDER BY login"
        )
        return [self._account(row) for row in rows]

    async def set_disabled(self, login: str, disabled: bool) -> Account:
        """Disable (403 on every request) or enable an account; returns it as it now is."""
        try:
            changed = await self.db.execute(
                "UPDATE accounts SET disabled = ? WHERE login = ?", int(disabled), login
            )
        finally:
            self._wrote()
        if changed == 0:
            raise AccountNotFound(f"no account with login {login!r}")
        account = await self.get_account(login)
        if account is None:  # deleted meanwhile by someone else
            raise AccountNotFound(f"no account with login {login!r}")
        return account

    # --- keys ----------------------------------------------------------------------------

    async def add_key(
        self, login: str, public_key_line: str, name: str | None = None
    ) -> KeyRecord:
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
        try:
            async with self.db.transaction() as tx:
                if not await tx.fetchone("SELECT 1 FROM accounts WHERE login = ?", login):
                    raise AccountNotFound(f"no account with login {login!r}")
                await tx.execute(
                    "INSERT INTO keys (login, name, fingerprint, public_key, created)"
                    " VALUES (?, ?, ?, ?, ?)",
                    login,
                    name,
                    fingerprint,
                    line,
                    _now(),
                )
        except IntegrityError:
            row = await self.db.fetchone(
                "SELECT name FROM keys WHERE login = ? AND fingerprint = ?", login, fingerprint
            )
            if row:
                raise KeyExists(
                    f"account {login!r} already has this key ({fingerprint}) as {row[0]!r}"
                ) from None
            raise KeyExists(f"account {login!r} already has a key named {name!r}") from None
        finally:
            self._wrote()
        return record

    async def _keys_of(self, login: str) -> tuple[KeyRecord, ...]:
        """The cached keys of ``login`` (the caller has called ``_fresh``)."""
        keys = self._keys.get(login)
        if keys is None:
            generation = self._generation
            rows = await self.db.fetch(
                "SELECT login, name, fingerprint, public_key FROM keys WHERE login = ?"
                " ORDER BY created, name",
                login,
            )
            keys = tuple(KeyRecord(*(str(v) for v in row)) for row in rows)
            if generation == self._generation:
                self._keys[login] = keys
        return keys

    async def list_keys(self, login: str) -> list[KeyRecord]:
        """The account's keys, oldest first (empty for an unknown login)."""
        if not isinstance(login, str) or not LOGIN_RE.match(login):
            return []
        await self._fresh()
        return list(await self._keys_of(login))

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

    async def find_key(self, login: str, name_or_fingerprint: str) -> KeyRecord | None:
        """The key a keyId names: by MD5 fingerprint (any case, optional ``MD5:``) or name."""
        if not isinstance(login, str) or not LOGIN_RE.match(login):
            return None
        await self._fresh()
        return self._match(await self._keys_of(login), name_or_fingerprint)

    async def credentials(
        self, login: str, name_or_fingerprint: str
    ) -> tuple[Account | None, KeyRecord | None]:
        """``get_account`` and ``find_key`` after one freshness check (the per-request path)."""
        if not isinstance(login, str) or not LOGIN_RE.match(login):
            return None, None
        await self._fresh()
        account = await self._account_of(login)
        if account is None:
            return None, None
        return account, self._match(await self._keys_of(login), name_or_fingerprint)

    async def check(self) -> None:
        """One trivial query (readiness); ``DatabaseUnavailable`` if the database fails it."""
        await self.db.fetch("SELECT 1 FROM accounts LIMIT 1")

    async def close(self) -> None:
        """Close the store's own SQLite file (a shared ``Database`` stays open)."""
        if self._owned:
            await self.db.close()
