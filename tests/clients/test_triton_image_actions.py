"""Conformance: node-triton's and smartdc's image-editing commands against our gateway.

``triton image update|tag|share|unshare`` and ``sdc-updateimage`` send UpdateImage
(``action=update`` with a JSON body of the fields); ``triton image clone`` sends CloneImage
(``action=clone``, body ``{}``). Every result is read back with ``triton image get -j``.

The dev setup (fake Manta on disk, gateway, account ``dev`` with an RSA key, demo image) runs in
this process, as for the export tests. A second account, ``bob``, with an RSA key of its own, is
the one images are shared with; each account is a workstation of its own: a temporary HOME with
its key in ``~/.ssh``, SDC_* and MANTA_* set, no agent.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from fake_manta import ADMIN_HEADERS
from gateway.cli.dev import DevEnvironment, ensure_key
from tests.support.export_clients import MANTA, mget_sha1, node_env
from tests.support.helpers import add_caller
from tests.support.npm_tools import ensure_npm_package, run_cli, workstation_environ

pytestmark = pytest.mark.clients

TRITON = ("triton", "7.17.0")
SMARTDC = ("smartdc", "9.0.1")


@dataclass(frozen=True)
class Workstation:
    """One account's command line: its login and uuid, and the environment its CLIs run in."""

    login: str
    uuid: str
    environ: dict[str, str]

    async def run(self, *args: str) -> tuple[int, str, str]:
        """``triton ARGS`` as this account: (exit code, stdout, stderr)."""
        triton = ensure_npm_package(*TRITON) / "triton"
        return await run_cli([str(triton), *args], self.environ)

    async def triton(self, *args: str) -> str:
        """``triton ARGS``, which must succeed; its stdout."""
        code, out, err = await self.run(*args)
        assert code == 0, err + out
        return out

    async def triton_fails(self, *args: str) -> str:
        """``triton ARGS``, which must fail; its stderr."""
        code, out, err = await self.run(*args)
        assert code != 0, out
        return err

    async def get(self, image: str) -> dict[str, Any]:
        """``triton image get -j IMAGE``: one JSON line."""
        image_obj: dict[str, Any] = json.loads(await self.triton("image", "get", "-j", image))
        return image_obj


def dev_workstation(env: DevEnvironment, home: Path) -> Workstation:
    """The account ``dev`` that owns the demo image, set up as the export tests set it up."""
    return Workstation("dev", str(env.image.manifest["owner"]), node_env(env, home))


async def add_workstation(
    env: DevEnvironment, app: web.Application, login: str, home: Path, *, manta: bool = False
) -> Workstation:
    """A second account with its own RSA key, known to the gateway (and to the fake Manta when
    ``manta``), and a workstation for it."""
    key = await asyncio.to_thread(ensure_key, env.data_dir / "keys" / f"{login}_id_rsa")
    account, _signer = await add_caller(app, login, key=key.key)
    if manta:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{env.manta_url}/_fake/accounts",
                headers=ADMIN_HEADERS,
                json={"login": login, "keys": [key.public_line]},
            ) as resp,
        ):
            assert resp.status == 201, await resp.text()
    ssh = home / ".ssh"
    ssh.mkdir(parents=True)
    shutil.copy(key.path, ssh / "id_rsa")
    shutil.copy(str(key.path) + ".pub", ssh / "id_rsa.pub")
    (ssh / "id_rsa").chmod(0o600)
    environ = workstation_environ(
        home,
        SDC_URL=env.gateway_url,
        SDC_ACCOUNT=login,
        SDC_KEY_ID=key.fingerprint,
        MANTA_URL=env.manta_url,
        MANTA_USER=login,
        MANTA_KEY_ID=key.fingerprint,
    )
    return Workstation(login, account.uuid, environ)


def not_found(image_id: str) -> str:
    """What triton says when GetImage answers 404 ResourceNotFound."""
    return f"image with id {image_id} was not found"


