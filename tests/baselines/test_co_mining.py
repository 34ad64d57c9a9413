"""Co-mining's co-generated labels: the other branch's confident boxes, never an annotated one."""

from __future__ import annotations

import pytest

from baselines.methods.co_mining import co_generated

torch = pytest.importorskip("torch")


def test_co_generated_labels_exclude_annotated_objects() -> None:
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    gl = torch.tensor([1])
    preds = torch.tensor([[0.0, 0.0, 10.0, 9.0],     # IoU 0.9 with the annotation: dropped
                          [50.0, 50.0, 60.0, 60.0],  # an unannotated object: mined
                          [0.0, 0.0, 10.0, 10.0],    # same box, other class: mined
                          [0.0, 0.0, 10.0, 4.0]])    # IoU 0.4, not above: mined
    pl = torch.tensor([1, 1, 2, 1])
    boxes, labels, kept = co_generated(gt, gl, preds, pl, iou_thr=0.4)
    assert kept.tolist() == [False, True, True, True]
    assert torch.equal(boxes, torch.cat([gt, preds[1:]])) and labels.tolist() == [1, 1, 2, 1]
    boxes, labels, kept = co_generated(gt[:0], gl[:0], preds, pl)
    assert kept.all() and len(boxes) == 4  # nothing annotated: every prediction is mined
    boxes, labels, kept = co_generated(gt, gl, preds[:0], pl[:0])
    assert torch.equal(boxes, gt) and labels.tolist() == [1]
