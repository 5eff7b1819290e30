"""A full disk under ``--data-dir``: PUTs get 507 ``NotEnoughSpace`` and leave nothing behind,
DELETE still works (before and after a restart) and frees space, and the store recovers by
itself when space returns.

The server runs as a subprocess on an 8 MiB tmpfs mounted in a private mount namespace
(``unshare -m``), so a crashed test leaves no mount behind. The test reaches that tmpfs
through ``/proc/PID/root``, which resolves paths in the server's namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from fake_manta import ADMIN_HEADERS

ROOT = Path(__file__).resolve().parents[2]
MIB = 1 << 20
BODY = os.urandom(MIB)


def _namespace_prefix() -> list[str] | None:
    """``unshare -m`` (root) or ``unshare -rm`` (a user namespace), whichever works here."""
    if shutil.which("unshare") is None or not Path("/proc/self/root").exists():
        return None
    probe_dir = tempfile.mkdtemp(prefix="fake-manta-tmpfs-probe-")
    try:
        for prefix in (["unshare", "-m"], ["unshare", "-r", "-m"]):
            probe = subprocess.run(
                [*prefix, "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {probe_dir}"],
                capture_output=True, timeout=30)
            if probe.returncode == 0:
                return prefix
    except (OSError, subprocess.SubprocessError):
        pass
    finally:
        os.rmdir(probe_dir)
    return None


PREFIX = _namespace_prefix()
pytestmark = pytest.mark.skipif(
    PREFIX is None, reason="NOTICE: this machine does not allow a tmpfs in a private mount "
                           "namespace (unshare -m), so the full-disk tests cannot run")


class TmpfsServer:
    """``python -m fake_manta`` on a fresh 8 MiB tmpfs, twice in a row (a restart) in the same
    namespace: the shell prints each server's pid, the server prints its URL, and the shell
    waits for a line on its stdin between the two runs."""

    def __init__(self, mountpoint: Path) -> None:
        assert PREFIX is not None
        serve = (f"{sys.executable} -m fake_manta --port 0 --no-auth --account bob "
                 f"--data-dir {mountpoint}/data")
        script = (f"mount -t tmpfs -o size=8m tmpfs {mountpoint} || exit 97; "
                  f"for run in 1 2; do {serve} & echo pid $!; wait $!; read go; done")
        self.proc = subprocess.Popen([*PREFIX, "sh", "-c", script], cwd=str(ROOT),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.mountpoint = mountpoint
        self.stderr: list[str] = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        self.pid = 0
        self.url = ""
        self.next_run()

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def next_run(self) -> None:
        """Wait for the next server's pid line and banner."""
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            assert line, f"server exited: {''.join(self.stderr)}"
            if line.startswith("pid "):
                self.pid = int(line.split()[1])
            elif "listening on " in line:
                self.url = line.split("listening on ")[1].split()[0]
                return

    def stop_server(self) -> None:
        """SIGTERM the server (a clean stop: SQLite checkpoints and removes its -wal)."""
        os.kill(self.pid, signal.SIGTERM)
        _wait_gone(self.pid)

    def start_again(self) -> None:
        """The second server, on the same disk."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        self.next_run()

    def inside(self, path: str) -> Path:
        """``path`` under the tmpfs, as the server's namespace sees it."""
        return Path(f"/proc/{self.proc.pid}/root{self.mountpoint}") / path

    def free_bytes(self) -> int:
        st = os.statvfs(self.inside(""))
        return st.f_bavail * st.f_frsize

    def stop(self) -> None:
        """The shell first (or it would start the next run), then the server."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        if not _wait_gone(self.pid):
            os.kill(self.pid, signal.SIGKILL)


def _wait_gone(pid: int, timeout: float = 30) -> bool:
    """Whether process ``pid`` (not our child) ended within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def top_off(path: Path) -> None:
    """Fill what is left of the disk, to the last byte, with the file ``path``."""
    with open(path, "ab", buffering=0) as f:
        for step in (MIB, 64 << 10, 4096, 512, 1):
            try:
                while True:
                    f.write(bytes(step))
            except OSError:
                pass