async def test_triton_image_update_then_get(
    dev: tuple[DevEnvironment, web.Application], tmp_path: Path
) -> None:
    env, _app = dev
    owner = dev_workstation(env, tmp_path / "home")
    image_id = env.image.uuid
    before = await owner.get(image_id)

    out = await owner.triton(
        "image",
        "update",
        image_id,
        "name=renamed",
        "version=2.0.0",
        "description=Words, and = signs",
        "homepage=https://example.com/home",
        "eula=https://example.com/eula",
    )
    assert out == (
        f"Updated image {image_id} (fields: name, version, description, homepage, eula)\n"
    )
    after = await owner.get(image_id)
    assert {k: after[k] for k in ("name", "version", "description", "homepage", "eula")} == {
        "name": "renamed",
        "version": "2.0.0",
        "description": "Words, and = signs",
        "homepage": "https://example.com/home",
        "eula": "https://example.com/eula",
    }
    unchanged = ("id", "owner", "files", "published_at", "state", "type", "os", "public")
    assert {k: after[k] for k in unchanged} == {k: before[k] for k in unchanged}

    # The new name@version finds it through ListImages; the old one no longer does.
    assert (await owner.get("renamed@2.0.0"))["id"] == image_id
    err = await owner.triton_fails("image", "get", "demo@1.0.0")
    assert 'no image with demo@1.0.0 or short id "demo" was found' in err, err

    # -j prints the image UpdateImage answered, which is what GetImage shows.
    out = await owner.triton("image", "update", "-j", image_id, "version=2")
    answered = json.loads(out)
    assert answered["version"] == "2"  # triton's type hint keeps it a string
    assert answered == await owner.get(image_id)

    # IMGAPI's ValidationFailed comes through with its code; nothing changes.
    err = await owner.triton_fails("image", "update", image_id, "name=bad*name")
    assert "error (ValidationFailed): invalid image data: name\n" in err, err
    assert "    name: Invalid: image name has invalid characters" in err, err
    assert (await owner.get(image_id))["name"] == "renamed"


async def test_triton_image_tag_replaces_tags(
    dev: tuple[DevEnvironment, web.Application], tmp_path: Path
) -> None:
    env, _app = dev
    owner = dev_workstation(env, tmp_path / "home")
    image_id = env.image.uuid
    assert "tags" not in await owner.get(image_id)

    out = await owner.triton("image", "tag", image_id, "k=v", "k2=42", "flag=true")
    # triton types the values: numbers and booleans are sent as JSON numbers and booleans.
    assert out == f'Updated image {image_id} with tags {{"k":"v","k2":42,"flag":true}}\n'
    assert (await owner.get(image_id))["tags"] == {"k": "v", "k2": 42, "flag": True}

    # node-triton 7.17 has no --delete: a new tag set replaces the old one whole.
    out = await owner.triton("image", "tag", "-j", image_id, "other=x y")
    assert json.loads(out)["tags"] == {"other": "x y"}
    assert (await owner.get(image_id))["tags"] == {"other": "x y"}

    # `image update tags=JSON` sets nested tags (also replacing).
    await owner.triton("image", "update", image_id, 'tags={"nested": {"a": [1, "b"]}}')
    assert (await owner.get(image_id))["tags"] == {"nested": {"a": [1, "b"]}}


