"""SSD-Det: the proposal bags' geometry, MIL scores and merging, the SPSD / SISD targets by hand,
and one training step whose self-distillation branches receive gradients."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from baselines.methods.ssd_det import (  # noqa: E402
    bag_scores,
    bag_validity,
    identity_features,
    iou_targets,
    merge_topk,
    mil_loss,
    proposal_bag,
    random_negatives,
    sisd_confidence,
)

RATIOS = (1.0, 1.2, 1.3, 0.8, 0.7)


def test_proposal_bag_geometry() -> None:
    box = torch.tensor([[10.0, 20.0, 30.0, 60.0]])        # w 20, h 40, centre (20, 40)
    bag = proposal_bag(box, RATIOS, shake=0.2)
    assert bag.shape == (1, 125, 4)                      # 5 × 5 sizes × (centre + 4 shifts)
    grid = bag.reshape(5, 5, 5, 4)                        # (rw, rh, shift)
    # rw = 1.2 (index 1), rh = 0.8 (index 3): 24 × 32 at the centre...
    assert grid[1, 3, 0].tolist() == pytest.approx([8.0, 24.0, 32.0, 56.0])
    # ... shifted left / right by 0.2 · 24 and up / down by 0.2 · 32.
    assert grid[1, 3, 1].tolist() == pytest.approx([3.2, 24.0, 27.2, 56.0])
    assert grid[1, 3, 2].tolist() == pytest.approx([12.8, 24.0, 36.8, 56.0])
    assert grid[1, 3, 3].tolist() == pytest.approx([8.0, 17.6, 32.0, 49.6])
    assert grid[1, 3, 4].tolist() == pytest.approx([8.0, 30.4, 32.0, 62.4])
    assert grid[0, 0, 0].tolist() == box[0].tolist()     # the noisy box itself is in its bag
    sizes = (bag[0, :, 2:] - bag[0, :, :2]).numpy()
    widths = sorted({round(float(w), 4) for w in sizes[:, 0]})
    assert widths == [14.0, 16.0, 20.0, 24.0, 26.0]
    assert proposal_bag(box, RATIOS, shake=None).shape == (1, 25, 4)


def test_bag_validity_is_70_percent_inside() -> None:
    bag = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [-5.0, 0.0, 5.0, 10.0], [-2.0, 0.0, 8.0, 10.0]]])
    assert bag_validity(bag, 100, 100).tolist() == [[True, False, True]]   # 1, .5, .8 inside


def test_mil_scores_loss_and_top_k_merge() -> None:
    cls = torch.tensor([[[5.0], [0.0], [-5.0]]])           # sigmoid ≈ .993, .5, .007
    ins = torch.tensor([[[2.0], [1.0], [0.0]]])
    valid = torch.tensor([[True, True, False]])
    c, i = bag_scores(cls, ins, valid, torch.tensor([0]))
    e = np.exp([2.0, 1.0])
    np.testing.assert_allclose(i[0].numpy(), [e[0] / e.sum(), e[1] / e.sum(), 0.0], rtol=1e-6)
    assert c[0, 2] == 0.0                                   # invalid proposal scores nothing
    perfect = mil_loss(torch.ones(1, 3), torch.tensor([[1.0, 0.0, 0.0]]), focal=False)
    assert perfect.item() < 1e-5
    half = mil_loss(torch.full((1, 3), 0.5), torch.full((1, 3), 1 / 3), focal=False)
    assert half.item() == pytest.approx(np.log(2), rel=1e-5)
    assert mil_loss(torch.full((1, 3), 0.5), torch.full((1, 3), 1 / 3), focal=True).item() \
        == pytest.approx(np.log(2) * 0.25, rel=1e-5)
    bag = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [2.0, 2.0, 12.0, 12.0], [50.0, 50, 60, 60]]])
    merged = merge_topk(bag, torch.tensor([[0.3, 0.1, 0.05]]), k=2)
    np.testing.assert_allclose(merged[0].numpy(), [0.5, 0.5, 10.5, 10.5], rtol=1e-6)


def test_self_distillation_targets_by_hand() -> None:
    # SISD identity: each proposal's feature plus its bag's mean.
    feats = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [2.0, 2.0]]])
    assert identity_features(feats).tolist() == [[[3.0, 5.0], [5.0, 7.0]], [[1.0, 1.0], [3.0, 3.0]]]
    # SISD target: (IoU − 0.5) / 0.5 with the stage-1 pseudo box.
    pseudo = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    bag = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0], [20.0, 20, 30, 30]]])
    np.testing.assert_allclose(iou_targets(bag, pseudo)[0].numpy(), [1.0, -1 / 3, -1.0],
                               rtol=1e-6)
    # Spatial confidence: predicted IoU back to [0, 1], min–max within each bag.
    np.testing.assert_allclose(sisd_confidence(torch.tensor([[-1.0, 0.0, 0.6]])).numpy(),
                               [[0.0, 0.625, 1.0]], rtol=1e-6)
    # SPSD: the regression target of every bag proposal decodes back to the noisy box.
    from torchvision.models.detection._utils import BoxCoder

    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    noisy = torch.tensor([[10.0, 20.0, 30.0, 60.0]])
    props = proposal_bag(noisy, RATIOS, 0.2)[0]
    target = coder.encode_single(noisy.expand_as(props), props)
    torch.testing.assert_close(coder.decode_single(target, props),
                               noisy.expand_as(props).contiguous(), rtol=1e-4, atol=1e-3)


def test_random_negatives_avoid_the_bag() -> None:
    from torchvision.ops import box_iou

    bag = torch.tensor([[[10.0, 10.0, 30.0, 30.0], [12.0, 12.0, 28.0, 28.0]]])
    neg, ok = random_negatives(300, 64, 64, bag, 0.3, torch.Generator().manual_seed(0))
    iou = box_iou(neg, bag[0]).max(dim=1).values
    assert torch.equal(ok, iou < 0.3) and ok.any() and (~ok).any()
    assert (neg[:, 0] >= -0.2 * 64).all() and (neg[:, 2] >= neg[:, 0]).all()


def test_one_training_step_trains_the_self_distillation_branches(tmp_path) -> None:
    from PIL import Image

    from baselines.data import Sample
    from baselines.methods.rfla import build_variant
    from baselines.methods.ssd_det import Config, make_step
    from baselines.schedules import resolve_plan
    from baselines.supervised import detector_spec

    tmp = tmp_path
    pixels = np.zeros((64, 64, 3), np.uint8)
    pixels[20:30, 24:34] = 255
    Image.fromarray(pixels).save(tmp / "a.png")
    sample = Sample(1, tmp / "a.png", np.array([[22.0, 19.0, 33.0, 31.0]], np.float32),
                    np.array([1], np.int64), clean=np.array([[24.0, 20.0, 34.0, 30.0]],
                                                            np.float32))
    plan = resolve_plan("smoke", {"smoke_size": 64, "backbone": "resnet18",
                                  "fpn_channels": 32, "batch_size": 1}, n_images=1)
    spec = detector_spec(plan, "faster_rcnn", 1)
    torch.manual_seed(0)
    model = build_variant(spec, {"rfla": {"topk": [3, 1], "ratio": 0.9, "fraction": 0.5}})
    trainer, step, _, stats = make_step(Config(num_negatives=20), 0.2, plan, 0, "cpu")(
        model, [sample], spec)
    trainer.train()
    losses = step(0)
    assert {"ssd_spsd", "ssd_mil0", "ssd_reg0", "ssd_mil1", "ssd_neg", "ssd_iou",
            "loss_objectness", "loss_classifier"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    heads = trainer["ssd"]
    for name in ("spsd_reg", "iou", "cls1", "ins0"):
        assert heads[name].weight.grad.abs().sum() > 0, name
    assert stats()["ssd_det"]["bag_objects"] == 1
    # the noisy box's IoU with the clean one, by hand: overlap 9 × 10 over 132 + 100 − 90
    quality = stats()["ssd_det"]["iou_with_clean"]
    assert quality["all"]["noisy"] == pytest.approx(90 / 142, abs=1e-4)
    assert quality["all"]["objects"] == 1 and quality["very_tiny"] == {"objects": 0}
    assert 0.0 <= quality["all"]["pseudo"] <= 1.0


def test_clean_summary_keeps_the_last_quarter_and_splits_very_tiny() -> None:
    from baselines.methods.ssd_det import clean_summary

    early = (0, np.array([0.0]), np.array([0.5]), np.array([20.0]))     # left out
    late = [(6, np.array([0.9, 0.2]), np.array([0.6, 0.4]), np.array([20.0, 5.0])),
            (7, np.array([0.7]), np.array([0.8]), np.array([4.0]))]
    out = clean_summary([early, *late])                # steps 0–7: the last quarter is 6–7
    assert out["steps"] == "6-7"
    assert out["all"] == {"objects": 3, "pseudo": 0.6, "noisy": 0.6, "pseudo_better": 0.3333}
    assert out["very_tiny"] == {"objects": 2, "pseudo": 0.45, "noisy": 0.6, "pseudo_better": 0.0}
    assert out["others"] == {"objects": 1, "pseudo": 0.9, "noisy": 0.6, "pseudo_better": 1.0}
    assert clean_summary([]) is None
