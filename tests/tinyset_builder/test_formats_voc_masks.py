"""Pascal VOC XML reader/writer and the mask → box readers (binary components, instance ids)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from tinyset_builder.errors import ErrorPolicy, SourceError, reason_kind
from tinyset_builder.formats.masks import (
    MIN_TARGET_AREA,
    binary_mask_boxes,
    decode_instance_ids,
    encode_instance_ids,
    instance_boxes,
    paint_binary_mask,
    paint_instance_ids,
    place_speck,
    read_label_image,
    save_label_image,
)
from tinyset_builder.formats.voc_xml import VocObject, format_voc_xml, read_voc_xml, voc_xywh
from tinyset_builder.synth.canvas import sample_boxes

LABELIMG = """<annotation>
\t<folder>JPEGImages</folder>
\t<filename>PartB_00012.jpg</filename>
\t<size><width>1024</width><height>768</height><depth>3</depth></size>
\t<object>
\t\t<name>person</name>
\t\t<truncated>1</truncated>
\t\t<difficult>0</difficult>
\t\t<bndbox><xmin>233</xmin><ymin>101</ymin><xmax>251</xmax><ymax>122.5</ymax></bndbox>
\t</object>
\t<object>
\t\t<name>person</name>
\t\t<difficult>1</difficult>
\t\t<bndbox><xmin>1</xmin><ymin>2</ymin><xmax>3</xmax><ymax>4</ymax></bndbox>
\t</object>
\t<object>
\t\t<name>Target</name>
\t\t<pixels><id>0</id></pixels>
\t</object>
</annotation>
"""


def _write(tmp_path: Path, text: str, name: str = "a.xml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------- VOC XML


def test_reader_returns_size_objects_flags_and_boxless_objects(tmp_path: Path) -> None:
    ann = read_voc_xml(_write(tmp_path, LABELIMG), ErrorPolicy())
    assert ann is not None
    assert (ann.filename, ann.folder) == ("PartB_00012.jpg", "JPEGImages")
    assert (ann.width, ann.height, ann.depth) == (1024, 768, 3)
    assert [o.name for o in ann.objects] == ["person", "person", "Target"]
    assert ann.objects[0].xyxy == (233, 101, 251, 122.5)
    assert (ann.objects[0].truncated, ann.objects[0].difficult) == (True, False)
    assert (ann.objects[1].truncated, ann.objects[1].difficult) == (False, True)
    assert ann.objects[2].xyxy is None
    # Each object's location names the file and the line its <object> opens on.
    lines = LABELIMG.splitlines()
    opening = [i + 1 for i, line in enumerate(lines) if line.strip() == "<object>"]
    assert [o.location for o in ann.objects] == [
        f"{tmp_path / 'a.xml'}:{n} (object {k})" for k, n in enumerate(opening, start=1)]


def test_file_without_objects_and_without_extension_is_an_empty_image(tmp_path: Path) -> None:
    text = ("<annotation><filename>Misc_9</filename><size><width>256</width>"
            "<height>256</height><depth>1</depth></size></annotation>")
    ann = read_voc_xml(_write(tmp_path, text), ErrorPolicy())
    assert ann is not None and ann.objects == () and ann.filename == "Misc_9"
    assert ann.depth == 1


@pytest.mark.parametrize(("inclusive", "expected"), [
    pytest.param(False, (402.0, 118.0, 9.0, 8.0), id="corners"),
    pytest.param(True, (402.0, 118.0, 10.0, 9.0), id="inclusive"),
])
def test_bndbox_conventions(inclusive: bool, expected: tuple[float, ...]) -> None:
    assert voc_xywh((402, 118, 411, 126), inclusive=inclusive) == expected


@pytest.mark.parametrize(("kwargs", "name"), [
    pytest.param({}, "ship", id="labelimg-tabs"),
    pytest.param({"declaration": True, "indent": "  ", "folder": "1pps1"}, "6", id="pest24"),
    pytest.param({"depth": 1, "indent": "  "}, "A&B <x>", id="escaped-name"),
])
def test_writer_and_reader_agree(tmp_path: Path, kwargs: dict, name: str) -> None:
    objects = [VocObject(name, (1, 2, 30, 40)), VocObject(name, (5.5, 6, 7, 8), difficult=True,
                                                          truncated=True),
               VocObject(name, None)]
    path = _write(tmp_path, format_voc_xml("x", 64, 48, objects, **kwargs))
    ann = read_voc_xml(path, ErrorPolicy())
    assert ann is not None and (ann.width, ann.height) == (64, 48)
    got = [(o.name, o.xyxy, o.difficult, o.truncated) for o in ann.objects]
    assert got == [(o.name, o.xyxy, o.difficult, o.truncated) for o in objects]


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<annotation><filename>&lol3;</filename></annotation>
"""
EXTERNAL = """<?xml version="1.0"?>
<!DOCTYPE a [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<annotation><filename>&xxe;</filename></annotation>
"""


