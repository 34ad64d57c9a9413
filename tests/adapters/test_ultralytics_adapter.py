"""The ultralytics adapter with real ultralytics: YOLO export (ignore regions masked), a real
YOLOv8-P2 training epoch on CPU, prediction, result parsing, offline settings, unavailable."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmark"))
from bench_fixture import add_train_quirks, write_tiny_dataset

from adapters import ultralytics_adapter as ua  # plainly: a broken module must fail
from adapters.base import Detections, Job
from tinyset_builder.errors import TinysetError
from tinyset_builder.imageio import read_image


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_tiny_dataset(tmp_path_factory.mktemp("ua") / "tiny", size=128,
                              counts={"train": 4, "val": 1, "test": 2}, objects=5)
    return add_train_quirks(root, [5.0, 5.0, 0.0, 0.0])  # an ignore region, a point-like box


def make_job(data: Path, work: Path, model: str = "yolov8n-p2.yaml", **extra) -> Job:
    return Job(method={"id": "yolov8-p2", "options": {"model": model}, "epochs": 3.0},
               data_dir=data, train_json=data / "annotations" / "train.json",
               eval_json=data / "annotations" / "test.json", work_dir=work, schedule="smoke",
               extra={"smoke_imgsz": 128, **extra})


def test_export_writes_yolo_labels_and_masks_ignore_regions(data: Path, tmp_path: Path) -> None:
    coco = json.loads((data / "annotations" / "train.json").read_text())
    counts = ua.export_split(data / "annotations" / "train.json", data, tmp_path, "train")
    assert counts == {"images": 4, "boxes": len(coco["annotations"]) - 2, "ignore_masked": 1,
                      "ignore_dropped": 0, "degenerate_skipped": 1}
    crowd = coco["annotations"][0]
    img = next(i for i in coco["images"] if i["id"] == crowd["image_id"])
    masked = tmp_path / "images" / "train" / f"{img['id']}.png"
    assert masked.is_file() and not masked.is_symlink()
    pixels = read_image(masked)
    x, y, w, h = (round(v) for v in crowd["bbox"])
    region = pixels[y + 1:y + h - 1, x + 1:x + w - 1].reshape(-1, 3)
    assert (region == region[0]).all()  # one fill colour
    original = read_image(data / "images" / "train" / img["file_name"])
    assert not np.array_equal(original, pixels)
    # every other image is a symlink to the dataset's file
    others = [i for i in coco["images"] if i["id"] != img["id"]]
    link = tmp_path / "images" / "train" / f"{others[0]['id']}.png"
    assert link.is_symlink() and link.resolve() == (data / "images" / "train" /
                                                    others[0]["file_name"]).resolve()
    # labels: normalised cx cy w h of the real boxes, class 0 (class-agnostic)
    ann = next(a for a in coco["annotations"][2:] if a["image_id"] == others[0]["id"])
    ax, ay, aw, ah = ann["bbox"]
    rows = [list(map(float, line.split())) for line in
            (tmp_path / "labels" / "train" / f"{others[0]['id']}.txt").read_text().splitlines()]
    expected = [0, (ax + aw / 2) / 128, (ay + ah / 2) / 128, aw / 128, ah / 128]
    assert any(np.allclose(r, expected, atol=1e-5) for r in rows)
    # "drop" keeps the pixels and counts the dropped region
    counts = ua.export_split(data / "annotations" / "train.json", data, tmp_path / "d", "train",
                             ignore_regions="drop")
    assert counts["ignore_dropped"] == 1 and counts["ignore_masked"] == 0
    with pytest.raises(TinysetError, match="ignore_regions must be mask or drop"):
        ua.export_split(data / "annotations" / "train.json", data, tmp_path / "e", "train",
                        ignore_regions="blur")


class FakeTensor:
    """Follows torch.Tensor's path to numpy: ``.detach().cpu().numpy()``."""

    def __init__(self, values: list) -> None:
        self.values = np.asarray(values)
        self.calls: list[str] = []

    def detach(self) -> FakeTensor:
        self.calls.append("detach")
        return self

    def cpu(self) -> FakeTensor:
        self.calls.append("cpu")
        return self

    def numpy(self) -> np.ndarray:
        self.calls.append("numpy")
        return self.values


def test_results_are_parsed_by_duck_typing() -> None:
    xyxy = FakeTensor([[1.0, 2.0, 5.0, 9.0], [10.0, 10.0, 14.0, 13.0]])
    result = SimpleNamespace(boxes=SimpleNamespace(xyxy=xyxy, conf=FakeTensor([0.2, 0.9]),
                                                   cls=FakeTensor([1.0, 0.0])))
    d = ua.detections_from_result(result, 7, np.asarray([3, 8]))
    assert isinstance(d, Detections) and d.image_id == 7
    assert d.scores.tolist() == pytest.approx([0.9, 0.2])  # sorted by score
    assert d.xyxy.tolist() == [[10.0, 10.0, 14.0, 13.0], [1.0, 2.0, 5.0, 9.0]]
    assert d.labels.tolist() == [3, 8]
    assert xyxy.calls == ["detach", "cpu", "numpy"]
    empty = SimpleNamespace(boxes=SimpleNamespace(xyxy=np.zeros((0, 4)), conf=np.zeros(0),
                                                  cls=np.zeros(0)))
    assert len(ua.detections_from_result(empty, 1, np.asarray([3])).scores) == 0
    assert len(ua.detections_from_result(SimpleNamespace(boxes=None), 1, np.asarray([3]))
               .scores) == 0
    with pytest.raises(TinysetError, match="class 2 outside the 1 trained"):
        ua.detections_from_result(SimpleNamespace(boxes=SimpleNamespace(
            xyxy=np.ones((1, 4)), conf=np.ones(1), cls=np.asarray([2.0]))), 1, np.asarray([3]))


