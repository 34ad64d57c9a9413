"""Calibrated Teacher: the merge filter, the calibration map (vs scipy) and FIoU (by hand)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from baselines.methods.calibrated_teacher import (
    _calibrator_class,
    calibrate,
    fiou_weight,
    fit_platt,
    on_annotation,
    retina_losses,
)

torch = pytest.importorskip("torch")


def test_detections_on_annotations_are_not_mined() -> None:
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    det = torch.tensor([[0.0, 0.0, 10.0, 7.0],     # IoU 0.7 > 0.6, same class
                        [0.0, 0.0, 10.0, 7.0],     # IoU 0.7, other class: not enough
                        [0.0, 0.0, 10.0, 8.0],     # IoU 0.8 > 0.75, any class
                        [2.0, 2.0, 6.0, 6.0],      # inside the annotation, same class
                        [-20.0, -20.0, 12.0, 12.0],  # the annotation inside it, same class
                        [30.0, 30.0, 40.0, 40.0]])  # elsewhere
    labels = torch.tensor([1, 2, 2, 1, 1, 1])
    got = on_annotation(gt, torch.tensor([1]), det, labels, iou_thr=0.6)
    assert got.tolist() == [True, False, True, True, True, False]


def test_platt_fit_is_the_maximum_likelihood_of_scipy() -> None:
    from scipy.optimize import minimize

    rng = np.random.default_rng(0)
    conf = rng.uniform(0.05, 0.95, 400)
    match = (rng.uniform(size=400) < conf ** 2).astype(float)  # over-confident scores
    a, b = fit_platt(conf, match)
    x = np.log(conf / (1 - conf))

    def nll(p: np.ndarray) -> float:
        z = p[0] * x + p[1]
        return float(np.sum(np.logaddexp(0, z) - match * z))

    ref = minimize(nll, np.array([1.0, 0.0]), method="Nelder-Mead",
                   options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 4000}).x
    assert (a, b) == pytest.approx(tuple(ref), abs=1e-3)
    got = calibrate(torch.tensor([0.5, 0.9]), a, b)
    assert got.tolist() == pytest.approx([1 / (1 + math.exp(-b)),
                                          1 / (1 + math.exp(-(a * math.log(9) + b)))], rel=1e-5)
    assert fit_platt(conf, np.ones(400)) is None  # one class only: nothing to fit


def test_calibrator_state_travels_in_checkpoints() -> None:
    cal = _calibrator_class()()
    cal.add(torch.tensor([0.9, 0.2, 0.8, 0.3]), torch.tensor([True, False, False, True]))
    other = _calibrator_class()()
    other.load_state_dict(cal.state_dict())
    assert other.conf == pytest.approx([0.9, 0.2, 0.8, 0.3]) and other.match == [1, 0, 0, 1]
    other.refit()
    assert other.fits == 1 and other.params is not None and other.conf == []


def test_focal_iou_weight_by_hand() -> None:
    iou = torch.tensor([0.0, 0.5, 0.9])
    expected = [0.5 + 3 * 0.5 * (-0.25 * v ** 2 * math.log(1.00001 - v)) for v in (0, .5, .9)]
    assert fiou_weight(iou).tolist() == pytest.approx(expected, rel=1e-5)
    assert fiou_weight(iou, bias=1.0, k=0.0).tolist() == [1.0, 1.0, 1.0]


def test_unit_fiou_weights_reproduce_torchvisions_retinanet_loss() -> None:
    from dataclasses import replace

    from baselines.detectors import DetectorSpec, build_detector
    from baselines.methods.calibrated_teacher import Config

    torch.manual_seed(0)
    model = build_detector(DetectorSpec("retinanet", 1, 64, backbone="resnet18",
                                        fpn_channels=16)).train()
    images, targets = model.transform(
        [torch.rand(3, 64, 64)], [{"boxes": torch.tensor([[8.0, 8.0, 20.0, 24.0]]),
                                   "labels": torch.tensor([1])}])
    plain = retina_losses(model, images, targets, None)
    unit = retina_losses(model, images, targets, replace(Config(), fiou_bias=1.0, fiou_k=0.0))
    unit, plain = ({k: float(v.detach()) for k, v in d.items()} for d in (unit, plain))
    assert unit["classification"] == pytest.approx(plain["classification"], rel=1e-5)
    assert unit["bbox_regression"] == pytest.approx(plain["bbox_regression"])
    weighted = retina_losses(model, images, targets, Config())  # negatives weighted ~0.5
    assert float(weighted["classification"].detach()) < plain["classification"]