@pytest.mark.parametrize(("text", "fragment"), [
    pytest.param(BILLION_LAUGHS, "unsafe XML refused (EntitiesForbidden)", id="entity-expansion"),
    pytest.param(EXTERNAL, "unsafe XML refused", id="external-entity"),
    pytest.param("<annotation><size><width>80", "malformed XML", id="truncated"),
    pytest.param("<foo/>", "root element is <foo>", id="wrong-root"),
    pytest.param("<annotation><size><width>8.5</width></size></annotation>", "not an integer",
                 id="fractional-size"),
])
def test_unsafe_or_broken_files_are_refused_with_the_file_named(tmp_path: Path, text: str,
                                                                fragment: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(SourceError) as err:
        read_voc_xml(path, ErrorPolicy())
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)
    assert fragment in str(err.value)
    policy = ErrorPolicy("skip")
    assert read_voc_xml(path, policy) is None
    assert policy.total_skipped == 1


def test_malformed_xml_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "<annotation>\n<object>\n<name>a</name>\n</annotation>\n")
    with pytest.raises(SourceError, match=rf"^{path}:4: malformed XML"):
        read_voc_xml(path, ErrorPolicy())


@pytest.mark.parametrize(("obj", "fragment"), [
    pytest.param("<name>a</name><bndbox><xmin>x1</xmin><ymin>1</ymin><xmax>2</xmax>"
                 "<ymax>3</ymax></bndbox>", "bndbox <xmin> is not a number: 'x1'", id="text-coord"),
    pytest.param("<name>a</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax></bndbox>",
                 "bndbox <ymax> is not a number: None", id="missing-coord"),
    pytest.param("<name>a</name><bndbox><xmin>nan</xmin><ymin>1</ymin><xmax>2</xmax>"
                 "<ymax>3</ymax></bndbox>", "bndbox <xmin> is not a number: 'nan'", id="nan"),
    pytest.param("<name> </name>", "object without <name>", id="no-name"),
    pytest.param("<name>a</name><difficult>2</difficult>", "<difficult> must be 0 or 1, got '2'",
                 id="difficult-2"),
])
def test_bad_object_is_reported_with_file_line_and_object_and_skipped_alone(
        tmp_path: Path, obj: str, fragment: str) -> None:
    good = "<object><name>b</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax>" \
           "<ymax>5</ymax></bndbox></object>"
    path = _write(tmp_path, f"<annotation>\n{good}\n\n<object>{obj}</object>\n</annotation>")
    with pytest.raises(SourceError) as err:
        read_voc_xml(path, ErrorPolicy())
    assert str(err.value) == f"{path}:4 (object 2): {fragment}"
    policy = ErrorPolicy("skip")
    ann = read_voc_xml(path, policy)
    assert ann is not None and [o.name for o in ann.objects] == ["b"]
    assert dict(policy.skipped) == {reason_kind(fragment): 1}


# ---------------------------------------------------------------- binary masks


def test_irstd_reference_example_gives_the_documented_box() -> None:
    mask = np.zeros((512, 512), dtype=np.uint8)
    mask[200:203, 311:315] = 255  # rows 200-202, cols 311-314 (sources.md, IRSTD-1K example)
    boxes, specks = binary_mask_boxes(mask)
    assert [b.xywh for b in boxes] == [(311, 200, 4, 3)] and boxes[0].area == 12
    assert specks == 0


@pytest.mark.parametrize(("pixels", "expected"), [
    pytest.param([(5, 5), (6, 6), (7, 7)], [(5, 5, 3, 3)], id="diagonal-is-one-target"),
    pytest.param([(5, 5), (5, 6), (5, 8), (5, 9)], [(5, 5, 2, 1), (8, 5, 2, 1)],
                 id="one-pixel-gap-separates"),
    pytest.param([(5, 5), (5, 6), (20, 20)], [(5, 5, 2, 1)], id="single-pixel-speck-dropped"),
    pytest.param([], [], id="empty-mask"),
])
def test_components_use_8_connectivity_and_the_minimum_area(pixels: list[tuple[int, int]],
                                                             expected: list[tuple]) -> None:
    mask = np.zeros((32, 32), dtype=np.uint8)
    for y, x in pixels:
        mask[y, x] = 255
    boxes, specks = binary_mask_boxes(mask)
    assert sorted(b.xywh for b in boxes) == sorted(expected)
    assert specks == len(pixels) - sum(b.area for b in boxes)
    assert MIN_TARGET_AREA == 2


