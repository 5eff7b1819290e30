"""The pytest plugin (``fake_manta.pytest_plugin``, entry point ``pytest11: fake_manta``), tested
as another project uses it: each test lays out a separate project with ``pytester`` and runs
pytest on it in a subprocess, where the plugin arrives through the installed entry point.

The projects talk to the fixtures' server over plain HTTP with the standard library and sign
with ``cryptography`` (what any client does), and, in a venv of its own, with python-manta.
"""

from __future__ import annotations

import pytest

from tests.support.python_manta import ensure_python_manta

pytest_plugins = ["pytester"]

#: A small client in the generated projects: HTTP Signature (ecdsa-sha256 over ``date``) with
#: the account's key files, no proxy (the fake is on loopback).
CLIENT = '''
import base64
import email.utils
import urllib.error
import urllib.request

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def call(account, method, path, data=None, signer=None, url=None):
    """(status, body) of one request signed with ``signer``'s key (default: the account's)."""
    signer = signer or account
    key = serialization.load_pem_private_key(signer.private_key_path.read_bytes(), None)
    date = email.utils.formatdate(usegmt=True)
    signature = base64.b64encode(
        key.sign(f"date: {date}".encode(), ec.ECDSA(hashes.SHA256()))).decode()
    headers = {
        "Date": date,
        "Content-Type": "application/octet-stream",
        "Authorization": f'Signature keyId="/{signer.login}/keys/{signer.key_id}",'
                         f'algorithm="ecdsa-sha256",headers="date",signature="{signature}"',
    }
    request = urllib.request.Request((url or account.url) + path, data=data, method=method,
                                     headers=headers)
    try:
        with OPENER.open(request) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
'''

FIXTURES = ("fake_manta_options", "fake_manta_session", "fake_manta_server", "fake_manta_faults",
            "fake_manta_account", "fake_manta_new_account")


def test_inert_until_asked_and_never_shadowing(pytester: pytest.Pytester) -> None:
    """A project with fixtures of its own that look alike runs as before: no server, no thread,
    its fixtures win; ours are there for whoever asks."""
    pytester.makeconftest('''
import pytest

@pytest.fixture
def server():
    return "the project's own server"

@pytest.fixture
def manta():
    return "the project's own manta"

@pytest.fixture
def account():
    return "the project's own account"
''')
    pytester.makepyfile(test_own='''
import threading

def test_own_fixtures(server, manta, account):
    assert (server, manta, account) == (
        "the project's own server", "the project's own manta", "the project's own account")

def test_nothing_started():
    assert [t.name for t in threading.enumerate() if t.name == "fake-manta"] == []
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)

    listed = pytester.runpytest_subprocess("--fixtures", "-p", "no:cacheprovider")
    for name in FIXTURES:
        listed.stdout.fnmatch_lines([f"{name}*"])
    disabled = pytester.runpytest_subprocess("--fixtures", "-p", "no:fake_manta")
    assert "fake_manta_server" not in disabled.stdout.str()


def test_one_server_per_session_reset_between_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(client=CLIENT)
    pytester.makepyfile(test_reset='''
from client import call

SEEN = {}

def test_1_write(fake_manta_server, fake_manta_account):
    SEEN["server"], SEEN["account"] = fake_manta_server, fake_manta_account
    assert call(fake_manta_account, "PUT", f"/{fake_manta_account.login}/stor/x", b"hi")[0] == 204
    assert call(fake_manta_account, "GET", f"/{fake_manta_account.login}/stor/x") == (200, b"hi")
    assert fake_manta_server.server.config.data_dir is None  # memory by default

def test_2_emptied_but_same_server(fake_manta_server):
    assert fake_manta_server is SEEN["server"]
    old = SEEN["account"]
    assert call(old, "GET", f"/{old.login}/stor/x")[0] == 404  # objects gone, account kept

def test_3_fault(fake_manta_faults, fake_manta_account):
    fake_manta_faults.add("GET", "/stor$", status=503)
    path = f"/{fake_manta_account.login}/stor"
    assert call(fake_manta_account, "GET", path)[0] == 503
    assert call(fake_manta_account, "GET", path)[0] == 200  # times=1

def test_4_leaves_a_fault(fake_manta_faults, fake_manta_account):
    fake_manta_faults.add("GET", "/stor$", status=503, times=None)

def test_5_no_fault_left(fake_manta_server, fake_manta_account):
    assert fake_manta_server.faults.rules() == []
    assert call(fake_manta_account, "GET", f"/{fake_manta_account.login}/stor")[0] == 200
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=5)