async def test_triton_image_share_and_unshare(
    dev: tuple[DevEnvironment, web.Application], tmp_path: Path
) -> None:
    env, app = dev
    owner = dev_workstation(env, tmp_path / "home")
    bob = await add_workstation(env, app, "bob", tmp_path / "bob-home")
    image_id = env.image.uuid
    assert not_found(image_id) in await bob.triton_fails("image", "get", image_id)

    out = await owner.triton("image", "share", image_id, bob.uuid)
    assert out == f"Shared image {image_id} with account {bob.uuid}\n"
    assert (await owner.get(image_id))["acl"] == [bob.uuid]
    seen = await bob.get(image_id)
    assert (seen["id"], seen["owner"], seen["acl"]) == (image_id, owner.uuid, [bob.uuid])
    listed = [json.loads(line) for line in (await bob.triton("image", "list", "-j")).splitlines()]
    assert [image["id"] for image in listed] == [image_id]

    # Sharing twice sends the same acl: it stays one entry.
    await owner.triton("image", "share", image_id, bob.uuid)
    assert (await owner.get(image_id))["acl"] == [bob.uuid]

    # Seeing is not owning: bob may not change it (IMGAPI's NotImageOwner).
    err = await bob.triton_fails("image", "update", image_id, "name=mine")
    assert "NotImageOwner" in err, err
    assert (await owner.get(image_id))["name"] == "demo"

    # triton passes ACCOUNT on as it is: a login is not a UUID, and IMGAPI's ValidationFailed
    # says which acl item (triton shows the errors[] but drops the code here).
    err = await owner.triton_fails("image", "share", image_id, "bob")
    assert 'acl: Invalid: invalid image "acl" (item 1 is not a UUID): bob' in err, err
    assert (await owner.get(image_id))["acl"] == [bob.uuid]

    out = await owner.triton("image", "unshare", image_id, bob.uuid)
    assert out == f"Unshared image {image_id} with account {bob.uuid}\n"
    # IMGAPI keeps no empty acl: the field is gone.
    assert "acl" not in await owner.get(image_id)
    assert not_found(image_id) in await bob.triton_fails("image", "get", image_id)
    assert (await bob.triton("image", "list", "-j")).strip() == ""


async def test_triton_image_clone_by_the_shared_account(
    dev: tuple[DevEnvironment, web.Application], tmp_path: Path
) -> None:
    env, app = dev
    owner = dev_workstation(env, tmp_path / "home")
    bob = await add_workstation(env, app, "bob", tmp_path / "bob-home", manta=True)
    image_id = env.image.uuid
    original = await owner.get(image_id)
    file_meta = env.image.manifest["files"][0]
    assert (original["files"][0]["sha1"], original["files"][0]["size"]) == (
        file_meta["sha1"],
        file_meta["size"],
    )

    # Not shared with bob: he cannot see it, so cannot clone it.
    assert not_found(image_id) in await bob.triton_fails("image", "clone", image_id)
    # The owner cannot clone an image not shared with them: IMGAPI's 422 ImageNotShared, whose
    # message has its two arguments swapped (triton shows the message, not the code).
    await owner.triton("image", "share", image_id, bob.uuid)
    err = await owner.triton_fails("image", "clone", image_id)
    assert f"error cloning image: Image {owner.uuid} is not shared with account {image_id}" in err

    async def clone() -> dict[str, Any]:
        """bob clones the image; what ``-j`` printed is what GetImage shows."""
        answered: dict[str, Any] = json.loads(await bob.triton("image", "clone", "-j", image_id))
        got = await bob.get(answered["id"])
        assert got == answered
        assert got["id"] != image_id
        assert (got["owner"], got["state"]) == (bob.uuid, "active")
        assert "acl" not in got  # "No access given to others", and no empty acl is kept
        assert got["files"] == original["files"]  # same sha1, size and compression
        assert (got["name"], got["version"], got["type"], got["os"]) == (
            original["name"],
            original["version"],
            original["type"],
            original["os"],
        )
        return got

    # Clone, then delete the clone: the original is untouched.
    first = await clone()
    assert not_found(first["id"]) in await owner.triton_fails("image", "get", first["id"])
    out = await bob.triton("image", "delete", "-f", first["id"])
    assert out == f"Deleted image {first['id']}\n"
    assert not_found(first["id"]) in await bob.triton_fails("image", "get", first["id"])
    assert await owner.get(image_id) == {**original, "acl": [bob.uuid]}

    # Clone again, then the owner deletes the original: the clone lives on, file and all.
    second = await clone()
    # The clone is bob's alone: dev cannot even see it.
    assert not_found(second["id"]) in await owner.triton_fails("image", "get", second["id"])
    # bob cannot delete the original: shared is not owned.
    assert "NotImageOwner" in await bob.triton_fails("image", "delete", "-f", image_id)
    out = await owner.triton("image", "delete", "-f", image_id)
    assert out == f"Deleted image {image_id}\n"
    assert not_found(image_id) in await owner.triton_fails("image", "get", image_id)
    assert not_found(image_id) in await bob.triton_fails("image", "get", image_id)
    assert await bob.get(second["id"]) == second

    # The clone's bytes are still all there: bob exports it and reads it back.
    await bob.triton("image", "export", second["id"], "/bob/stor/clone")
    manta_bin = ensure_npm_package(*MANTA)
    got = await mget_sha1(manta_bin, "/bob/stor/clone.zfs.gz", bob.environ, tmp_path / "clone")
    assert got == file_meta["sha1"]
    assert (tmp_path / "clone").stat().st_size == file_meta["size"]


