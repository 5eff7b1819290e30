"""``PartDigests``: bounded, least recently used first, one MD5 per part or nothing."""

from __future__ import annotations

from plugins.storage.manta.part_digests import PartDigests


def test_least_recently_used_go_first() -> None:
    digests = PartDigests(limit=2)
    digests.remember("a", 10, 5, ["a1", "a2"])
    digests.remember("b", 10, 5, ["b1", "b2"])
    assert digests.get("a", 10, 5) == ("a1", "a2")  # now the most recent
    digests.remember("c", 10, 5, ["c1", "c2"])
    assert digests.get("b", 10, 5) is None
    assert digests.get("a", 10, 5) == ("a1", "a2")
    assert digests.get("c", 10, 5) == ("c1", "c2")


def test_keyed_by_size_and_part_size_too() -> None:
    digests = PartDigests()
    digests.remember("a", 10, 5, ["a1", "a2"])
    assert digests.get("a", 11, 5) is None
    assert digests.get("a", 10, 4) is None
    assert digests.get(None, 10, 5) is None


def test_a_wrong_number_of_parts_is_not_kept() -> None:
    digests = PartDigests()
    digests.remember("a", 11, 5, ["a1", "a2"])  # 11 bytes are three parts of 5
    assert digests.get("a", 11, 5) is None


def test_forget() -> None:
    digests = PartDigests()
    digests.remember("a", 10, 5, ["a1", "a2"])
    digests.forget("a", 10, 5)
    assert digests.get("a", 10, 5) is None
