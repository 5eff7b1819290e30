"""Multipart streaming uploads, once per storage target, with thresholds lowered to a few MiB.

Manta's parts go through its multipart upload API (``mmpu``'s), S3's through S3's. Each test
checks what the store holds afterwards through the target's own reads, and that no upload is
left open: an S3 multipart upload in ``list_multipart_uploads``, a Manta upload whose state is
not ``done`` under the operator's ``/uploads`` tree.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.storage import (
    BodyFactory,
    ChecksumMismatch,
    LocalFile,
    ObjectInfo,
    PartialUploadsTarget,
    StorageError,
    StorageRequestFailed,
    StorageTarget,
    StorageUnavailable,
)
from plugins.storage.manta import MantaConfig
from plugins.storage.manta.mpu import MultipartUpload
from tests.support.export_env import ExportEnv, make_env
from tests.support.storage_targets import (
    OPERATOR,
    RETRIES,
    TARGET_NAMES,
    TargetHarness,
    open_target,
)

MiB = 1024 * 1024
#: Objects of at least this size go up in parts (5 MiB parts: Manta's and S3's minimum).
THRESHOLD = 6 * MiB
PART_SIZE = 5 * MiB
CONCURRENCY = 3
#: Four parts: 5 + 5 + 5 + a little.
SIZE = 3 * PART_SIZE + 12_345
BEYOND_RETRIES = RETRIES + 1


def blob(size: int, seed: int) -> bytes:
    """Deterministic bytes that differ from one part to the next."""
    block = hashlib.sha256(str(seed).encode()).digest() * (MiB // 32)
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += counter.to_bytes(4, "big") + block[4:]
        counter += 1
    return bytes(out[:size])


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def body_of(data: bytes, chunk: int = 256 * 1024) -> BodyFactory:
    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(data), chunk):
            yield data[start : start + chunk]

    return chunks


class SourceCorrupt(Exception):
    """The producer's own failure: it must come out of put_object unchanged."""


class FileBody:
    """A ``LocalFileBody`` over a file on disk, whose verdict may be a failure."""

    def __init__(self, path: Path, verdict: Exception | None = None) -> None:
        self.path = path
        self.verdict = verdict

    async def __call__(self) -> AsyncIterator[bytes]:
        data = self.path.read_bytes()
        for start in range(0, len(data), MiB):
            yield data[start : start + MiB]
        if self.verdict is not None:
            raise self.verdict

    @contextlib.asynccontextmanager
    async def local_file(self) -> AsyncIterator[LocalFile | None]:
        async def verified() -> None:
            if self.verdict is not None:
                raise self.verdict

        fh = await asyncio.to_thread(open, self.path, "rb")
        try:
            yield LocalFile(file=fh, size=self.path.stat().st_size, verified=verified)
        finally:
            fh.close()


@pytest.fixture(params=TARGET_NAMES)
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TargetHarness]:
    """Each target, with multipart uploads from ``THRESHOLD`` on."""
    moto = request.getfixturevalue("moto_s3") if request.param == "s3" else None
    async with open_target(
        request.param,
        tmp_path / "target",
        moto,
        multipart_threshold=THRESHOLD,
        part_size=PART_SIZE,
        max_concurrency=CONCURRENCY,
    ) as opened:
        yield opened


async def read_all(target: StorageTarget, path: str) -> bytes:
    return b"".join([chunk async for chunk in await target.get_object(path)])


async def put(
    harness: TargetHarness, path: str, body: BodyFactory, size: int, md5: str | None
) -> ObjectInfo:
    return await harness.target.put_object(
        path, body, size=size, content_md5=md5, content_type="application/octet-stream"
    )


async def open_uploads(harness: TargetHarness) -> list[str]:
    """The object paths of the uploads the store still holds open."""
    return ["/" + key for key in await harness.leftovers()]


def part_requests(harness: TargetHarness, name: str) -> int:
    """How many part uploads the store received (on S3: PUTs of the key ``.../name``, which
    are parts, or the one PUT of an object below the threshold)."""
    if harness.name.startswith("manta"):
        return sum(1 for r in harness.server.requests if r.get("operation") == "UploadPart")
    proxy = harness.extra["proxy"]
    return sum(1 for method, path, _ in proxy.requests if method == "PUT" and path.endswith(name))


def part_fault(harness: TargetHarness, **fault: Any) -> Any:
    """A fault on the second part (on S3, on every part: they all PUT the object's key)."""
    path = r"/uploads/.+/1$" if harness.name.startswith("manta") else r"/big$"
    return harness.faults.add(method="PUT", path=path, **fault)