async def test_sdc_updateimage_then_get(
    dev: tuple[DevEnvironment, web.Application], tmp_path: Path
) -> None:
    env, app = dev
    owner = dev_workstation(env, tmp_path / "home")
    bob = await add_workstation(env, app, "bob", tmp_path / "bob-home")
    image_id = env.image.uuid
    bin_dir = ensure_npm_package(*SMARTDC)

    code, out, err = await run_cli(
        [
            str(bin_dir / "sdc-updateimage"),
            "--name=sdc-renamed",
            "--imageVersion=3.1",
            "--description=Set by sdc-updateimage",
            "--homepage=https://example.com/sdc",
            "--eula=https://example.com/sdc-eula",
            f"--acl={bob.uuid}",
            '--tags={"from": "sdc", "n": 7}',
            image_id,
        ],
        owner.environ,
    )
    assert code == 0, err + out
    answered = json.loads(out)
    assert out == json.dumps(answered, indent=2) + "\n"
    # smartdc asks for API ~7.2, where CloudAPI still calls a zone-dataset a smartmachine.
    assert answered["type"] == "smartmachine"
    got = await owner.get(image_id)
    assert got["type"] == "zone-dataset"
    assert {**answered, "type": "zone-dataset"} == got
    assert {
        k: got[k] for k in ("name", "version", "description", "homepage", "eula", "acl", "tags")
    } == {
        "name": "sdc-renamed",
        "version": "3.1",
        "description": "Set by sdc-updateimage",
        "homepage": "https://example.com/sdc",
        "eula": "https://example.com/sdc-eula",
        "acl": [bob.uuid],
        "tags": {"from": "sdc", "n": 7},
    }
    assert (await bob.get(image_id))["name"] == "sdc-renamed"

    # sdc-getimage shows the same image (it asks for ~7||~8, so 8's type name).
    code, out, err = await run_cli([str(bin_dir / "sdc-getimage"), image_id], owner.environ)
    assert code == 0, err + out
    assert json.loads(out) == got

    # One field at a time leaves the others as they are.
    code, out, err = await run_cli(
        [str(bin_dir / "sdc-updateimage"), "--description=Only this", image_id], owner.environ
    )
    assert code == 0, err + out
    assert await owner.get(image_id) == {**got, "description": "Only this"}

    # Errors exit 3 with IMGAPI's code; nothing changes.
    code, out, err = await run_cli(
        [str(bin_dir / "sdc-updateimage"), "--homepage=ftp://example.com/x", image_id],
        owner.environ,
    )
    assert code == 3, err + out
    assert "sdc-updateimage: error (ValidationFailed): invalid image data: homepage" in err
    assert (await owner.get(image_id))["homepage"] == "https://example.com/sdc"
