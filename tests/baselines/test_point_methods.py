"""The five point-supervised rows (33–37) through ``tinyset benchmark``'s runner, and the
distinctive mechanisms of Point Teacher and the two-phase pipeline."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmark"))
from bench_fixture import write_tiny_dataset

from benchmark.manifest import load_methods
from benchmark.runner import plan, run_benchmark

torch = pytest.importorskip("torch")

POINT_ROWS = ("33", "34", "35", "36", "37")
#: A tiny but real run: 1 generator + 1 detector step on 64² tiles, a narrow ResNet-18-FPN.
TINY = {"smoke_iters": 2, "smoke_size": 64, "backbone": "resnet18", "fpn_channels": 64,
        "batch_size": 2}


def _rows() -> list:
    manifest = load_methods()
    rows = [m for m in (manifest.methods if hasattr(manifest, "methods") else manifest)
            if m.id in POINT_ROWS]
    assert [m.id for m in rows] == list(POINT_ROWS)
    return rows


def test_rows_33_to_37_are_native_with_external_alternatives() -> None:
    for m in _rows():
        assert m.paradigm == "weak" and m.setting == "points-center"
        assert m.adapter == "native" and "external" in m.alternatives
        assert m.options["method"] in {"p2bnet", "pointobb_v2", "pointobb_v3", "point_teacher",
                                       "point2rbox_v3"}


def test_the_five_rows_run_ok_through_the_benchmark(tmp_path: Path) -> None:
    data = write_tiny_dataset(tmp_path / "tiny", size=64, objects=4,
                              counts={"train": 2, "val": 1, "test": 1})
    records = run_benchmark(plan(_rows(), data, tmp_path / "runs", schedule="smoke",
                                 extra=TINY))
    for rec in records:
        assert rec["status"] == "ok", rec["status"]
        notes = rec["notes"]
        assert notes["implementation"].startswith("native:")
        assert notes["supervision"].startswith("points only")
        assert notes["pseudo_boxes_scored"] == notes["points"] > 0
        assert 0.0 <= notes["pseudo_mean_iou"] <= 1.0
        assert "AP50" in rec["metrics"]
    by = {r["notes"]["method"]: r for r in records}
    assert by["point2rbox_v3"]["notes"]["mask_source"] == "watershed"
    assert by["point2rbox_v3"]["notes"]["detector"] == "fcos"
    # the oriented methods keep their rotated pseudo boxes (and polygons) in a side file
    for name in ("pointobb_v2", "pointobb_v3", "point2rbox_v3"):
        side = json.loads(Path(by[name]["notes"]["pseudo_labels"]).read_text())
        row = side["pseudo_labels"][0]
        assert len(row["rbox_cxcywha"]) == 5 and len(row["polygon"]) == 8


def test_point_teacher_masks_avoid_points_and_regress_their_boxes() -> None:
    from baselines.methods.point_teacher import (
        box_targets_loss,
        decode_at,
        draw_masks,
        jitter_boxes,
        jittering_iou_loss,
        paint_masks,
    )

    rng = np.random.default_rng(0)
    pts = np.array([[20.0, 20.0], [40.0, 44.0]], np.float32)
    masks = draw_masks(pts, 64, 6, (4.0, 24.0), rng)
    assert len(masks) == 6
    for x0, y0, x1, y1 in masks:
        assert not ((pts[:, 0] >= x0 - 1) & (pts[:, 0] <= x1 + 1) & (pts[:, 1] >= y0 - 1)
                    & (pts[:, 1] <= y1 + 1)).any()
        assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
    image = torch.full((3, 64, 64), 0.5)
    painted = paint_masks(image, masks[:1], rng)
    x0, y0, x1, y1 = masks[0]
    changed = (painted != image).any(dim=0).nonzero().numpy()  # (row, col) of painted pixels
    assert len(changed) > 0
    assert changed[:, 1].min() >= np.floor(x0) and changed[:, 1].max() < np.ceil(x1)
    assert changed[:, 0].min() >= np.floor(y0) and changed[:, 0].max() < np.ceil(y1)
    inside = painted[:, int(np.ceil(y0)):int(y1), int(np.ceil(x0)):int(x1)]
    assert inside.std(dim=(1, 2)).max() < 0.1  # a flat colour with a little noise
    # FCOS encoding by hand: box (10, 14, 30, 22) seen from cell (row 4, col 4), centre (18, 18):
    # distances left 8, top 4, right 12, bottom 4 px = log(2), 0, log(3), 0 in strides
    box = np.array([[10.0, 14.0, 30.0, 22.0]], np.float32)
    out = torch.zeros(1, 5, 16, 16)
    out[0, 1:5, 4, 4] = torch.tensor([np.log(2.0), 0.0, np.log(3.0), 0.0])
    got = decode_at(out, np.array([[20.0, 18.0]], np.float32)).numpy()
    np.testing.assert_allclose(got, box, atol=1e-4)
    assert float(box_targets_loss(out, box)) == pytest.approx(0.0, abs=1e-5)
    # an all-zero head predicts the 8 × 8 box (14, 14, 22, 22): IoU 64/160, centre distance² 4,
    # enclosing box = the target, diagonal² 20² + 8² = 464 → DIoU loss 1 − 0.4 + 4/464
    assert float(box_targets_loss(torch.zeros(1, 5, 16, 16), box)) == pytest.approx(
        1 - 0.4 + 4 / 464, rel=1e-5)
    # jittering-IoU loss: zero jitter is exactly 1 − IoU
    pred = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    tgt = jitter_boxes(np.array([[0, 0, 10, 20]], np.float32), 0.0, 3, rng)
    assert float(jittering_iou_loss(pred, torch.from_numpy(tgt))) == pytest.approx(0.5)
    shaken = jitter_boxes(np.array([[0, 0, 10, 20]], np.float32), 0.2, 50, rng)
    centres = (shaken[..., :2] + shaken[..., 2:]) / 2
    assert np.all(np.abs(centres[..., 0] - 5) <= 2.0 + 1e-5)
    assert np.all(np.abs(centres[..., 1] - 10) <= 4.0 + 1e-5)


def test_point_teacher_reads_and_trains_the_top3_cells_nearest_a_point() -> None:
    from baselines.methods.point_teacher import (
        Config,
        box_targets_loss,
        build_generator,
        decode_at,
        nearest_cells,
        size_prior_bias,
    )
    from baselines.schedules import resolve_plan

    # (9, 10): own cell (2, 2) at L1 distance 1, then (2, 1) at 3, then a tie at 5 between
    # (1, 2), (2, 3), (3, 2), won by the first in row-major order; (20, 18) sits between
    # (4, 4) and (4, 5) (both 2), then (3, 4) wins the tie at 6
    r, c = nearest_cells(np.array([[9.0, 10.0], [20.0, 18.0]]), 3, 16, 16)
    assert list(zip(r[0], c[0], strict=True)) == [(2, 2), (2, 1), (1, 2)]
    assert list(zip(r[1], c[1], strict=True)) == [(4, 4), (4, 5), (3, 4)]
    # in a corner the clipped window repeats no cell
    r, c = nearest_cells(np.array([[0.5, 0.5]]), 3, 16, 16)
    assert list(zip(r[0], c[0], strict=True)) == [(0, 0), (0, 1), (1, 0)]
    # the coarse box is the class-score-weighted mean of the three cells' boxes
    out = torch.zeros(1, 5, 16, 16)
    out[0, 0, 4, 5] = float(np.log(3.0))  # sigmoid 0.75; the other two cells 0.5
    out[0, 1:5, 4, 4] = torch.tensor([np.log(2.0), 0.0, np.log(3.0), 0.0])  # (10, 14, 30, 22)
    out[0, 1:5, 4, 5] = torch.tensor([np.log(3.0), 0.0, np.log(2.0), 0.0])  # (10, 14, 30, 22)
    # cell (3, 4), centre (18, 14), all zeros: (14, 10, 22, 18)
    want = (0.5 * np.array([10, 14, 30, 22]) + 0.75 * np.array([10, 14, 30, 22])
            + 0.5 * np.array([14, 10, 22, 18])) / 1.75
    got = decode_at(out, np.array([[20.0, 18.0]], np.float32), 3).numpy()[0]
    np.testing.assert_allclose(got, want, atol=1e-4)
    # trained at the same three cells: the two exact ones cost 0, the third its DIoU loss
    # (IoU 32/192; centre distance² 2² + 4² = 20; enclosure (10, 10, 30, 22): 20² + 12² = 544)
    want_loss = (1 - 32 / 192 + 20 / 544) / 3
    assert float(box_targets_loss(out, np.array([[10.0, 14.0, 30.0, 22.0]], np.float32),
                                  3)) == pytest.approx(want_loss, rel=1e-5)
    # the box channels start at the mask prior's central side (√(4·64) = 16 px: half 2 strides)
    assert size_prior_bias((4.0, 64.0)) == pytest.approx(np.log(2.0))
    net = build_generator(resolve_plan("cpu", {}, n_images=1), Config())
    bias = net.dense[0][-1].bias.detach().numpy()
    np.testing.assert_allclose(bias[1:5], np.log(2.0), rtol=1e-6)
    assert bias[0] == pytest.approx(-4.6)


def test_point_teacher_refined_box_is_the_top1_bag_box_blended_with_the_coarse_box() -> None:
    from baselines.methods.point_teacher import Config, refine

    class Stub:  # a MIL head that prefers the smallest proposal (class logit −area/100)
        def mil_forward(self, head, feats, boxes, size):
            b = boxes[0]
            area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
            return {"cls": -area / 100.0, "ins": torch.zeros(len(b))}

    coarse = np.array([[10.0, 10.0, 30.0, 30.0]], np.float32)
    cfg = Config(bag_shakes=())
    bags, refined = refine(Stub(), {"0": torch.zeros(1)}, coarse, cfg, 64)
    assert bags.shape == (1, 25, 4)
    # the 0.7 × 0.7 box (13, 13, 27, 27) wins; (1 − 0.25)·it + 0.25·coarse
    np.testing.assert_allclose(refined[0], 0.75 * np.array([13, 13, 27, 27])
                               + 0.25 * np.array([10, 10, 30, 30]), atol=1e-4)


def test_weak_family_pairs_points_rows_with_boxes_and_deal_and_tabulates_ap25() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import label_efficient as le

    manifest = list(load_methods().methods)
    (pair,) = le.FAMILIES["weak"](manifest, None)
    assert pair.setting == "points-center"
    assert [m.id for m in pair.methods] == list(POINT_ROWS)
    assert {m.id for m in pair.baselines} == {"2", "deal"}
    (jit,) = le.FAMILIES["weak"](manifest, ["points-jitter"])
    assert {m.setting for m in jit.methods} == {"points-jitter"}
    row = {"setting": "points-center", "id": "36", "name": "Point Teacher", "role": "method",
           "paper_AP50": 9.2, "paper_AP25": 47.8, "AP25": [10.0, 20.0, None], "AP50": [1.0, 3.0],
           "status": ["ok", "ok", "failed: x"],
           "pseudo": [{"pseudo_mean_iou": 0.2, "pseudo_mean_iou_t": 0.1},
                      {"pseudo_mean_iou": 0.4}, {}],
           "AP25_by_size": [{"vt": 10.0, "t": 20.0, "s": None, "m": None},
                            {"vt": 30.0, "t": 40.0, "s": 50.0, "m": None}, None]}
    md = le.weak_table([row])
    sd25 = float(np.std([10.0, 20.0], ddof=1))
    assert f"15.00 ± {sd25:.2f} (n=2)" in md and "2.00 ± 1.41 (n=2)" in md
    assert "| 0.300 |" in md and "— / 0.100 / — / —" in md and "47.8 / 9.2" in md
    # size APs: means over the seeds where the bucket has objects
    assert "| 20.0 / 30.0 / 50.0 / — |" in md
    # a baseline row names the labels it trained on, not the pairing's points variant
    base = {**row, "id": "2", "name": "Faster R-CNN", "labels": "full"}
    assert "| 2 Faster R-CNN (full) |" in le.weak_table([base])


def test_size_ap_re_evaluates_the_stored_predictions_at_the_asked_iou(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import label_efficient as le

    gt = {"images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 100}],
          "categories": [{"id": 1, "name": "x"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 6, 6],
                           "area": 36, "iscrowd": 0},
                          {"id": 2, "image_id": 1, "category_id": 1, "bbox": [50, 50, 20, 20],
                           "area": 400, "iscrowd": 0}]}
    # a 6×6 very tiny object found by a 6×12 box 2 px below it (IoU 24/84 ≈ 0.29);
    # the 20×20 small object found exactly
    dt = [{"image_id": 1, "category_id": 1, "bbox": [10, 12, 6, 12], "score": 0.9},
          {"image_id": 1, "category_id": 1, "bbox": [50, 50, 20, 20], "score": 0.8}]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dt))
    record = {"metrics": {"params": {"gt": str(tmp_path / "gt.json"),
                                     "dt": str(tmp_path / "dt.json"), "class_agnostic": True}}}
    at25 = le.size_ap(record, "0.25")
    at50 = le.size_ap(record, "0.5")
    assert at25 is not None and at50 is not None
    assert at25["vt"] == 100.0 and at50["vt"] == 0.0      # IoU 0.29: a hit at 0.25 only
    assert at25["s"] == at50["s"] == 100.0
    assert at25["t"] is None and at25["m"] is None      # no object of that size
    assert le.size_ap({"metrics": None}, "0.25") is None
    assert le.size_ap({"metrics": {"params": {"gt": str(tmp_path / "gone.json"),
                                              "dt": str(tmp_path / "dt.json")}}}, "0.25") is None


def test_detection_fit_gives_recall_of_confident_boxes_and_their_side_ratio(
        tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import label_efficient as le

    def ann(i: int, box: list[float], crowd: int = 0) -> dict:
        return {"id": i, "image_id": 1, "category_id": 1, "bbox": box,
                "area": box[2] * box[3], "iscrowd": crowd}

    gt = {"images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 100}],
          "categories": [{"id": 1, "name": "x"}],
          "annotations": [ann(1, [10, 10, 10, 10]), ann(2, [50, 50, 10, 10]),
                          ann(3, [80, 80, 4, 4]), ann(4, [30, 60, 10, 10], crowd=1)]}
    dt = [  # an 18×18 box around object 1: IoU 100/324 ≈ 0.31, side ratio 1.8
          {"image_id": 1, "category_id": 1, "bbox": [6, 6, 18, 18], "score": 0.9},
          # object 2 found exactly, but below the confidence threshold: not counted
          {"image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 10], "score": 0.2},
          # object 3 found exactly: side ratio 1.0
          {"image_id": 1, "category_id": 1, "bbox": [80, 80, 4, 4], "score": 0.5},
          # a confident false positive changes neither number
          {"image_id": 1, "category_id": 1, "bbox": [0, 90, 5, 5], "score": 0.95}]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dt))
    params = {"gt": str(tmp_path / "gt.json"), "dt": str(tmp_path / "dt.json"),
              "class_agnostic": True}
    fit = le.detection_fit({"metrics": {"params": params}})
    # 2 of the 3 non-crowd objects; 2 of the 3 confident boxes; median of (1.8, 1.0)
    assert fit == {"recall": round(2 / 3, 4), "precision": round(2 / 3, 4), "per_image": 3.0,
                   "side_ratio": 1.4}
    # at IoU 0.5 the 18×18 box no longer matches: only object 3, exactly sized
    assert le.detection_fit({"metrics": {"params": params}}, iou=0.5) == {
        "recall": round(1 / 3, 4), "precision": round(1 / 3, 4), "per_image": 3.0,
        "side_ratio": 1.0}
    # a higher score threshold keeps only the false positive
    assert le.detection_fit({"metrics": {"params": params}}, score_thr=0.92) == {
        "recall": 0.0, "precision": 0.0, "per_image": 1.0, "side_ratio": None}
    # DEAL's prompted runs and runs whose files are gone have none
    prompted = {**params, "prompts": {"file": "p.json"}}
    assert le.detection_fit({"metrics": {"params": prompted}}) is None
    assert le.detection_fit({"metrics": None}) is None
    row = {"setting": "points-center", "id": "33", "name": "P2BNet", "role": "method",
           "paper_AP50": 0.2, "paper_AP25": 4.6, "AP25": [1.0], "AP50": [0.0], "status": ["ok"],
           "fit": [fit, {"recall": 0.5, "side_ratio": 2.0}, None]}
    md = le.weak_table([row])
    assert f"| {(2 / 3 + 0.5) / 2:.2f} | 1.70 | ok |" in md


def _tiny_sam(folder: Path) -> Path:
    """A randomly initialised SAM of a few thousand weights, saved like a downloaded one."""
    pytest.importorskip("transformers")
    from transformers import SamConfig, SamImageProcessor, SamModel, SamProcessor

    vision = {"hidden_size": 32, "output_channels": 32, "num_hidden_layers": 1,
              "num_attention_heads": 2, "image_size": 64, "patch_size": 16, "mlp_dim": 64,
              "global_attn_indexes": [0], "window_size": 0, "num_pos_feats": 16}
    prompt = {"hidden_size": 32, "image_size": 64, "patch_size": 16, "mask_input_channels": 4}
    decoder = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
               "mlp_dim": 64, "iou_head_hidden_dim": 32}
    torch.manual_seed(0)
    SamModel(SamConfig(vision_config=vision, prompt_encoder_config=prompt,
                       mask_decoder_config=decoder)).save_pretrained(folder)
    SamProcessor(image_processor=SamImageProcessor(
        size={"longest_edge": 64}, pad_size={"height": 64, "width": 64},
        mask_size={"longest_edge": 16}, mask_pad_size={"height": 16, "width": 16}),
    ).save_pretrained(folder)
    return folder


def test_point2rbox_v3_uses_sam_masks_when_weights_are_given(tmp_path: Path) -> None:
    from baselines.methods import MethodContext, get_method
    from baselines.schedules import resolve_plan

    sam = _tiny_sam(tmp_path / "sam")
    data = write_tiny_dataset(tmp_path / "tiny", size=64, objects=3,
                              counts={"train": 2, "val": 1})
    coco = json.loads((data / "annotations" / "train.json").read_text())
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        a["point"] = [x + w / 2, y + h / 2]
    (data / "points.json").write_text(json.dumps(coco))
    settings = {**TINY, "sam_weights": str(sam), "sam_instance_thr": 3}
    ctx = MethodContext(data / "points.json", None, data / "annotations" / "val.json", data,
                        tmp_path / "work", resolve_plan("smoke", settings, n_images=2), settings,
                        0, "cpu")
    notes = get_method("point2rbox_v3").train(ctx)
    # 3 points per image <= sam_instance_thr: every prior came from SAM, none from the watershed
    assert notes["mask_priors_sam"] > 0 and notes["mask_priors_watershed"] == 0
    assert notes["mask_source"].startswith("SAM (transformers")
    assert notes["sam_weights"] == str(sam)


def test_bag_ceiling_is_the_best_bag_iou(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import label_efficient as le

    data = write_tiny_dataset(tmp_path / "tiny", size=100, objects=2,
                              counts={"train": 1, "val": 1})
    coco = json.loads((data / "annotations" / "train.json").read_text())
    # 100² tile: bag unit 1 px, so P2BNet's smallest square proposal is 4×4 and the next 8×8
    coco["annotations"] = coco["annotations"][:2]
    coco["annotations"][0].update(bbox=[40.0, 40.0, 4.0, 4.0], point=[42.0, 42.0])
    coco["annotations"][1].update(bbox=[10.0, 10.0, 2.0, 2.0], point=[11.0, 11.0])
    (data / "pts.json").write_text(json.dumps(coco))
    md = le.bag_ceiling(data / "pts.json", data)
    p2b = next(line for line in md.splitlines() if line.startswith("| P2BNet"))
    # a 4×4 object matches a proposal exactly; a 2×2 one is at best 4/16 of the 4×4 proposal
    assert "| 2 | 0.625 / 0.625 / — / — / — | 1.000 | 0.500 | 4.0–4.0 |" in p2b
    assert "watershed" not in md
    # the watershed row scores Point2RBox-v3's priors on the tile's two points
    ws = le.bag_ceiling(data / "pts.json", data, watershed_images=1).splitlines()[-1]
    assert ws.startswith("| Point2RBox-v3 watershed priors (1 tiles) | 2 | ")
    assert "side ratio" in ws


def test_warm_starts_pair_each_row_with_a_baseline_of_its_detector() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import label_efficient as le

    manifest = list(load_methods().methods)
    (shot,) = le.FAMILIES["sparse"](manifest, ["shot-3"])
    got = {m.id: le.row_detector(m) for m in (*shot.baselines, *shot.methods)}
    assert got == {"27": "faster_rcnn", "retinanet-shot-3": "retinanet", "28": "retinanet",
                   "29": "retinanet"}
    (semi,) = le.FAMILIES["semi"](manifest, ["semi-1"])
    assert {le.row_detector(m) for m in (*semi.baselines, *semi.methods)} == {"faster_rcnn"}
    # the semi family's baseline sees Soft Teacher's / PseCo's labelled views
    assert semi.extra == {"augment": "flip_colour"} and shot.extra == {}
    (weak,) = le.FAMILIES["weak"](manifest, None)
    assert le.row_detector(next(m for m in weak.methods if m.id == "33")) is None


def test_a_build_given_with_data_is_tested_at_its_own_tile_size(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import label_efficient as le

    data = write_tiny_dataset(tmp_path / "tiny", size=64, objects=2,
                              counts={"train": 1, "test": 2})
    assert le.tile_size(data) == 64
    coco = json.loads((data / "annotations" / "test.json").read_text())
    coco["images"][0]["width"] = 32
    (data / "annotations" / "test.json").write_text(json.dumps(coco))
    assert le.tile_size(data) is None
