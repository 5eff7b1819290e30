"""Conformance: the official node-manta CLI (npm ``manta``) against the fake Manta.

Every test drives the real ``m*`` commands against a server started here, on the memory and
on the disk backend (``manta_server`` in conftest), signing with keys found in ``$HOME/.ssh``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from fake_manta import ThreadedFakeManta
from tests.support.node_manta_tools import ClientKey, NodeManta

pytestmark = pytest.mark.clients


def payload(size: int, seed: str) -> bytes:
    """Deterministic, incompressible-looking bytes."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def headers_of(minfo_output: str) -> dict[str, str]:
    """minfo prints ``HTTP/1.1 200 OK`` then ``name: value`` lines."""
    lines = minfo_output.strip().splitlines()
    assert re.match(r"HTTP/1\.1 200", lines[0]), minfo_output
    return {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:] if line)}


def ls_names(output: str) -> list[str]:
    return [line for line in output.splitlines() if line]


def test_mmkdir_p_and_mls(node_manta: NodeManta) -> None:
    node_manta.run("mmkdir", "-p", "/alice/stor/mk/a/b/c")
    assert ls_names(node_manta.out("mls", "/alice/stor/mk/a/b")) == ["c/"]
    node_manta.run("mmkdir", "-p", "/alice/stor/mk/a/b/c")  # idempotent
    long = node_manta.out("mls", "-l", "/alice/stor/mk/a")
    assert re.search(r"^drwx\S*\s+\d+\s+alice\s.*\sb$", long, re.M), long


def test_mput_file_and_mget_bytes(node_manta: NodeManta, tmp_path: Path) -> None:
    data = payload(300_000, "file")
    src = tmp_path / "data.bin"
    src.write_bytes(data)
    node_manta.run("mmkdir", "-p", "/alice/stor/put")
    node_manta.run("mput", "-f", str(src), "/alice/stor/put/data.bin")
    assert node_manta.run("mget", "/alice/stor/put/data.bin").stdout == data
    # -o writes to a file; the CLI verifies length and MD5 itself.
    out = tmp_path / "out.bin"
    node_manta.run("mget", "-o", str(out), "/alice/stor/put/data.bin")
    assert out.read_bytes() == data


def test_mput_f_onto_a_directory_appends_the_basename(
    node_manta: NodeManta, tmp_path: Path
) -> None:
    src = tmp_path / "report.txt"
    src.write_bytes(b"quarterly\n")
    node_manta.run("mmkdir", "-p", "/alice/stor/into")
    node_manta.run("mput", "-f", str(src), "/alice/stor/into")
    assert node_manta.run("mget", "/alice/stor/into/report.txt").stdout == b"quarterly\n"


def test_mput_p_creates_parents(node_manta: NodeManta, tmp_path: Path) -> None:
    src = tmp_path / "deep.txt"
    src.write_bytes(b"deep\n")
    node_manta.run("mput", "-p", "-f", str(src), "/alice/stor/parents/x/y/deep.txt")
    assert node_manta.run("mget", "/alice/stor/parents/x/y/deep.txt").stdout == b"deep\n"
    assert ls_names(node_manta.out("mls", "/alice/stor/parents/x")) == ["y/"]


def test_mput_from_stdin_is_chunked(node_manta: NodeManta) -> None:
    data = payload(200_000, "stdin")
    node_manta.run("mmkdir", "-p", "/alice/stor/stdin")
    node_manta.run("mput", "/alice/stor/stdin/piped.bin", input=data)
    assert node_manta.run("mget", "/alice/stor/stdin/piped.bin").stdout == data
    info = headers_of(node_manta.out("minfo", "/alice/stor/stdin/piped.bin"))
    assert info["content-length"] == str(len(data))
    assert info["content-md5"] == b64md5(data)


def test_mput_m_headers_and_minfo(node_manta: NodeManta, tmp_path: Path) -> None:
    src = tmp_path / "page.html"
    src.write_bytes(b"<p>hi</p>\n")
    node_manta.run("mmkdir", "-p", "/alice/stor/hdr")
    node_manta.run("mput", "-m", "-H", "m-color: blue", "-H", "content-type: text/html",
                   "-f", str(src), "/alice/stor/hdr/page.html")
    info = headers_of(node_manta.out("minfo", "/alice/stor/hdr/page.html"))
    assert info["content-type"] == "text/html"
    assert info["m-color"] == "blue"
    assert info["content-md5"] == b64md5(b"<p>hi</p>\n")
    assert info["durability-level"] == "2"
    assert re.fullmatch(r"[0-9a-f-]{36}", info["etag"])
    dir_info = node_manta.out("minfo", "/alice/stor/hdr")
    assert "application/x-json-stream; type=directory" in dir_info


def test_mls_pages_through_more_than_1100_entries(
    node_manta: NodeManta, manta_server: ThreadedFakeManta, client_keys: dict[str, ClientKey]
) -> None:
    names = [f"entry-{i:05d}" for i in range(1150)]
    asyncio.run(_create_many(manta_server.url, client_keys["ecdsa"], "/alice/stor/many", names))
    listed = ls_names(node_manta.out("mls", "/alice/stor/many"))
    assert listed == names
    assert len(set(listed)) == 1150


