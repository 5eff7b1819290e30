"""GetImage bodies kept encoded: byte-identical to a fresh rendering, and never stale."""

from __future__ import annotations

from gateway.catalog import Image, ImageFile
from gateway.server.auth_throttle import AuthThrottle
from gateway.server.image_view import RenderedImages, to_cloudapi_image
from gateway.server.limits import Limits
from gateway.server.responses import json_bytes

UUID = "0b6a2b0e-6d1c-4f3c-9a65-3b2a3c1f7e01"
FILE = ImageFile(sha1="a" * 40, size=3, compression="none", content_md5=None)


def image(**fields: object) -> Image:
    manifest = {
        "v": 2,
        "uuid": UUID,
        "owner": "930896af-bf8c-48d4-885c-6573a94b1853",
        "name": "base",
        "version": "1.0.0",
        "state": "active",
        "public": True,
        "type": "zvol",
        "os": "smartos",
        "files": [{"sha1": "a" * 40, "size": 3, "compression": "none"}],
        "requirements": {"min_ram": 512},
        "tags": {"role": "ünïcode"},
        **fields,
    }
    return Image(manifest=manifest, files=(FILE,))


def test_a_cached_body_is_the_fresh_rendering_byte_for_byte() -> None:
    bodies = RenderedImages()
    for version in ("9.0.0", "7.0.0", "*"):
        fresh = json_bytes(to_cloudapi_image(image(), version))
        assert bodies.body(image(), version) == fresh  # rendered
        assert bodies.body(image(), version) == fresh  # from the cache
    assert len(bodies) == 3
    # Versions render differently, so they are kept apart.
    assert bodies.body(image(), "7.0.0") != bodies.body(image(), "9.0.0")


def test_a_changed_manifest_is_rendered_afresh() -> None:
    bodies = RenderedImages()
    bodies.body(image(), "9.0.0")
    changed = bodies.body(image(name="renamed"), "9.0.0")
    assert b'"name":"renamed"' in changed
    assert changed == json_bytes(to_cloudapi_image(image(name="renamed"), "9.0.0"))


def test_changing_the_manifest_in_place_does_not_leave_a_stale_body() -> None:
    bodies = RenderedImages()
    img = image()
    bodies.body(img, "9.0.0")
    img.manifest["name"] = "edited"  # type: ignore[index]
    assert b'"name":"edited"' in bodies.body(img, "9.0.0")


def test_the_cache_stays_bounded() -> None:
    bodies = RenderedImages(limit=2)
    for n in range(5):
        bodies.body(image(uuid=f"0b6a2b0e-6d1c-4f3c-9a65-3b2a3c1f7e0{n}"), "9.0.0")
        assert len(bodies) <= 2


def test_the_throttle_is_idle_until_an_address_fails() -> None:
    throttle = AuthThrottle(Limits(auth_exempt=()))
    assert throttle.idle
    throttle.succeeded("192.0.2.1")
    assert throttle.idle
    throttle.failed("192.0.2.1")
    assert not throttle.idle
    throttle.succeeded("192.0.2.1")
    assert throttle.idle
