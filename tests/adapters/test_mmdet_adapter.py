"""The mmdet adapter: generated MMDetection 3.x configs load in mmengine.Config (all four
models), the subprocess contract against a stand-in mmdet environment (mmdet's real
tools/train.py / tools/test.py CLI and CocoMetric outfile), and the unavailable messages."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmark"))
from bench_fixture import write_tiny_dataset

from adapters.base import Job
from adapters.mmdet_adapter import MODELS, MMDetAdapter, build_config, write_config
from tinyset_builder.errors import TinysetError

Config = pytest.importorskip("mmengine").Config
HERE = Path(__file__).resolve().parent
FAKE_SITE = HERE / "fake_mmdet_env" / "site"
FAKE_REPO = HERE / "fake_research_repo"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_tiny_dataset(tmp_path_factory.mktemp("mmdet") / "tiny", size=128,
                              counts={"train": 6, "val": 1, "test": 3}, objects=6)
    coco = json.loads((root / "annotations" / "train.json").read_text())
    labeled_ids = {i["id"] for i in coco["images"][:2]}
    variant = root / "variants" / "semi-5"
    variant.mkdir(parents=True)
    for name, keep in (("train_labeled.json", True), ("train_unlabeled.json", False)):
        part = dict(coco, images=[i for i in coco["images"] if (i["id"] in labeled_ids) == keep],
                    annotations=[a for a in coco["annotations"]
                                 if (a["image_id"] in labeled_ids) == keep])
        (variant / name).write_text(json.dumps(part))
    return root


@pytest.fixture
def env_python(tmp_path: Path) -> str:
    """An interpreter whose PYTHONPATH holds the stand-in mmdet package."""
    script = tmp_path / "envbin" / "python"
    script.parent.mkdir()
    script.write_text(f'#!/bin/sh\nexport PYTHONPATH="{FAKE_SITE}:{FAKE_REPO}'
                      f'${{PYTHONPATH:+:$PYTHONPATH}}"\nexec "{sys.executable}" "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def make_job(data: Path, work: Path, model: str = "faster_rcnn", env: str | None = None,
             semi: bool = False, **extra) -> Job:
    variant = data / "variants" / "semi-5"
    return Job(method={"id": "16", "adapter": "mmdet", "options": {"model": model},
                       "epochs": 3.0}, data_dir=data,
               train_json=variant / "train_labeled.json" if semi else
               data / "annotations" / "train.json",
               unlabeled_json=variant / "train_unlabeled.json" if semi else None,
               eval_json=data / "annotations" / "test.json", work_dir=work, env_python=env,
               extra=extra)


@pytest.mark.parametrize("model", MODELS)
def test_generated_configs_load_in_mmengine(model: str, tmp_path: Path) -> None:
    cfg = build_config(model, classes=("object",), images_root="/data/images/",
                       train_ann="/w/train.json", eval_ann="/w/eval.json", work_dir="/w",
                       epochs=3, size=1024, seed=7, unlabeled_ann="/w/unlabeled.json",
                       n_train_images=50)
    loaded = Config.fromfile(str(write_config(cfg, tmp_path / f"{model}.py")))
    net = loaded.model.detector if model == "soft_teacher" else loaded.model
    head = net.roi_head.bbox_head if "roi_head" in net else net.bbox_head
    assert head.num_classes == 1
    test_cfg = net.test_cfg.rcnn if "rcnn" in net.test_cfg else net.test_cfg
    assert test_cfg.max_per_img == 3000
    assert loaded.test_evaluator.format_only and loaded.test_evaluator.outfile_prefix == \
        "/w/results"
    assert loaded.test_dataloader.dataset.ann_file == "/w/eval.json"
    assert loaded.test_dataloader.dataset.pipeline[1].scale == (1024, 1024)
    assert loaded.randomness.seed == 7 and loaded.default_scope == "mmdet"
    if model == "soft_teacher":
        assert loaded.model.type == "SoftTeacher"
        sources = loaded.train_dataloader.dataset.datasets
        assert [s.ann_file for s in sources] == ["/w/train.json", "/w/unlabeled.json"]
        assert loaded.train_dataloader.sampler.source_ratio == [1, 4]
        assert loaded.train_cfg.type == "IterBasedTrainLoop"
        assert loaded.train_cfg.max_iters == 30  # 3 epochs x 50 images / batch 5
        assert loaded.model.semi_train_cfg.unsup_weight == 4.0
    else:
        assert loaded.train_cfg.max_epochs == 3
        assert loaded.train_dataloader.dataset.pipeline[2].scale == (1024, 1024)
        first_stride = {"faster_rcnn": lambda: net.rpn_head.anchor_generator.strides[0],
                        "retinanet": lambda: net.bbox_head.anchor_generator.strides[0],
                        "fcos": lambda: net.bbox_head.strides[0]}[model]()
        assert first_stride == 4  # a P2 level for tiny objects
    with pytest.raises(TinysetError, match="unknown model 'yolo'"):
        build_config("yolo", classes=("o",), images_root="", train_ann="", eval_ann="",
                     work_dir="", epochs=1, size=64, seed=0)


def test_unavailable_messages(data: Path, tmp_path: Path, env_python: str,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TINYSET_MMDET_PYTHON", raising=False)
    adapter = MMDetAdapter()
    msg = adapter.unavailable(make_job(data, tmp_path))
    assert "--env-python or TINYSET_MMDET_PYTHON" in msg and "mim install" in msg
    monkeypatch.setenv("TINYSET_MMDET_PYTHON", env_python)
    assert adapter.unavailable(make_job(data, tmp_path)) is None
    monkeypatch.delenv("TINYSET_MMDET_PYTHON")
    msg = adapter.unavailable(make_job(data, tmp_path, env=sys.executable))
    assert f"{sys.executable} cannot import mmdet" in msg and "mmdet==3.3.0" in msg
    assert "not found or not executable" in adapter.unavailable(
        make_job(data, tmp_path, env="/no/such/python"))
    assert "no model 'yolo'" in adapter.unavailable(make_job(data, tmp_path, model="yolo"))
    assert adapter.unavailable(make_job(data, tmp_path, env=env_python)) is None
    assert "needs a semi setting" in adapter.unavailable(
        make_job(data, tmp_path, model="soft_teacher", env=env_python))
    assert "tools not found" in adapter.unavailable(
        make_job(data, tmp_path, env=env_python, mmdet_tools=str(tmp_path)))


def _found(dets, data: Path) -> tuple[int, int]:
    test = json.loads((data / "annotations" / "test.json").read_text())
    gt: dict[int, list[np.ndarray]] = {}
    for a in test["annotations"]:
        x, y, w, h = a["bbox"]
        gt.setdefault(a["image_id"], []).append(np.array([x, y, x + w, y + h]))
    found = 0
    for d in dets:
        for g in gt[d.image_id]:
            x0 = np.maximum(d.xyxy[:, 0], g[0])
            y0 = np.maximum(d.xyxy[:, 1], g[1])
            x1 = np.minimum(d.xyxy[:, 2], g[2])
            y1 = np.minimum(d.xyxy[:, 3], g[3])
            inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
            union = ((d.xyxy[:, 2] - d.xyxy[:, 0]) * (d.xyxy[:, 3] - d.xyxy[:, 1])
                     + (g[2] - g[0]) * (g[3] - g[1]) - inter)
            found += bool((inter / union >= 0.3).any())
    return found, len(test["annotations"])


@pytest.mark.slow
@pytest.mark.parametrize(("model", "semi"), [("faster_rcnn", False), ("soft_teacher", True)])
def test_subprocess_contract_with_stand_in_env(model: str, semi: bool, data: Path,
                                               tmp_path: Path, env_python: str) -> None:
    adapter = MMDetAdapter()
    job = make_job(data, tmp_path / "work", model=model, env=env_python, semi=semi)
    assert adapter.unavailable(job) is None
    notes = adapter.train(job)
    assert notes["mmdet"] == "3.3.0" and notes["epochs"] == 3
    assert notes["weights"].startswith("random init")
    assert notes["command"].split()[1].endswith(os.path.join(".mim", "tools", "train.py"))
    ckpt = Path(notes["checkpoint"])
    # SoftTeacher: 3 passes over 2 labeled + 4 unlabeled images at batch 5 = 4 iterations
    assert ckpt.name == ("iter_4.pth" if semi else "epoch_3.pth")
    assert ckpt.is_file()
    dets = adapter.predict(job)
    assert [d.image_id for d in dets] == [i["id"] for i in json.loads(
        (data / "annotations" / "test.json").read_text())["images"]]
    found, total = _found(dets, data)
    assert found >= total // 2
    assert adapter.train(job)["reused"] == notes["checkpoint"]
