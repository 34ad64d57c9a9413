"""Backbones giving the four levels L2–L5 (strides 4, 8, 16, 32).

``cnn`` is a small Conv-BN-SiLU network for CPU training; ``swin_t`` wraps torchvision's Swin-T
(the paper's backbone). The other Table IV(c) backbones: ``resnet50`` (torchvision ResNet-50,
its four stages), ``pvt_v2`` (timm ``pvt_v2_b2``, its four stages) and ``dinov3`` (timm
``vit_small_patch16_dinov3``: one stride-16 map, resampled to strides 4, 8, 16 and 32 as
ViTDet's simple feature pyramid does, parameter-free here; the HFE's 1×1 projections follow).
Weights are never downloaded: pass a local file or get a random init.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from deal.config import DealConfig
from tinyset_builder.errors import TinysetError


class ConvNormAct(nn.Sequential):
    """``k×k`` conv (no bias) + BatchNorm + SiLU, the RT-DETR building block."""

    def __init__(self, c_in: int, c_out: int, k: int = 3, stride: int = 1) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False),
                         nn.BatchNorm2d(c_out), nn.SiLU(inplace=True))


class ResidualBlock(nn.Module):
    """Two 3×3 ConvNormAct with an identity shortcut; keeps ``(B, C, H, W)``."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(ConvNormAct(c, c), ConvNormAct(c, c))

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W) -> (B, C, H, W)``."""
        return x + self.body(x)


class StagedBackbone(nn.Module):
    """A stem, then one stage per level; each stage's output is a level (L2..L5)."""

    stem: nn.Module
    stages: nn.ModuleList

    def forward(self, x: Tensor) -> list[Tensor]:
        """``(B, 3, H, W)`` -> ``[L2 (B, C2, H/4, W/4), L3 (H/8), L4 (H/16), L5 (H/32)]``."""
        x = self.stem(x)
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out


class CNNBackbone(StagedBackbone):
    """Small CNN: stem (stride 2) then four stride-2 stages giving L2, L3, L4, L5.

    Args:
        channels: widths of L2..L5.
    """

    def __init__(self, channels: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.channels = tuple(channels)
        self.stem = ConvNormAct(3, channels[0] // 2, 3, 2)
        stages, c_prev = [], channels[0] // 2
        for c in channels:
            stages.append(nn.Sequential(ConvNormAct(c_prev, c, 3, 2), ResidualBlock(c)))
            c_prev = c
        self.stages = nn.ModuleList(stages)


def _weights_file(weights: str | None, what: str) -> Path | None:
    path = Path(weights) if weights is not None else None
    if path is not None and not path.is_file():
        raise TinysetError(f"{path}: {what} weights file not found (no downloads)")
    return path


class SwinBackbone(nn.Module):
    """torchvision Swin-T; L2..L5 are the outputs of its four stages (96, 192, 384, 768 ch).

    Args:
        weights: local state-dict file (e.g. ``swin_t-704ceda3.pth``) or None for random init.
    """

    channels = (96, 192, 384, 768)

    def __init__(self, weights: str | None = None) -> None:
        super().__init__()
        from torchvision.models import swin_t

        path = _weights_file(weights, "Swin-T")
        model = swin_t(weights=None)
        if path is not None:
            state = torch.load(path, map_location="cpu", weights_only=True)
            missing, _ = model.load_state_dict(state, strict=False)
            if any(k.startswith("features.") for k in missing):
                raise TinysetError(f"{path}: not a torchvision swin_t state dict")
        self.features = model.features  # [patch, stage1, merge, stage2, merge, stage3, ...]

    def forward(self, x: Tensor) -> list[Tensor]:
        """``(B, 3, H, W)`` (H, W multiples of 32) -> ``[L2, L3, L4, L5]`` as ``(B, C, h, w)``."""
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)  # channels-last (B, h, w, C) inside torchvision's Swin
            if i in (1, 3, 5, 7):
                out.append(x.permute(0, 3, 1, 2).contiguous())
        return out


class ResNet50Backbone(StagedBackbone):
    """torchvision ResNet-50; L2..L5 are ``layer1``..``layer4`` (256, 512, 1024, 2048 ch).

    Args:
        weights: local torchvision state dict (e.g. ``resnet50-0676ba61.pth``) or None.
    """

    channels = (256, 512, 1024, 2048)

    def __init__(self, weights: str | None = None) -> None:
        super().__init__()
        from torchvision.models import resnet50

        model = resnet50(weights=None)
        path = _weights_file(weights, "ResNet-50")
        if path is not None:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
        self.stages = nn.ModuleList([model.layer1, model.layer2, model.layer3, model.layer4])


def _timm_model(name: str, weights: str | None, **kwargs: object) -> nn.Module:
    """A timm model, randomly initialised or from a local weights file (never downloaded)."""
    from tinyset_builder._imports import require

    require("timm", extra="torch")
    import timm

    path = _weights_file(weights, name)
    if path is None:
        return timm.create_model(name, pretrained=False, **kwargs)
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(path)},
                             **kwargs)


class PVTv2Backbone(nn.Module):
    """timm ``pvt_v2_b2``; L2..L5 are its four stages (64, 128, 320, 512 ch)."""

    channels = (64, 128, 320, 512)

    def __init__(self, weights: str | None = None) -> None:
        super().__init__()
        self.body = _timm_model("pvt_v2_b2", weights, features_only=True,
                                out_indices=(0, 1, 2, 3))

    def forward(self, x: Tensor) -> list[Tensor]:
        """``(B, 3, H, W)`` -> ``[L2, L3, L4, L5]``."""
        return list(self.body(x))


class DINOv3Backbone(nn.Module):
    """timm ``vit_small_patch16_dinov3`` (384 ch, stride 16) as a four-level pyramid.

    The last block's map is upsampled ×4 and ×2 (bilinear) for L2, L3, kept for L4 and
    max-pooled for L5.
    """

    channels = (384, 384, 384, 384)

    def __init__(self, weights: str | None = None) -> None:
        super().__init__()
        self.body = _timm_model("vit_small_patch16_dinov3", weights, dynamic_img_size=True)

    def forward(self, x: Tensor) -> list[Tensor]:
        """``(B, 3, H, W)`` (multiples of 32) -> ``[L2, L3, L4, L5]``."""
        import torch.nn.functional as F

        (l4,) = self.body.forward_intermediates(x, indices=1, output_fmt="NCHW",
                                                intermediates_only=True)
        return [F.interpolate(l4, scale_factor=4.0, mode="bilinear", align_corners=False),
                F.interpolate(l4, scale_factor=2.0, mode="bilinear", align_corners=False),
                l4, F.max_pool2d(l4, 2)]


def build_backbone(cfg: DealConfig) -> nn.Module:
    """The backbone named by ``cfg.backbone``; it has a ``channels`` attribute (L2..L5).

    With ``cfg.freeze_backbone`` its parameters get no gradient (the paper's frozen DINOv3).
    """
    makers = {"swin_t": SwinBackbone, "resnet50": ResNet50Backbone, "pvt_v2": PVTv2Backbone,
              "dinov3": DINOv3Backbone}
    if cfg.backbone == "cnn":
        backbone: nn.Module = CNNBackbone(cfg.backbone_channels)
    else:
        backbone = makers[cfg.backbone](cfg.backbone_weights)
    if cfg.freeze_backbone:
        backbone.requires_grad_(False)
    return backbone
