"""baselines' shared core: crops, step draws, schedules, the cpu budget and exact resume."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmark"))
from bench_fixture import write_tiny_dataset

from baselines.data import batch_indices, crop_boxes, crop_window, load_samples
from baselines.schedules import (
    REFERENCE_FLOPS_PER_CPU_SECOND,
    lr_factor,
    resolve_plan,
    schedule_label,
    warmup_steps,
)
from tinyset_builder.errors import TinysetError

torch = pytest.importorskip("torch")


def test_crop_boxes_shift_clip_and_keep_half_visible() -> None:
    boxes = np.array([[10, 10, 20, 20],     # inside
                      [95, 10, 115, 20],    # 5 of 20 px wide visible: dropped
                      [90, 10, 110, 20],    # exactly half visible: kept, clipped
                      [200, 200, 210, 210]], np.float32)  # outside
    kept, labels, mask = crop_boxes(boxes, np.arange(4), top=0, left=0, size=100)
    assert mask.tolist() == [True, False, True, False] and labels.tolist() == [0, 2]
    assert kept.tolist() == [[10, 10, 20, 20], [90, 10, 100, 20]]
    shifted, _, _ = crop_boxes(boxes[:1], np.zeros(1, np.int64), top=5, left=8, size=100)
    assert shifted.tolist() == [[2, 5, 12, 15]]


def test_object_biased_crop_holds_the_chosen_object() -> None:
    box = np.array([[700.0, 300.0, 712.0, 310.0]], np.float32)
    for seed in range(50):
        top, left = crop_window(1024, 1024, box, 256, np.random.default_rng(seed), 1.0)
        assert left <= 700 and left + 256 >= 712 and top <= 300 and top + 256 >= 310
        assert 0 <= top <= 768 and 0 <= left <= 768


def test_batch_indices_are_epoch_permutations_and_pure() -> None:
    n, batch = 7, 3
    flat = [i for it in range(7) for i in batch_indices(n, it, batch, seed=4)]
    for epoch in range(3):  # every epoch visits every image once
        assert sorted(flat[epoch * n:(epoch + 1) * n]) == list(range(n))
    assert batch_indices(n, 5, batch, seed=4) == flat[15:18]
    assert batch_indices(n, 0, batch, seed=5) != batch_indices(n, 0, batch, seed=4)


def test_schedules_defaults_and_overrides() -> None:
    paper = resolve_plan("paper", {}, n_images=4, epochs=3.0)
    # 1x = 3 epochs of 4 images at batch 2, ResNet-50-FPN, the paper's 1024² input.
    assert (paper.iterations, paper.crop, paper.test_size, paper.backbone, paper.optimizer) == (
        6, None, 1024, "resnet50", "sgd")
    assert resolve_plan("paper", {}, n_images=4, epochs=6.0).iterations == 12
    smoke = resolve_plan("smoke", {"smoke_iters": 3}, n_images=4)
    assert (smoke.iterations, smoke.test_size, smoke.roi_batch) == (3, 128, 64)
    cpu = resolve_plan("cpu", {"minutes": 2}, n_images=4)
    assert (cpu.iterations, cpu.budget_minutes, cpu.crop, cpu.test_size, cpu.backbone) == (
        None, 2.0, 256, 1024, "resnet18")
    assert cpu.label() == "cpu 2 min" == schedule_label("cpu", 2.0)
    assert schedule_label("cpu") == "cpu 4 min" and schedule_label("paper") == "paper"
    # the budget buys floor(budget·rate / flops per step) steps, at least one
    per_step = REFERENCE_FLOPS_PER_CPU_SECOND * 0.5  # half a reference CPU-second per step
    assert cpu.steps_for(per_step) == 240
    assert cpu.steps_for(1e30) == 1
    assert replace(cpu, iterations=7).steps_for(per_step) == 7
    assert resolve_plan("cpu", {"backbone": "resnet50", "crop": 192}, n_images=1).crop == 192
    with pytest.raises(TinysetError, match="unknown schedule 'fast'"):
        resolve_plan("fast", {}, n_images=1)
    with pytest.raises(TinysetError, match="budget must be positive"):
        resolve_plan("cpu", {"minutes": 0}, n_images=1)
    with pytest.raises(TinysetError, match="unknown optimizer"):
        resolve_plan("cpu", {"optimizer": "lion"}, n_images=1)
    with pytest.raises(TinysetError, match="unknown augment"):
        resolve_plan("cpu", {"augment": "mixup"}, n_images=1)
    with pytest.raises(TinysetError, match="norm_eval must be true or false"):
        resolve_plan("cpu", {"norm_eval": "yes"}, n_images=1)
    assert resolve_plan("cpu", {"norm_eval": True}, n_images=1).norm_eval is True


def test_norm_eval_keeps_batch_norm_statistics_while_training() -> None:
    from baselines.train import train_mode

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    train_mode(net, norm_eval=True)
    assert net.training and net[0].training and not net[1].training
    before = net[1].running_mean.clone()
    net(torch.rand(2, 3, 5, 5) + 3.0)
    assert torch.equal(net[1].running_mean, before)  # frozen statistics
    train_mode(net, norm_eval=False)
    net(torch.rand(2, 3, 5, 5) + 3.0)
    assert not torch.equal(net[1].running_mean, before)


def test_anchor_base_sets_faster_rcnn_anchor_sides_per_level() -> None:
    pytest.importorskip("torchvision")
    from baselines.detectors import build_detector
    from baselines.supervised import detector_spec

    ours = resolve_plan("cpu", {}, n_images=1)
    mmdet = resolve_plan("cpu", {"anchor_base": "32"}, n_images=1)
    assert (ours.anchor_base, mmdet.anchor_base) == (8, 32)
    for plan, sides in ((ours, (8, 16, 32, 64, 128)), (mmdet, (32, 64, 128, 256, 512))):
        model = build_detector(detector_spec(plan, "faster_rcnn", 1))
        assert tuple(s[0] for s in model.rpn.anchor_generator.sizes) == sides


def test_first_level_3_gives_mmdet_p3_to_p7_one_stage_detectors() -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from baselines.detectors import build_detector
    from baselines.methods.rfla import build_variant
    from baselines.supervised import detector_spec

    ours = resolve_plan("cpu", {}, n_images=1)
    mmdet = resolve_plan("cpu", {"first_level": "3"}, n_images=1)
    assert (ours.first_level, mmdet.first_level) == (2, 3)
    for plan, strides in ((ours, (4, 8, 16, 32, 64, 128)), (mmdet, (8, 16, 32, 64, 128))):
        fcos = build_detector(detector_spec(plan, "fcos", 1)).eval()
        assert tuple(s[0] for s in fcos.anchor_generator.sizes) == strides  # one point per cell
        retina = build_detector(detector_spec(plan, "retinanet", 1))
        assert tuple(s[0] for s in retina.anchor_generator.sizes) == tuple(2 * s for s in strides)
        with torch.no_grad():
            maps = fcos.backbone(torch.zeros(1, 3, 256, 256))
        assert [m.shape[-1] for m in maps.values()] == [256 // s for s in strides]
    with pytest.raises(TinysetError, match="P2"):
        build_detector(detector_spec(mmdet, "faster_rcnn", 1))
    with pytest.raises(TinysetError, match="P2"):  # RFLA's receptive fields start at P2
        build_variant(detector_spec(mmdet, "fcos", 1),
                      {"rfla": {"topk": [3, 1], "ratio": 0.9, "fraction": 0.5}})
    with pytest.raises(TinysetError, match="first_level"):
        build_detector(detector_spec(resolve_plan("cpu", {"first_level": 4}, n_images=1),
                                     "fcos", 1))


def test_lr_schedule_warms_up_from_step_zero_whatever_the_length() -> None:
    assert all(lr_factor(0, total, warmup_steps(total)) == pytest.approx(0.001)
               for total in (1, 2, 5, 100, 10_000))
    assert lr_factor(50, 90, warmup_steps(90)) == 1.0
    assert lr_factor(60, 90, warmup_steps(90)) == pytest.approx(0.1)
    assert lr_factor(80, 90, warmup_steps(90)) == pytest.approx(0.01)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("core") / "tiny", size=96,
                              counts={"train": 3, "val": 1, "test": 1}, objects=4)


def _train(tiny: Path, work: Path, plan, interrupt_at: int | None = None):
    from baselines.detectors import DetectorSpec
    from baselines.supervised import train_detector

    torch.set_num_threads(1)
    samples, _ = load_samples(tiny / "annotations" / "train.json", tiny)
    spec = DetectorSpec("faster_rcnn", 1, 64, backbone="resnet18", fpn_channels=16,
                        roi_batch=16, test_proposals=50)
    if interrupt_at is not None:  # stop the process-like run at a given step
        import baselines.supervised as sup

        real = sup.training_batch

        def flaky(*args, **kwargs):
            if args[1] == interrupt_at:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        sup.training_batch = flaky
        try:
            with pytest.raises(KeyboardInterrupt):
                train_detector(samples, plan, spec, work, seed=3, device="cpu", config={"a": 1})
        finally:
            sup.training_batch = real
    return train_detector(samples, plan, spec, work, seed=3, device="cpu", config={"a": 1})


@pytest.mark.slow
def test_resumed_training_equals_uninterrupted_training(tiny: Path, tmp_path: Path) -> None:
    plan = replace(resolve_plan("cpu", {}, n_images=3), crop=64, iterations=8, batch_size=2)
    whole, res = _train(tiny, tmp_path / "whole", plan)
    assert res.iterations == 8 and res.resumed_from is None
    resumed, res2 = _train(tiny, tmp_path / "resumed", plan, interrupt_at=6)
    assert res2.resumed_from == 6  # checkpoints every total//4 = 2 steps: 6 saved, step 6 not run
    assert res2.losses == res.losses
    a, b = whole.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    init, _ = _train(tiny, tmp_path / "none", replace(plan, iterations=0))
    changed = init.state_dict()
    assert any(not torch.equal(a[k], changed[k]) for k in a if a[k].is_floating_point())


@pytest.mark.slow
def test_cpu_budget_counts_step_zero_and_is_deterministic(tiny: Path, tmp_path: Path) -> None:
    plan = replace(resolve_plan("cpu", {"minutes": 1e-4}, n_images=3), crop=64, batch_size=1)
    m1, r1 = _train(tiny, tmp_path / "a", plan)
    m2, r2 = _train(tiny, tmp_path / "b", plan)
    assert r1.flops_per_step and r1.flops_per_step == r2.flops_per_step
    assert r1.iterations == max(1, int(1e-4 * 60 * REFERENCE_FLOPS_PER_CPU_SECOND
                                       // r1.flops_per_step))
    assert r1.losses == r2.losses
    assert all(torch.equal(v, m2.state_dict()[k]) for k, v in m1.state_dict().items())


def test_a_finished_first_stage_is_restored_not_trained_again(tmp_path: Path) -> None:
    from baselines.teacher import ema_teacher
    from baselines.train import fit_stage

    plan = resolve_plan("smoke", {"smoke_iters": 3}, n_images=1)
    x = torch.ones(2, 3)

    def make(seed: int) -> tuple[torch.nn.Module, torch.nn.Module]:
        torch.manual_seed(seed)
        model = torch.nn.Linear(3, 1)
        return model, ema_teacher(model)

    def step_of(model: torch.nn.Module):
        return lambda _it: {"l2": (model(x) ** 2).sum()}

    done = tmp_path / "stage1.pt"
    model, teacher = make(0)
    first = fit_stage(done, model, step_of(model), plan, tmp_path, seed=0, config={"stage": 1},
                      tracked={"teacher": teacher}, after_step=teacher.after_step(model))
    assert first.iterations == 3 and done.is_file()
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    ema = {k: v.clone() for k, v in teacher.state_dict().items()}

    def must_not_train(_it: int) -> dict:
        raise AssertionError("a finished stage was trained again")

    again, teacher2 = make(1)  # another initialisation: the saved state must replace it
    second = fit_stage(done, again, must_not_train, plan, tmp_path, seed=0, config={"stage": 1},
                       tracked={"teacher": teacher2})
    assert second.iterations == first.iterations and second.losses == first.losses
    assert all(torch.equal(again.state_dict()[k], v) for k, v in trained.items())
    assert all(torch.equal(teacher2.state_dict()[k], v) for k, v in ema.items())
    with pytest.raises(AssertionError, match="trained again"):  # another config: trains
        fit_stage(done, again, must_not_train, plan, tmp_path, seed=0, config={"stage": 2})


def test_clean_boxes_of_a_noisy_variant_follow_crops_and_flips(tmp_path: Path) -> None:
    import json

    from PIL import Image

    from baselines.data import training_batch

    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(tmp_path / "images" / "a.png")
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 100}],
            "categories": [{"id": 1, "name": "thing"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                             "bbox": [42, 41, 8, 6], "clean_bbox": [40, 40, 8, 6]}]}
    (tmp_path / "train.json").write_text(json.dumps(coco))
    samples, _ = load_samples(tmp_path / "train.json", tmp_path, True)
    assert samples[0].clean.tolist() == [[40, 40, 48, 46]]
    signs = set()
    for it in range(8):
        _, targets = training_batch(samples, it, batch_size=1, crop=64, seed=3,
                                    augment="flip_colour", clean=True)
        noisy, clean = targets[0]["boxes"][0], targets[0]["clean_boxes"][0]
        offset = (noisy - clean).tolist()             # the noise, mirrored when flipped
        assert offset in ([2, 1, 2, 1], [-2, 1, -2, 1])
        signs.add(offset[0])
    assert signs == {2, -2}                           # both views drawn
    _, plain = training_batch(samples, 0, batch_size=1, crop=64, seed=3)
    assert "clean_boxes" not in plain[0]              # only on request


def test_flip_colour_views_are_the_plain_crops_flipped_or_not(tiny: Path) -> None:
    from baselines.data import training_batch

    samples, _ = load_samples(tiny / "annotations" / "train.json", tiny, True)
    flipped = kept = 0
    for it in range(8):
        plain_im, plain_t = training_batch(samples, it, batch_size=1, crop=64, seed=5)
        aug_im, aug_t = training_batch(samples, it, batch_size=1, crop=64, seed=5,
                                       augment="flip_colour")
        a, b = plain_t[0]["boxes"], aug_t[0]["boxes"]
        mirror = torch.stack([64 - a[:, 2], a[:, 1], 64 - a[:, 0], a[:, 3]], dim=1)
        if len(a) and torch.allclose(b, mirror) and not torch.allclose(a, mirror):
            flipped += 1
        elif torch.allclose(b, a):
            kept += 1
        assert aug_im[0].shape == plain_im[0].shape
        assert float(aug_im[0].min()) >= 0.0 and float(aug_im[0].max()) <= 1.0
    assert flipped + kept == 8 and flipped >= 1 and kept >= 1
