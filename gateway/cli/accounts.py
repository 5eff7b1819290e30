"""``cloudapi-gateway accounts ...`` and ``keys ...``: manage the account store.

``register(subparsers)`` adds both command groups to the main CLI. Each leaf command sets
``func(args) -> int`` (the exit status). The store is the one the server uses
(``settings.accounts_db``, under ``--data-dir`` or the config file's ``data_dir``, or the
PostgreSQL database of ``[database] url``); writes are seen by every running server within
its ``[database] refresh_interval``, no restart needed. The read-only ``list`` commands never
create anything: a data dir that does not exist is an error, a missing database an empty one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.cli.common import CliError, common_options
from gateway.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from gateway.actions import Account
    from gateway.server.accounts import AccountStore, KeyRecord

Handler = Callable[[argparse.Namespace], int]


def existing_data_dir(settings: Settings) -> None:
    """Refuse a data dir that does not exist: read-only commands never create one, so a
    mistyped ``--data-dir`` (or ``data_dir``) is a one-line error, not an empty answer."""
    if not settings.data_dir.is_dir():
        raise CliError(
            f"data dir {settings.data_dir} does not exist "
            "(check --data-dir, or data_dir in the --config file)"
        )


@asynccontextmanager
async def account_store(
    settings: Settings, *, read_only: bool = False
) -> AsyncIterator[AccountStore]:
    """The store the server of ``settings`` uses: the SQLite file under the data dir, or
    ``[database] url``'s PostgreSQL database. Database failures inside become ``CliError``.

    ``read_only`` (SQLite): the data dir must exist, and a missing database is an empty store
    that leaves no file behind (an in-memory one).
    """
    from gateway.server.accounts import AccountStore
    from gateway.server.database import DatabaseError, DatabaseOptions, Databases

    if DatabaseOptions.of(settings).url is not None:
        try:
            databases = await Databases.open(settings, ("accounts",))
        except DatabaseError as e:
            raise CliError(f"cannot open the account store: {e}") from None
        try:
            yield AccountStore(databases["accounts"])
        except DatabaseError as e:
            raise CliError(str(e)) from None
        finally:
            await databases.close()
        return
    path: Path | str = settings.accounts_db
    if read_only:
        existing_data_dir(settings)
        if not settings.accounts_db.exists():
            path = ":memory:"
    try:
        store = AccountStore(path)
    except Exception as e:  # database and OS errors: say which file
        raise CliError(f"cannot open the account store {settings.accounts_db}: {e}") from None
    try:
        yield store
    except DatabaseError as e:
        raise CliError(f"{settings.accounts_db}: {e}") from None
    finally:
        await store.close()


@asynccontextmanager
async def _opened_store(
    args: argparse.Namespace, *, read_only: bool = False
) -> AsyncIterator[AccountStore]:
    """``account_store`` for the settings that ``--config``/``--data-dir``/env select."""
    try:
        settings = load_settings(
            getattr(args, "config", None), overrides={"data_dir": getattr(args, "data_dir", None)}
        )
    except SettingsError as e:
        raise CliError(str(e)) from None
    async with account_store(settings, read_only=read_only) as store:
        yield store


def _run(
    action: Callable[[AccountStore, argparse.Namespace], Awaitable[None]],
    *,
    read_only: bool = False,
) -> Handler:
    """Wrap a command: open the store, turn refusals into a message and exit status 1."""

    async def run(args: argparse.Namespace) -> None:
        async with _opened_store(args, read_only=read_only) as store:
            await action(store, args)

    def handler(args: argparse.Namespace) -> int:
        from gateway.server.accounts import AccountError

        try:
            asyncio.run(run(args))
        except (CliError, AccountError) as e:
            print(f"cloudapi-gateway: error: {e}", file=sys.stderr)
            return 1
        return 0

    return handler


def _account_json(account: Account) -> dict[str, Any]:
    return {
        "login": account.login,
        "uuid": account.uuid,
        "disabled": account.disabled,
        "created": account.created,
    }


def _key_json(key: KeyRecord) -> dict[str, Any]:
    return {
        "login": key.login,
        "name": key.name,
        "fingerprint": key.fingerprint,
        "type": key.public_key.split()[0],
    }


# --- accounts -------------------------------------------------------------------------------


async def _accounts_add(store: AccountStore, args: argparse.Namespace) -> None:
    account = await store.add_account(args.login, uuid=args.uuid)
    print(f"Created account {account.login} ({account.uuid})")


async def _accounts_list(store: AccountStore, args: argparse.Namespace) -> None:
    accounts = await store.list_accounts()
    if args.json:
        for account in accounts:
            print(json.dumps(_account_json(account)))
        return
    print(f"{'LOGIN':<32}  {'UUID':<36}  {'STATE':<8}  CREATED")
    for a in accounts:
        state = "disabled" if a.disabled else "enabled"
        print(f"{a.login:<32}  {a.uuid:<36}  {state:<8}  {a.created}")


def _accounts_set(
    disabled: bool,
) -> Callable[[AccountStore, argparse.Namespace], Awaitable[None]]:
    async def action(store: AccountStore, args: argparse.Namespace) -> None:
        account = await store.set_disabled(args.login, disabled)
        print(f"Account {account.login} is now {'disabled' if disabled else 'enabled'}")

    return action


# --- keys -----------------------------------------------------------------------------------


def _read_key_line(path: str) -> str:
    """The one public key line of PUBKEY_FILE (``-`` is stdin); comments and blanks skipped."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"public key file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CliError(f"cannot read public key file {path}: {e}") from None
    if "PRIVATE KEY" in text:
        raise CliError(f"{path} is a private key; give the public key (.pub) instead")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if not lines:
        raise CliError(f"{path} holds no public key")
    if len(lines) > 1:
        raise CliError(f"{path} holds {len(lines)} lines; give a file with one public key")
    return lines[0]


