"""Each paper-vs-ours switch of issue 20 (``deal.config.SWITCHES``) on a hand-made case."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from torchvision.ops import generalized_box_iou

from deal.config import SWITCHES, DealConfig, get_config
from deal.data import PromptSet, Sample, box_centre, point_in_box
from deal.decoder import denoising_queries, make_anchors
from deal.hfe import HybridFeatureEnhancement, RepVGGBlock
from deal.losses import Target, deal_loss, density_target
from deal.model import build_model
from deal.pgcpp import batch_prompts, cycle_prompts, targets_of
from deal.prompt import queries_from_density
from tinyset_builder.errors import TinysetError

PTS = torch.tensor([[[20.0, 20.0]]])
LAB = torch.tensor([[1]])


def test_switch_table_names_real_fields_and_paper_values(cfg: DealConfig) -> None:
    for name, sw in SWITCHES.items():
        assert set(sw.paper) == set(sw.ours), name
        paper = get_config("tiny", paper_switches=[name])
        for k, v in sw.paper.items():
            assert getattr(paper, k) == v
    with pytest.raises(TinysetError, match="unknown DEAL switch"):
        get_config("tiny", paper_switches=["nope"])
    with pytest.raises(TinysetError, match="score_head must be one of"):
        get_config("tiny", score_head="mlp")


# --- decoder ---------------------------------------------------------------------------------

def test_linear_score_heads_leave_prompts_no_path_without_dgqa(cfg: DealConfig) -> None:
    # The paper's unmodified decoder: prompts act only through S ⊙ DM. Without DGQA a different
    # prompt cannot change anything; with the prototype heads it does.
    img = torch.rand(1, 3, 64, 64)
    other = torch.tensor([[[50.0, 40.0]]])
    for head, same in (("linear", True), ("prototype", False)):
        model = build_model(cfg.replace(use_dgqa=False, use_pgcpp=False, score_head=head)).eval()
        with torch.no_grad():
            a, b = model(img, PTS, LAB), model(img, other, LAB)
        assert torch.equal(a.logits, b.logits) is same, head


def test_query_selection_by_score_only(cfg: DealConfig) -> None:
    # With density_selection off the selected queries are the top-N encoder scores, in order.
    img = torch.rand(1, 3, 64, 64)
    for flag in (False, True):
        model = build_model(cfg.replace(density_selection=flag)).eval()
        with torch.no_grad():
            out = model(img, PTS, LAB, min_queries=torch.tensor([30]))
        s = out.enc_logits[0, :, 0]
        assert bool((s[:-1] >= s[1:]).all()) is (not flag)


def test_density_scales_only_s3_in_the_paper_reading(cfg: DealConfig) -> None:
    img = torch.rand(1, 3, 64, 64)
    seen = {}
    for levels in ("s3", "all"):
        model = build_model(cfg.replace(density_levels=levels)).eval()
        feats = model.encode(img)
        captured = {}
        forward = model.decoder.forward

        def spy(tgt, ref, values, *a, _f=forward, _c=captured, **k):
            _c["values"] = values
            return _f(tgt, ref, values, *a, **k)

        model.decoder.forward = spy
        with torch.no_grad():
            model.decode(feats, PTS, LAB)
        (h, w) = feats.cache["shapes"][0]
        bias = model.decoder.layers[0].cross.value_proj.bias
        valid = feats.cache["valid"][0, h * w:, None].float()
        unscaled = feats.cache["values"][0][:, h * w:] * valid + bias
        seen[levels] = torch.allclose(captured["values"][0][:, h * w:], unscaled, atol=1e-6)
    assert seen == {"s3": True, "all": False}


def test_rtdetr_anchor_sizes() -> None:
    shapes = [(8, 8), (4, 4), (2, 2)]
    anchors, _ = make_anchors(shapes, 1.5, torch.device("cpu"), mode="rtdetr")
    wh = anchors.sigmoid()[0, :, 2]
    assert torch.allclose(wh[:64], torch.full((64,), 0.05))
    assert torch.allclose(wh[64:80], torch.full((16,), 0.10))
    assert torch.allclose(wh[80:], torch.full((4,), 0.20))
    cells, _ = make_anchors(shapes, 1.5, torch.device("cpu"))
    assert torch.allclose(cells.sigmoid()[0, :64, 2], torch.full((64,), 1.5 / 8))


def test_denoising_groups_noise_and_mask() -> None:
    gt = [torch.tensor([[0.5, 0.5, 0.2, 0.1], [0.3, 0.6, 0.1, 0.1]]),
          torch.tensor([[0.4, 0.4, 0.2, 0.2]])]
    ref, idx, positive, mask = denoising_queries(gt, num_denoising=6, num_queries=5,
                                                 generator=torch.Generator().manual_seed(0))
    # 6 // max_gt(2) = 3 groups of 2·max_gt queries: 12 denoising queries.
    assert ref.shape == (2, 12, 4) and mask.shape == (17, 17)
    assert idx[1].tolist() == [0, -1, 0, -1] * 3 and idx[0].tolist() == [0, 1, 0, 1] * 3
    assert positive[0].tolist() == [True, True, False, False] * 3
    # Corners move by < 1 half-size for positives, by >= 1 for negatives (before clipping).
    for i, t in enumerate(gt):
        for j in range(12):
            g = int(idx[i, j])
            if g < 0:
                continue
            b, r = t[g], ref[i, j]
            shift = (torch.stack([r[0] - r[2] / 2, r[1] - r[3] / 2, r[0] + r[2] / 2,
                                  r[1] + r[3] / 2])
                     - torch.stack([b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2,
                                    b[1] + b[3] / 2])).abs()
            half = torch.cat([b[2:], b[2:]]) / 2
            if positive[i, j]:
                assert bool((shift < half + 1e-5).all())
            else:
                assert bool((shift > half - 1e-5).any())
    # Matching queries never see denoising ones; groups never see each other.
    assert mask[12:, :12].all() and not mask[12:, 12:].any() and not mask[:12, 12:].any()
    assert mask[0:4, 4:12].all() and not mask[0:4, 0:4].any() and mask[4:8, 0:4].all()
    assert denoising_queries([torch.zeros(0, 4)], 100, 5) is None


def test_denoising_queries_train_and_vanish_in_eval(cfg: DealConfig) -> None:
    c = cfg.replace(num_denoising=10)
    model = build_model(c).train()
    t = [torch.tensor([[0.3, 0.3, 0.1, 0.1], [0.7, 0.6, 0.1, 0.1]])]
    out = model.decode(model.encode(torch.rand(1, 3, 64, 64)), PTS, LAB,
                       min_queries=torch.tensor([8]), dn_targets=t)
    assert out.dn is not None and out.dn[0].shape == (c.decoder_layers, 1, 20, 1)
    with_dn = deal_loss(out, [Target(t[0])], c)
    without = deal_loss(out.__class__(**{**out.__dict__, "dn": None}), [Target(t[0])], c)
    assert with_dn["reg"] > without["reg"]  # the positives' regression terms are added
    with_dn["total"].backward()
    assert model.dn_embed.weight.grad.abs().sum() > 0
    model.eval()
    assert model.decode(model.encode(torch.rand(1, 3, 64, 64)), PTS, LAB,
                        dn_targets=t).dn is None


# --- eq. 8 -------------------------------------------------------------------------------------

def test_count_density_integrates_to_the_object_count() -> None:
    boxes = torch.tensor([[0.25, 0.25, 0.05, 0.05], [0.6, 0.7, 0.08, 0.05],
                          [0.62, 0.72, 0.05, 0.05]])
    count = density_target([Target(boxes)], (32, 32), 0.6, torch.device("cpu"), mode="count")
    assert count.sum().item() == pytest.approx(3.0, abs=1e-4)
    peak = density_target([Target(boxes)], (32, 32), 0.6, torch.device("cpu"))
    assert peak.max().item() == 1.0 and peak.sum().item() > 3.0


def test_query_count_from_a_count_density() -> None:
    dm = torch.zeros(2, 1, 4, 4)
    dm[0, 0, 0, :3] = 0.9           # Σ = 2.7 -> round 3 (peak mode: ceil(2·2.7) = 6)
    dm[1] = 0.5                     # Σ = 8 -> round 8, capped at 7
    assert queries_from_density(dm, 2.0, 1, 7, mode="count").tolist() == [3, 7]
    assert queries_from_density(dm, 2.0, 1, 7, mode="peak").tolist() == [6, 7]


# --- PG-CPP ------------------------------------------------------------------------------------

def _sample() -> Sample:
    rng = np.random.default_rng(0)
    boxes = np.array([[4, 4, 10, 10], [30, 30, 38, 37], [50, 8, 56, 14], [12, 40, 20, 48]],
                     dtype=np.float32)
    return Sample(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), boxes,
                  np.array([1, 1, 2, 1], dtype=np.int64))


def _focal_cost(p: np.ndarray, alpha: float = 0.25, gamma: float = 2.0) -> np.ndarray:
    return (alpha * (1 - p) ** gamma * -np.log(p + 1e-8)
            - (1 - alpha) * p ** gamma * -np.log(1 - p + 1e-8))


def test_paper_pgcpp_prompts_the_centre_of_the_worst_matched_prediction(cfg: DealConfig) -> None:
    c = cfg.replace(pgcpp_variant="paper")
    model = build_model(c).eval()
    s = _sample()
    ps = PromptSet(box_centre(s.boxes[0])[None], np.array([0, 1, 3]), [0])
    img = torch.from_numpy(s.image).permute(2, 0, 1)[None].float() / 255
    feats = model.encode(img)
    coords, labels = batch_prompts([ps], img.device)
    with torch.no_grad():
        out = model.decode(feats, coords, labels)
    # Independently: RT-DETR's matching cost, scipy's assignment, q = score · IoU.
    m = out.query_mask[0]
    p = out.logits[-1, 0, m, 0].sigmoid().numpy().astype(np.float64)
    pred = out.boxes[-1, 0, m].numpy().astype(np.float64)
    gt = targets_of([s], [ps], feats.input_size)[0].boxes.numpy().astype(np.float64)
    to_xyxy = lambda b: np.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2,  # noqa: E731
                                  b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2], 1)
    giou = generalized_box_iou(torch.from_numpy(to_xyxy(pred)), torch.from_numpy(to_xyxy(gt)))
    cost = (c.cost_class * _focal_cost(p)[:, None]
            + c.cost_l1 * np.abs(pred[:, None] - gt[None]).sum(-1) - c.cost_giou * giou.numpy())
    qi, gi = linear_sum_assignment(cost)
    ax, bx = to_xyxy(pred[qi]), to_xyxy(gt[gi])
    inter = (np.clip(np.minimum(ax[:, 2:], bx[:, 2:]) - np.maximum(ax[:, :2], bx[:, :2]), 0, None)
             .prod(1))
    union = (ax[:, 2:] - ax[:, :2]).prod(1) + (bx[:, 2:] - bx[:, :2]).prod(1) - inter
    q = p[qi] * inter / union
    unprompted = [k for k in range(len(gi)) if int(ps.target_idx[gi[k]]) != 0]
    worst = min(unprompted, key=lambda k: q[k])
    h, w = feats.input_size
    expected = np.array([pred[qi[worst], 0] * w, pred[qi[worst], 1] * h])
    grown = cycle_prompts(model, feats, [s], [ps], 1, c, np.random.default_rng(0))[0]
    assert grown.prompted_idx == [0, int(ps.target_idx[gi[worst]])]
    np.testing.assert_allclose(grown.points[1], expected, rtol=1e-5, atol=1e-3)
    # Ours adds that GT's own centre instead.
    ours = cycle_prompts(model, feats, [s], [ps], 1, cfg, np.random.default_rng(0))[0]
    assert not np.allclose(ours.points[1], grown.points[1])


def test_initial_points_fill_the_box_in_the_paper_variant() -> None:
    rng = np.random.default_rng(0)
    box = np.array([0, 0, 40, 20], dtype=np.float32)
    central = np.stack([point_in_box(box, rng) for _ in range(400)])
    anywhere = np.stack([point_in_box(box, rng, spread=1.0) for _ in range(400)])
    assert central[:, 0].min() >= 10 and central[:, 0].max() <= 30
    assert anywhere[:, 0].min() < 4 and anywhere[:, 0].max() > 36
    assert (anywhere >= 0).all() and (anywhere[:, 0] <= 40).all() and (anywhere[:, 1] <= 20).all()


# --- HFE ---------------------------------------------------------------------------------------

def test_repvgg_block_equals_its_fused_convolution() -> None:
    block = RepVGGBlock(8)
    with torch.no_grad():
        for bn in (block.conv3[1], block.conv1[1]):  # non-trivial BatchNorm statistics
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    block.eval()
    x = torch.randn(2, 8, 9, 7)
    assert torch.allclose(block(x), block.fused()(x), atol=1e-5)
    hfe = HybridFeatureEnhancement((8, 16, 32, 64), 32, 4, 64, 1, 2, True, "repvgg")
    assert sum(isinstance(m, RepVGGBlock) for m in hfe.modules()) == 10  # 5 CSP layers × 2


# --- P2SOD scoring of a model without prompt branch ---------------------------------------------

def test_unprompted_credit_rule(tmp_path: Path, scene_data: Path) -> None:
    from deal.predictor import DealPredictor, predict_prompt_file
    from deal.train import load_model, save_checkpoint

    gt = json.loads((scene_data / "annotations" / "test.json").read_text())
    images = {i["id"]: scene_data / "images" / "test" / i["file_name"] for i in gt["images"]}
    prompts = [{"image_id": 1, "category_id": 1, "points": [[10.0, 10.0]]},
               {"image_id": 1, "category_id": 3, "points": [[50.0, 50.0]]}]
    found = {}
    for rule in ("none", "all-prompted"):
        c = get_config("tiny", "none", input_scale=1.0, max_queries=12, min_queries=5,
                       unprompted_credit=rule)
        path = save_checkpoint(tmp_path / f"{rule}.pt", build_model(c), None, 0, 0.0)
        dets = predict_prompt_file(DealPredictor(load_model(path)), images, prompts,
                                   progress=False)
        found[rule] = dets
    assert found["none"] == []  # the paper's Table IV(d) "0.0": no prompt is answered
    by_cat = {1: [], 3: []}
    for d in found["all-prompted"]:
        by_cat[d["category_id"]].append((d["bbox"], d["score"]))
    assert by_cat[1] and by_cat[1] == by_cat[3]  # the same boxes answer every prompted category
