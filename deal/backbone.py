"""Backbones giving the four levels L2–L5 (strides 4, 8, 16, 32).

``cnn`` is a small Conv-BN-SiLU network for CPU training; ``swin_t`` wraps torchvision's Swin-T
(the paper's backbone). Weights are never downloaded: pass a local file or get a random init.
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


class CNNBackbone(nn.Module):
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

    def forward(self, x: Tensor) -> list[Tensor]:
        """``(B, 3, H, W)`` -> ``[L2 (B, C2, H/4, W/4), L3 (H/8), L4 (H/16), L5 (H/32)]``."""
        x = self.stem(x)
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out


class SwinBackbone(nn.Module):
    """torchvision Swin-T; L2..L5 are the outputs of its four stages (96, 192, 384, 768 ch).

    Args:
        weights: local state-dict file (e.g. ``swin_t-704ceda3.pth``) or None for random init.
    """

    channels = (96, 192, 384, 768)

    def __init__(self, weights: str | None = None) -> None:
        super().__init__()
        from torchvision.models import swin_t

        path = Path(weights) if weights is not None else None
        if path is not None and not path.is_file():
            raise TinysetError(f"{path}: Swin-T weights file not found (no downloads)")
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


def build_backbone(cfg: DealConfig) -> nn.Module:
    """The backbone named by ``cfg.backbone``; it has a ``channels`` attribute (L2..L5)."""
    if cfg.backbone == "swin_t":
        return SwinBackbone(cfg.backbone_weights)
    return CNNBackbone(cfg.backbone_channels)
