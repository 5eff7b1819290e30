"""The pure ``manta_path`` rules and the manifest serialization, checked without a server."""

from __future__ import annotations

import json
import posixpath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import InvalidParameter, NotMantaPathOwner
from plugins.actions.export import ExportAction
from plugins.actions.export.action import manifest_bytes
from plugins.actions.export.paths import check_owner, check_tree, file_stem, normalize

#: IMGAPI's NAME_RE and VERSION_RE (node-imgmanifest).
ALNUM = "abcXYZ019"
NAMES = st.text(alphabet=ALNUM + "._/ -", min_size=1, max_size=40)
VERSIONS = st.text(alphabet=ALNUM + "._/+-", min_size=1, max_size=20)
SEGMENTS = st.sampled_from(["bob", "stor", "a", "..", ".", "", "x y", "alice"])


@settings(max_examples=40, deadline=None)
@given(NAMES, VERSIONS)
def test_exported_names_stay_in_their_directory(name: str, version: str) -> None:
    stem = file_stem(name, version)
    for suffix in (".imgmanifest", ".zfs.gz"):
        path = posixpath.join("/bob/stor/dir", stem + suffix)
        assert posixpath.dirname(posixpath.normpath(path)) == "/bob/stor/dir"
    assert stem not in (".", "..")


@settings(max_examples=60, deadline=None)
@given(st.lists(SEGMENTS, max_size=8), st.booleans())
def test_normalized_paths_have_no_dot_segments(segments: list[str], trailing: bool) -> None:
    raw = "/" + "/".join(segments) + ("/" if trailing else "")
    try:
        mpath = normalize(raw)
    except InvalidParameter:
        assert posixpath.normpath(raw).strip("/") == ""
        return
    parts = mpath.path.split("/")
    assert parts[0] == "" and all(p not in ("", ".", "..") for p in parts[1:])
    assert mpath.wants_directory == (trailing or raw.rsplit("/", 1)[1] in ("", ".", ".."))


@pytest.mark.parametrize(
    ("raw", "path", "directory"),
    [
        ("/bob/stor/x", "/bob/stor/x", False),
        ("/bob/stor/x/", "/bob/stor/x", True),
        ("/bob/stor/x/.", "/bob/stor/x", True),
        ("/bob/stor/x/y/..", "/bob/stor/x", True),
        ("//bob//stor/./x", "/bob/stor/x", False),
        ("/bob/stor/../../alice/stor", "/alice/stor", False),
    ],
)
def test_normalize(raw: str, path: str, directory: bool) -> None:
    mpath = normalize(raw)
    assert (mpath.path, mpath.wants_directory) == (path, directory)


def test_owner_and_tree_checks() -> None:
    check_owner(normalize("/bob/stor/x"), "bob", "u")
    with pytest.raises(NotMantaPathOwner, match="account u is not the owner of Manta path /BOB"):
        check_owner(normalize("/BOB/stor/x"), "bob", "u")
    for tree in ("stor", "public", "reports"):
        check_tree(normalize(f"/bob/{tree}"))
    with pytest.raises(InvalidParameter):
        check_tree(normalize("/bob/jobs/x"))


def test_manifest_serialization_matches_json_stringify() -> None:
    """``JSON.stringify(m, null, 4)``: integral numbers without ``.0``, UTF-8, empty
    containers inline, no trailing newline."""
    manifest = {"v": 2, "name": "caf\u00e9", "image_size": 10240.0, "tags": {}, "acl": []}
    assert manifest_bytes(manifest) == (
        '{\n    "v": 2,\n    "name": "caf\u00e9",\n    "image_size": 10240,\n'
        '    "tags": {},\n    "acl": []\n}'
    ).encode()


def test_schema_is_package_data_and_valid() -> None:
    from jsonschema import Draft202012Validator

    schema = ExportAction().schema
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    assert json.loads(json.dumps(schema)) == schema
