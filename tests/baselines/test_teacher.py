"""The teacher–student engine: EMA teacher, views (v2 boxes), samplers, filters, data."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmark"))
from bench_fixture import write_tiny_dataset

from baselines.augment import AffineParams, affine_boxes, hflip, map_boxes, strong_view
from baselines.data import Sample
from baselines.teacher import (
    draw,
    ema_momentum,
    ema_teacher,
    filter_pseudo,
    load_data,
    scaled_cap,
)

torch = pytest.importorskip("torch")


def test_ema_momentum_follows_the_mean_teacher_hook() -> None:
    assert ema_momentum(0, 0.999) == 0.0  # the first update copies the student
    assert ema_momentum(1, 0.999) == pytest.approx(0.5)
    assert ema_momentum(9, 0.999) == pytest.approx(0.9)
    assert ema_momentum(10_000, 0.999) == 0.999


def test_the_cpu_schedule_scales_the_momentum_cap_to_the_run() -> None:
    # 0.999 averages over 1/(1 - 0.999) = 1,000 of the authors' 180k iterations; a run of T steps
    # keeps that fraction: a window of 1000 * T / 180k steps, cap 1 - 1/window (window >= 1).
    assert scaled_cap(0.999, 180_000, 180_000) == pytest.approx(0.999)
    assert scaled_cap(0.999, 18_000, 180_000) == pytest.approx(0.99)      # window 100
    assert scaled_cap(0.999, 720, 180_000) == pytest.approx(0.75)         # window 4
    assert scaled_cap(0.999, 100, 180_000) == 0.0                         # window < 1
    student = torch.nn.Linear(1, 1, bias=False)
    ema = ema_teacher(student, momentum=0.999, reference_iters=180_000)
    hook = ema.after_step(student)
    used = []
    for it in range(6):
        with torch.no_grad():
            student.weight.fill_(float(it))
        used.append(ema.update(student, 720) if it else hook(it, 720))
    # min(0.75, 1 - 1/(t + 1)): 0, 0.5, 0.667, 0.75, then the cap
    assert used == pytest.approx([0.0, 0.5, 2 / 3, 0.75, 0.75, 0.75])
    assert float(ema.cap) == pytest.approx(0.75)
    expected = 0.0
    for it, m in enumerate(used):
        expected = m * expected + (1 - m) * it
    assert float(ema.model.weight) == pytest.approx(expected)
    unscaled = ema_teacher(student, momentum=0.999)         # paper/smoke: the authors' cap
    unscaled.update(student, 720)
    assert float(unscaled.cap) == pytest.approx(0.999)


def test_ema_update_averages_parameters_and_float_buffers() -> None:
    student = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.BatchNorm1d(1))
    ema = ema_teacher(student, momentum=0.9)
    with torch.no_grad():
        student[0].weight.fill_(1.0)
        student[1].running_mean.fill_(4.0)
        student[1].num_batches_tracked.fill_(7)
    ema.update(student)  # update 0: momentum 0, a copy
    assert torch.equal(ema.model[0].weight, student[0].weight)
    t0 = ema.model[0].weight.clone()
    with torch.no_grad():
        student[0].weight.fill_(3.0)
        student[1].running_mean.fill_(2.0)
    m = ema.update(student)  # update 1: min(0.9, 1 - 1/2) = 0.5
    assert m == 0.5
    assert torch.allclose(ema.model[0].weight, 0.5 * t0 + 0.5 * 3.0)
    assert torch.allclose(ema.model[1].running_mean, torch.tensor([0.5 * 4.0 + 0.5 * 2.0]))
    assert int(ema.model[1].num_batches_tracked) == 7 and int(ema.updates) == 2
    assert not any(p.requires_grad for p in ema.model.parameters())
    ema.train()
    assert not ema.model.training  # the teacher always predicts in eval mode
    restored = ema_teacher(student)
    restored.load_state_dict(ema.state_dict())  # what fit's tracked= checkpoints carry
    assert int(restored.updates) == 2 and torch.equal(restored.model[0].weight,
                                                      ema.model[0].weight)


def test_v2_affine_boxes_by_hand_and_the_inverse_map() -> None:
    params = AffineParams(translate=(10.0, 0.0), scale=1.5)  # about the centre (50, 50)
    boxes = torch.tensor([[40.0, 40.0, 50.0, 60.0], [10.0, 10.0, 20.0, 30.0]])
    out, kept = affine_boxes(boxes, params, 100)
    # x' = 1.5(x - 50) + 60, y' = 1.5(y - 50) + 50, clamped to the canvas
    assert kept.tolist() == [True, True]
    assert torch.allclose(out, torch.tensor([[45.0, 35.0, 60.0, 65.0], [0.0, 0.0, 15.0, 20.0]]))
    assert torch.allclose(map_boxes(boxes, params.matrix(100), 100), out)  # same matrix as v2
    back = map_boxes(out[:1], np.linalg.inv(params.matrix(100)), 100)
    assert torch.allclose(back, boxes[:1], atol=1e-4)
    gone, kept = affine_boxes(torch.tensor([[0.0, 0.0, 4.0, 4.0]]),
                              AffineParams(translate=(-60.0, 0.0)), 100)
    assert kept.tolist() == [False] and len(gone) == 0  # pushed off the canvas


def test_rotated_views_agree_with_v2_and_hflip_by_hand() -> None:
    params = AffineParams(angle=20.0, scale=0.8, shear=(10.0, -5.0))
    boxes = torch.tensor([[30.0, 40.0, 45.0, 52.0]])
    out, _ = affine_boxes(boxes, params, 128)
    assert torch.allclose(map_boxes(boxes, params.matrix(128), 128), out, atol=1e-4)
    image = torch.zeros(3, 10, 100)
    flipped, fb = hflip(image, torch.tensor([[10.0, 2.0, 30.0, 4.0]]))
    assert fb.tolist() == [[70.0, 2.0, 90.0, 4.0]] and flipped.shape == image.shape


def test_strong_views_are_pure_functions_of_the_generator() -> None:
    weak = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    a = strong_view(weak, np.random.default_rng([1, 2]))
    b = strong_view(weak, np.random.default_rng([1, 2]))
    assert torch.equal(a.image, b.image) and a.params == b.params
    assert a.image.shape == weak.shape and 0.5 <= a.params.scale <= 1.5


def test_samplers_draw_their_own_streams_purely() -> None:
    samples = [Sample(i, Path(f"{i}.png"), np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
               for i in range(10)]
    first = [s.image_id for s in draw(samples, 3, 4, seed=0, stream=1)]
    assert first == [s.image_id for s in draw(samples, 3, 4, seed=0, stream=1)]
    assert first != [s.image_id for s in draw(samples, 3, 4, seed=0, stream=0)]
    epoch = [s.image_id for it in range(5) for s in draw(samples, it, 2, seed=0, stream=1)]
    assert sorted(epoch) == list(range(10))  # every image once per epoch
    assert draw(samples, 0, 0, seed=0, stream=0) == []


def test_pseudo_filter_is_strict_and_drops_small_boxes() -> None:
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 2, 10]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.95, 0.99])
    assert filter_pseudo(boxes, scores, 0.9).tolist() == [False, True, True]
    assert filter_pseudo(boxes, scores, 0.9, min_size=2).tolist() == [False, True, False]


def test_unlabelled_images_carry_no_boxes(tmp_path: Path) -> None:
    root = write_tiny_dataset(tmp_path / "tiny", counts={"train": 3, "val": 1, "test": 1})
    coco = json.loads((root / "annotations" / "train.json").read_text())
    (root / "annotations" / "unl.json").write_text(json.dumps(coco))  # boxes present in file

    class Ctx:
        train_json, unlabeled_json, data_dir = (root / "annotations" / "train.json",
                                                root / "annotations" / "unl.json", root)

        @staticmethod
        def setting(key, default=None):
            return default

    data = load_data(Ctx(), unlabeled=True)
    assert len(data.unlabeled) == 3 and all(len(s.boxes) == 0 for s in data.unlabeled)
    assert data.num_classes == 1 and data.counts["unlabeled_images"] == 3
    assert sum(len(s.boxes) for s in data.labeled) == data.counts["boxes"] > 0


def test_a_warm_start_loads_the_checkpoint_and_enters_the_run_config(tmp_path: Path) -> None:
    from baselines.methods import MethodContext
    from baselines.methods.soft_teacher import Config
    from baselines.schedules import resolve_plan
    from baselines.supervised import save_model
    from baselines.teacher import base_notes, ema_reference, run_config, seeded_detector

    root = write_tiny_dataset(tmp_path / "tiny", counts={"train": 2, "val": 1, "test": 1})
    train = root / "annotations" / "train.json"

    def ctx(seed: int, **settings: object) -> MethodContext:
        return MethodContext(train_json=train, unlabeled_json=None, eval_json=train,
                             data_dir=root, work_dir=tmp_path / "w",
                             plan=resolve_plan("cpu", {"minutes": 1}, n_images=2),
                             settings=settings, seed=seed, device="cpu")

    spec, source = seeded_detector(ctx(0), "retinanet", 1)
    save_model(tmp_path / "model.pt", source, spec, {}, {})
    warm = ctx(1, init_checkpoint=str(tmp_path / "model.pt"))
    _, student = seeded_detector(warm, "retinanet", 1)
    _, cold = seeded_detector(ctx(1), "retinanet", 1)
    want = source.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in student.state_dict().items())
    assert not all(torch.equal(v, want[k]) for k, v in cold.state_dict().items())

    data = load_data(warm, unlabeled=False)
    config = run_config(warm, "x", Config(), data)
    assert config["init"]["parts"] == "all" and len(config["init"]["checkpoint_sha"]) >= 16
    assert "init" not in run_config(ctx(1), "x", Config(), data)  # cold runs never reuse warm
    assert base_notes(warm, Config(), data, "retinanet")["weights"].endswith("model.pt")
    # a warm start keeps the authors' EMA cap; a cold cpu run scales it to its length
    assert ema_reference(warm, 180_000) is None and ema_reference(ctx(1), 180_000) == 180_000
