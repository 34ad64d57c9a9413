"""Native evaluator vs real pycocotools: randomized dense cases and every corner case of
reference/metrics.md, asserting exact equality of precision/recall/scores and of every key."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from eval_oracle import coco_eval, expected_keys, random_case

from benchmark.evaluate import EvalParams, evaluate, evaluate_arrays


def _img(i: int, **kw: Any) -> dict[str, Any]:
    return {"id": i, "file_name": f"{i}.png", "width": 100, "height": 100, **kw}


def _ann(i: int, img: int, box: list[float], cat: int = 1, crowd: int = 0,
         area: float | None = None) -> dict[str, Any]:
    return {"id": i, "image_id": img, "category_id": cat, "bbox": box,
            "area": box[2] * box[3] if area is None else area, "iscrowd": crowd}


def _det(img: int, box: list[float], score: float, cat: int = 1) -> dict[str, Any]:
    return {"image_id": img, "category_id": cat, "bbox": box, "score": score}


def _gt(images: list[int], anns: list[dict[str, Any]], cats=(1, 2)) -> dict[str, Any]:
    return {"images": [_img(i) for i in images], "annotations": anns,
            "categories": [{"id": c, "name": f"s/{c}"} for c in cats]}


def assert_parity(gt: dict[str, Any], dt: list[dict[str, Any]], *, max_dets=(100, 1500, 3000),
                  use_cats: bool = False, size_iou: str = "0.5") -> dict[str, Any]:
    """Arrays and every reported key equal pycocotools' exactly (no tolerance)."""
    ev = coco_eval(gt, dt, max_dets=max_dets, use_cats=use_cats)
    params = EvalParams.make(max_dets=max_dets, class_agnostic=not use_cats, size_iou=size_iou)
    arr = evaluate_arrays(gt, dt, params=params)
    for name in ("precision", "recall", "scores"):
        ours, ref = getattr(arr, name), ev.eval[name]
        assert ours.shape == ref.shape, name
        assert np.array_equal(ours, ref), f"{name}: {np.argwhere(ours != ref)[:5].tolist()}"
    res = evaluate(gt, dt, max_dets=max_dets, class_agnostic=not use_cats, size_iou=size_iou)
    exp = expected_keys(ev, size_iou=size_iou)
    assert {k: res[k] for k in exp} == exp
    assert res["backend"] == "native" and res["params"]["maxDets"] == sorted(max_dets)
    return res


@pytest.mark.parametrize("use_cats", [False, True])
@pytest.mark.parametrize("seed", range(8))
def test_random_dense_cases_match_pycocotools(seed: int, use_cats: bool) -> None:
    gt, dt = random_case(seed)
    max_dets = (3, 20, 100) if seed % 2 else (100, 1500, 3000)
    res = assert_parity(gt, dt, max_dets=max_dets, use_cats=use_cats,
                        size_iou="0.5:0.95" if seed % 3 == 0 else "0.5")
    assert 0 < res["AP50"] <= 1  # the case is not degenerate


def test_headline_keys_equal_pycocotools_own_summarize() -> None:
    # pycocotools' summarize() reports AP@0.5 and AP@0.75 at maxDets[2] = 3000 (stats[1], [2]).
    gt, dt = random_case(11, n_img=3, n_gt=60, n_dt=80)
    ev = coco_eval(gt, dt)
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        ev.summarize()
    res = evaluate(gt, dt)
    assert (res["AP50"], res["AP75"]) == (ev.stats[1], ev.stats[2])