@pytest.fixture
def tmpfs_server(tmp_path: Path) -> Iterator[TmpfsServer]:
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    server = TmpfsServer(mountpoint)
    try:
        yield server
    finally:
        server.stop()


def call(method: str, url: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """(status, body); never raises for an HTTP error."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def put(server: TmpfsServer, name: str, body: bytes = BODY) -> tuple[int, dict[str, str]]:
    """(status, the Manta error or {})."""
    status, text = call("PUT", f"{server.url}/bob/stor/{name}", body,
                        {"Content-Type": "application/octet-stream"})
    return status, json.loads(text) if text else {}


def fill(server: TmpfsServer) -> list[str]:
    """PUT 1 MiB objects until the disk refuses one; returns the names stored."""
    stored = []
    for i in range(64):
        status, error = put(server, f"o{i}")
        if status != 204:
            assert (status, error["code"]) == (507, "NotEnoughSpace"), (status, error)
            assert error["message"] == "not enough free space for 1 MB"
            return stored
        stored.append(f"o{i}")
    raise AssertionError("an 8 MiB disk took 64 MiB")


def objects(server: TmpfsServer) -> int:
    status, state = call("GET", f"{server.url}/_fake/state", headers=ADMIN_HEADERS)
    assert status == 200
    return int(json.loads(state)["objects"])


def test_full_disk_put_is_507_and_leaves_nothing(tmpfs_server: TmpfsServer) -> None:
    stored = fill(tmpfs_server)
    assert len(stored) >= 3
    assert objects(tmpfs_server) == len(stored)
    refused = f"o{len(stored)}"
    assert call("GET", f"{tmpfs_server.url}/bob/stor/{refused}")[0] == 404
    assert list(tmpfs_server.inside("data/tmp").iterdir()) == []  # no partial upload
    for name in stored:  # what was stored is intact
        status, _ = call("HEAD", f"{tmpfs_server.url}/bob/stor/{name}")
        assert status == 200
    # a directory (metadata only) still fits or fails cleanly, never a 500
    status, _ = call("PUT", f"{tmpfs_server.url}/bob/stor/d", None,
                     {"Content-Type": "application/json; type=directory"})
    assert status in (204, 507)


def test_delete_on_a_full_disk_frees_space_even_after_a_restart(
    tmpfs_server: TmpfsServer,
) -> None:
    stored = fill(tmpfs_server)
    top_off(tmpfs_server.inside("filler"))
    assert tmpfs_server.free_bytes() == 0
    assert call("DELETE", f"{tmpfs_server.url}/bob/stor/{stored.pop()}")[0] == 204
    # the freed space is usable at once (less the delete reserve the store takes back)
    assert put(tmpfs_server, "again", BODY[: MIB // 2])[0] == 204
    stored.append("again")

    tmpfs_server.stop_server()
    top_off(tmpfs_server.inside("filler"))  # full while it is down
    assert tmpfs_server.free_bytes() == 0
    tmpfs_server.start_again()  # SQLite must recreate its -wal and -shm files on a full disk
    assert objects(tmpfs_server) == len(stored)
    for name in stored[:2]:
        assert call("DELETE", f"{tmpfs_server.url}/bob/stor/{name}")[0] == 204
    assert put(tmpfs_server, "after-restart")[0] == 204
    assert tmpfs_server.inside("data/reserve").exists()  # the delete reserve is back
    assert objects(tmpfs_server) == len(stored) - 1


def test_store_recovers_when_space_returns(tmpfs_server: TmpfsServer) -> None:
    """Space freed outside the API (a filler file removed) is used without a restart."""
    filler = tmpfs_server.inside("filler")
    top_off(filler)
    status, error = put(tmpfs_server, "x")
    assert (status, error["code"]) == (507, "NotEnoughSpace")
    filler.unlink()
    assert put(tmpfs_server, "x")[0] == 204
    assert call("GET", f"{tmpfs_server.url}/bob/stor/x") == (200, BODY)
    assert tmpfs_server.inside("data/reserve").exists()  # the delete reserve is back