async def _keys_add(store: AccountStore, args: argparse.Namespace) -> None:
    key = await store.add_key(args.login, _read_key_line(args.pubkey_file), name=args.name)
    named = key.name if key.name == key.fingerprint else f"{key.name} ({key.fingerprint})"
    print(f"Added key {named} to account {key.login}")
    print(f"keyId: /{key.login}/keys/{key.fingerprint}")


async def _keys_list(store: AccountStore, args: argparse.Namespace) -> None:
    if await store.get_account(args.login) is None:
        raise CliError(f"no account with login {args.login!r}")
    keys = await store.list_keys(args.login)
    if args.json:
        for key in keys:
            print(json.dumps(_key_json(key)))
        return
    print(f"{'NAME':<48}  {'FINGERPRINT':<47}  TYPE")
    for k in keys:
        print(f"{k.name:<48}  {k.fingerprint:<47}  {k.public_key.split()[0]}")


# --- wiring ---------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``accounts`` and ``keys`` command groups to the main CLI's subparsers."""
    common = common_options("data directory (overrides the config file; holds accounts.sqlite)")

    accounts = subparsers.add_parser("accounts", help="manage accounts (logins)")
    acc = accounts.add_subparsers(dest="accounts_command", metavar="COMMAND", required=True)
    p = acc.add_parser("add", parents=[common], help="create an account")
    p.add_argument("login", metavar="LOGIN")
    p.add_argument("--uuid", metavar="UUID", help="account uuid (default: a new one)")
    p.set_defaults(func=_run(_accounts_add))
    p = acc.add_parser("list", parents=[common], help="list accounts")
    p.add_argument("-j", "--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=_run(_accounts_list, read_only=True))
    for verb, disabled in (("disable", True), ("enable", False)):
        p = acc.add_parser(
            verb,
            parents=[common],
            help=f"{verb} an account (a disabled one gets 403 NotAuthorized)",
        )
        p.add_argument("login", metavar="LOGIN")
        p.set_defaults(func=_run(_accounts_set(disabled)))

    keys = subparsers.add_parser("keys", help="manage accounts' SSH public keys")
    ks = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    p = ks.add_parser("add", parents=[common], help="add an SSH public key to an account")
    p.add_argument("login", metavar="LOGIN")
    p.add_argument("pubkey_file", metavar="PUBKEY_FILE", help="OpenSSH public key file, or -")
    p.add_argument("--name", metavar="N", help="key name (default: its MD5 fingerprint)")
    p.set_defaults(func=_run(_keys_add))
    p = ks.add_parser("list", parents=[common], help="list an account's keys")
    p.add_argument("login", metavar="LOGIN")
    p.add_argument("-j", "--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=_run(_keys_list, read_only=True))


def main(argv: Sequence[str] | None = None) -> int:
    """Run only these commands (``python -m gateway.cli.accounts``); the CLI embeds them."""
    parser = argparse.ArgumentParser(prog="cloudapi-gateway")
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
