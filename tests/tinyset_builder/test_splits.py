"""Split assignment: official where present, else a stable hash; never leaking."""

from __future__ import annotations

import pytest

from tinyset_builder.coco import CocoImage
from tinyset_builder.errors import TinysetError
from tinyset_builder.splits import (
    DEFAULT_RATIOS,
    assign_split,
    check_ratios,
    find_leaks,
    hash_split,
    hash_unit,
)


def _img(split: str | None, name: str = "a/b.jpg", source: str = "s") -> CocoImage:
    return CocoImage(id=1, file_name=name, width=10, height=10, source=source, split=split,
                     original_file=name)


def test_official_split_wins() -> None:
    for split in ("train", "val", "test"):
        assert assign_split(_img(split)) == split


def test_hash_split_is_stable_and_follows_the_ratios() -> None:
    # The documented rule, recomputed independently: first 64 bits of SHA-256 over 2**64.
    import hashlib
    expected = int(hashlib.sha256(b"s/a/b.jpg").hexdigest()[:16], 16) / 2 ** 64
    assert hash_unit("s/a/b.jpg") == expected
    assert assign_split(_img(None)) == hash_split("s", "a/b.jpg")
    names = [f"img_{i:05d}.png" for i in range(5000)]
    splits = [hash_split("src", n) for n in names]
    assert splits == [hash_split("src", n) for n in names]
    shares = {s: splits.count(s) / len(splits) for s in ("train", "val", "test")}
    for s, r in DEFAULT_RATIOS.items():
        assert abs(shares[s] - r) < 0.03, shares
    # The split of one image does not depend on which other images exist.
    assert hash_split("src", names[7]) == splits[7]
    # The source is part of the identity.
    assert [hash_split("other", n) for n in names[:50]] != splits[:50]


def test_custom_ratios_and_validation() -> None:
    assert {hash_split("s", f"{i}", {"train": 1.0}) for i in range(100)} == {"train"}
    assert {hash_split("s", f"{i}", {"train": 0.0, "test": 1.0}) for i in range(100)} == {"test"}
    with pytest.raises(TinysetError):
        check_ratios({"train": 0.5, "val": 0.2})
    with pytest.raises(TinysetError):
        check_ratios({"train": 0.5, "dev": 0.5})


def test_find_leaks() -> None:
    imgs = [_img("train", "x.jpg"), _img("train", "x.jpg"), _img("test", "y.jpg"),
            _img("val", "y.jpg")]
    assert find_leaks(imgs) == {("s", "y.jpg"): {"test", "val"}}
