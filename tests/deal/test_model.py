"""DEAL end to end: forward/backward, empty GT, density-allocated queries, cached features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deal.config import DealConfig
from deal.losses import Target, deal_loss, density_target
from deal.model import build_model
from deal.predictor import DealPredictor
from deal.prompt import queries_from_density
from tinyset_builder.errors import TinysetError


def _targets() -> list[Target]:
    return [Target(torch.tensor([[0.3, 0.3, 0.05, 0.06], [0.7, 0.5, 0.04, 0.04]])),
            Target(torch.tensor([[0.5, 0.5, 0.1, 0.1]]))]


def _grads(model: torch.nn.Module, prefix: str) -> float:
    return sum(float(p.grad.abs().sum()) for n, p in model.named_parameters()
               if n.startswith(prefix) and p.grad is not None)


def test_forward_backward_with_prompts(cfg: DealConfig) -> None:
    model = build_model(cfg).train()
    out = model(torch.rand(2, 3, 64, 64), torch.tensor([[[20.0, 20.0], [45.0, 30.0]],
                                                        [[32.0, 32.0], [0.0, 0.0]]]),
                torch.tensor([[1, 1], [1, -1]]))
    losses = deal_loss(out, _targets(), cfg)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["density"] > 0 and losses["reg"] > 0
    losses["total"].backward()
    # Every part of the network receives gradient, the prompt branch included.
    for prefix in ("backbone", "hfe", "point_embed", "density", "decoder", "enc_score"):
        assert _grads(model, prefix) > 0, prefix


def test_forward_backward_without_prompt_branch(cfg: DealConfig) -> None:
    c = cfg.replace(use_pe=False, use_dgqa=False, use_pgcpp=False)
    model = build_model(c).train()
    out = model(torch.rand(2, 3, 64, 64))
    assert out.density_logits is None
    assert out.num_queries.tolist() == [c.max_queries, c.max_queries]
    losses = deal_loss(out, _targets(), c)
    assert losses["density"] == 0
    losses["total"].backward()
    assert _grads(model, "backbone") > 0


def test_prompted_model_demands_prompts(cfg: DealConfig) -> None:
    with pytest.raises(TinysetError, match="give point prompts"):
        build_model(cfg)(torch.rand(1, 3, 64, 64))


def test_image_without_gt_gives_finite_losses(cfg: DealConfig) -> None:
    model = build_model(cfg).train()
    # An image without GT has nothing to prompt: the prompt set is all padding.
    out = model(torch.rand(1, 3, 64, 64), torch.zeros(1, 1, 2), torch.tensor([[-1]]))
    losses = deal_loss(out, [Target(torch.zeros(0, 4))], cfg)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["reg"] == 0
    assert losses["cls"] > 0 and losses["density"] > 0  # background is still supervised
    losses["total"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_query_count_follows_density_integral(cfg: DealConfig) -> None:
    model = build_model(cfg).eval()
    head_bias = model.density.head[-1].bias
    counts = []
    for bias in (-8.0, -3.5, -2.5, 8.0):
        with torch.no_grad():
            head_bias.fill_(bias)
            out = model(torch.rand(1, 3, 96, 96), torch.tensor([[[40.0, 40.0]]]),
                        torch.tensor([[1]]))
        dm = out.density_logits.sigmoid()
        expected = queries_from_density(dm, cfg.query_factor, cfg.min_queries, cfg.max_queries)
        assert out.num_queries.tolist() == expected.tolist()
        assert out.logits.shape[2] == int(expected[0]) == int(out.query_mask.sum())
        counts.append(int(expected[0]))
    # A denser map allocates more queries, bounded by min/max.
    assert counts[0] == cfg.min_queries and counts[-1] == cfg.max_queries
    assert counts == sorted(counts) and len(set(counts)) >= 3


def test_density_target_peaks_at_centres() -> None:
    t = density_target([Target(torch.tensor([[0.5625, 0.3125, 0.05, 0.05]]))], (8, 8), 0.6,
                       torch.device("cpu"))
    assert t.shape == (1, 1, 8, 8)
    assert float(t[0, 0, 2, 4]) == 1.0 and int((t == 1).sum()) == 1


def test_cached_features_give_the_same_boxes_as_a_full_forward(cfg: DealConfig) -> None:
    model = build_model(cfg).eval()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, size=(70, 90, 3), dtype=np.uint8)
    pred = DealPredictor(model)
    pred.set_image(image)
    sets = [[[20.0, 30.0]], [[60.0, 10.0], [80.0, 60.0]]]
    cached = [pred.predict(s) for s in sets]
    batched = pred.predict_many(sets)
    for s, c, b in zip(sets, cached, batched, strict=True):
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
        with torch.no_grad():
            full = model(x, torch.tensor([s]), torch.ones(1, len(s), dtype=torch.long))
        scores = full.logits[-1, 0, :, 0].sigmoid()
        assert len(c.scores) == len(scores) > 0
        np.testing.assert_allclose(np.sort(c.scores), np.sort(scores.numpy()), rtol=1e-5,
                                   atol=1e-6)
        np.testing.assert_allclose(c.xyxy, b.xyxy, atol=1e-4)
        # Boxes: same set as the full forward's (converted to pixels).
        bx = full.boxes[-1, 0]
        h, w = full.input_size
        xyxy = torch.stack([(bx[:, 0] - bx[:, 2] / 2) * w, (bx[:, 1] - bx[:, 3] / 2) * h,
                            (bx[:, 0] + bx[:, 2] / 2) * w, (bx[:, 1] + bx[:, 3] / 2) * h], -1)
        xyxy[:, 0::2] = xyxy[:, 0::2].clamp(0, 90)
        xyxy[:, 1::2] = xyxy[:, 1::2].clamp(0, 70)
        order = torch.argsort(scores, descending=True, stable=True)
        np.testing.assert_allclose(c.xyxy, xyxy[order].numpy(), atol=1e-4)


def test_predictor_rejects_bad_prompts(cfg: DealConfig) -> None:
    pred = DealPredictor(build_model(cfg))
    with pytest.raises(TinysetError, match="set_image"):
        pred.predict([[1.0, 1.0]])
    pred.set_image(np.zeros((40, 50, 3), np.uint8))
    with pytest.raises(TinysetError, match=r"outside the 50x40 image"):
        pred.predict([[10.0, 10.0], [51.0, 5.0]])
    with pytest.raises(TinysetError, match="outside"):
        pred.predict([[-1.0, 5.0]])
    with pytest.raises(TinysetError, match="empty prompt list"):
        pred.predict([])
    with pytest.raises(TinysetError, match="0/1"):
        pred.predict([[10.0, 10.0]], [2])


def test_cached_projections_equal_projecting_the_modulated_memory(cfg: DealConfig) -> None:
    """decode() rescales cached projections; that must equal RT-DETR's direct computation."""
    import torch.nn.functional as F

    model = build_model(cfg).eval()
    with torch.no_grad():
        feats = model.encode(torch.rand(1, 3, 64, 96))
        pts, labels = torch.tensor([[[30.0, 20.0]]]), torch.tensor([[1]])
        pe = model.point_embed(feats.levels, pts, labels)
        c3_direct, dm_direct = model.density(feats.levels[0], pe)  # keys/values projected here
        c3_cached, dm_cached = model.density(feats.levels[0], pe, feats.cache["kv"])
        torch.testing.assert_close(c3_direct, c3_cached)
        torch.testing.assert_close(dm_direct, dm_cached)
        # The modulated memory, projected directly, equals the rescaled cached projection.
        dm = dm_direct.sigmoid()
        mod = [lvl * F.adaptive_max_pool2d(dm, lvl.shape[-2:]) for lvl in feats.levels]
        memory = torch.cat([m.flatten(2).transpose(1, 2) for m in mod], 1)
        memory = memory * feats.cache["valid"][..., None].float()
        layer = model.decoder.layers[0].cross.value_proj
        scale = torch.cat([F.adaptive_max_pool2d(dm, s).flatten(1)
                           for s in feats.cache["shapes"]], 1) * feats.cache["valid"].float()
        torch.testing.assert_close(layer(memory),
                                   scale[..., None] * feats.cache["values"][0] + layer.bias)
        # And the density cross-attention equals torch's MultiheadAttention.
        tokens = feats.levels[0].flatten(2).transpose(1, 2)
        from deal.hfe import sine_pos_2d

        pos = sine_pos_2d(*feats.levels[0].shape[-2:], cfg.hidden_dim)[None]
        ref, _ = model.density.cross(pe.tokens, tokens + pos, tokens)
        torch.testing.assert_close(model.density._attend(pe.tokens, *feats.cache["kv"]), ref)