# --- round trips ---------------------------------------------------------------------------


async def test_a_multipart_object_round_trips(harness: TargetHarness) -> None:
    data = blob(SIZE, seed=1)
    path = harness.path("big")
    written = await put(harness, path, body_of(data), SIZE, md5_b64(data))
    assert (written.size, written.content_md5) == (SIZE, md5_b64(data))
    info = await harness.target.stat(path)
    assert info is not None
    assert (info.size, info.content_md5) == (SIZE, md5_b64(data))
    assert await read_all(harness.target, path) == data
    assert part_requests(harness, "/big") == 4
    assert await open_uploads(harness) == []


async def test_a_multipart_object_without_a_known_md5_round_trips(
    harness: TargetHarness,
) -> None:
    data = blob(SIZE, seed=2)
    path = harness.path("big")
    written = await put(harness, path, body_of(data, chunk=7 * 1024 + 3), SIZE, None)
    assert (written.size, written.content_md5) == (SIZE, md5_b64(data))
    info = await harness.target.stat(path)
    assert info is not None and info.size == SIZE
    # S3 keeps the MD5 of a multipart object only when it was known at the start.
    assert info.content_md5 in (md5_b64(data), None if harness.name == "s3" else "")
    assert await read_all(harness.target, path) == data


async def test_a_local_file_body_goes_up_in_parts(harness: TargetHarness, tmp_path: Path) -> None:
    """The Manta target sends each part from the file (sendfile); any target gets it right."""
    data = blob(SIZE, seed=3)
    source = tmp_path / "image"
    source.write_bytes(data)
    path = harness.path("big")
    await put(harness, path, FileBody(source), SIZE, md5_b64(data))
    assert await read_all(harness.target, path) == data
    assert part_requests(harness, "/big") == 4
    assert await open_uploads(harness) == []


async def test_below_the_threshold_one_put(harness: TargetHarness) -> None:
    data = blob(THRESHOLD - 1, seed=4)
    path = harness.path("big")
    await put(harness, path, body_of(data), len(data), md5_b64(data))
    assert await read_all(harness.target, path) == data
    assert part_requests(harness, "/big") == (0 if harness.name.startswith("manta") else 1)


async def test_a_part_cut_once_is_retried(harness: TargetHarness) -> None:
    data = blob(SIZE, seed=5)
    path = harness.path("big")
    rule = part_fault(harness, cut_after=MiB, times=1)
    await put(harness, path, body_of(data), SIZE, md5_b64(data))
    assert rule.hits == 1
    assert await read_all(harness.target, path) == data
    assert await open_uploads(harness) == []


# --- failures leave nothing ----------------------------------------------------------------


async def test_a_failing_part_leaves_the_previous_object_and_no_upload(
    harness: TargetHarness,
) -> None:
    path = harness.path("big")
    old = b"the previous object"
    await put(harness, path, body_of(old), len(old), md5_b64(old))
    data = blob(SIZE, seed=6)
    part_fault(harness, status=503, times=100)  # beyond every retry of every part
    with pytest.raises(StorageUnavailable):
        await put(harness, path, body_of(data), SIZE, md5_b64(data))
    assert await read_all(harness.target, path) == old
    assert await open_uploads(harness) == []


async def test_a_refused_part_leaves_nothing_at_the_path(harness: TargetHarness) -> None:
    path = harness.path("big")
    data = blob(SIZE, seed=7)
    part_fault(harness, status=400, code="BadRequest", times=1)
    with pytest.raises(StorageError):
        await put(harness, path, body_of(data), SIZE, md5_b64(data))
    assert await harness.target.stat(path) is None
    assert await open_uploads(harness) == []


async def test_a_body_failing_mid_stream_is_reraised_and_nothing_stored(
    harness: TargetHarness,
) -> None:
    data = blob(SIZE, seed=8)

    async def chunks() -> AsyncIterator[bytes]:
        yield data[: 2 * PART_SIZE + 10]
        raise SourceCorrupt("the source broke")

    path = harness.path("big")
    with pytest.raises(SourceCorrupt):
        await put(harness, path, chunks, SIZE, md5_b64(data))
    assert await harness.target.stat(path) is None
    assert await open_uploads(harness) == []


async def test_a_local_file_that_fails_its_check_is_never_committed(
    harness: TargetHarness, tmp_path: Path
) -> None:
    data = blob(SIZE, seed=9)
    source = tmp_path / "image"
    source.write_bytes(data)
    path = harness.path("big")
    verdict = SourceCorrupt("sha1 mismatch")
    with pytest.raises(SourceCorrupt) as raised:
        await put(harness, path, FileBody(source, verdict), SIZE, md5_b64(data))
    assert raised.value is verdict
    assert await harness.target.stat(path) is None
    assert await open_uploads(harness) == []


