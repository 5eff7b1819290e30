"""Accounts and their SSH public keys (the embedded store is added by the auth work)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Account:
    """A CloudAPI account: what an action knows about its caller."""

    uuid: str
    login: str
    disabled: bool = False


@dataclass(frozen=True)
class KeyRecord:
    """One SSH public key of an account."""

    login: str
    name: str
    fingerprint: str  # colon-hex MD5
    public_key: str  # the OpenSSH line


class AccountStore:
    """The embedded account store (SQLite). STUB: owned by the auth work, replaced there.

    API the rest of the code relies on: ``AccountStore(path)``, ``add_account(login, uuid=None)``,
    ``get_account(login)``, ``get_account_by_uuid(uuid)``, ``list_accounts()``,
    ``set_disabled(login, disabled)``, ``add_key(login, public_key_line, name=None) -> KeyRecord``,
    ``list_keys(login)``, ``find_key(login, name_or_fingerprint) -> KeyRecord | None``, ``close()``.
    """

    def __init__(self, path: object) -> None:
        raise NotImplementedError
