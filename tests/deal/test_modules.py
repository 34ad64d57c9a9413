"""Shapes of every DEAL module (tiny widths, 64-128 px inputs)."""

from __future__ import annotations

import pytest
import torch

from deal.backbone import CNNBackbone, SwinBackbone
from deal.config import DealConfig, get_config
from deal.decoder import Decoder, MSDeformableAttention, ScoreHead, make_anchors, ms_deform_attn
from deal.hfe import AIFI, CSPBlock, HybridFeatureEnhancement, sine_pos_2d
from deal.model import build_model
from deal.prompt import DensityActivation, PointEmbedding, queries_from_density
from tinyset_builder.errors import TinysetError


def levels(b: int = 2, d: int = 64, h: int = 96, w: int = 128) -> list[torch.Tensor]:
    return [torch.randn(b, d, h // s, w // s) for s in (8, 16, 32)]


def test_cnn_backbone_gives_l2_to_l5() -> None:
    feats = CNNBackbone((16, 32, 64, 128))(torch.rand(2, 3, 96, 128))
    assert [tuple(f.shape) for f in feats] == [(2, 16, 24, 32), (2, 32, 12, 16),
                                               (2, 64, 6, 8), (2, 128, 3, 4)]


def test_swin_backbone_gives_l2_to_l5() -> None:
    feats = SwinBackbone(None).eval()(torch.rand(1, 3, 64, 64))
    assert [tuple(f.shape) for f in feats] == [(1, 96, 16, 16), (1, 192, 8, 8),
                                               (1, 384, 4, 4), (1, 768, 2, 2)]


def test_swin_weights_must_be_a_local_file(tmp_path) -> None:
    with pytest.raises(TinysetError, match="not found"):
        SwinBackbone(str(tmp_path / "missing.pth"))


@pytest.mark.parametrize("enabled", [True, False])
def test_hfe_outputs_s3_f4_f5(enabled: bool) -> None:
    feats = CNNBackbone((16, 32, 64, 128))(torch.rand(2, 3, 96, 128))
    hfe = HybridFeatureEnhancement((16, 32, 64, 128), 64, 4, 128, 1, 1, enabled=enabled)
    out = hfe(feats)
    assert [tuple(f.shape) for f in out] == [(2, 64, 12, 16), (2, 64, 6, 8), (2, 64, 3, 4)]
    assert hasattr(hfe, "aifi") == enabled


def test_hfe_parts_keep_shapes() -> None:
    x = torch.randn(2, 64, 3, 4)
    assert AIFI(64, 4, 128, 1)(x).shape == x.shape
    assert CSPBlock(128, 64, 2)(torch.randn(2, 128, 5, 7)).shape == (2, 64, 5, 7)
    assert sine_pos_2d(3, 4, 64).shape == (12, 64)


def test_point_embedding_shapes_and_masks() -> None:
    pe = PointEmbedding(64, 4, 128, 1, 2)
    coords = torch.tensor([[[10.0, 20.0], [50.0, 60.0], [0.0, 0.0]],
                           [[5.0, 5.0], [0.0, 0.0], [0.0, 0.0]]])
    labels = torch.tensor([[1, 0, -1], [1, -1, -1]])
    out = pe(levels(), coords, labels)
    assert out.tokens.shape == (2, 3, 64)
    assert out.valid.tolist() == [[True, True, False], [True, False, False]]
    assert out.fg.tolist() == [[True, False, False], [True, False, False]]
    assert torch.all(out.tokens[~out.valid] == 0)
    assert out.prototype().shape == (2, 64)


def test_point_embedding_reads_the_features_under_the_point() -> None:
    pe = PointEmbedding(64, 4, 128, 1, 2).eval()
    lv = levels(1)
    coords = torch.tensor([[[20.0, 20.0]]])
    labels = torch.tensor([[1]])
    before = pe(lv, coords, labels).tokens
    lv[0][:, :, 2, 2] += 10.0  # the S3 cell under (20, 20) at stride 8
    assert not torch.allclose(pe(lv, coords, labels).tokens, before)


def test_density_activation_shapes() -> None:
    pe = PointEmbedding(64, 4, 128, 1, 2)
    da = DensityActivation(64, 4, 16)
    lv = levels()
    emb = pe(lv, torch.rand(2, 3, 2) * 90, torch.tensor([[1, 1, -1], [1, -1, -1]]))
    c3, dm = da(lv[0], emb)
    assert c3.shape == (2, 16, 12, 16)
    assert dm.shape == (2, 1, 12, 16)


def test_query_count_formula() -> None:
    dm = torch.zeros(3, 1, 4, 4)
    dm[1, 0, :2, :2] = 1.0          # integral 4
    dm[2] = 1.0                     # integral 16
    n = queries_from_density(dm, factor=2.0, min_q=3, max_q=20)
    assert n.tolist() == [3, 8, 20]


def test_deformable_attention_shapes_and_sampling() -> None:
    attn = MSDeformableAttention(64, 4, 3, 4)
    shapes = [(12, 16), (6, 8), (3, 4)]
    value = torch.randn(2, sum(h * w for h, w in shapes), 64)
    out = attn(torch.randn(2, 7, 64), torch.rand(2, 7, 4), value, shapes)
    assert out.shape == (2, 7, 64)
    # The core samples bilinearly: a constant value map gives that constant at any location.
    v = torch.full((1, 12, 1, 1), 3.0)
    loc = torch.rand(1, 5, 1, 1, 2, 2) * 0.8 + 0.1
    w = torch.full((1, 5, 1, 1, 2), 0.5)
    res = ms_deform_attn(v, [(3, 4)], loc, w)
    assert torch.allclose(res, torch.full((1, 5, 1), 3.0), atol=1e-5)


def test_decoder_and_heads_shapes() -> None:
    dec = Decoder(64, 4, 128, 2, 3, 4, prompted=True)
    shapes = [(12, 16), (6, 8), (3, 4)]
    memory = torch.randn(2, sum(h * w for h, w in shapes), 64)
    values = [layer.cross.value_proj(memory) for layer in dec.layers]
    logits, boxes = dec(torch.randn(2, 9, 64), torch.rand(2, 9, 4) * 0.5 + 0.25, values,
                        shapes, torch.randn(2, 64), None)
    assert logits.shape == (2, 2, 9, 1) and boxes.shape == (2, 2, 9, 4)
    assert boxes.min() >= 0 and boxes.max() <= 1
    assert ScoreHead(64, prompted=False)(torch.randn(2, 9, 64), None).shape == (2, 9, 1)
    anchors, valid = make_anchors(shapes, 1.5, torch.device("cpu"))
    assert anchors.shape == (1, 252, 4) and valid.shape == (1, 252)


@pytest.mark.parametrize("ablation", [None, "none", "pe", "pe+hfe", "pe+hfe+dgqa", "no-prompt"])
def test_every_ablation_builds_and_runs(cfg: DealConfig, ablation: str | None) -> None:
    c = get_config("tiny", ablation, max_queries=30, min_queries=5)
    model = build_model(c)
    out = model(torch.rand(1, 3, 64, 96), torch.tensor([[[30.0, 30.0]]]), torch.tensor([[1]]))
    n = out.logits.shape[2]
    assert out.logits.shape == (c.decoder_layers, 1, n, 1)
    assert out.boxes.shape == (c.decoder_layers, 1, n, 4)
    assert (out.density_logits is not None) == c.use_dgqa
    assert (model.point_embed is not None) == c.use_pe


def test_config_rejects_impossible_switches() -> None:
    with pytest.raises(TinysetError, match="need use_pe"):
        get_config("tiny", use_pe=False, use_dgqa=True)
    with pytest.raises(TinysetError, match="unknown DEAL preset"):
        get_config("huge")