async def _create_many(url: str, key: ClientKey, directory: str, names: list[str]) -> None:
    """Fill a directory quickly over plain signed HTTP (one CLI run per object is too slow)."""
    signer = key.signer("alice")
    async with aiohttp.ClientSession() as http:
        headers = signer.sign("PUT", directory,
                              {"Content-Type": "application/json; type=directory"})
        async with http.put(url + directory, headers=headers) as resp:
            assert resp.status == 204, await resp.text()
        sem = asyncio.Semaphore(16)

        async def put(name: str) -> None:
            async with sem:
                path = f"{directory}/{name}"
                hdrs = signer.sign("PUT", path, {"Content-Type": "text/plain"})
                async with http.put(url + path, data=name.encode(), headers=hdrs) as resp:
                    assert resp.status == 204, await resp.text()

        await asyncio.gather(*(put(n) for n in names))


def test_mln_link_outlives_its_source(node_manta: NodeManta) -> None:
    node_manta.run("mmkdir", "-p", "/alice/stor/ln")
    node_manta.run("mput", "/alice/stor/ln/src", input=b"linked bytes\n")
    node_manta.run("mln", "/alice/stor/ln/src", "/alice/stor/ln/link")
    src_etag = headers_of(node_manta.out("minfo", "/alice/stor/ln/src"))["etag"]
    node_manta.run("mrm", "/alice/stor/ln/src")
    assert node_manta.run("mget", "/alice/stor/ln/link").stdout == b"linked bytes\n"
    assert headers_of(node_manta.out("minfo", "/alice/stor/ln/link"))["etag"] == src_etag
    missing = node_manta.run("mget", "/alice/stor/ln/src", check=False)
    assert missing.returncode != 0


def test_mmpu_create_upload_commit(node_manta: NodeManta, tmp_path: Path) -> None:
    parts = [payload(96 * 1024, "part0"), payload(70 * 1024, "part1"), b"tail\n"]
    node_manta.run("mmkdir", "-p", "/alice/stor/mpu")
    upload_id = node_manta.out("mmpu", "create", "/alice/stor/mpu/big.bin").strip()
    assert re.fullmatch(r"[0-9a-f-]{36}", upload_id), upload_id
    etags = []
    for number, data in enumerate(parts):
        path = tmp_path / f"part{number}"
        path.write_bytes(data)
        etag = node_manta.out("mmpu", "upload", upload_id, str(number), "-f", str(path)).strip()
        assert re.fullmatch(r"[0-9a-f-]{36}", etag), etag
        etags.append(etag)
    state = node_manta.out("mmpu", "get", upload_id)
    assert '"state": "created"' in state
    node_manta.run("mmpu", "commit", upload_id, *etags)
    whole = b"".join(parts)
    assert node_manta.run("mget", "/alice/stor/mpu/big.bin").stdout == whole
    info = headers_of(node_manta.out("minfo", "/alice/stor/mpu/big.bin"))
    assert info["content-md5"] == b64md5(whole)
    assert info["content-length"] == str(len(whole))
    assert '"state": "done"' in node_manta.out("mmpu", "get", upload_id)


def test_msign_then_plain_http_get(node_manta: NodeManta) -> None:
    node_manta.run("mmkdir", "-p", "/alice/stor/sign")
    node_manta.run("mput", "/alice/stor/sign/shared file.txt", input=b"shared\n")
    url = node_manta.out("msign", "/alice/stor/sign/shared file.txt").strip()
    assert "signature=" in url and url.startswith(node_manta.url)
    with urllib.request.urlopen(url, timeout=30) as resp:  # no credentials at all
        assert resp.status == 200
        assert resp.read() == b"shared\n"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url.replace("shared%20file", "other%20file"), timeout=30)
    assert err.value.code == 403


def test_mchattr_replaces_metadata(node_manta: NodeManta) -> None:
    node_manta.run("mmkdir", "-p", "/alice/stor/attr")
    node_manta.run("mput", "-H", "m-color: blue", "/alice/stor/attr/o", input=b"attr\n")
    node_manta.run("mchattr", "-H", "m-color: green", "-H", "m-size: large",
                   "/alice/stor/attr/o")
    info = headers_of(node_manta.out("minfo", "/alice/stor/attr/o"))
    assert (info["m-color"], info["m-size"]) == ("green", "large")
    assert node_manta.run("mget", "/alice/stor/attr/o").stdout == b"attr\n"


def test_mrm_r_removes_a_tree(node_manta: NodeManta) -> None:
    node_manta.run("mmkdir", "-p", "/alice/stor/tree/a/b")
    for path in ("/alice/stor/tree/top", "/alice/stor/tree/a/mid", "/alice/stor/tree/a/b/leaf"):
        node_manta.run("mput", path, input=path.encode())
    node_manta.run("mrm", "-r", "/alice/stor/tree")
    assert "tree/" not in ls_names(node_manta.out("mls", "/alice/stor"))
    gone = node_manta.run("mls", "/alice/stor/tree", check=False)
    assert gone.returncode != 0
    assert b"NotFound" in gone.stderr
