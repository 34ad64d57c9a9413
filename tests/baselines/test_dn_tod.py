"""DN-TOD: trend-guided reweighting, recurrent box regeneration and class-aware label correction
on hand-made batches; the point memory across crops; one training step."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from baselines.methods.dn_tod import (  # noqa: E402
    ClassConfidence,
    PointMemory,
    class_shift_filter,
    regenerate_boxes,
    trend_weights,
)

NAN = float("nan")


def test_trend_guided_reweighting_by_hand() -> None:
    # Points 0-2 are positives of gt 0 (class 0); 3-5 background.
    now = torch.tensor([[0.5], [0.4], [0.2], [0.1], [0.2], [0.3]])
    last = torch.tensor([[0.25], [0.4], [0.3], [0.05], [0.4], [NAN]])
    matched = torch.tensor([0, 0, 0, -1, -1, -1])
    w = trend_weights(now, last, matched, torch.tensor([0]), alpha=0.5)
    # w1 = 1 - last/now = [0.5, 0, -0.5] -> non-positive to 0.25 -> /max = [1, .5, .5]
    # w2 = now/sum -> /max = [1, .8, .4]; 0.5 w1 + 0.5 w2 = [1, .65, .45] (max 1)
    # negatives: min(1, last/now) = [0.5, 1 (2 clipped), 1 (unknown)]
    np.testing.assert_allclose(w.numpy(), [1.0, 0.65, 0.45, 0.5, 1.0, 1.0], rtol=1e-6)
    # First visit (no memory): every weight is 1, as the authors' first epoch.
    first = trend_weights(now, torch.full_like(now, NAN), matched, torch.tensor([0]), 0.5)
    assert first.tolist() == [1.0] * 6
    # No positive rising: the trend term is 1 everywhere.
    falling = trend_weights(now[:3], now[:3] * 2, matched[:3], torch.tensor([0]), 0.5)
    np.testing.assert_allclose(falling.numpy(), [1.0, 0.9, 0.7], rtol=1e-6)


def test_recurrent_box_regeneration_by_hand() -> None:
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]])
    scores = torch.tensor([[0.6], [0.2], [0.9]])
    pred = torch.tensor([[2.0, 2.0, 12.0, 12.0], [0.0, 0.0, 8.0, 8.0], [5.0, 5.0, 6.0, 6.0]])
    matched = torch.tensor([0, 0, -1])                      # gt 1 has no positive point
    boxes, grades = regenerate_boxes(gt, torch.tensor([0, 0]), scores, pred, matched, w1=1.0)
    # B_now = (.6·[2,2,12,12] + .2·[0,0,8,8]) / .8 = [1.5, 1.5, 11, 11]; grade .6
    # (1·gt + .6·B_now) / 1.6 = [0.5625, 0.5625, 10.375, 10.375]
    np.testing.assert_allclose(boxes[0].numpy(), [0.5625, 0.5625, 10.375, 10.375], rtol=1e-6)
    np.testing.assert_allclose(boxes[1].numpy(), gt[1].numpy())        # kept
    assert grades.tolist() == pytest.approx([0.6, 1.0])
    last = torch.tensor([[1.0, 1.0, 11.0, 11.0], [0.0, 0.0, 0.0, 0.0]])
    boxes, _ = regenerate_boxes(gt, torch.tensor([0, 0]), scores, pred, matched, 1.0,
                                last, torch.tensor([0.5, 0.0]), torch.tensor([True, False]))
    # (gt + .5·last + .6·B_now) / 2.1
    expect = (np.array([0, 0, 10, 10]) + 0.5 * np.array([1, 1, 11, 11])
              + 0.6 * np.array([1.5, 1.5, 11, 11])) / 2.1
    np.testing.assert_allclose(boxes[0].numpy(), expect, rtol=1e-6)


def test_class_shift_filter_and_thresholds_by_hand() -> None:
    th = torch.tensor([[0.5, 0.3, 0.9], [0.5, 0.5, 0.5], [0.5, 0.5, 0.6]])
    scores = torch.tensor([[0.8, 0.1, 0.1],     # top class = label 0: kept
                           [0.2, 0.6, 0.1],     # label 0, top 1: 0.6 ≥ th[0,1]=.3 and ≥ th[1,1]=.5
                           [0.1, 0.2, 0.7],     # label 0, top 2: 0.7 < th[0,2]=.9, then class 1?
                           [0.1, 0.45, 0.3]])   # label 2, top 1: 0.45 < th[1,1] -> stop at 2
    labels = torch.tensor([0, 0, 0, 2])
    # row 2: class 2 fails th[0,2]; next in order is class 1 (0.2 < .3) -> fails; then label: keep
    assert class_shift_filter(scores, labels, th).tolist() == [-1, 1, -1, -1]
    clc = ClassConfidence(2, samples=3, threshold=(1.0, 0.0), frozen_iter=2)
    assert clc.thresholds().tolist() == [[1.0, 1.0], [1.0, 1.0]]        # frozen at first
    clc.record(torch.tensor([[0.8, 0.2], [0.6, 0.1]]), torch.tensor([0, 0]))
    clc.record(torch.tensor([[0.4, 0.05]]), torch.tensor([0]))
    th = clc.thresholds()
    # class 0 rows: mean over iterations of per-iteration means (.7,.15) and (.4,.05) = (.55, .1);
    # class 1 never labelled -> 0.5; floor 0.1.
    np.testing.assert_allclose(th.numpy(), [[0.55, 0.1], [0.5, 0.5]], rtol=1e-6)


def test_point_memory_maps_crops_to_image_cells() -> None:
    mem = PointMemory(margin=16)
    shapes, strides = [(2, 2), (1, 1)], [4, 8]
    scores = torch.arange(5, dtype=torch.float32)[:, None]
    mem.write_scores(7, scores, shapes, strides, top=8, left=4, image_hw=(32, 32))
    # A crop one stride-4 cell further right sees the first crop's point (1, 0) as its (0, 0).
    got = mem.read_scores(7, shapes, strides, top=8, left=8, channels=1, image_hw=(32, 32))
    assert got[0, 0] == 1.0 and got[2, 0] == 3.0
    assert torch.isnan(got[1, 0]) and torch.isnan(got[3, 0])
    assert torch.isnan(got[4, 0])              # stride 8: left 4 is cell 0, left 8 is cell 1
    again = mem.read_scores(7, shapes, strides, top=8, left=4, channels=1, image_hw=(32, 32))
    assert again[:, 0].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    mem.write_box(7, 3, torch.tensor([1.0, 2.0, 3.0, 4.0]), 0.7)
    boxes, grades, known = mem.read_boxes(7, [3, 5])
    assert known.tolist() == [True, False] and boxes[0].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert grades[0].item() == pytest.approx(0.7)
