"""The DOTA-reading external recipes (PointOBB-v2, PointOBB-v3, Point2RBox-v3; Table I rows 34,
35, 37) against fake checkouts: availability, the DOTA export of a job, the rendered MMRotate
configs (parsed by mmengine), and rotated results read back as horizontal boxes."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmark"))
from bench_fixture import write_tiny_dataset

from adapters.base import Job
from adapters.dota_export import (
    dota_stem,
    enclosing_xywh,
    rbox_corners,
    read_dota,
    rotated_to_coco_results,
)
from adapters.external import ExternalAdapter, load_recipe
from tinyset_builder.errors import TinysetError

ROWS = ("pointobb-v2", "pointobb-v3", "point2rbox-v3")
# Minimal stand-ins of the authors' base configs: only the keys TinySet's overrides touch,
# with the authors' shapes (ReDet's two-head list, Point2RBox-v3's per-class settings).
_MMROTATE03 = ("runner = dict(type='EpochBasedRunner', max_epochs=12)\n"
               "lr_config = dict(policy='step', step=[8, 11])\n"
               "data = dict(samples_per_gpu=2, test=dict(samples_per_gpu=4))\n")
BASES = {
    "configs/pointobbv2/train_cpm_dotav10.py": _MMROTATE03 + (
        "model = dict(type='RotatedFCOS', bbox_head=dict(type='CPMHead', num_classes=15),\n"
        "             train_cfg=dict(store_dir='x', thresh1=6), test_cfg=dict(store_dir='x'))\n"),
    "configs/pointobbv2/generate_pseudo_label_dotav10.py": _MMROTATE03 + (
        "model = dict(type='RotatedFCOS', bbox_head=dict(type='PseudoLabelHead', num_classes=15),"
        "\n             train_cfg=dict(store_dir='x', store_ann_dir='y', thresh3=[0.1] * 15),\n"
        "             test_cfg=dict(store_dir='x'))\noptimizer = dict(lr=0.0)\n"),
    "configs/pointobbv2/redet_dotav10.py": _MMROTATE03 + (
        "model = dict(type='ReDet', roi_head=dict(bbox_head=[dict(num_classes=15),\n"
        "             dict(num_classes=15)]), test_cfg=dict(rpn=dict(max_per_img=2000),\n"
        "             rcnn=dict(max_per_img=2000)))\n"),
    "PointOBB/configs2/pointobb/pointobbv3_r50_fpn_2x_dota_two_stage.py": (
        "model = dict(type='PointOBB', roi_head=dict(type='PointOBBHead',\n"
        "             rotation_agnostic_classes=[1, 9, 11], bbox_head=dict(num_classes=15)),\n"
        "             train_cfg=dict(burn_in_steps1=16000, burn_in_steps2=22000))\n"
        "runner = dict(type='EpochBasedRunner', max_epochs=24)\n"
        "lr_config = dict(policy='step', step=[16, 22])\n"
        "evaluation = dict(interval=1, metric='bbox', save_result_file='x.json')\n"),
    "configs/point2rbox_v3/point2rbox_v3-1x-dotav1-0.py": (
        "model = dict(type='Point2RBoxV3', copy_paste_start_epoch=6,\n"
        "             bbox_head=dict(type='Point2RBoxV3Head', num_classes=15, square_cls=[1, 9],\n"
        "                            post_process={11: 1.2}, voronoi_thres=dict(\n"
        "                                default=[0.994, 0.005], override=(([2, 11], [0.9, 0.6]),)"
        ")),\n             test_cfg=dict(max_per_img=2000))\n"
        "train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=12)\n"
        "train_dataloader = dict(batch_size=2, dataset=dict(type='DOTADataset',\n"
        "    data_root='data/split_ss_dota/', ann_file='trainval/annfiles/'))\n"),
}
DETECTOR_BASES = {"configs/oriented_rcnn/oriented_rcnn_r50_fpn_1x_dota_le90.py": _MMROTATE03 + (
    "model = dict(type='OrientedRCNN', roi_head=dict(bbox_head=dict(num_classes=15)),\n"
    "             test_cfg=dict(rpn=dict(max_per_img=2000), rcnn=dict(max_per_img=2000)))\n")}

# A stand-in tools/test.py of both MMRotate generations: reads the rendered config, answers
# every labelled object of the evaluation labelTxt with its box as a rectangle turned by 90
# degrees (same enclosing horizontal box), in the format the real repository writes.
FAKE_TEST = '''
import json, math, sys
from pathlib import Path
from mmengine import Config

cfg = Config.fromfile(sys.argv[1])

def boxes(label_dir):
    for f in sorted(Path(label_dir).glob("*.txt")):
        for line in f.read_text().splitlines():
            p = line.split()
            if len(p) == 10 and p[9] != "2":
                xs, ys = [float(v) for v in p[0:8:2]], [float(v) for v in p[1:8:2]]
                yield f.stem, min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)

if "--format-only" in sys.argv:  # MMRotate 0.3: DOTA submission folder
    out = Path(next(a.split("=", 1)[1] for a in sys.argv if a.startswith("submission_dir=")))
    out.mkdir(parents=True)
    with open(out / "Task1_object.txt", "w") as f:
        for stem, x, y, w, h in boxes(cfg.data.test.ann_file):
            f.write(f"{stem} 0.9 {x + w} {y} {x + w} {y + h} {x} {y + h} {x} {y}\\n")
else:  # MMRotate 1.x: rotated boxes [cx, cy, w, h, angle], 0-based labels
    res = [{"image_id": stem, "bbox": [x + w / 2, y + h / 2, h, w, math.pi / 2],
            "score": 0.9, "category_id": 0}
           for stem, x, y, w, h in boxes(cfg.test_dataloader.dataset.ann_file)]
    Path(cfg.test_evaluator.outfile_prefix + ".bbox.json").write_text(json.dumps(res))
'''


def _checkout(root: Path, bases: dict[str, str]) -> Path:
    for rel, text in bases.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "tools").mkdir(exist_ok=True)
    (root / "tools" / "test.py").write_text(FAKE_TEST)
    return root


@pytest.fixture(scope="module")
def checkouts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("checkouts")
    return _checkout(root / "authors", BASES), _checkout(root / "mmrotate", DETECTOR_BASES)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A built dataset whose train file is a points variant: points off the box centres."""
    root = write_tiny_dataset(tmp_path_factory.mktemp("dota_ext") / "tiny", size=128,
                              counts={"train": 3, "val": 1, "test": 2}, objects=5)
    path = root / "annotations" / "train.json"
    coco = json.loads(path.read_text())
    for k, a in enumerate(coco["annotations"]):
        x, y, w, h = a["bbox"]
        a["point"] = [x + w / 2 + (k % 3) - 1, y + h / 2 + 0.5 * (k % 2)]
    coco["annotations"][0]["iscrowd"] = 1
    (root / "annotations" / "train_points.json").write_text(json.dumps(coco))
    return root