@pytest.mark.parametrize("layout", ["gray-1", "gray-255", "rgb", "rgba-opaque"])
def test_threshold_is_any_channel_above_zero_and_alpha_is_ignored(layout: str) -> None:
    base = np.zeros((16, 16), dtype=np.uint8)
    base[2:5, 3:9] = 1 if layout == "gray-1" else 255
    mask = {"gray-1": base, "gray-255": base,
            "rgb": np.stack([np.zeros_like(base), base, np.zeros_like(base)], axis=2),
            "rgba-opaque": np.stack([base, base, base, np.full_like(base, 255)], axis=2)}[layout]
    boxes, _ = binary_mask_boxes(mask)
    assert [b.xywh for b in boxes] == [(3, 2, 6, 3)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_components_reproduce_the_drawn_objects(seed: int) -> None:
    rng = np.random.default_rng(seed)
    boxes = sample_boxes(rng, 300, 200, 40, min_size=2, max_size=12, margin=1)
    ellipses = [bool(v) for v in rng.integers(0, 2, size=len(boxes))]
    mask = paint_binary_mask(300, 200, boxes, ellipses)
    got, specks = binary_mask_boxes(mask)
    assert sorted(b.xywh for b in got) == sorted(boxes) and specks == 0
    assert sum(b.area for b in got) == int((mask > 0).sum())


def test_place_speck_adds_one_isolated_dropped_component() -> None:
    mask = paint_binary_mask(40, 40, [(0, 0, 10, 10)], [False])
    x, y = place_speck(mask)
    assert mask[y, x] == 255 and (x >= 12 or y >= 12)
    boxes, specks = binary_mask_boxes(mask)
    assert [b.xywh for b in boxes] == [(0, 0, 10, 10)] and specks == 1


# ---------------------------------------------------------------- instance-id maps


def test_instance_id_is_r_plus_256_g() -> None:
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[0, 0] = (2, 0, 0)      # the reference example: (B, G, R) = (0, 0, 2) -> id 2
    rgb[0, 1] = (4, 1, 0)      # 4 + 256
    rgb[1, 2] = (255, 2, 99)   # blue carries nothing
    assert decode_instance_ids(rgb).tolist() == [[2, 260, 0], [0, 0, 767]]


def test_instance_map_round_trips_through_a_png(tmp_path: Path) -> None:
    ids = np.zeros((40, 50), dtype=np.uint16)
    ids[1:4, 2:6] = 1
    ids[10:12, 30:49] = 300
    ids[30:39, 0:3] = 65535
    path = save_label_image(tmp_path / "m.png", encode_instance_ids(ids))
    assert (decode_instance_ids(read_label_image(path)) == ids).all()
    with pytest.raises(ValueError, match="65535"):
        encode_instance_ids(np.array([[70000]]))


@pytest.mark.parametrize("seed", [0, 1])
def test_instance_boxes_match_scipy_find_objects(seed: int) -> None:
    rng = np.random.default_rng(seed)
    boxes = sample_boxes(rng, 120, 90, 25, min_size=1, max_size=15, margin=0)
    ids = [int(v) for v in rng.choice(np.arange(1, 2000), len(boxes), replace=False)]
    id_map = paint_instance_ids(120, 90, boxes, ids, [bool(i % 2) for i in range(len(boxes))])
    id_map[0, 0] = ids[0]  # one instance in two pieces still gives one box over both
    got = instance_boxes(id_map)
    assert [b.instance_id for b in got] == sorted(ids)
    slices = ndimage.find_objects(id_map.astype(np.int64))
    areas = np.bincount(id_map.ravel().astype(np.int64))
    for b in got:
        ys, xs = slices[b.instance_id - 1]
        assert b.xywh == (xs.start, ys.start, xs.stop - xs.start, ys.stop - ys.start)
        assert b.area == areas[b.instance_id]
    assert instance_boxes(np.zeros((4, 4), dtype=np.uint16)) == []
