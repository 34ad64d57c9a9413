"""RFLA: receptive fields, Gaussians and KLD against closed forms; hierarchical assignment and
the centre-ness-weighted box loss by hand."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from baselines.assigners.rfla import (  # noqa: E402
    box_gaussians,
    fcos_point_priors,
    hierarchical_assign,
    kld_similarity,
    theoretical_receptive_fields,
)


def test_receptive_fields_follow_the_authors_recurrence() -> None:
    # The authors' gen_trf for ResNet-50-FPN (comment in dntod_fcos_head.py: 35, 91, 267, 427,
    # 555, 811) and ResNet-18 by hand: stem 11 @ jump 4; layer1 4 convs +32 -> 43; layer2 +8,
    # jump 8, 3 convs +48 -> 99; layer3 +16, jump 16, +96 -> 211; layer4 +32, jump 32, +192
    # -> 435; P6 +128 -> 563; P7 +256 -> 819.
    assert theoretical_receptive_fields("resnet50") == (35, 91, 267, 427, 555, 811)
    assert theoretical_receptive_fields("resnet18") == (43, 99, 211, 435, 563, 819)


def test_box_gaussians_have_quarter_squared_sides() -> None:
    mu, var = box_gaussians(torch.tensor([[0.0, 0.0, 4.0, 2.0]]))
    assert mu.tolist() == [[2.0, 1.0]] and var.tolist() == [[4.0, 1.0]]


def _kl_closed_form(p: np.ndarray, g: np.ndarray) -> float:
    """KL(N_p || N_g) of two boxes as Gaussians, from the general multivariate formula."""
    def gauss(b):
        mu = np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2])
        cov = np.diag([((b[2] - b[0]) / 2) ** 2, ((b[3] - b[1]) / 2) ** 2])
        return mu, cov

    mp, cp = gauss(p)
    mg, cg = gauss(g)
    inv = np.linalg.inv(cg)
    d = mg - mp
    log_det = np.log(np.linalg.det(cg) / np.linalg.det(cp))
    return 0.5 * (np.trace(inv @ cp) + d @ inv @ d - 2 + log_det)


def test_kld_similarity_matches_the_closed_form() -> None:
    rng = np.random.default_rng(0)
    gts = rng.uniform(0, 50, (3, 2))
    gts = np.concatenate([gts, gts + rng.uniform(2, 30, (3, 2))], axis=1)
    priors = rng.uniform(0, 50, (5, 2))
    priors = np.concatenate([priors, priors + rng.uniform(2, 30, (5, 2))], axis=1)
    sim = kld_similarity(torch.tensor(gts, dtype=torch.float64),
                         torch.tensor(priors, dtype=torch.float64)).numpy()
    for i, g in enumerate(gts):
        for j, p in enumerate(priors):
            assert sim[i, j] == pytest.approx(1 / (1 + _kl_closed_form(p, g)), rel=1e-9)
    same = torch.tensor([[3.0, 4.0, 9.0, 20.0]], dtype=torch.float64)
    assert kld_similarity(same, same).item() == pytest.approx(1.0)


def test_hierarchical_assignment_on_a_hand_made_case() -> None:
    gt = torch.tensor([[0.0, 0.0, 9.0, 9.0]], dtype=torch.float64)   # 9 px, centre 4.5
    priors = torch.tensor([
        [-0.25, -0.25, 9.25, 9.25],    # qa: 9.5 px centred   stage 1 sim 0.994 -> its top-1
        [-0.5, -0.5, 9.5, 9.5],        # qb: 10 px centred    shrunk ×0.9 = the gt -> stage 2
        [60.0, 60.0, 70.0, 70.0],      # qc: far away          -> negative
        [1.0, 0.0, 10.0, 9.0],         # qd: 9 px, 1 px off    sim ≥ 0.8 but unpicked -> ignored
    ], dtype=torch.float64)
    assert hierarchical_assign(gt, priors, topk=(1, 1), ratio=0.9).tolist() == [1, 1, 0, -1]
    # With the authors' top-3 the first stage already takes the three nearest priors.
    assert hierarchical_assign(gt, priors, topk=(3, 1), ratio=0.9).tolist() == [1, 1, 0, 1]
    # Two objects competing for one prior: the later gt wins (the authors' loop order).
    two = torch.cat([gt, gt])
    assert hierarchical_assign(two, priors[:1], topk=(1, 1)).tolist() == [2]
    assert hierarchical_assign(gt[:0], priors).tolist() == [0, 0, 0, 0]


def test_fcos_priors_are_receptive_field_squares_on_the_points() -> None:
    anchors = torch.tensor([[0.0, 0.0, 4.0, 4.0], [8.0, 8.0, 16.0, 16.0]])
    priors = fcos_point_priors(anchors, [1, 1], [20.0, 40.0])
    assert priors.tolist() == [[-8.0, -8.0, 12.0, 12.0], [-8.0, -8.0, 32.0, 32.0]]


def test_rfla_detectors_assign_with_receptive_fields() -> None:
    from baselines.assigners.rfla import RFLAConfig, apply_rfla
    from baselines.detectors import DetectorSpec, build_detector

    torch.manual_seed(0)
    spec = DetectorSpec("faster_rcnn", 1, 64, backbone="resnet18", fpn_channels=16, roi_batch=16,
                        frozen_bn=True)
    model = apply_rfla(build_detector(spec), "resnet18")
    sizes = [s[0] for s in model.rpn.anchor_generator.sizes]
    assert sizes == [21.5, 49.5, 105.5, 217.5, 281.5]          # 0.5 × TRF of P2..P6
    anchors = [torch.tensor([[0.0, 0.0, 10.0, 10.0], [40.0, 40.0, 60.0, 60.0]])]
    labels, matched = model.rpn.assign_targets_to_anchors(
        anchors, [{"boxes": torch.tensor([[0.0, 0.0, 9.0, 9.0]])}])
    assert labels[0].tolist() == [1.0, 1.0]   # top-3 takes both priors of this tiny case
    assert matched[0].tolist() == [[0.0, 0.0, 9.0, 9.0]] * 2
    model.train()
    losses = model([torch.rand(3, 64, 64)], [{"boxes": torch.tensor([[10.0, 10.0, 16.0, 15.0]]),
                                              "labels": torch.tensor([1])}])
    assert all(torch.isfinite(v) for v in losses.values())
    fcos_spec = DetectorSpec("fcos", 1, 64, backbone="resnet18", fpn_channels=64, frozen_bn=True)
    fcos = apply_rfla(build_detector(fcos_spec), "resnet18", RFLAConfig())
    fcos.train()
    losses = fcos([torch.rand(3, 64, 64)], [{"boxes": torch.tensor([[10.0, 10.0, 14.0, 13.0]]),
                                             "labels": torch.tensor([1])}])
    assert all(torch.isfinite(v) for v in losses.values()) and losses["bbox_regression"] > 0


def test_fcos_box_loss_is_weighted_by_the_centreness_target() -> None:
    """One positive at the centre of a 3-px box, one 8 px to its right (outside, as a KLD
    assignment gives for boxes below the stride): the GIoU terms are weighted by their clamped
    centre-ness targets, worked out by hand, as mmdet's FCOS head and the authors' RFLA FCOS head
    weight them. The head is the plain FCOS row's, so every FCOS row has this loss."""
    from baselines.detectors import DetectorSpec, build_detector

    fcos_spec = DetectorSpec("fcos", 1, 64, backbone="resnet18", fpn_channels=32)
    head = build_detector(fcos_spec).head
    anchors = [torch.tensor([[0.0, 0.0, 4.0, 4.0], [8.0, 0.0, 12.0, 4.0]])]  # points (2,2), (10,2)
    box = torch.tensor([[0.5, 0.5, 3.5, 3.5]])
    targets = [{"boxes": box, "labels": torch.tensor([0])}]
    reg = torch.tensor([[[0.5, 0.5, 0.5, 0.5], [0.25, 0.25, 0.25, 0.25]]])  # ltrb / stride 4
    out = {"cls_logits": torch.zeros(1, 2, 1), "bbox_regression": reg,
           "bbox_ctrness": torch.zeros(1, 2, 1)}
    losses = head.compute_loss(targets, out, anchors, [torch.tensor([0, 0])])

    def giou(a: list[float], b: list[float]) -> float:
        iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = iw * ih
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        hull = (max(a[2], b[2]) - min(a[0], b[0])) * (max(a[3], b[3]) - min(a[1], b[1]))
        return inter / union - (hull - union) / hull

    g = [0.5, 0.5, 3.5, 3.5]
    loss_in = 1 - giou([0.0, 0.0, 4.0, 4.0], g)        # point (2, 2), 2 px each way
    loss_out = 1 - giou([9.0, 1.0, 11.0, 3.0], g)      # point (10, 2), 1 px each way
    # Centre-ness targets in stride units: inside 1.5/1.5 both axes -> 1; outside, x: left 9.5/4,
    # right -6.5/4 clamped at 0.01, y: 1.5/1.5 -> sqrt(0.01 / 2.375).
    w_in, w_out = 1.0, (0.01 / 2.375) ** 0.5
    expected = (w_in * loss_in + w_out * loss_out) / (w_in + w_out)
    assert float(losses["bbox_regression"]) == pytest.approx(expected, rel=1e-6)
    # the outside positive counts less than in a plain mean
    assert float(losses["bbox_regression"]) < (loss_in + loss_out) / 2
