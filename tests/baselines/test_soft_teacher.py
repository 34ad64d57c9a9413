"""Soft Teacher's mechanisms against values computed independently (numpy, by hand)."""

from __future__ import annotations

import numpy as np
import pytest

from baselines.methods.soft_teacher import box_uncertainty, jitter_boxes, soft_weights
from baselines.teacher import weighted_ce

torch = pytest.importorskip("torch")


def test_background_rois_are_weighted_by_the_teachers_background_score() -> None:
    labels = torch.tensor([0, 1, 0, 2])
    bg = torch.tensor([0.2, 0.9, 0.7, 0.1])
    assert soft_weights(labels, bg).tolist() == pytest.approx([0.2, 1.0, 0.7, 1.0])


def test_soft_classification_loss_is_normalised_by_the_weights() -> None:
    logits = np.array([[2.0, -1.0], [0.5, 0.3], [-1.0, 1.5]])
    labels = np.array([0, 1, 0])
    w = np.array([0.3, 1.0, 0.8])
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    ce = -logp[np.arange(3), labels]
    expected = (w * ce).sum() / w.sum()
    got = weighted_ce(torch.tensor(logits), torch.tensor(labels), torch.tensor(w))
    assert float(got) == pytest.approx(expected)
    small = np.array([0.1, 0.2, 0.3])  # weights summing below 1 are divided by 1
    got = weighted_ce(torch.tensor(logits), torch.tensor(labels), torch.tensor(small))
    assert float(got) == pytest.approx((small * ce).sum())


def test_jitter_variance_is_relative_to_the_box_and_averaged_over_sides() -> None:
    rng = np.random.default_rng(0)
    refined = np.array([[10, 20, 30, 60], [0, 0, 4, 2]], float) + rng.normal(0, 1, (10, 2, 4))
    std = refined.std(axis=0, ddof=1)
    mean = refined.mean(axis=0)
    wh = np.maximum(mean[:, 2:] - mean[:, :2], 1.0)
    expected = (std / np.concatenate([wh, wh], axis=1)).mean(axis=1)
    got = box_uncertainty(torch.tensor(refined))
    assert got.numpy() == pytest.approx(expected)


def test_box_jitter_offsets_scale_with_width_and_height() -> None:
    torch.manual_seed(0)
    boxes = torch.tensor([[0.0, 0.0, 100.0, 10.0]])
    offsets = jitter_boxes(boxes, 20_000, 0.06) - boxes
    sd = offsets[:, 0].std(dim=0)
    # x sides move by N(0, (0.06·100)²), y sides by N(0, (0.06·10)²)
    assert sd.tolist() == pytest.approx([6.0, 0.6, 6.0, 0.6], rel=0.03)
    assert offsets.mean(dim=(0, 1)).abs().max() < 0.1
