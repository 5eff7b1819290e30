"""Accounts and their SSH public keys (the embedded store is added by the auth work)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Account:
    """A CloudAPI account: what an action knows about its caller."""

    uuid: str
    login: str
    disabled: bool = False