def make_job(data: Path, work: Path, recipe: str, checkouts: tuple[Path, Path], **extra) -> Job:
    authors, mmrotate = checkouts
    return Job(method={"id": "34", "adapter": "external", "options": {"recipe": recipe},
                       "epochs": 3.0}, data_dir=data,
               train_json=data / "annotations" / "train_points.json",
               eval_json=data / "annotations" / "test.json", work_dir=work,
               env_python=sys.executable,
               extra={"repo": str(authors), "detector_repo": str(mmrotate),
                      "manual_step_done": True, **extra})


def test_fake_checkouts_make_the_rows_available(data: Path, tmp_path: Path,
                                                checkouts: tuple[Path, Path],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = ExternalAdapter()
    for name in ROWS:
        assert load_recipe(name)["data"] == "dota"
        assert adapter.unavailable(make_job(data, tmp_path, name, checkouts)) is None, name
    # what is still asked for: ReDet's weights, the detector checkout, the authors' configs
    assert "re_resnet50_c8_batch256" in adapter.unavailable(
        make_job(data, tmp_path, "pointobb-v2", checkouts, manual_step_done=False))
    monkeypatch.delenv("TINYSET_REPO_MMROTATE", raising=False)
    assert "TINYSET_REPO_MMROTATE" in adapter.unavailable(
        make_job(data, tmp_path, "pointobb-v3", checkouts, detector_repo=""))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "point2rbox_v3-1x-dotav1-0.py not found" in adapter.unavailable(
        make_job(data, tmp_path, "point2rbox-v3", (empty, empty)))


def test_prepared_job_writes_dota_labels_of_the_points(data: Path, tmp_path: Path,
                                                       checkouts: tuple[Path, Path]) -> None:
    prep = ExternalAdapter()._prepare(make_job(data, tmp_path, "pointobb-v2", checkouts))
    ph = prep["placeholders"]
    assert ph["train_dota"] == f"{tmp_path.resolve()}/data/dota/train/"
    for split, src, centred in (("train", "train_points.json", True), ("eval", "test.json", False)):
        coco = json.loads((data / "annotations" / src).read_text())
        stems = {i["id"]: dota_stem(i["file_name"], for_mmrotate=True) for i in coco["images"]}
        back = read_dota(Path(ph[f"{split}_dota"]) / "labelTxt")
        assert set(back) == set(stems.values())
        assert all("__" not in s and (Path(ph[f"{split}_dota"]) / "images" / f"{s}.png").exists()
                   for s in back)
        seen = {s: 0 for s in back}
        for a in coco["annotations"]:  # annotation order is kept within an image
            stem = stems[a["image_id"]]
            poly, cls, difficulty = back[stem][seen[stem]]
            seen[stem] += 1
            x, y, w, h = a["bbox"]
            if centred and not a.get("iscrowd"):  # the box moved to have its centre on the point
                x, y = a["point"][0] - w / 2, a["point"][1] - h / 2
            want = [x, y, x + w, y, x + w, y + h, x, y + h]
            np.testing.assert_allclose(poly, want, atol=0.006)
            assert cls == "object" and difficulty == (2 if a.get("iscrowd") else 0)
    assert any(a.get("iscrowd") for a in json.loads(
        (data / "annotations" / "train_points.json").read_text())["annotations"])


def test_rendered_configs_parse_with_the_overrides(data: Path, tmp_path: Path,
                                                   checkouts: tuple[Path, Path]) -> None:
    from mmengine import Config

    adapter = ExternalAdapter()
    v2 = adapter._prepare(make_job(data, tmp_path / "v2", "pointobb-v2", checkouts))
    cpm, pseudo, redet = (Config.fromfile(v2["configs"][k]) for k in ("cpm", "pseudo", "main"))
    train_dota, eval_dota = v2["placeholders"]["train_dota"], v2["placeholders"]["eval_dota"]
    for cfg in (cpm, pseudo, redet):
        assert cfg.classes == ("object",) and cfg.data.train.type == "DOTADataset"
        assert cfg.data.test.ann_file == eval_dota + "labelTxt/"
        assert cfg.data.test.img_prefix == eval_dota + "images/"
        assert cfg.data.test.samples_per_gpu == 4  # the base's, kept
        assert cfg.data.train.difficulty == 1 and cfg.data.test.filter_empty_gt is False
    assert cpm.data.train.ann_file == train_dota + "labelTxt/"
    assert cpm.model.bbox_head == {"type": "CPMHead", "num_classes": 1}
    assert cpm.model.train_cfg.thresh1 == 6 and cpm.runner.max_epochs == 3
    assert cpm.runner.type == "EpochBasedRunner" and cpm.lr_config.step == [2, 3]
    assert cpm.model.train_cfg.store_dir == f"{tmp_path.resolve()}/v2/cpm_vis"
    assert pseudo.runner.max_epochs == 4  # resumes the CPM's epoch 3 for one pass at lr 0
    assert pseudo.model.train_cfg.thresh3 == [0.1] and pseudo.optimizer.lr == 0.0
    assert pseudo.model.train_cfg.store_ann_dir == f"{tmp_path.resolve()}/v2/pseudo_labels/"
    assert redet.data.train.ann_file == pseudo.model.train_cfg.store_ann_dir
    assert redet.data.train.img_prefix == train_dota + "images/"
    assert redet.model.test_cfg.rcnn.max_per_img == 3000
    assert [h.num_classes for h in redet.model.roi_head.bbox_head] == [15, 15]  # CLI sets them
    cmds = " ".join(" ".join(c) for c in v2["recipe"]["train"])
    assert "model.roi_head.bbox_head.1.num_classes={num_classes}" in cmds

    v3 = adapter._prepare(make_job(data, tmp_path / "v3", "pointobb-v3", checkouts))
    pointobb, detector = Config.fromfile(v3["configs"]["pointobb"]), \
        Config.fromfile(v3["configs"]["main"])
    assert pointobb.data.train.type == "CocoFmtObbDataset"
    assert pointobb.data.val.ann_file == pointobb.data.train.ann_file == str(v3["train"].path)
    exported = json.loads(v3["train"].path.read_text())
    assert all("true_bbox" in a for a in exported["annotations"] if not a["iscrowd"])
    assert pointobb.model.roi_head.rotation_agnostic_classes == []
    assert pointobb.model.roi_head.bbox_head.num_classes == 1
    iters = math.ceil(3 * 3 / 2)  # 3 epochs of 3 images, batch 2
    assert pointobb.model.train_cfg.burn_in_steps1 == int(0.17 * iters)
    assert pointobb.evaluation.save_result_file == f"{tmp_path.resolve()}/v3/pseudo_obb_result.json"
    assert detector.model.type == "OrientedRCNN"  # from the detector checkout
    assert detector.model.roi_head.bbox_head.num_classes == 1
    assert detector.data.train.ann_file == f"{tmp_path.resolve()}/v3/pseudo_dota/labelTxt/"
    steps = [" ".join(c) for c in v3["recipe"]["train"]]
    assert "-m adapters.dota_export" in steps[2] and "--rotated --mmrotate" in steps[2]

    p2r = adapter._prepare(make_job(data, tmp_path / "p2r", "point2rbox-v3", checkouts))
    cfg = Config.fromfile(p2r["configs"]["main"])
    head = cfg.model.bbox_head
    assert head.num_classes == 1 and head.square_cls == [] and head.post_process == {}
    assert head.voronoi_thres == {"default": [0.994, 0.005], "override": []}
    assert cfg.model.copy_paste_start_epoch == 2 and head.edge_loss_start_epoch == 2
    assert cfg.model.test_cfg.max_per_img == 3000 and cfg.train_cfg.max_epochs == 3
    assert cfg.metainfo.classes == ("object",)
    ds = cfg.train_dataloader.dataset
    assert ds.ann_file == p2r["placeholders"]["train_dota"] + "labelTxt/"
    assert ds.img_suffix == "png" and ds.diff_thr == 1 and ds.data_root == ""
    assert cfg.test_evaluator.outfile_prefix == p2r["placeholders"]["results_prefix"]
    assert cfg.test_evaluator.merge_patches is False
    assert p2r["placeholders"]["checkpoint"].endswith("/p2r/epoch_3.pth")


def test_rotated_box_to_enclosing_horizontal_box() -> None:
    # a 4 x 2 rectangle centred on (10, 20) turned by 90 degrees: corners (11, 18) (11, 22)
    # (9, 22) (9, 18), enclosed by x 9..11, y 18..22
    corners = rbox_corners(10, 20, 4, 2, math.pi / 2)
    np.testing.assert_allclose(sorted(corners), [(9, 18), (9, 22), (11, 18), (11, 22)],
                               atol=1e-9)
    np.testing.assert_allclose(enclosing_xywh([v for c in corners for v in c]), [9, 18, 2, 4],
                               atol=1e-9)
    # a square of side 2*sqrt(2) turned by 45 degrees is the diamond (8,20) (10,18) (12,20)
    # (10,22): enclosed by [8, 18, 4, 4]
    diamond = rbox_corners(10, 20, 2 * math.sqrt(2), 2 * math.sqrt(2), math.pi / 4)
    np.testing.assert_allclose(sorted(diamond), [(8, 20), (10, 18), (10, 22), (12, 20)],
                               atol=1e-9)
    assert enclosing_xywh([3, 1, 7, 2, 6, 8, 2, 5]) == [2, 1, 5, 7]


def test_rotated_results_files_become_coco_results(tmp_path: Path) -> None:
    coco = {"images": [{"id": 7, "file_name": "a__x0_y0.png"}, {"id": 9, "file_name": "b.jpg"}]}
    (tmp_path / "eval.json").write_text(json.dumps(coco))
    sub = tmp_path / "submission"
    sub.mkdir()
    (sub / "Task1_object.txt").write_text("a--x0_y0 0.8 3 1 7 2 6 8 2 5\n\nb 0.5 0 0 1 0 1 1 0 1\n")
    got = rotated_to_coco_results(sub, tmp_path / "eval.json", {"object": 1})
    assert got == [{"image_id": 7, "category_id": 1, "bbox": [2.0, 1.0, 5.0, 7.0], "score": 0.8},
                   {"image_id": 9, "category_id": 1, "bbox": [0.0, 0.0, 1.0, 1.0], "score": 0.5}]
    rotated = tmp_path / "results.bbox.json"
    rotated.write_text(json.dumps([{"image_id": "b", "bbox": [10, 20, 4, 2, math.pi / 2],
                                    "score": 0.7, "category_id": 1}]))
    got = rotated_to_coco_results(rotated, tmp_path / "eval.json", {"car": 3, "person": 5})
    assert got == [{"image_id": 9, "category_id": 5, "bbox": [9.0, 18.0, 2.0, 4.0],
                    "score": 0.7}]
    (sub / "Task1_object.txt").write_text("c 0.8 3 1 7 2 6 8 2 5\n")
    with pytest.raises(TinysetError, match="image 'c' is not in"):
        rotated_to_coco_results(sub, tmp_path / "eval.json", {"object": 1})


@pytest.mark.parametrize("name", ["pointobb-v2", "point2rbox-v3"])
def test_predict_reads_rotated_results_as_horizontal_boxes(
        name: str, data: Path, tmp_path: Path, checkouts: tuple[Path, Path]) -> None:
    """The stand-in answers each evaluation object with its box turned by 90 degrees (DOTA
    submission for MMRotate 0.3, rotated JSON for 1.x): the adapter returns the boxes."""
    dets = ExternalAdapter().predict(make_job(data, tmp_path, name, checkouts))
    test = json.loads((data / "annotations" / "test.json").read_text())
    assert [d.image_id for d in dets] == [i["id"] for i in test["images"]]
    for d in dets:
        want = sorted([a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                       a["bbox"][1] + a["bbox"][3]] for a in test["annotations"]
                      if a["image_id"] == d.image_id and not a.get("iscrowd"))
        np.testing.assert_allclose(sorted(d.xyxy.tolist()), want, atol=0.01)
        assert set(d.labels.tolist()) <= {test["categories"][0]["id"]}
    rotated = tmp_path / ("submission" if name == "pointobb-v2" else "results.bbox.json")
    assert rotated.exists() and (tmp_path / "results.hbox.bbox.json").is_file()


def test_rotated_pseudo_labels_export_as_dota(data: Path, tmp_path: Path) -> None:
    """PointOBB-v3's pseudo-label file ([cx, cy, w, h, angle] boxes) through the command line
    its recipe runs: rotated corners, difficulty 1 under score 0.05, unboxed points skipped."""
    from adapters.dota_export import main

    coco = json.loads((data / "annotations" / "train.json").read_text())
    image = coco["images"][0]
    coco["images"] = [image]
    coco["annotations"] = [
        {"id": 1, "image_id": image["id"], "category_id": 2, "bbox": [10, 20, 4, 2, math.pi / 2],
         "ann_weight": 0.9},
        {"id": 2, "image_id": image["id"], "category_id": 1, "bbox": [30, 30, 6, 6, 0.0],
         "ann_weight": 0.01},
        {"id": 3, "image_id": image["id"], "category_id": 1, "bbox": [5, 5, 1, 1]},
        {"id": 4, "image_id": image["id"], "category_id": 1, "bbox": [50, 50, 8, 8],
         "iscrowd": 1}]
    (tmp_path / "pseudo.json").write_text(json.dumps(coco))
    assert main([str(tmp_path / "pseudo.json"), str(data), str(tmp_path / "out"), "--rotated",
                 "--mmrotate"]) == 0
    rows = read_dota(tmp_path / "out" / "labelTxt")[dota_stem(image["file_name"],
                                                               for_mmrotate=True)]
    assert [(cls, diff) for _, cls, diff in rows] == [("object", 0), ("object", 1),
                                                      ("object", 2)]
    np.testing.assert_allclose(rows[0][0], [11, 18, 11, 22, 9, 22, 9, 18], atol=0.006)
    np.testing.assert_allclose(rows[1][0], [27, 27, 33, 27, 33, 33, 27, 33], atol=0.006)
    np.testing.assert_allclose(rows[2][0], [50, 50, 58, 50, 58, 58, 50, 58], atol=0.006)
