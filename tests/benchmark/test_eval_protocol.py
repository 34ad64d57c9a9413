"""Protocol features: P2SOD prompt units, breakdowns, backends, NWD, object matching."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from eval_oracle import coco_eval, expected_keys, random_case

from benchmark.evaluate import EvalParams, evaluate, evaluate_arrays, match_detections
from tinyset_builder.coco import CocoDataset


def _prompts(gt: dict[str, Any], pairs: list[tuple[int, int]]) -> dict[str, Any]:
    return {"schema": "tinyset-prompts/1", "setting": "p2sod-1", "split": "test", "seed": 0,
            "dataset": "x", "num_points": 1, "jitter": 0.0,
            "prompts": [{"image_id": i, "category_id": c, "points": [[1.0, 1.0]], "ann_ids": []}
                        for i, c in pairs]}


def _units_as_images(gt: dict[str, Any], dt: list[dict[str, Any]],
                     pairs: list[tuple[int, int]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The prompt semantics of docs/prompts.md, built by hand: one image per (image, category)."""
    unit = {p: n + 1 for n, p in enumerate(sorted(pairs))}
    images = [{"id": n, "file_name": f"u{n}", "width": 1, "height": 1} for n in unit.values()]
    anns = [{**a, "image_id": unit[(a["image_id"], a["category_id"])]}
            for a in gt["annotations"] if (a["image_id"], a["category_id"]) in unit]
    dets = [{**d, "image_id": unit[(d["image_id"], d["category_id"])]}
            for d in dt if (d["image_id"], d["category_id"]) in unit]
    return {"images": images, "annotations": anns, "categories": gt["categories"]}, dets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prompt_units_match_pycocotools_on_unit_images(seed: int) -> None:
    gt, dt = random_case(seed, n_img=5)
    present = sorted({(a["image_id"], a["category_id"]) for a in gt["annotations"]
                      if not a["iscrowd"]})
    rng = np.random.default_rng(seed)
    pairs = [present[i] for i in sorted(rng.choice(len(present), len(present) // 2, False))]
    prompts = _prompts(gt, pairs[::-1])  # file order must not matter
    unit_gt, unit_dt = _units_as_images(gt, dt, pairs)
    ev = coco_eval(unit_gt, unit_dt)
    for backend in ("native", "pycocotools"):
        arr = evaluate_arrays(gt, dt, prompts=prompts, backend=backend)
        assert np.array_equal(arr.precision, ev.eval["precision"])
        assert np.array_equal(arr.recall, ev.eval["recall"])
        assert np.array_equal(arr.scores, ev.eval["scores"])
        res = evaluate(gt, dt, prompts=prompts, backend=backend)
        assert {k: res[k] for k in expected_keys(ev)} == expected_keys(ev)
        assert res["params"]["prompts"]["units"] == len(pairs)


def test_prompts_ignore_unprompted_detections_and_gt() -> None:
    gt = {"images": [{"id": 1, "file_name": "a", "width": 9, "height": 9}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5],
                           "area": 25, "iscrowd": 0},
                          {"id": 2, "image_id": 1, "category_id": 2, "bbox": [20, 0, 5, 5],
                           "area": 25, "iscrowd": 0}],
          "categories": [{"id": 1, "name": "a/1"}, {"id": 2, "name": "a/2"}]}
    dt = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": .5},
          {"image_id": 1, "category_id": 2, "bbox": [40, 40, 5, 5], "score": .9}]
    res = evaluate(gt, dt, prompts=_prompts(gt, [(1, 1)]))
    assert res["AP50"] == pytest.approx(1.0)  # category 2's FP and missed GT do not count
    assert evaluate(gt, dt)["AP50"] < 0.5


@pytest.mark.parametrize("field", ["source", "domain"])
def test_breakdown_equals_pycocotools_on_image_subsets(field: str) -> None:
    gt, dt = random_case(5, n_img=6)
    res = evaluate(gt, dt, by=field)
    groups: dict[str, list[int]] = {}
    for img in gt["images"]:
        v = img.get(field)
        groups.setdefault("(none)" if v is None else v, []).append(img["id"])
    assert sorted(res[f"by_{field}"]) == sorted(groups)
    for name, ids in groups.items():
        ev = coco_eval(gt, dt, img_ids=ids)
        assert res[f"by_{field}"][name] == expected_keys(ev)
    assert {k: res[k] for k in expected_keys(coco_eval(gt, dt))} == expected_keys(coco_eval(gt, dt))


def test_backends_agree() -> None:
    gt, dt = random_case(7, n_img=4)
    nat = evaluate_arrays(gt, dt)
    ref = evaluate_arrays(gt, dt, backend="pycocotools")
    fce = evaluate_arrays(gt, dt, backend="faster-coco-eval")
    for name in ("precision", "recall", "scores"):
        assert np.array_equal(getattr(nat, name), getattr(ref, name))
    # faster-coco-eval computes tp / (tp + fp + eps) in another order: we have seen it differ
    # from pycocotools by one ulp (1.0 vs 0.9999999999999998); recall and scores are exact.
    assert np.array_equal(nat.recall, fce.recall) and np.array_equal(nat.scores, fce.scores)
    assert np.allclose(nat.precision, fce.precision, rtol=0, atol=1e-15)
    r = evaluate(gt, dt, backend="pycocotools", by="source")
    n = evaluate(gt, dt, by="source")
    assert r["backend"] == "pycocotools" and n["backend"] == "native"
    assert {k: v for k, v in r.items() if k != "backend"} == \
        {k: v for k, v in n.items() if k != "backend"}


