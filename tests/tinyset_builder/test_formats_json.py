"""The JSON-family native readers: COCO JSON, SODA-A per-image polygons, CrowdHuman .odgt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tinyset_builder.errors import ErrorPolicy, SourceError
from tinyset_builder.formats.coco_json import (
    coco_json_document,
    read_coco_json,
    write_coco_json,
)
from tinyset_builder.formats.odgt import format_odgt_line, odgt_gtbox, read_odgt
from tinyset_builder.formats.soda_poly_json import (
    read_soda_a_json,
    soda_a_document,
    write_soda_a_json,
)

# ---------------------------------------------------------------- COCO JSON


def _coco(tmp_path: Path, doc: dict[str, Any], name: str = "a.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def _doc(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "images": [{"id": 7, "file_name": "x.jpg", "width": 64, "height": 48},
                   {"id": 9, "file_name": "y.jpg", "width": 64, "height": 48}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 85, "bbox": [1, 2, 3, 4]},
                        {"id": 2, "image_id": 9, "category_id": 0, "bbox": [5, 5, 2, 2],
                         "iscrowd": 1},
                        {"id": 3, "image_id": 9, "category_id": 0, "bbox": [8, 8, 2, 2],
                         "ignore": True, "tracking_id": 4}],
        "categories": [{"id": 0, "name": "ship"}, {"id": 85, "name": "clock"}]}
    doc.update(over)
    return doc


def test_coco_reader_maps_categories_by_name_and_reads_ignore_flags(tmp_path: Path) -> None:
    doc = read_coco_json(_coco(tmp_path, _doc()), ErrorPolicy())
    assert doc is not None
    assert [(a.category, a.ignore) for a in doc.annotations] == [
        ("clock", False), ("ship", True), ("ship", True)]
    assert doc.annotations[2].extra == {"tracking_id": 4}
    assert [i.file_name for i in doc.images] == ["x.jpg", "y.jpg"]
    assert {k: len(v) for k, v in doc.annotations_by_image().items()} == {7: 1, 9: 2}


def test_coco_reader_accepts_livecell_dict_annotations_and_polygon_only_records(
        tmp_path: Path) -> None:
    anns = {"1001": {"id": 1001, "image_id": 7, "category_id": 0,
                     "segmentation": [[10.5, 5.0, 20.0, 4.0, 18.0, 12.0],
                                      [9.0, 6.0, 11, 7, 10, 8]]}}
    doc = read_coco_json(_coco(tmp_path, _doc(annotations=anns)), ErrorPolicy())
    assert doc is not None
    assert doc.annotations[0].xywh == (9.0, 4.0, 11.0, 8.0)
    assert doc.annotations[0].location.endswith("annotations['1001']")


def test_coco_writer_round_trips_through_the_reader(tmp_path: Path) -> None:
    images = [{"id": 3, "file_name": "a/b.png", "width": 10, "height": 20}]
    anns = [{"id": 5, "image_id": 3, "category_id": 2, "bbox": [1.5, 2.0, 3.0, 4.0]}]
    for as_dict in (False, True):
        doc = coco_json_document(images, anns, [(2, "cell")], annotations_as_dict=as_dict)
        path = write_coco_json(tmp_path / f"{as_dict}.json", doc)
        raw = json.loads(path.read_text())
        assert isinstance(raw["annotations"], dict) is as_dict
        assert raw["categories"] == [{"id": 2, "name": "cell", "supercategory": ""}]
        parsed = read_coco_json(path, ErrorPolicy())
        assert parsed is not None
        ann = parsed.annotations[0]
        assert (ann.image_id, ann.category, ann.xywh, ann.ignore) == (3, "cell",
                                                                       (1.5, 2.0, 3.0, 4.0), False)
        assert raw["annotations"]["5" if as_dict else 0]["area"] == 12.0


BAD_COCO = [
    pytest.param(lambda d: d["annotations"][0].update(image_id=99), "annotations[0]",
                 "unknown image 99", (2, 2), id="unknown-image"),
    pytest.param(lambda d: d["annotations"][0].update(category_id=3), "annotations[0]",
                 "unknown category_id 3", (2, 2), id="unknown-category-id"),
    pytest.param(lambda d: d["annotations"][1].update(bbox=[1, 2, "w", 4]), "annotations[1]",
                 "is not four finite numbers", (2, 2), id="bad-bbox"),
    pytest.param(lambda d: d["annotations"][1].update(bbox=None, segmentation={"counts": "x"}),
                 "annotations[1]", "no bbox", (2, 2), id="rle-without-bbox"),
    pytest.param(lambda d: d["images"].append({"id": 7, "file_name": "z.jpg"}), "images[2]",
                 "duplicate image id 7", (2, 3), id="duplicate-image-id"),
    pytest.param(lambda d: d["images"].append({"id": 8}), "images[2]",
                 "needs an id and a file_name", (2, 3), id="image-without-name"),
    pytest.param(lambda d: d["categories"].append({"id": 4}), "categories[2]",
                 "needs an id and a name", (2, 3), id="category-without-name"),
]


@pytest.mark.parametrize(("mutate", "record", "reason", "kept"), BAD_COCO)
def test_coco_reader_reports_bad_records_with_file_and_record(
        tmp_path: Path, mutate: Any, record: str, reason: str, kept: tuple[int, int]) -> None:
    doc = _doc()
    mutate(doc)
    path = _coco(tmp_path, doc)
    with pytest.raises(SourceError) as e:
        read_coco_json(path, ErrorPolicy())
    msg = str(e.value)
    assert msg.startswith(f"{path}:{record}: ") and reason in msg and "\n" not in msg
    policy = ErrorPolicy("skip")
    parsed = read_coco_json(path, policy)
    assert parsed is not None and policy.total_skipped == 1
    assert (len(parsed.images), len(parsed.annotations)) == kept


def test_coco_reader_invalid_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"images": [],\n "annotations": [\n {"id": 1,,}]}')
    with pytest.raises(SourceError, match=rf"^{path}:3: invalid JSON"):
        read_coco_json(path, ErrorPolicy())
    policy = ErrorPolicy("skip")
    assert read_coco_json(path, policy) is None and policy.total_skipped == 1


def test_coco_reader_rejects_a_non_coco_document(tmp_path: Path) -> None:
    path = _coco(tmp_path, {"images": {}, "annotations": []})
    with pytest.raises(SourceError, match="expected lists 'images' and 'categories'"):
        read_coco_json(path, ErrorPolicy())
    with pytest.raises(SourceError, match="file not found"):
        read_coco_json(tmp_path / "missing.json", ErrorPolicy("skip"))


def test_coco_reader_implicit_categories(tmp_path: Path) -> None:
    doc = _doc()
    doc["annotations"][0]["category_id"] = 10
    parsed = read_coco_json(_coco(tmp_path, doc), ErrorPolicy(),
                            implicit_categories={10: "ignore", 0: "not-used"})
    assert parsed is not None
    assert parsed.annotations[0].category == "ignore"
    assert parsed.annotations[1].category == "ship"  # the file's own name wins


# ---------------------------------------------------------------- SODA-A per-image JSON

SQUARE = [10.0, 10.0, 30.0, 12.0, 28.0, 30.0, 8.0, 28.0]
CATS = [(0, "airplane"), (9, "ignore")]


@pytest.mark.parametrize("as_list", [False, True], ids=["images-dict", "images-list"])
def test_soda_round_trip_and_min_max_box(tmp_path: Path, as_list: bool) -> None:
    doc = soda_a_document("00001.jpg", 4761, 2777, [(0, SQUARE), (9, [*SQUARE, 40.0, 5.0])],
                          CATS, images_as_list=as_list)
    path = write_soda_a_json(tmp_path / "00001.json", doc)
    assert isinstance(json.loads(path.read_text())["images"], list) is as_list
    parsed = read_soda_a_json(path, ErrorPolicy())
    assert parsed is not None and not parsed.empty
    assert (parsed.file_name, parsed.width, parsed.height) == ("00001.jpg", 4761, 2777)
    assert [(p.category_id, p.numbers, p.xywh) for p in parsed.polygons] == [
        (0, 8, (8.0, 10.0, 22.0, 20.0)), (9, 10, (8.0, 5.0, 32.0, 25.0))]


def test_soda_empty_file_is_flagged_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "e.json").write_bytes(b"")
    (tmp_path / "w.json").write_text("  \n")
    for name in ("e.json", "w.json"):
        parsed = read_soda_a_json(tmp_path / name, ErrorPolicy())
        assert parsed is not None and parsed.empty and parsed.polygons == []


BAD_SODA = [
    pytest.param({"poly": SQUARE[:7], "category_id": 0}, "poly must be", id="odd-poly"),
    pytest.param({"poly": SQUARE[:6], "category_id": 0}, "poly must be", id="six-numbers"),
    pytest.param({"poly": [*SQUARE[:7], float("nan")], "category_id": 0}, "poly must be",
                 id="nan"),
    pytest.param({"poly": SQUARE, "category_id": "2"}, "category_id must be an integer",
                 id="string-category"),
]


@pytest.mark.parametrize(("ann", "reason"), BAD_SODA)
def test_soda_bad_polygons(tmp_path: Path, ann: dict[str, Any], reason: str) -> None:
    path = tmp_path / "1.json"
    path.write_text(json.dumps({"images": {"file_name": "1.jpg"},
                                "annotations": [{"poly": SQUARE, "category_id": 1}, ann]}))
    with pytest.raises(SourceError) as e:
        read_soda_a_json(path, ErrorPolicy())
    assert str(e.value).startswith(f"{path}:annotations[1]: ") and reason in str(e.value)
    policy = ErrorPolicy("skip")
    parsed = read_soda_a_json(path, policy)
    assert parsed is not None and len(parsed.polygons) == 1 and policy.total_skipped == 1


def test_soda_bad_files(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"images": {},\n "annotations": [}')
    with pytest.raises(SourceError, match=rf"^{tmp_path / 'a.json'}:2: invalid JSON"):
        read_soda_a_json(tmp_path / "a.json", ErrorPolicy())
    (tmp_path / "b.json").write_text(json.dumps({"images": [{}, {}], "annotations": []}))
    with pytest.raises(SourceError, match="exactly one image, got 2"):
        read_soda_a_json(tmp_path / "b.json", ErrorPolicy())
    policy = ErrorPolicy("skip")
    assert read_soda_a_json(tmp_path / "b.json", policy) is None and policy.total_skipped == 1


# ---------------------------------------------------------------- CrowdHuman .odgt


def test_odgt_round_trip_keeps_comma_ids_boxes_and_flags(tmp_path: Path) -> None:
    lines = [format_odgt_line("283554,35288000868e92d4", [
        odgt_gtbox("person", [1, 2, 30, 90], [1, 2, 30, 60], [5, 2, 8, 9], box_id=0, occ=1),
        odgt_gtbox("person", [40, 2, 30, 90], [40, 2, 30, 60], [45, 2, 8, 9], box_id=1,
                   ignore=True, head_ignore=True),
        odgt_gtbox("mask", [0, 0, 9, 9], [0, 0, 9, 9], [0, 0, 9, 9], ignore=True)]),
        format_odgt_line("1,2", [])]
    path = tmp_path / "a.odgt"
    path.write_text("\n".join(lines) + "\n\n")
    records = read_odgt(path, ErrorPolicy())
    assert [(r.line, r.id, len(r.boxes)) for r in records] == [
        (1, "283554,35288000868e92d4", 3), (2, "1,2", 0)]
    person, ignored, mask = records[0].boxes
    assert person.boxes == {"fbox": (1, 2, 30, 90), "vbox": (1, 2, 30, 60), "hbox": (5, 2, 8, 9)}
    assert (person.ignore, person.head_ignore, person.extra) == (False, False,
                                                                 {"box_id": 0, "occ": 1})
    assert (ignored.ignore, ignored.head_ignore) == (True, True)
    assert (mask.tag, mask.ignore, mask.head_ignore) == ("mask", True, False)
    # Key order of the release: tag, hbox, head_attr, fbox, vbox, extra.
    assert list(json.loads(lines[0])["gtboxes"][0]) == ["tag", "hbox", "head_attr", "fbox",
                                                        "vbox", "extra"]


BAD_ODGT = [
    pytest.param('{"ID": "a", "gtboxes": [', ":2: invalid JSON", id="invalid-json"),
    pytest.param('{"gtboxes": []}', ":2: expected an object with a string 'ID'", id="no-id"),
    pytest.param('{"ID": "a", "gtboxes": [{"tag": "person", "hbox": [1, 2, 3]}]}',
                 ":2 gtboxes[0]: hbox [1, 2, 3] is not four", id="short-box"),
    pytest.param('{"ID": "a", "gtboxes": [{"hbox": [1, 2, 3, 4]}]}',
                 ":2 gtboxes[0]: gtbox must be an object with a 'tag'", id="no-tag"),
]


@pytest.mark.parametrize(("line", "expected"), BAD_ODGT)
def test_odgt_bad_lines_name_file_and_line(tmp_path: Path, line: str, expected: str) -> None:
    path = tmp_path / "a.odgt"
    path.write_text('{"ID": "ok", "gtboxes": []}\n' + line + "\n")
    with pytest.raises(SourceError) as e:
        read_odgt(path, ErrorPolicy())
    assert str(e.value).startswith(f"{path}{expected}")
    policy = ErrorPolicy("skip")
    records = read_odgt(path, policy)
    assert records[0].id == "ok" and policy.total_skipped == 1