def test_device_argument() -> None:
    assert [ua.device_arg(d) for d in ("cpu", "cuda", "cuda:1")] == ["cpu", "0", "1"]


def test_unavailable_reasons(data: Path, tmp_path: Path) -> None:
    adapter = ua.UltralyticsAdapter()
    assert adapter.unavailable(make_job(data, tmp_path)) is None
    assert "named .pt files would be downloaded" in adapter.unavailable(
        make_job(data, tmp_path, model="yolov8n.pt"))
    assert "weights /nope.pt not found" in adapter.unavailable(
        make_job(data, tmp_path, weights="/nope.pt"))
    import torch

    if not torch.cuda.is_available():
        job = replace(make_job(data, tmp_path), device="cuda:0")
        assert "CUDA is not available" in adapter.unavailable(job)


@pytest.mark.slow
def test_yolov8_p2_trains_on_cpu_and_predicts(data: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    config_dir = tmp_path / "yolo_config"
    if "ultralytics" not in sys.modules:  # the settings file goes where the first import says
        monkeypatch.setenv("YOLO_CONFIG_DIR", str(config_dir))
    monkeypatch.chdir(tmp_path)  # ultralytics must not write into the working directory
    monkeypatch.delenv("YOLO_OFFLINE", raising=False)  # the adapter sets it (restored after)
    adapter = ua.UltralyticsAdapter()
    job = make_job(data, tmp_path / "work")
    notes = adapter.train(job)
    assert notes["model"] == "yolov8n-p2.yaml" and notes["imgsz"] == 128
    assert notes["weights"].startswith("random init")
    assert notes["export"]["train"]["ignore_masked"] == 1
    assert notes["train_images"] == 4 and np.isfinite(notes["final_loss"])
    assert Path(notes["checkpoint"]).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["work", *(["yolo_config"] if config_dir.exists() else [])])
    from ultralytics import settings

    assert settings["sync"] is False and settings["wandb"] is False
    assert os.environ["YOLO_OFFLINE"] == "1"

    dets = adapter.predict(job)
    test = json.loads((data / "annotations" / "test.json").read_text())
    assert [d.image_id for d in dets] == [i["id"] for i in test["images"]]
    assert sum(len(d.scores) for d in dets) > 0  # low threshold: an untrained head still fires
    for d in dets:
        assert set(d.labels.tolist()) <= {1}  # the dataset's first category (class-agnostic)
        assert (d.xyxy >= -1).all() and (d.xyxy <= 129).all()
        assert (np.diff(d.scores) <= 0).all()
    # a second train() reuses the finished model instead of training again
    again = adapter.train(job)
    assert again["reused"] == notes["checkpoint"]


def test_importing_ultralytics_leaves_pil_image_open_alone(tmp_path: Path) -> None:
    # ultralytics patches PIL.Image.open process-wide (a HEIF fallback that pip-installs
    # pi-heif, ModuleNotFoundError offline); a corrupt image must stay a one-line SourceError.
    from PIL import Image

    from tinyset_builder.errors import SourceError
    from tinyset_builder.imageio import image_size

    ua.import_ultralytics(tmp_path)
    from ultralytics.utils import patches

    assert Image.open is patches._image_open
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image")
    with pytest.raises(SourceError, match="unreadable image"):
        image_size(garbage)


def test_cpu_schedule_buys_image_passes_from_counted_operations(data: Path, tmp_path: Path,
                                                                monkeypatch) -> None:
    from dataclasses import replace

    from baselines.schedules import REFERENCE_FLOPS_PER_CPU_SECOND

    monkeypatch.chdir(tmp_path)
    adapter = ua.UltralyticsAdapter()
    job = replace(make_job(data, tmp_path / "work"), schedule="cpu",
                  extra={"minutes": 0.05, "cpu_imgsz": 128})
    sched = adapter._schedule(job)
    flops = json.loads((tmp_path / "work" / "budget.json").read_text())["forward_flops"]
    passes = int(0.05 * 60 * REFERENCE_FLOPS_PER_CPU_SECOND // (3 * flops))
    assert sched["imgsz"] == 128 and sched["budget"] == "cpu 0.05 min"
    assert sched["epochs"] == max(1, passes // 4)  # 4 training images
    assert sched["fraction"] == round(min(1.0, passes / 4), 4)
    assert adapter._schedule(job) == sched  # counted once, kept in work_dir