CORNERS: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {
    "ties_within_image": (
        _gt([1], [_ann(1, 1, [0, 0, 10, 10]), _ann(2, 1, [20, 0, 10, 10])]),
        [_det(1, [20, 0, 10, 10], .5), _det(1, [0, 0, 10, 10], .5),
         _det(1, [50, 50, 5, 5], .5), _det(1, [0, 0, 10, 10], .5), _det(1, [1, 0, 10, 10], .9)]),
    "ties_across_images": (
        _gt([7, 3], [_ann(1, 7, [0, 0, 10, 10]), _ann(2, 3, [0, 0, 10, 10])]),
        [_det(7, [60, 60, 9, 9], .5), _det(3, [0, 0, 10, 10], .5), _det(7, [0, 0, 10, 10], .5),
         _det(3, [60, 60, 9, 9], .5)]),
    "iou_exactly_at_thresholds": (
        _gt([1, 2, 3, 4, 5], [_ann(i, i, [0, 0, 10, 10]) for i in range(1, 6)]),
        [_det(1, [0, 0, 10, 5], .9), _det(2, [0, 0, 10, 7.5], .8), _det(3, [0, 0, 10, 2.5], .7),
         _det(4, [0, 0, 10, 5.5], .6), _det(5, [0, 0, 10, 9.5], .5)]),
    "equal_iou_to_two_gts": (
        _gt([1], [_ann(1, 1, [0, 0, 10, 10]), _ann(2, 1, [10, 0, 10, 10])]),
        [_det(1, [5, 0, 10, 10], .9), _det(1, [5, 0, 10, 10], .8), _det(1, [5, 0, 10, 10], .7)]),
    "areas_at_bucket_edges": (
        _gt([1], [_ann(1, 1, [0, 0, 8, 8]), _ann(2, 1, [20, 0, 16, 16]),
                  _ann(3, 1, [40, 0, 32, 32]), _ann(4, 1, [0, 40, 4, 16]),
                  _ann(5, 1, [0, 70, 8, 8], area=256), _ann(6, 1, [20, 70, 30, 30], area=1024)]),
        [_det(1, [0, 0, 8, 8], .9), _det(1, [20, 0, 16, 16], .8), _det(1, [40, 0, 32, 32], .7),
         _det(1, [0, 40, 4, 16], .6), _det(1, [0, 71, 8, 8], .5), _det(1, [21, 70, 30, 30], .4),
         _det(1, [80, 80, 8, 8], .35), _det(1, [60, 40, 16, 16], .3),
         _det(1, [60, 60, 32, 32], .2)]),
    "crowd_regions": (
        _gt([1], [_ann(1, 1, [0, 0, 50, 50], crowd=1), _ann(2, 1, [10, 10, 10, 10]),
                  _ann(3, 1, [60, 60, 10, 10], crowd=1, area=0)]),
        [_det(1, [10, 10, 10, 10], .95), _det(1, [5, 5, 10, 10], .9), _det(1, [30, 30, 8, 8], .8),
         _det(1, [45, 45, 10, 10], .7), _det(1, [11, 11, 10, 10], .6), _det(1, [60, 60, 5, 5], .5),
         _det(1, [62, 62, 20, 20], .4)]),
    "gt_without_dets_dets_without_gt": (
        _gt([1, 2, 3], [_ann(1, 1, [0, 0, 10, 10]), _ann(2, 1, [30, 30, 10, 10])]),
        [_det(2, [0, 0, 10, 10], .9), _det(2, [30, 30, 10, 10], .8)]),
    "category_without_gt": (
        _gt([1], [_ann(1, 1, [0, 0, 10, 10]), _ann(2, 1, [20, 20, 10, 10])], cats=(1, 2, 3)),
        [_det(1, [0, 0, 10, 10], .9, cat=2), _det(1, [20, 20, 10, 10], .8, cat=1),
         _det(1, [50, 50, 10, 10], .95, cat=3), _det(1, [0, 0, 10, 10], .7, cat=1)]),
    "max_dets_below_count": (
        _gt([1, 2], [_ann(i, 1 + i % 2, [10 * (i % 8), 10 * (i // 8), 8, 8])
                     for i in range(1, 25)]),
        [_det(1 + i % 2, [10 * (i % 8) + (i % 3) - 1, 10 * (i // 8), 8, 8], round(1 - i / 40, 2))
         for i in range(1, 30)]),
    "gt_id_zero": (
        _gt([1], [_ann(0, 1, [0, 0, 10, 10]), _ann(5, 1, [20, 0, 10, 10])]),
        [_det(1, [0, 0, 10, 10], .9), _det(1, [20, 0, 10, 10], .8), _det(1, [0, 0, 10, 10], .7)]),
    "ignored_gt_fallback": (
        _gt([1], [_ann(1, 1, [0, 0, 8, 8], area=2000), _ann(2, 1, [3, 0, 8, 8])]),
        [_det(1, [0, 0, 8, 8], .9), _det(1, [0, 0, 8, 8], .8), _det(1, [1, 0, 8, 8], .7)]),
    "zero_size_detection": (
        _gt([1], [_ann(1, 1, [0, 0, 10, 10])]),
        [_det(1, [0, 0, 0, 10], .9), _det(1, [2, 2, 10, 0], .8), _det(1, [0, 0, 10, 10], .1)]),
    "no_gt_at_all": (_gt([1, 2], []), [_det(1, [0, 0, 10, 10], .9)]),
    "large_gt_among_tiny": (
        _gt([1], [_ann(1, 1, [0, 0, 90, 90]), *[_ann(i, 1, [i, i, 3, 3]) for i in range(2, 40)]]),
        [_det(1, [1, 1, 88, 88], .9), *[_det(1, [i, i + 1, 3, 3], .5) for i in range(2, 40)],
         _det(1, [0, 0, 100, 100], .3)]),
}


@pytest.mark.parametrize("use_cats", [False, True])
@pytest.mark.parametrize("max_dets", [(100, 1500, 3000), (1, 2, 3)])
@pytest.mark.parametrize("name", sorted(CORNERS))
def test_corner_cases_match_pycocotools(name: str, max_dets: tuple[int, ...],
                                        use_cats: bool) -> None:
    gt, dt = CORNERS[name]
    assert_parity(gt, dt, max_dets=max_dets, use_cats=use_cats)


def test_corner_cases_behave_as_documented() -> None:
    # The later GT wins a tie in IoU; the next detection takes the other GT.
    gt, dt = CORNERS["equal_iou_to_two_gts"]
    from benchmark.evaluate import match_detections

    m = match_detections(gt, dt, iou=0.25)[1]
    assert m.dt_gt_id == [2, 1, None] and m.dt_outcome == ["tp", "tp", "fp"]
    # IoU exactly 0.5 matches at 0.5; 0.25 exactly matches at 0.25 only.
    res = evaluate(*CORNERS["iou_exactly_at_thresholds"])
    assert res["AP25"] == pytest.approx(1.0) and 0 < res["AP50"] < 1
    # Areas exactly 64 count as very tiny *and* tiny (inclusive bounds).
    gt = _gt([1], [_ann(1, 1, [0, 0, 8, 8])])
    res = evaluate(gt, [_det(1, [0, 0, 8, 8], .9)])
    # (precision is tp / (tp + fp + eps), hence 1 - 1 ulp rather than 1)
    assert res["APvt"] == res["APt"] == pytest.approx(1.0) and res["APs"] == -1.0


def test_empty_detection_list_is_valid_and_scores_zero() -> None:
    gt, _ = random_case(3)
    res = assert_parity(gt, [])
    assert res["AP50"] == res["AP"] == res["AR"] == 0.0
    assert res["params"]["detections"] == 0


def float_case(seed: int, dtype: type, *, n_img: int = 3, n_gt: int = 60,
               n_dt: int = 90) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Random real-valued boxes (float32 outputs widened to float64, or any float64), GT areas
    as the file's own ``w * h``, scores with ties, a few crowd regions."""
    rng = np.random.default_rng(seed)

    def real(a: np.ndarray) -> list[float]:
        return np.asarray(a, dtype).astype(np.float64).tolist()

    images, anns, dets = [], [], []
    for img in range(1, n_img + 1):
        images.append({"id": img * 7, "file_name": f"{img}.png", "width": 160, "height": 160})
        wh = rng.uniform(1.5, 30, (n_gt, 2))
        xy = rng.uniform(0, 130, (n_gt, 2))
        for k in range(n_gt):
            box = real(np.r_[xy[k], wh[k]])
            anns.append({"id": len(anns) + 1, "image_id": img * 7,
                         "category_id": int(rng.integers(1, 3)), "bbox": box,
                         "area": box[2] * box[3], "iscrowd": int(rng.random() < 0.05)})
        for _ in range(n_dt):
            if rng.random() < 0.7:
                g = anns[-n_gt + int(rng.integers(0, n_gt))]["bbox"]
                box = np.asarray(g) + rng.normal(0, 1.2, 4)
                box[2:] = np.maximum(box[2:], 0.25)
            else:
                box = np.r_[rng.uniform(0, 130, 2), rng.uniform(1.5, 30, 2)]
            score = rng.choice([0.5, 0.25]) if rng.random() < 0.2 else rng.random()
            dets.append({"image_id": img * 7, "category_id": int(rng.integers(1, 3)),
                         "bbox": real(box), "score": real([score])[0]})
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": 1, "name": "a/1"}, {"id": 2, "name": "a/2"}]}
    return gt, dets


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(3))
def test_random_real_valued_boxes_match_pycocotools(seed: int, dtype: type, tmp_path) -> None:
    import json

    gt, dt = float_case(seed, dtype)
    res = assert_parity(gt, dt, use_cats=bool(seed % 2), max_dets=(10, 50, 100))
    assert 0 < res["AP50"] < 1
    # the same case through files: the msgspec reader feeds the same numbers
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dt))
    params = EvalParams.make(max_dets=(10, 50, 100), class_agnostic=not seed % 2)
    ev = coco_eval(gt, dt, max_dets=(10, 50, 100), use_cats=bool(seed % 2))
    arr = evaluate_arrays(tmp_path / "gt.json", tmp_path / "dt.json", params=params)
    for name in ("precision", "recall", "scores"):
        assert np.array_equal(getattr(arr, name), ev.eval[name]), name


def test_one_realistic_image_matches_pycocotools() -> None:
    # A 1024² image with 400 GT of 3-28 px and 1,000 detections (~6 s of pycocotools).
    rng = np.random.default_rng(1)
    n_gt, n_dt = 400, 1000
    wh = rng.uniform(3, 28, (n_gt, 2)).astype(np.float32).astype(np.float64)
    xy = rng.uniform(0, 1024 - wh).astype(np.float32).astype(np.float64)
    anns = [_ann(k + 1, 1, [*xy[k].tolist(), *wh[k].tolist()]) for k in range(n_gt)]
    pick = rng.integers(0, n_gt, 800)
    tp = np.c_[xy[pick], wh[pick]] + rng.normal(0, 1.5, (800, 4))
    fp = np.c_[rng.uniform(0, 1000, (200, 2)), rng.uniform(3, 28, (200, 2))]
    boxes = np.r_[tp, fp]
    boxes[:, 2:] = np.maximum(boxes[:, 2:], 0.5)
    boxes = boxes.astype(np.float32).astype(np.float64)
    scores = np.r_[rng.uniform(0.3, 1, 800), rng.uniform(0, 0.7, 200)].astype(np.float32)
    dt = [_det(1, b, float(s)) for b, s in zip(boxes.tolist(), scores.tolist(), strict=True)]
    gt = {"images": [{"id": 1, "file_name": "a.png", "width": 1024, "height": 1024}],
          "annotations": anns, "categories": [{"id": 1, "name": "a/1"}]}
    assert len(dt) == n_dt
    res = assert_parity(gt, dt)
    assert 0.3 < res["AP50"] < 1


def test_thread_counts_and_match_batches_give_identical_arrays(monkeypatch) -> None:
    from benchmark.evaluate import native

    gt, dt = random_case(9, n_img=12, n_gt=50, n_dt=70)
    arrays = []
    for threads, batch in (("1", native.MATCH_BATCH), ("2", native.MATCH_BATCH), ("2", 37)):
        monkeypatch.setenv("TINYSET_EVAL_THREADS", threads)
        monkeypatch.setattr(native, "MATCH_BATCH", batch)
        arrays.append(evaluate_arrays(gt, dt, params=EvalParams.make(max_dets=(5, 40, 100))))
    for other in arrays[1:]:
        for name in ("precision", "recall", "scores"):
            assert getattr(other, name).tobytes() == getattr(arrays[0], name).tobytes()