async def test_a_body_shorter_than_its_size_is_refused(harness: TargetHarness) -> None:
    data = blob(SIZE, seed=10)
    path = harness.path("big")
    with pytest.raises(StorageRequestFailed):
        await put(harness, path, body_of(data[:-1]), SIZE, None)
    assert await harness.target.stat(path) is None
    assert await open_uploads(harness) == []


async def test_a_wrong_content_md5_is_refused(harness: TargetHarness) -> None:
    data = blob(SIZE, seed=11)
    path = harness.path("big")
    with pytest.raises(ChecksumMismatch):
        await put(harness, path, body_of(data), SIZE, md5_b64(b"other bytes"))
    assert await harness.target.stat(path) is None
    assert await open_uploads(harness) == []


async def test_a_missing_parent_is_refused_before_any_part(harness: TargetHarness) -> None:
    if not harness.has_parents:
        pytest.skip("S3 has no parent directories")
    data = blob(SIZE, seed=12)
    with pytest.raises(StorageError) as raised:
        await put(harness, harness.path("nowhere", "big"), body_of(data), SIZE, None)
    assert type(raised.value).__name__ == "DirectoryDoesNotExist"
    assert part_requests(harness, "/big") == 0
    assert await open_uploads(harness) == []


# --- what a dead writer left ---------------------------------------------------------------


async def start_upload(harness: TargetHarness, path: str) -> None:
    """An upload a killed writer would leave: created, never committed nor aborted."""
    target: Any = harness.target
    if harness.name.startswith("manta"):
        upload = MultipartUpload(
            target, path, body_of(b""), size=SIZE, content_md5=None, content_type="text/plain"
        )
        await upload._create()
    else:
        await target.client.create_multipart_upload(
            Bucket=target.config.bucket, Key=path.lstrip("/")
        )


async def test_discard_partial_uploads_aborts_only_the_paths_own(harness: TargetHarness) -> None:
    target = harness.target
    assert isinstance(target, PartialUploadsTarget)
    path, other = harness.path("big"), harness.path("other")
    await start_upload(harness, path)
    await start_upload(harness, path)
    await start_upload(harness, other)
    assert sorted(await open_uploads(harness)) == [path, path, other]
    assert await target.discard_partial_uploads(path) == 2
    assert await open_uploads(harness) == [other]
    assert await target.discard_partial_uploads(path) == 0


# --- Manta specifics -----------------------------------------------------------------------


def _interval(record: dict[str, Any]) -> tuple[float, float]:
    end = datetime.fromisoformat(record["time"].replace("Z", "+00:00")).timestamp()
    return end - record["latency"] / 1000, end


async def test_manta_parts_are_sent_in_parallel_within_the_bound(tmp_path: Path) -> None:
    """Every part is held 0.4 s by the fake Manta: the parts' requests overlap, never more
    than ``max_concurrency`` of them at once."""
    async with open_target(
        "manta-memory",
        tmp_path,
        multipart_threshold=THRESHOLD,
        part_size=PART_SIZE,
        max_concurrency=2,
    ) as harness:
        harness.faults.add(method="PUT", path=r"/uploads/.+/\d+$", stall=0.4, times=None)
        data = blob(SIZE, seed=13)
        await put(harness, harness.path("big"), body_of(data), SIZE, md5_b64(data))
        parts = [r for r in harness.server.requests if r.get("operation") == "UploadPart"]
        assert len(parts) == 4
        intervals = [_interval(r) for r in parts]
        most = max(sum(1 for s, e in intervals if s <= start < e) for start, _ in intervals)
        assert most == 2


async def test_manta_uploads_are_the_operators(tmp_path: Path) -> None:
    """Created under ``/<operator>/uploads``, as ``mmpu create`` does for its own account."""
    async with open_target(
        "manta-disk", tmp_path, multipart_threshold=THRESHOLD, part_size=PART_SIZE
    ) as harness:
        data = blob(SIZE, seed=14)
        await put(harness, harness.path("big"), body_of(data), SIZE, md5_b64(data))
        creates = [r for r in harness.server.requests if r.get("operation") == "CreateUpload"]
        assert [r["req"]["url"] for r in creates] == [f"/{OPERATOR}/uploads"]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("part_size", 5 * MiB - 1, "part_size"),
        ("max_concurrency", 0, "max_concurrency"),
        ("max_concurrency", 65, "max_concurrency"),
        ("multipart_threshold", 0, "multipart_threshold"),
        ("multipart_threshold", "big", "multipart_threshold"),
    ],
)
def test_manta_multipart_settings_are_checked(key: str, value: Any, message: str) -> None:
    section = {"url": "http://127.0.0.1:1", "user": "operator", "key_file": "k", key: value}
    with pytest.raises(ValueError, match=message):
        MantaConfig.from_mapping(section)


