"""The torchvision adapter with real torchvision: data loading, tiny-object models, a few CPU
training steps, resume, prediction, learning, and what it reports when it cannot run."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmark"))
from bench_fixture import add_train_quirks, write_tiny_dataset

import adapters.torchvision_adapter as tv
import baselines.data as bdata
from adapters.base import Job
from baselines.detectors import DetectorSpec, build_detector
from tinyset_builder.errors import TinysetError

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_tiny_dataset(tmp_path_factory.mktemp("tv") / "tiny", size=128,
                              counts={"train": 4, "val": 1, "test": 2}, objects=5)
    # One ignore region and one degenerate (point-like) box in train, to check they are skipped.
    return add_train_quirks(root, [5.0, 5.0, 0.0, 0.0])


def job(data: Path, work: Path, model: str = "faster_rcnn", **extra) -> Job:
    return Job(method={"id": "2", "options": {"model": model}, "epochs": 3.0}, data_dir=data,
               train_json=data / "annotations" / "train.json",
               eval_json=data / "annotations" / "test.json", work_dir=work, schedule="smoke",
               extra={"smoke_size": 64, **extra})


def test_load_samples_converts_boxes_and_skips_ignore_regions(data: Path) -> None:
    samples, counts = bdata.load_samples(data / "annotations" / "train.json", data)
    coco = json.loads((data / "annotations" / "train.json").read_text())
    assert counts == {"images": 4, "boxes": len(coco["annotations"]) - 2, "crowd_skipped": 1,
                      "degenerate_skipped": 1}
    first = samples[0]
    assert first.path == data / "images" / "train" / coco["images"][0]["file_name"]
    ann = next(a for a in coco["annotations"][2:] if a["image_id"] == first.image_id)
    x, y, w, h = ann["bbox"]
    assert [x, y, x + w, y + h] in first.boxes.tolist()
    assert set(first.labels.tolist()) == {1}  # class-agnostic
    multi, _ = bdata.load_samples(data / "annotations" / "train.json", data,
                                  class_agnostic=False)
    assert set(np.concatenate([s.labels for s in multi]).tolist()) <= {1, 2}
    with pytest.raises(TinysetError, match=r"image 'nope\.png' not found"):
        bdata.image_path(data, "nope.png", "train")


def test_models_are_adapted_to_tiny_objects() -> None:
    frcnn = build_detector(DetectorSpec("faster_rcnn", 1, 1024))
    assert frcnn.rpn.anchor_generator.sizes[0] == (8,)
    assert frcnn.roi_heads.detections_per_img == 3000
    assert frcnn.transform.min_size == (1024,) and frcnn.transform.max_size == 1024
    retina = build_detector(DetectorSpec("retinanet", 1, 1024))
    assert len(retina.anchor_generator.sizes) == 6 and retina.anchor_generator.sizes[0][0] == 8
    assert retina.detections_per_img == 3000
    fcos = build_detector(DetectorSpec("fcos", 1, 128, backbone="resnet18", fpn_channels=64))
    # P2 is present: a 128 px input gives a 32x32 first level (stride 4).
    feats = fcos.backbone(torch.zeros(1, 3, 128, 128))
    assert next(iter(feats.values())).shape[-1] == 32 and len(feats) == 6
    assert {f.shape[1] for f in feats.values()} == {64}
    fcos.train()
    losses = fcos([torch.rand(3, 128, 128)], [{"boxes": torch.tensor([[10.0, 10.0, 18.0, 16.0]]),
                                             "labels": torch.tensor([1])}])
    assert all(torch.isfinite(v) for v in losses.values())
    with pytest.raises(TinysetError, match="unknown model 'yolo'"):
        build_detector(DetectorSpec("yolo", 1, 64))
    with pytest.raises(TinysetError, match="unknown backbone 'vgg'"):
        build_detector(DetectorSpec("fcos", 1, 64, backbone="vgg"))


def test_local_imagenet_weights_are_loaded_and_frozen_like_torchvision(tmp_path: Path) -> None:
    from torchvision.models import resnet18

    ref = resnet18(weights=None)
    weights = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), weights)
    model = build_detector(DetectorSpec("retinanet", 1, 128, backbone="resnet18",
                                        backbone_weights=str(weights)))
    body = model.backbone.body
    assert torch.equal(body.conv1.weight, ref.conv1.weight)
    assert not body.conv1.weight.requires_grad and body.layer2[0].conv1.weight.requires_grad
    bad = tmp_path / "bad.pth"
    torch.save({"conv1.weight": ref.conv1.weight}, bad)
    with pytest.raises(TinysetError, match="not a resnet18 state_dict"):
        build_detector(DetectorSpec("retinanet", 1, 128, backbone="resnet18",
                                    backbone_weights=str(bad)))


def test_unavailable_says_what_is_missing(data: Path, tmp_path: Path) -> None:
    adapter = tv.TorchvisionAdapter()
    assert adapter.unavailable(job(data, tmp_path)) is None
    assert "no model 'detr'" in adapter.unavailable(job(data, tmp_path, model="detr"))
    missing = adapter.unavailable(job(data, tmp_path, backbone_weights=str(tmp_path / "w.pth")))
    assert missing.startswith(f"backbone weights {tmp_path / 'w.pth'} not found")
    if not torch.cuda.is_available():
        gpu = replace(job(data, tmp_path), device="cuda")
        assert "CUDA is not available" in adapter.unavailable(gpu)


@pytest.mark.slow
def test_train_reuse_and_predict_on_cpu(data: Path, tmp_path: Path) -> None:
    adapter = tv.TorchvisionAdapter()
    j = job(data, tmp_path / "work", smoke_iters=3)
    notes = adapter.train(j)
    assert notes["iterations"] == 3 and notes["schedule"] == "smoke"
    assert notes["weights"].startswith("random init resnet50")
    assert notes["crowd_skipped"] == 1 and notes["degenerate_skipped"] == 1
    assert np.isfinite(notes["final_loss"])
    assert (j.work_dir / "model.pt").is_file() and not (j.work_dir / "checkpoint.pt").exists()
    assert "reused" in adapter.train(j)  # same configuration: not retrained

    dets = adapter.predict(j)
    test = json.loads((data / "annotations" / "test.json").read_text())
    assert [d.image_id for d in dets] == [img["id"] for img in test["images"]]
    assert sum(len(d.scores) for d in dets) > 0  # low score threshold: an untrained net answers
    for d in dets:
        assert len(d.scores) <= 3000
        if len(d.scores):
            assert d.xyxy.min() >= 0 and d.xyxy.max() <= 128  # original pixels
            assert set(d.labels.tolist()) == {1}  # the dataset's first category id
            assert set(d.to_coco()[0]) == {"image_id", "category_id", "bbox", "score"}


@pytest.mark.slow
def test_training_on_the_cpu_schedule_raises_ap50(tmp_path: Path) -> None:
    """A fixed number of real training steps makes the same network better than untrained."""
    from benchmark.evaluate import evaluate

    torch.set_num_threads(1)
    root = write_tiny_dataset(tmp_path / "learn", size=96, counts={"train": 6, "val": 1,
                                                                   "test": 3}, objects=8)

    def ap50(iterations: int) -> float:
        j = replace(job(root, tmp_path / f"w{iterations}"), schedule="cpu",
                    extra={"iterations": iterations, "crop": 96, "fpn_channels": 32,
                           "roi_batch": 64, "test_proposals": 300, "lr": 2e-3,
                           "test_size": 96})
        tv.TorchvisionAdapter().train(j)
        results = [e for d in tv.TorchvisionAdapter().predict(j) for e in d.to_coco()]
        path = tmp_path / f"dt{iterations}.json"
        path.write_text(json.dumps(results))
        return float(evaluate(root / "annotations" / "test.json", path)["AP50"])

    before, after = ap50(0), ap50(60)
    assert after > before + 0.1, (before, after)