def test_accounts_have_working_keys_and_client_environment(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(client=CLIENT)
    pytester.makepyfile(test_account='''
import base64
import hashlib
import stat

from client import call

def test_signed_requests(fake_manta_account, fake_manta_new_account):
    me = fake_manta_account
    other = fake_manta_new_account()
    ops = fake_manta_new_account("ops", operator=True)
    assert len({me.login, other.login, ops.login}) == 3
    assert call(me, "PUT", f"/{me.login}/stor/a", b"mine")[0] == 204
    assert call(me, "PUT", f"/{me.login}/stor/b", b"x", signer=other)[0] == 403
    assert call(me, "PUT", f"/{me.login}/stor/c", b"ops", signer=ops)[0] == 204
    assert call(me, "GET", f"/{me.login}/stor/c") == (200, b"ops")

def test_files_and_environment(fake_manta_account, fake_manta_server, monkeypatch):
    a = fake_manta_account
    assert a.env == {"MANTA_URL": fake_manta_server.url, "MANTA_USER": a.login,
                     "MANTA_KEY_ID": a.key_id}
    monkeypatch.setenv("SSH_AUTH_SOCK", "/tmp/agent")
    monkeypatch.setenv("MANTA_SUBUSER", "someone")
    env = a.environ()
    assert env["HOME"] == str(a.home) and env["PATH"]
    assert "SSH_AUTH_SOCK" not in env and "MANTA_SUBUSER" not in env
    assert a.private_key_path.parent == a.home / ".ssh"
    assert stat.S_IMODE(a.private_key_path.stat().st_mode) == 0o600
    assert a.private_key_path.read_bytes().startswith(b"-----BEGIN EC PRIVATE KEY-----")
    blob = base64.b64decode(a.public_key_path.read_text().split()[1])
    md5 = hashlib.md5(blob).hexdigest()
    assert a.key_id == ":".join(md5[i:i + 2] for i in range(0, 32, 2))

def test_rsa_keys(fake_manta_new_account):
    account = fake_manta_new_account(key_type="rsa")
    assert account.public_key_path.read_text().startswith("ssh-rsa ")
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


DISK_TEST = '''
import json

def test_on_disk(fake_manta_server, fake_manta_account):
    data_dir = fake_manta_server.server.config.data_dir
    assert data_dir is not None and (data_dir / "meta.sqlite3").exists()
    stored = json.loads((data_dir / "accounts.json").read_text())
    assert fake_manta_account.login in [a["login"] for a in stored["accounts"]]
'''


def test_disk_on_request_by_option_or_ini(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_disk=DISK_TEST)
    by_option = pytester.runpytest_subprocess("-p", "no:cacheprovider",
                                              "--fake-manta-backend=disk")
    by_option.assert_outcomes(passed=1)
    pytester.makeini("[pytest]\nfake_manta_backend = disk\n")
    by_ini = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    by_ini.assert_outcomes(passed=1)
    # the command line wins over the ini file
    memory = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--fake-manta-backend",
                                           "memory")
    memory.assert_outcomes(failed=1)


def test_a_misspelt_backend_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nfake_manta_backend = dsik\n")
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*fake_manta_backend = 'dsik': expected one of memory, disk*"])


def test_options_fixture_configures_the_server(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('''
import pytest

@pytest.fixture(scope="session")
def fake_manta_options():
    return {"no_auth": True, "snaplinks": "v2"}
''')
    pytester.makepyfile(test_opts='''
def test_configured(fake_manta_server):
    assert fake_manta_server.server.config.no_auth
    assert fake_manta_server.server.config.snaplinks == "v2"
''')
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_one_server_per_xdist_worker(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(test_workers='''
import os

def test_record(fake_manta_server, fake_manta_account, tmp_path_factory):
    worker = os.environ["PYTEST_XDIST_WORKER"]
    out = tmp_path_factory.getbasetemp().parent / f"{worker}.url"
    out.write_text(fake_manta_server.url)
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--dist=each")
    result.assert_outcomes(passed=2)
    urls = sorted(p.read_text() for p in pytester.path.glob("**/gw*.url"))
    assert len(urls) == 2 and urls[0] != urls[1], urls


@pytest.mark.clients
def test_python_manta_against_the_fixtures(pytester: pytest.Pytester) -> None:
    """Joyent's Python SDK (in its own venv, which also sees this environment's packages)
    against the fixtures: key found by MANTA_KEY_ID under $HOME/.ssh, as mantash does."""
    python = ensure_python_manta()
    pytester.makepyfile(test_python_manta='''
import os

import manta
import pytest

@pytest.fixture
def client(fake_manta_account, monkeypatch):
    for name, value in fake_manta_account.environ().items():
        monkeypatch.setenv(name, value)
    return manta.MantaClient(
        url=os.environ["MANTA_URL"], account=os.environ["MANTA_USER"],
        signer=manta.CLISigner(key_id=os.environ["MANTA_KEY_ID"]),
        cache_dir=str(fake_manta_account.home / "http-cache"),
    )

def test_put_get_list(client, fake_manta_account):
    base = f"/{fake_manta_account.login}/stor/py"
    client.mkdirp(base + "/sub")
    client.put_object(base + "/hello.txt", content=b"hello python-manta")
    response, content = client.get_object2(base + "/hello.txt")  # checks Content-MD5 too
    assert (response["status"], content) == ("200", b"hello python-manta")
    names = sorted(entry["name"] for entry in client.ls(base).values())
    assert names == ["hello.txt", "sub"]

def test_injected_fault_reaches_the_sdk(client, fake_manta_account, fake_manta_faults):
    fake_manta_faults.add("PUT", "/stor/", code="ServiceUnavailable")
    with pytest.raises(manta.MantaAPIError) as caught:
        client.put_object(f"/{fake_manta_account.login}/stor/x", content=b"x")
    assert caught.value.code == "ServiceUnavailable"
''')
    result = pytester.run(str(python), "-m", "pytest", "-p", "no:cacheprovider",
                          str(pytester.path))
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    result.assert_outcomes(passed=2)


def test_loading_the_plugin_imports_no_server_code() -> None:
    """pytest loads the plugin in every session of every project that has the package
    installed: that must not import aiohttp (or anything of the server) until a fixture runs."""
    import subprocess
    import sys

    code = (
        "import sys, fake_manta.pytest_plugin; "
        "print(sorted(m for m in sys.modules if m.startswith(('aiohttp', 'fake_manta.'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "['fake_manta.pytest_plugin']"
