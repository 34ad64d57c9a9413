"""COCO records: the shared empty ``extra``, shared attribute dicts, and the chunked save."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pytest

from tinyset_builder.coco import (
    NO_EXTRA,
    CocoAnnotation,
    CocoCategory,
    CocoDataset,
    CocoImage,
)
from tinyset_builder.io import dumps_json


def test_records_without_extras_share_one_immutable_empty_mapping() -> None:
    a = CocoAnnotation(id=1, image_id=1, category_id=1, bbox=(0, 0, 1, 1))
    b = CocoAnnotation.from_dict({"id": 2, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]})
    c = CocoAnnotation(id=3, image_id=1, category_id=1, bbox=(0, 0, 1, 1), extra={})
    i = CocoImage.from_dict({"id": 1, "file_name": "x.jpg", "width": 2, "height": 2})
    assert a.extra is b.extra is c.extra is i.extra is NO_EXTRA
    assert NO_EXTRA == {} and {} == NO_EXTRA and not NO_EXTRA and len(NO_EXTRA) == 0
    assert a == CocoAnnotation(id=1, image_id=1, category_id=1, bbox=(0, 0, 1, 1), extra={})
    assert pickle.loads(pickle.dumps(a)).extra is NO_EXTRA
    assert copy.deepcopy(a).extra is NO_EXTRA
    with pytest.raises(TypeError):
        NO_EXTRA["x"] = 1  # type: ignore[index]
    assert {**NO_EXTRA, "point": 1} == {"point": 1} and dict(NO_EXTRA) == {}
    assert a.to_dict() == {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1],
                           "area": 1.0, "iscrowd": 0}
    kept = CocoAnnotation(id=4, image_id=1, category_id=1, bbox=(0, 0, 1, 1),
                          extra={"occ": 1})
    assert kept.extra == {"occ": 1} and kept.to_dict()["occ"] == 1


def test_the_assembler_shares_equal_attribute_dicts_only_when_that_is_safe(tmp_path: Path,
                                                                          ) -> None:
    from _build_fixtures import make_info, pixels, save

    from tinyset_builder.errors import ErrorPolicy
    from tinyset_builder.sources.base import SourceAssembler

    save(tmp_path / "a.png", pixels(64, 64, 0))
    asm = SourceAssembler(make_info("s"), tmp_path, ErrorPolicy("raise"))
    key = asm.add_image("a.png", split=None)
    attrs = [{"occ": 1, "blur": 0}, {"occ": 1, "blur": 0}, {"occ": True, "blur": 0},
             {"blur": 0, "occ": 1}, {"t": 0.0}, {"t": -0.0}, {"seg": [1, 2]}, {"seg": [1, 2]},
             None, {}]
    for k, extra in enumerate(attrs):
        asm.add_box(key, (k, k, 2, 2), "car", location=f"box {k}", extra=extra)
    ex = [a.extra for a in asm.finish().annotations]
    assert ex[0] is ex[1]                      # equal str/int attributes: one dict
    assert ex[2] is not ex[0] and ex[2]["occ"] is True   # True is not 1
    assert ex[3] is not ex[0] and list(ex[3]) == ["blur", "occ"]   # key order is kept
    assert ex[4] is not ex[5] and str(ex[5]["t"]) == "-0.0"        # floats are not shared
    assert ex[6] is not ex[7] and ex[6] == ex[7]                   # nor lists
    assert ex[8] is ex[9] is NO_EXTRA
    attrs[0]["occ"] = 3  # the caller's dict is copied, not kept
    assert ex[0]["occ"] == 1


def test_save_writes_the_bytes_of_write_json_in_chunks(tmp_path: Path) -> None:
    ds = CocoDataset(info={"source": "ä", "n": [1, 2]},
                     categories=[CocoCategory(id=1, name="s/ü", supercategory="s")])
    for i in range(1, 4):
        ds.images.append(CocoImage(id=i, file_name=f"{i}.jpg", width=9, height=9,
                                   extra={"note": "\"q\""} if i == 2 else {}))
    for k in range(1, 9001):  # more than two chunks of 4096
        ds.annotations.append(CocoAnnotation(
            id=k, image_id=1 + k % 3, category_id=1, bbox=(k * 0.1, 0.0, 1.5, 2.0 + k),
            iscrowd=k % 2, extra={"occ": k % 3} if k % 5 == 0 else {}))
    path = ds.save(tmp_path / "x.json")
    assert path.read_bytes() == dumps_json(ds.to_dict())
    empty = CocoDataset()
    assert empty.save(tmp_path / "e.json").read_bytes() == dumps_json(empty.to_dict())
    assert CocoDataset.load(path) == ds
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.json", "x.json"]
