"""PseCo's mechanisms against values computed by hand."""

from __future__ import annotations

import math

import pytest

from baselines.methods.pseco import aligned_iou, pcv_weights, pla_assign, shifted_anchor_generator

torch = pytest.importorskip("torch")


def test_prediction_guided_assignment_by_hand() -> None:
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    teacher = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 8], [0, 0, 10, 5], [0, 0, 10, 3]],
                           dtype=torch.float32)  # IoUs 1.0, 0.8, 0.5, 0.3
    scores = torch.tensor([[0.5, 0.5], [0.1, 0.9], [0.1, 0.9], [0.1, 0.9]])  # column = label
    areas = torch.ones(4)
    # candidates IoU >= 0.4: 0, 1, 2; cost sqrt(IoU*score) = .707, .849, .671;
    # k = floor(1.0 + 0.8 + 0.5) = 2 -> proposals 1 and 0
    assert pla_assign(teacher, scores, areas, gt, torch.tensor([1])).tolist() == [0, 0, -1, -1]
    # an empty proposal is never positive (the chosen top-k is filtered, not refilled)
    areas[1] = 0
    assert pla_assign(teacher, scores, areas, gt, torch.tensor([1])).tolist() == [0, -1, -1, -1]
    # top-k candidates bound the dynamic k: with topk=1, k = floor(1.0) = 1
    assert pla_assign(teacher, scores, torch.ones(4), gt, torch.tensor([1]),
                      topk=1).tolist() == [-1, 0, -1, -1]
    assert pla_assign(teacher, scores, areas, gt[:0], torch.tensor([], dtype=torch.int64)
                      ).tolist() == [-1] * 4


def test_assignment_goes_to_each_proposals_best_pseudo_box() -> None:
    gts = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0]])
    teacher = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 9.0], [40, 0, 50, 10]])
    scores = torch.full((3, 2), 0.5)
    got = pla_assign(teacher, scores, torch.ones(3), gts, torch.tensor([1, 1]))
    assert got.tolist() == [0, 1, -1]


def test_consistency_voting_averages_ious_per_pseudo_box() -> None:
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 2 + [[20.0, 20.0, 30.0, 30.0]])
    student = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 5.0],
                            [20.0, 20.0, 25.0, 25.0]])
    assert aligned_iou(student, gt).tolist() == pytest.approx([1.0, 0.5, 0.25])
    w = pcv_weights(student, gt, torch.tensor([0, 0, 1]))
    assert w.tolist() == pytest.approx([0.75, 0.75, 0.25])
    w2 = w.pow(2)  # the loss rescale keeps the total weight: sum(w) / sum(w^2)
    assert float(w.sum() / w2.sum()) == pytest.approx(1.75 / (2 * 0.5625 + 0.0625))


def test_downsampled_view_uses_the_next_levels_anchor_sizes() -> None:
    from torchvision.models.detection.image_list import ImageList

    from baselines.detectors import DetectorSpec, build_detector

    model = build_detector(DetectorSpec("faster_rcnn", 1, 64, backbone="resnet18",
                                        fpn_channels=16))
    gen = shifted_anchor_generator(model)
    assert [s[0] for s in gen.sizes] == [16, 32, 64, 128, 256]
    images = ImageList(torch.zeros(1, 3, 64, 64), [(64, 64)])
    half = [torch.zeros(1, 16, 64 // 2 ** (k + 2), 64 // 2 ** (k + 2)) for k in range(5)]
    anchors = gen(images, half)[0]  # level 0 of the half view sits at stride 8 in full pixels
    first = anchors[: 3 * 8 * 8]
    widths = (first[:, 2] - first[:, 0]).unique()
    assert sorted(round(float(v), 2) for v in widths) == sorted(
        2 * round(16 * math.sqrt(1 / r) / 2) for r in (0.5, 1.0, 2.0))  # torchvision rounds
