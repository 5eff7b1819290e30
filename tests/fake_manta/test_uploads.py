"""Multipart uploads (the fixture lowers the minimum part size to 1 KiB)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from fake_manta.config import FakeMantaConfig


def b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


async def create(manta, object_path: str = "/bob/stor/big", **headers: Any) -> dict[str, Any]:
    body = {"objectPath": object_path, "headers": headers}
    async with manta.session.post(f"{manta.url}/bob/uploads", json=body) as r:
        assert r.status == 201, await r.text()
        assert r.headers["Content-Type"] == "application/json"
        return dict(await r.json())


async def upload_part(manta, upload: dict[str, Any], n: int, data: bytes) -> str:
    async with manta.session.put(f"{manta.url}{upload['partsDirectory']}/{n}", data=data) as r:
        assert r.status == 204, await r.text()
        assert r.headers["Computed-MD5"] == b64md5(data)
        return r.headers["Etag"]


async def commit(manta, upload: dict[str, Any], etags: list[str], status: int = 201) -> Any:
    async with manta.session.post(f"{manta.url}{upload['partsDirectory']}/commit",
                                  json={"parts": etags}) as r:
        assert r.status == status, await r.text()
        return r.headers if status == 201 else await r.json(content_type=None)


async def state(manta, upload: dict[str, Any]) -> dict[str, Any]:
    async with manta.session.get(f"{manta.url}{upload['partsDirectory']}/state") as r:
        assert r.status == 200, await r.text()
        return dict(await r.json())


async def test_create_upload_commit(manta) -> None:
    parts = [b"a" * 2000, b"b" * 1500, b"tail"]
    whole = b"".join(parts)
    upload = await create(manta, **{"content-type": "text/plain", "m-x": "1",
                                    "Cache-Control": "max-age=60", "durability-level": 3})
    uid = upload["id"]
    assert upload["partsDirectory"] == f"/bob/uploads/{uid[:int(uid[-1], 16)]}/{uid}"
    etags = [await upload_part(manta, upload, i, p) for i, p in enumerate(parts)]
    st = await state(manta, upload)
    assert st["state"] == "created" and st["targetObject"] == "/bob/stor/big"
    assert st["numCopies"] == 3
    headers = await commit(manta, upload, etags)
    assert headers["Location"] == "/bob/stor/big"
    assert headers["Computed-MD5"] == b64md5(whole)  # the true MD5 of the whole object
    async with manta.session.get(f"{manta.stor}/big") as r:
        assert await r.read() == whole
        assert r.headers["Content-MD5"] == b64md5(whole)
        assert r.headers["Content-Type"] == "text/plain"
        assert r.headers["m-x"] == "1"
        assert r.headers["Cache-Control"] == "max-age=60"
        assert r.headers["Durability-Level"] == "3"
    st = await state(manta, upload)
    assert st["state"] == "done" and st["result"] == "committed"
    assert "partsDirectory" not in st
    assert st["partsMD5Summary"] == b64md5("".join(etags).encode())
    # idempotent with the same parts; refused with others
    again = await commit(manta, upload, etags)
    assert again["Computed-MD5"] == b64md5(whole)
    err = await commit(manta, upload, etags[:1], status=409)
    assert err["code"] == "InvalidMultipartUploadState"


async def test_final_etag_is_upload_object_id_and_listing(manta) -> None:
    upload = await create(manta)
    e0 = await upload_part(manta, upload, 0, b"only part")
    rows, total = await manta.ls(f"{manta.url}{upload['partsDirectory']}")
    assert total == 1 and rows[0]["name"] == "0" and rows[0]["etag"] == e0
    prefix_rows, _ = await manta.ls(f"{manta.url}/bob/uploads")
    assert prefix_rows[0]["type"] == "directory"
    await commit(manta, upload, [e0])
    async with manta.session.head(f"{manta.stor}/big") as r:
        assert r.headers["Etag"] not in (e0, "")


async def test_redirect_for_bare_id(manta) -> None:
    upload = await create(manta)
    for method, suffix in (("HEAD", ""), ("GET", ""), ("POST", ""), ("PUT", "/0")):
        async with manta.session.request(method, f"{manta.url}/bob/uploads/{upload['id']}{suffix}",
                                         allow_redirects=False) as r:
            assert r.status == 301
            assert r.headers["Location"] == upload["partsDirectory"] + suffix
    await manta.error("GET", f"{manta.url}/bob/uploads/{upload['id']}/state", 404,
                      "ResourceNotFound")
    missing = "00000000-0000-4000-8000-000000000001"
    await manta.error("HEAD", f"{manta.url}/bob/uploads/{missing}", 404, "ResourceNotFound")
    await manta.error("DELETE", f"{manta.url}/bob/uploads/{upload['id']}", 405, "MethodNotAllowed")
    await manta.error("DELETE", f"{manta.url}{upload['partsDirectory']}", 405, "MethodNotAllowed")
    await manta.error("PUT", f"{manta.url}/bob/uploads", 405, "MethodNotAllowed")


async def test_commit_validation(manta) -> None:
    upload = await create(manta, **{"content-length": 5000})
    e0 = await upload_part(manta, upload, 0, b"x" * 2000)
    e1 = await upload_part(manta, upload, 1, b"y" * 100)
    err = await commit(manta, upload, [e0, "bogus"], status=409)
    assert err == {"code": "MultipartUploadInvalidArgument",
                   "message": f'upload {upload["id"]}: [part 1] invalid etag "bogus"'}
    err = await commit(manta, upload, [e0, e0, "e2"], status=409)
    assert err["message"].endswith('[part 1] invalid etag "' + e0 + '"')
    err = await commit(manta, upload, [e0, e1, e1, "e3"], status=409)
    assert "[part 1] part is too small" in err["message"]
    err = await commit(manta, upload, [e1], status=409)
    assert "invalid etag" in err["message"]
    err = await commit(manta, upload, [e0, e1], status=409)
    assert err["message"].endswith("expected content-length 5000, but object was 2100")
    small = await upload_part(manta, upload, 0, b"x" * 100)  # below the (test) 1 KiB minimum
    err = await commit(manta, upload, [small, e1], status=409)
    assert err["message"].endswith("[part 0] part is too small (size 100)")
    assert (await state(manta, upload))["state"] == "created"  # failed commits change nothing


async def test_commit_checks_declared_md5(manta) -> None:
    upload = await create(manta, **{"content-md5": b64md5(b"something else")})
    e0 = await upload_part(manta, upload, 0, b"data")
    err = await commit(manta, upload, [e0], status=409)
    assert f'expected content-md5 "{b64md5(b"something else")}"' in err["message"]
    await manta.error("GET", f"{manta.stor}/big", 404, "ResourceNotFound")


async def test_commit_target_parent_missing(manta) -> None:
    upload = await create(manta, "/bob/stor/nodir/obj")
    e0 = await upload_part(manta, upload, 0, b"data")
    err = await commit(manta, upload, [e0], status=404)
    assert err["code"] == "DirectoryDoesNotExist"


async def test_abort(manta) -> None:
    upload = await create(manta)
    e0 = await upload_part(manta, upload, 0, b"data")
    url = f"{manta.url}{upload['partsDirectory']}"
    for _ in range(2):  # idempotent
        async with manta.session.post(f"{url}/abort") as r:
            assert r.status == 204
    st = await state(manta, upload)
    assert st["state"] == "done" and st["result"] == "aborted"
    err = await commit(manta, upload, [e0], status=409)
    assert err == {"code": "InvalidMultipartUploadState",
                   "message": f"upload {upload['id']}: already aborted"}
    msg = await manta.error("PUT", f"{url}/1", 409, "InvalidMultipartUploadState", data=b"x")
    assert msg.endswith("already finalized")


async def test_abort_after_commit_refused(manta) -> None:
    upload = await create(manta)
    e0 = await upload_part(manta, upload, 0, b"data")
    await commit(manta, upload, [e0])
    await manta.error("POST", f"{manta.url}{upload['partsDirectory']}/abort", 409,
                      "InvalidMultipartUploadState")


@pytest.mark.parametrize("body", [
    {"objectPath": 3},
    {"headers": {}},
    {"objectPath": "/bob/stor/x", "headers": {"if-match": "x"}},
    {"objectPath": "/bob/stor/x", "headers": {"durability-level": 9}},
    {"objectPath": "/bob/stor/x", "headers": {"content-length": "abc"}},
])
async def test_create_validation_is_409(manta, body: dict[str, Any]) -> None:
    msg = await manta.error("POST", f"{manta.url}/bob/uploads", 409,
                            "MultipartUploadInvalidArgument", data=json.dumps(body),
                            headers={"Content-Type": "application/json"})
    assert msg.startswith("cannot create upload: ")


async def test_part_rules(manta) -> None:
    upload = await create(manta)
    url = f"{manta.url}{upload['partsDirectory']}"
    msg = await manta.error("PUT", f"{url}/800", 409, "MultipartUploadInvalidArgument", data=b"x")
    assert msg == f"upload {upload['id']}: 800 is not a valid part number"
    await manta.error("PUT", f"{url}/0", 409, "MultipartUploadInvalidArgument", data=b"x",
                      headers={"durability-level": "2"})
    await manta.error("PUT", f"{url}/0", 400, "ContentMD5Mismatch", data=b"x",
                      headers={"Content-MD5": b64md5(b"y")})
    await upload_part(manta, upload, 799, b"last")
    await manta.error("GET", f"{url}/799", 405, "MethodNotAllowed")
    # re-uploading a part replaces it
    e_a = await upload_part(manta, upload, 0, b"aaa")
    e_b = await upload_part(manta, upload, 0, b"bbb")
    assert e_a != e_b


def test_default_min_part_size_is_5_mib() -> None:
    assert FakeMantaConfig().min_part_size == 5 * 1024 * 1024


async def test_commit_missing_part(manta) -> None:
    upload = await create(manta)
    e0 = await upload_part(manta, upload, 0, b"x" * 2000)
    err = await commit(manta, upload, [e0, "whatever"], status=409)
    assert err["message"] == f"upload {upload['id']}: [part 1] part does not exist"


async def test_commit_zero_parts_makes_empty_object(manta) -> None:
    upload = await create(manta)
    headers = await commit(manta, upload, [])
    assert headers["Computed-MD5"] == "1B2M2Y8AsgTpgAmY7PhCfg=="
    assert await manta.get(f"{manta.stor}/big") == b""
    assert (await state(manta, upload))["partsMD5Summary"] == b64md5(b"")
