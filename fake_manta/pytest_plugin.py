"""pytest fixtures for testing code that talks to Manta against a fake Manta.

Installing ``cloudapi-gateway`` registers this module under the ``pytest11`` entry point
``fake_manta``. It stays inert until a test asks for one of its fixtures: no server starts, no
thread runs, and every fixture name starts with ``fake_manta_`` so that none shadows a
project's own. ``-p no:fake_manta`` switches it off altogether.

- ``fake_manta_options`` (session): keyword arguments for the server
  (``ThreadedFakeManta``/``FakeMantaServer``: ``no_auth``, ``snaplinks``, ``min_part_size``...);
  ``{}`` unless a conftest overrides it.
- ``fake_manta_session`` (session): the running server, started on the first request for it,
  stopped at the end of the session; never reset.
- ``fake_manta_server``: the same server, emptied before the test (objects, directories, fault
  rules, recorded requests; accounts stay, and every test gets fresh logins anyway).
- ``fake_manta_faults``: that server's ``FaultInjector``, empty at the start of the test.
- ``fake_manta_account``: a new account with a fresh key pair (``ClientAccount``: ``login``,
  ``key_id``, ``private_key_path``, ``public_key_path``, ``home``, ``env``, ``environ()``).
- ``fake_manta_new_account``: a factory for more (``login=``, ``key_type=``, ``operator=``).

State is in memory unless ``--fake-manta-backend=disk`` (or the ini option
``fake_manta_backend = disk``) asks for a temporary data directory.

Under pytest-xdist every worker is a process with its own session, so each worker starts its
own server on its own port: tests on different workers never share state, and ``-n 4`` means
four servers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from fake_manta.client_account import ClientAccount, KeyType
    from fake_manta.faults import FaultInjector
    from fake_manta.server import ThreadedFakeManta

BACKENDS = ("memory", "disk")
_BACKEND_OPTION = "--fake-manta-backend"
_BACKEND_INI = "fake_manta_backend"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fake_manta", "fake Manta fixtures (fake_manta.pytest_plugin)")
    group.addoption(
        _BACKEND_OPTION, choices=BACKENDS, default=None,
        help="where the session's fake Manta keeps its state: memory (default) or disk "
             "(a temporary data directory); overrides the ini option fake_manta_backend",
    )
    parser.addini(_BACKEND_INI, "fake Manta fixtures: memory (default) or disk",
                  default="memory")


def pytest_configure(config: pytest.Config) -> None:
    """Refuse a misspelt backend at start-up rather than in the first test that asks."""
    _backend(config)


def _backend(config: pytest.Config) -> str:
    """The backend asked for on the command line, else in the ini file."""
    chosen = config.getoption(_BACKEND_OPTION) or str(config.getini(_BACKEND_INI)).strip()
    if chosen not in BACKENDS:
        raise pytest.UsageError(
            f"{_BACKEND_INI} = {chosen!r}: expected one of {', '.join(BACKENDS)}")
    return chosen


@pytest.fixture(scope="session")
def fake_manta_options() -> dict[str, Any]:
    """Keyword arguments for the session's fake Manta; override this fixture to change them."""
    return {}


@pytest.fixture(scope="session")
def fake_manta_session(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    fake_manta_options: dict[str, Any],
) -> Iterator[ThreadedFakeManta]:
    """One server per session (per worker under xdist): starting one costs more than a reset."""
    from fake_manta.server import ThreadedFakeManta

    options: dict[str, Any] = {"host": "127.0.0.1", "port": 0, **fake_manta_options}
    if options.get("data_dir") is None and _backend(request.config) == "disk":
        options["data_dir"] = tmp_path_factory.mktemp("fake-manta-data")
    server = ThreadedFakeManta(**options)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake_manta_server(fake_manta_session: ThreadedFakeManta) -> ThreadedFakeManta:
    """The session's server, emptied first so that no test sees another's objects or faults."""
    fake_manta_session.reset()
    return fake_manta_session


@pytest.fixture
def fake_manta_faults(fake_manta_server: ThreadedFakeManta) -> FaultInjector:
    """Fault rules for this test (``add(method, path_regex, status=/stall=/cut_after=...)``)."""
    return fake_manta_server.faults


@pytest.fixture
def fake_manta_new_account(
    fake_manta_server: ThreadedFakeManta, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., ClientAccount]:
    """``new(login=None, *, key_type="ecdsa", operator=False) -> ClientAccount``."""
    from fake_manta.client_account import create_client_account

    directory = tmp_path_factory.mktemp("fake-manta-accounts")

    def new(login: str | None = None, *, key_type: KeyType = "ecdsa",
            operator: bool = False) -> ClientAccount:
        return create_client_account(fake_manta_server, directory, login,
                                     key_type=key_type, operator=operator)

    return new


@pytest.fixture
def fake_manta_account(fake_manta_new_account: Callable[..., ClientAccount]) -> ClientAccount:
    """A new login with a fresh ECDSA key pair; ``.env`` / ``.environ()`` for clients."""
    return fake_manta_new_account()