def test_manta_multipart_defaults() -> None:
    cfg = MantaConfig.from_mapping({"url": "http://m", "user": "operator", "key_file": "k"})
    assert (cfg.multipart_threshold, cfg.part_size, cfg.max_concurrency) == (
        256 * MiB,
        32 * MiB,
        6,
    )


# --- the export through HTTP ---------------------------------------------------------------


@pytest.fixture
async def env(
    harness: TargetHarness, tmp_path: Path, aiohttp_client: Any
) -> AsyncIterator[ExportEnv]:
    yield await make_env(aiohttp_client, harness, tmp_path / "gateway")


async def test_a_large_export_with_a_failing_part_keeps_the_previous_export(
    env: ExportEnv,
) -> None:
    old = await env.image(blob(SIZE, seed=20), name="old")
    new = await env.image(blob(SIZE + 1000, seed=21), name="new")
    answer = await env.export(old.uuid, env.path("img"))
    assert answer.status == 200, answer.body
    file_path, manifest_path = env.path("img.zfs"), env.path("img.imgmanifest")
    before = (await env.read(file_path), await env.read(manifest_path))
    assert before[0] == blob(SIZE, seed=20)
    path = r"/uploads/.+/2$" if env.harness.name.startswith("manta") else r"/img\.zfs$"
    env.harness.faults.add(method="PUT", path=path, status=503, times=100)
    answer = await env.export(new.uuid, env.path("img"))
    assert answer.status == 503, answer.body
    assert answer.body["code"] == "StorageIsDown"
    assert (await env.read(file_path), await env.read(manifest_path)) == before
    entries = await env.harness.target.list_directory(env.path())
    listing = sorted([info.path.rsplit("/", 1)[1] async for info in entries])
    assert listing == ["img.imgmanifest", "img.zfs"]
    assert await open_uploads(env.harness) == []


async def test_a_large_export_goes_up_in_parts(env: ExportEnv) -> None:
    data = blob(SIZE + 999, seed=22)
    image = await env.image(data)
    answer = await env.export(image.uuid, env.path("img"))
    assert answer.status == 200, answer.body
    assert await env.read(env.path("img.zfs")) == data
    assert part_requests(env.harness, "/img.zfs") >= 4
    info = await env.harness.target.stat(env.path("img.zfs"))
    assert info is not None and info.content_md5 == md5_b64(data)
    assert await open_uploads(env.harness) == []


async def test_manta_remembers_part_md5s_of_a_confirmed_upload(tmp_path: Path) -> None:
    """After Manta confirmed a commit, the same bytes go up again with the parts' MD5s as
    remembered; a file that changed since is refused by Manta, nothing is committed, the
    previous object stays and the remembered MD5s are dropped."""
    async with open_target(
        "manta-disk",
        tmp_path / "target",
        multipart_threshold=THRESHOLD,
        part_size=PART_SIZE,
        max_concurrency=CONCURRENCY,
    ) as harness:
        target: Any = harness.target
        data = blob(SIZE, seed=21)
        source = tmp_path / "image"
        source.write_bytes(data)
        md5 = md5_b64(data)
        parts = tuple(md5_b64(data[i : i + PART_SIZE]) for i in range(0, SIZE, PART_SIZE))
        path = harness.path("big")
        assert target.part_digests.get(md5, SIZE, PART_SIZE) is None
        await put(harness, path, FileBody(source), SIZE, md5)
        assert target.part_digests.get(md5, SIZE, PART_SIZE) == parts

        await put(harness, harness.path("again"), FileBody(source), SIZE, md5)
        assert await read_all(harness.target, harness.path("again")) == data

        changed = bytearray(data)
        changed[PART_SIZE + 7] ^= 0xFF  # the second part's bytes, same size
        source.write_bytes(changed)
        with pytest.raises(StorageError):
            await put(harness, path, FileBody(source), SIZE, md5)
        assert await read_all(harness.target, path) == data
        assert target.part_digests.get(md5, SIZE, PART_SIZE) is None
        assert await open_uploads(harness) == []