def test_inputs_as_paths_dicts_and_cocodataset(tmp_path) -> None:
    from tinyset_builder.io import write_json

    gt, dt = random_case(2)
    write_json(tmp_path / "gt.json", gt)
    write_json(tmp_path / "dt.json", dt)
    a = evaluate(tmp_path / "gt.json", tmp_path / "dt.json")
    b = evaluate(gt, dt)
    c = evaluate(CocoDataset.from_dict(gt), str(tmp_path / "dt.json"))
    strip = ("params",)
    assert {k: v for k, v in a.items() if k not in strip} == \
        {k: v for k, v in b.items() if k not in strip} == \
        {k: v for k, v in c.items() if k not in strip}
    assert a["params"]["gt"] == str(tmp_path / "gt.json")


def test_size_iou_and_max_dets_options() -> None:
    gt, dt = random_case(4)
    ai = evaluate(gt, dt, size_iou="0.5:0.95", max_dets="1,10,100")
    assert ai["params"]["size_iou"] == list(np.linspace(0.5, 0.95, 10))
    assert ai["params"]["maxDets"] == [1, 10, 100] and "AR10" in ai
    ev = coco_eval(gt, dt, max_dets=(1, 10, 100))
    assert {k: ai[k] for k in expected_keys(ev, size_iou="0.5:0.95")} == \
        expected_keys(ev, size_iou="0.5:0.95")
    p = EvalParams.make(size_iou="0.75")
    assert p.size_iou == (0.75,)


def test_nwd_is_reported_beside_iou_with_its_constant() -> None:
    gt = {"images": [{"id": 1, "file_name": "a", "width": 99, "height": 99}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 10, 10],
                           "area": 100, "iscrowd": 0}],
          "categories": [{"id": 1, "name": "a/1"}]}
    dt = [{"image_id": 1, "category_id": 1, "bbox": [13, 10, 10, 10], "score": .9}]
    res = evaluate(gt, dt, nwd=12.8)
    # Shift 3 px: NWD = exp(-3 / 12.8) = 0.791 matches at 0.50..0.75 (6 of 10 thresholds);
    # IoU = 70 / 130 = 0.538 matches at 0.50 only.
    assert math.exp(-3 / 12.8) == pytest.approx(0.791, abs=1e-3)
    assert res["NWD"]["C"] == 12.8
    assert res["NWD"]["AP50"] == pytest.approx(1.0) and res["NWD"]["AP"] == pytest.approx(0.6)
    assert res["AP50"] == pytest.approx(1.0) and res["AP"] == pytest.approx(0.1)
    far = evaluate(gt, [{**dt[0], "bbox": [40, 10, 10, 10]}], nwd=12.8)
    assert far["AP25"] == 0.0 and far["NWD"]["AP25"] == 0.0  # exp(-30/12.8) < 0.25


def test_match_detections_flags_every_object() -> None:
    gt = {"images": [{"id": 4, "file_name": "a", "width": 99, "height": 99},
                     {"id": 9, "file_name": "b", "width": 99, "height": 99}],
          "annotations": [
              {"id": 10, "image_id": 4, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100,
               "iscrowd": 0},
              {"id": 11, "image_id": 4, "category_id": 2, "bbox": [50, 50, 10, 10], "area": 100,
               "iscrowd": 0},
              {"id": 12, "image_id": 4, "category_id": 1, "bbox": [70, 0, 20, 20], "area": 400,
               "iscrowd": 1}],
          "categories": [{"id": 1, "name": "a/1"}, {"id": 2, "name": "a/2"}]}
    dt = [{"image_id": 4, "category_id": 1, "bbox": [51, 50, 10, 10], "score": .8},
          {"image_id": 4, "category_id": 1, "bbox": [0, 0, 10, 10], "score": .9},
          {"image_id": 4, "category_id": 1, "bbox": [72, 2, 5, 5], "score": .7},
          {"image_id": 4, "category_id": 1, "bbox": [30, 30, 5, 5], "score": .6}]
    m = match_detections(gt, dt, iou=0.5)
    assert set(m) == {4, 9} and m[9].dt_index == [] and m[9].gt_id == []
    im = m[4]
    assert im.dt_index == [0, 1, 2, 3]
    assert im.dt_outcome == ["tp", "tp", "ignored", "fp"]
    assert im.dt_gt_id == [11, 10, 12, None]
    assert im.gt_id == [10, 11, 12] and im.gt_matched == [True, True, True]
    per_cat = match_detections(gt, dt, iou=0.5, class_agnostic=False)[4]
    assert per_cat.dt_outcome == ["fp", "tp", "ignored", "fp"]  # category 1 box on a cat-2 GT
    capped = match_detections(gt, dt, iou=0.5, max_det=1)[4]
    assert capped.dt_outcome == ["unevaluated", "tp", "unevaluated", "unevaluated"]
