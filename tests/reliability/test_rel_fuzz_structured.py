"""Property-based fuzzing of the structured readers (COCO JSON incl. LIVECell's dict, SODA-A
polygon JSON, VOC XML, label masks), of the box checks every converter shares
(``SourceAssembler.add_box``), and of the evaluator's input validation.

Records mix valid ones with hostile ones (wrong types, NaN/inf, negative or zero sizes, boxes
outside the image, huge numbers, unknown categories and images); whole files may be random bytes,
other encodings or empty. The checks: a one-line ``TinysetError`` naming the file, or (skip mode)
every record either in the output or counted once at its own location.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _hostile import RecordingPolicy, any_float, check_error, hostile_bytes, tried
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyset_builder.errors import ErrorPolicy
from tinyset_builder.formats import coco_json, masks, soda_poly_json, voc_xml
from tinyset_builder.sources.base import SourceAssembler, load_info

FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

# JSON values of every type, hostile numbers included (json.dumps writes NaN/Infinity literals,
# which Python's json module, and many exporters, accept).
json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), any_float,
                        st.text(max_size=6))
json_value = st.recursive(json_scalar, lambda c: st.lists(c, max_size=5)
                          | st.dictionaries(st.text(max_size=4), c, max_size=3), max_leaves=8)
box4 = st.lists(any_float, min_size=4, max_size=4)


def _write(tmp: pytest.TempPathFactory, name: str, data: bytes | str) -> Path:
    path = tmp.mktemp("f") / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


# ---------------------------------------------------------------------------------------------
# COCO JSON (list annotations, and LIVECell's dict keyed by id)

coco_image = st.one_of(
    st.builds(lambda i, w, h: {"id": i, "file_name": f"{i}.jpg", "width": w, "height": h},
              st.integers(1, 6), st.one_of(st.integers(-5, 5000), json_scalar),
              st.integers(0, 5000)),
    json_value)
coco_ann = st.one_of(
    st.fixed_dictionaries({"id": st.integers(), "image_id": st.one_of(st.integers(0, 7),
                                                                         json_scalar),
                           "category_id": st.one_of(st.integers(-1, 4), json_scalar),
                           "bbox": st.one_of(box4, json_value)},
                          optional={"iscrowd": json_scalar, "ignore": json_scalar,
                                    "segmentation": json_value, "area": json_scalar}),
    json_value)
coco_doc = st.fixed_dictionaries({
    "images": st.lists(coco_image, max_size=5),
    "annotations": st.lists(coco_ann, max_size=8),
    "categories": st.lists(st.one_of(st.builds(lambda i: {"id": i, "name": f"c{i}"},
                                                st.integers(0, 3)), json_value), max_size=4),
})


@FUZZ
@given(coco_doc, st.booleans(), st.integers(0, 9), hostile_bytes)
def test_coco_json_every_annotation_kept_or_counted(tmp_path_factory: pytest.TempPathFactory,
                                                    doc: dict[str, Any], as_dict: bool,
                                                    whole: int, garbage: bytes) -> None:
    if as_dict:  # LIVECell: annotations keyed by id
        doc["annotations"] = {str(k): a for k, a in enumerate(doc["annotations"])}
    data = garbage if whole == 0 else json.dumps(doc).encode()
    path = _write(tmp_path_factory, "instances.json", data)
    try:
        coco_json.read_coco_json(path, ErrorPolicy("raise"))
    except Exception as e:
        check_error(e, path)
    policy = RecordingPolicy("skip")
    parsed = coco_json.read_coco_json(path, policy)
    tried("coco_json", bool(policy.locations))
    if parsed is None:  # the file as a whole was refused, and that was counted
        assert policy.locations and policy.locations[0].startswith(str(path))
        return
    anns = doc["annotations"]
    labels = ([f"annotations[{k!r}]" for k in anns] if as_dict
              else [f"annotations[{i}]" for i in range(len(anns))])
    out = [a.location.removeprefix(f"{path}:") for a in parsed.annotations]
    skipped = [loc.removeprefix(f"{path}:") for loc in policy.locations
               if loc.startswith(f"{path}:annotations[")]
    assert sorted(out + skipped) == sorted(labels)
    im_skipped = [x for x in policy.locations if x.startswith(f"{path}:images[")]
    assert len(parsed.images) + len(im_skipped) == len(doc["images"])
    for a in parsed.annotations:
        assert all(math.isfinite(v) for v in a.xywh)


# ---------------------------------------------------------------------------------------------
# SODA-A per-image polygon JSON

soda_ann = st.one_of(
    st.fixed_dictionaries({"id": st.integers(), "category_id": st.one_of(st.integers(0, 9),
                                                                           json_scalar),
                           "poly": st.one_of(st.lists(any_float, min_size=6, max_size=12),
                                             json_value)}),
    json_value)


@FUZZ
@given(st.fixed_dictionaries({"images": st.one_of(
    st.just({"id": 1, "file_name": "1.jpg", "width": 100, "height": 80}), json_value),
    "annotations": st.lists(soda_ann, max_size=6)}), st.integers(0, 9), hostile_bytes)
def test_soda_a_every_polygon_kept_or_counted(tmp_path_factory: pytest.TempPathFactory,
                                              doc: dict[str, Any], whole: int,
                                              garbage: bytes) -> None:
    data = garbage if whole == 0 else json.dumps(doc).encode()
    path = _write(tmp_path_factory, "00001.json", data)
    try:
        soda_poly_json.read_soda_a_json(path, ErrorPolicy("raise"))
    except Exception as e:
        check_error(e, path)
    policy = RecordingPolicy("skip")
    parsed = soda_poly_json.read_soda_a_json(path, policy)
    tried("soda_a", bool(policy.locations))
    if parsed is None:
        assert len(policy.locations) == 1
        return
    if parsed.empty:
        assert not data.decode("utf-8-sig").strip() and not policy.locations
        return
    skipped = [x for x in policy.locations if ":annotations[" in x]
    assert len(parsed.polygons) + len(skipped) == len(doc["annotations"])
    assert all(math.isfinite(v) for p in parsed.polygons for v in p.xywh)


# ---------------------------------------------------------------------------------------------
# VOC XML

xml_text = st.one_of(st.sampled_from(["12", "12.0", "-3", "nan", "inf", "1e400", "", " ", "x",
                                      "0", "1", "2", "99999999999999999999"]),
                     st.text(alphabet="0123456789.-eE+ abc", max_size=6))


def _xml_object(name: str, diff: str, box: list[str] | None) -> str:
    b = ("" if box is None else "<bndbox>" + "".join(
        f"<{t}>{v}</{t}>" for t, v in zip(voc_xml.BOX_TAGS, box, strict=True)) + "</bndbox>")
    return f"<object><name>{name}</name><difficult>{diff}</difficult>{b}</object>"


voc_object = st.builds(_xml_object, st.sampled_from(["ship", "", "  ", "pest"]), xml_text,
                       st.one_of(st.none(), st.lists(xml_text, min_size=4, max_size=4)))


@FUZZ
@given(st.lists(voc_object, max_size=6), st.tuples(xml_text, xml_text), st.integers(0, 12),
       hostile_bytes)
def test_voc_xml_every_object_kept_or_counted(tmp_path_factory: pytest.TempPathFactory,
                                              objects: list[str], wh: tuple[str, str],
                                              whole: int, garbage: bytes) -> None:
    from xml.sax.saxutils import escape

    doc = (f"<annotation><filename>a.jpg</filename><size><width>{escape(wh[0])}</width>"
           f"<height>{escape(wh[1])}</height></size>{''.join(objects)}</annotation>")
    data = garbage if whole == 0 else (doc[: len(doc) // 2] if whole == 1 else doc).encode()
    path = _write(tmp_path_factory, "a.xml", data)
    try:
        voc_xml.read_voc_xml(path, ErrorPolicy("raise"))
    except Exception as e:
        check_error(e, path)
    policy = RecordingPolicy("skip")
    parsed = voc_xml.read_voc_xml(path, policy)
    tried("voc_xml", bool(policy.locations))
    if parsed is None:
        assert len(policy.locations) == 1
        return
    assert len(parsed.objects) + len(policy.locations) == len(objects)
    for o in parsed.objects:
        assert o.xyxy is None or all(math.isfinite(v) for v in o.xyxy)


# ---------------------------------------------------------------------------------------------
# Label masks (binary and instance-id maps)

def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@FUZZ
@given(st.one_of(hostile_bytes,
                 st.builds(lambda a, cut: _png(a)[:cut],
                           st.integers(0, 3).map(lambda k: np.random.default_rng(k).integers(
                               0, 2, (9, 11), dtype=np.uint8) * 255),
                           st.integers(0, 120))))
def test_label_masks_decode_or_one_line_error(tmp_path_factory: pytest.TempPathFactory,
                                              data: bytes) -> None:
    path = _write(tmp_path_factory, "mask.png", data)
    try:
        arr = masks.read_label_image(path)
    except Exception as e:
        check_error(e, path)
        tried("masks", True)
        return
    tried("masks", False)
    boxes, _small = masks.binary_mask_boxes(arr)
    assert all(b.xywh[2] > 0 and b.xywh[3] > 0 for b in boxes)


@FUZZ
@given(st.integers(0, 10**6).map(lambda s: np.random.default_rng(s).integers(
    0, 2, (16, 13), dtype=np.uint8)), st.integers(1, 4))
def test_binary_mask_components_all_accounted(mask: np.ndarray, min_area: int) -> None:
    """Every 8-connected component is a box or counted as too small: none vanishes."""
    from scipy import ndimage

    _, n = ndimage.label(mask > 0, structure=np.ones((3, 3), bool))
    boxes, small = masks.binary_mask_boxes(mask, min_area=min_area)
    assert len(boxes) + small == n
    ids = masks.decode_instance_ids(masks.encode_instance_ids(mask.astype(np.int64) * 7))
    assert len(masks.instance_boxes(ids)) == (1 if mask.any() else 0)


# ---------------------------------------------------------------------------------------------
# The box checks every converter goes through

@FUZZ
@given(st.lists(st.tuples(st.one_of(box4, st.lists(json_scalar, max_size=5)),
                          st.sampled_from(["pedestrian", "car", "zebra", "", "CAR"])),
                max_size=12))
def test_assembler_every_box_added_or_counted(tmp_path_factory: pytest.TempPathFactory,
                                              boxes: list[tuple[list[Any], str]]) -> None:
    info = load_info("visdrone")
    root = tmp_path_factory.mktemp("raw")
    policy = RecordingPolicy("skip")
    asm = SourceAssembler(info, root, policy)
    image = asm.add_image("a.jpg", split="train", width=640, height=480)
    assert image is not None
    added = sum(asm.add_box(image, tuple(b), c, location=f"a.txt:{k}")  # type: ignore[arg-type]
                for k, (b, c) in enumerate(boxes, start=1))
    ds = asm.finish()
    tried("assembler", policy.total_skipped > 0)
    assert added == len(ds.annotations)
    assert len(ds.annotations) + policy.total_skipped == len(boxes)
    for a in ds.annotations:
        x, y, w, h = a.bbox
        assert all(math.isfinite(v) for v in a.bbox) and w > 0 and h > 0
        assert 0 <= x and 0 <= y and x + w <= 640 + 1e-6 and y + h <= 480 + 1e-6
    strict = SourceAssembler(info, root, ErrorPolicy("raise"))
    im = strict.add_image("a.jpg", split="train", width=640, height=480)
    assert im is not None
    try:
        for k, (b, c) in enumerate(boxes, start=1):
            strict.add_box(im, tuple(b), c, location=f"{root}/a.txt:{k}")  # type: ignore[arg-type]
    except Exception as e:
        check_error(e, f"{root}/a.txt:")


# ---------------------------------------------------------------------------------------------
# The evaluator's input validation (file paths: the compiled reader and the json fallback)

eval_gt_ann = st.one_of(
    st.fixed_dictionaries({"id": st.integers(1, 30), "image_id": st.integers(0, 3),
                           "category_id": st.integers(0, 3), "bbox": st.one_of(box4, json_value)},
                          optional={"iscrowd": json_scalar, "area": json_scalar}),
    json_value)
eval_dt = st.one_of(
    st.fixed_dictionaries({"image_id": st.one_of(st.integers(0, 3), json_scalar),
                           "category_id": st.one_of(st.integers(0, 3), json_scalar),
                           "bbox": st.one_of(box4, json_value),
                           "score": st.one_of(st.floats(0, 1), json_scalar)}),
    json_value)


@FUZZ
@given(st.lists(eval_gt_ann, max_size=6), st.lists(eval_dt, max_size=6), st.integers(0, 9),
       hostile_bytes)
def test_evaluator_inputs_evaluate_or_one_line_error(tmp_path_factory: pytest.TempPathFactory,
                                                     gt_anns: list[Any], dts: list[Any],
                                                     whole: int, garbage: bytes) -> None:
    from benchmark.evaluate import evaluate

    gt = {"images": [{"id": i, "file_name": f"{i}.png", "width": 64, "height": 64}
                     for i in (1, 2)],
          "annotations": gt_anns, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    folder = tmp_path_factory.mktemp("ev")
    gt_path, dt_path = folder / "gt.json", folder / "dt.json"
    gt_path.write_text(json.dumps(gt))
    dt_path.write_bytes(garbage if whole == 0 else json.dumps(dts).encode())
    if whole == 1:
        gt_path.write_bytes(garbage)
    refused = False
    for g, d in ((gt_path, dt_path), (gt, dts)):
        try:
            metrics = evaluate(g, d)
        except Exception as e:
            refused = True
            check_error(e, "")  # a one-line TinysetError ...
            if g is gt_path:  # ... that names the file it is about
                assert str(gt_path) in str(e) or str(dt_path) in str(e), str(e)
            continue
        assert all(v == -1 or 0 <= v <= 1 for k, v in metrics.items()
                   if k.startswith(("AP", "AR")) and isinstance(v, float))
    tried("evaluator", refused)
