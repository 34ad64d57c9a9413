"""HS-FPN: a feature pyramid with high-frequency and spatial-dependency perception.

Paper: Z. Shi, J. Hu, J. Ren, H. Ye, X. Yuan, Y. Ouyang, J. He, B. Ji, J. Guo, "HS-FPN: High
Frequency and Spatial Perception FPN for Tiny Object Detection", AAAI 2025 (arXiv 2412.10116).
Authors' code: ``ShiZican/HS-FPN`` (``hs_fpn.py``, mmdet 2.24.1, ``torch_dct``). No snapshot of that
repository could be fetched here; the module was read in public copies found by the code search
(files headed "Code Structure of HS-FPN (https://arxiv.org/abs/2412.10116)", same classes
``DctSpatialInteraction``, ``DctChannelInteraction``, ``HFP``, ``SDP``, ``HS_FPN``), so no commit
can be cited. Own implementation; the DCT is computed with ``torch.fft`` (:func:`dct_2d`).

* **High-frequency perception (HFP)** on each lateral map. On P2 and P3 a DCT high-pass filter
  (:func:`high_pass`: the lowest ``ratio`` = 25 % × 25 % block of DCT coefficients set to zero,
  then the inverse DCT) gives a high-frequency response ``F``. *Spatial path*: ``x · F``.
  *Channel path*: ``F`` max- and average-pooled to a ``patch × patch`` grid (16² on P2, 8² on P3),
  ReLU, summed over the grid, a shared grouped 1×1 convolution, added, a second grouped 1×1
  convolution and a sigmoid give per-channel weights for ``x``. On P4 and P5 (no DCT) the spatial
  path is a 1×1 convolution + sigmoid mask and the channel path an SE-style max/avg pooled gate.
  The two paths are added and passed through a 3×3 convolution and GroupNorm.
* **Spatial dependency perception (SDP)** between adjacent levels: pixel-level cross-attention in
  local windows, queries from the lower level's HFP output, keys and values from the upper level
  upsampled ×2, added back to the lower level. Top-down it runs P5→P4, P4→P3, P3→P2, then the
  usual FPN sum and 3×3 output convolutions follow.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True, slots=True)
class HSFPNConfig:
    """The authors' defaults: ``ratio=(0.25, 0.25)``, patches 16 (P2) and 8 (P3); ``window`` is
    the SDP attention window (the authors use P5's whole size, see docs/baselines.md)."""

    ratio: tuple[float, float] = (0.25, 0.25)
    patch_p2: int = 16
    patch_p3: int = 8
    window: int = 8


def _dct_1d(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal DCT-II along the last dimension via one FFT (Makhoul's reordering)."""
    n = x.shape[-1]
    v = torch.cat([x[..., ::2], x[..., 1::2].flip(-1)], dim=-1)
    spec = torch.fft.fft(v, dim=-1)
    k = torch.arange(n, device=x.device, dtype=x.dtype)
    out = (spec * torch.exp(-1j * math.pi * k / (2 * n))).real * 2
    scale = torch.full((n,), math.sqrt(1 / (2 * n)), device=x.device, dtype=x.dtype)
    scale[0] = math.sqrt(1 / (4 * n))
    return out * scale


def _idct_1d(coef: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_dct_1d` (orthonormal DCT-III) via one inverse FFT."""
    n = coef.shape[-1]
    scale = torch.full((n,), math.sqrt(2 * n), device=coef.device, dtype=coef.dtype)
    scale[0] = math.sqrt(4 * n)
    c = coef * scale / 2                   # undo the normalisation: c_k = Re(e^{-iπk/2N} V_k)
    # V_k = e^{iπk/2N} (c_k − i c_{N−k}) with c_N = 0 rebuilds the FFT of the reordered signal.
    flipped = torch.cat([torch.zeros_like(c[..., :1]), c[..., 1:].flip(-1)], dim=-1)
    k = torch.arange(n, device=coef.device, dtype=coef.dtype)
    spec = torch.exp(1j * math.pi * k / (2 * n)) * torch.complex(c, -flipped)
    v = torch.fft.ifft(spec, dim=-1).real
    x = torch.empty_like(v)
    x[..., ::2] = v[..., : (n + 1) // 2]
    x[..., 1::2] = v[..., (n + 1) // 2:].flip(-1)
    return x


def dct_2d(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal 2-D DCT-II over the last two dimensions (scipy's ``dctn(norm="ortho")``)."""
    return _dct_1d(_dct_1d(x).transpose(-1, -2)).transpose(-1, -2)


def idct_2d(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`dct_2d`."""
    return _idct_1d(_idct_1d(x).transpose(-1, -2)).transpose(-1, -2)


def high_pass(x: torch.Tensor, ratio: tuple[float, float]) -> torch.Tensor:
    """``x`` without its low frequencies: the top-left ``⌊h·r0⌋ × ⌊w·r1⌋`` DCT block zeroed."""
    h, w = x.shape[-2:]
    mask = torch.ones((h, w), device=x.device, dtype=x.dtype)
    mask[: int(h * ratio[0]), : int(w * ratio[1])] = 0
    return idct_2d(dct_2d(x) * mask)


def _conv_relu(cin: int, cout: int, k: int, groups: int = 1, bias: bool = True) -> nn.Sequential:
    """mmcv's default ``ConvModule``: convolution then ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=bias),
                         nn.ReLU(inplace=True))


def _groups(channels: int) -> int:
    return math.gcd(32, channels)


class HFP(nn.Module):
    """High-frequency perception on one level (DCT on P2/P3, plain gates on P4/P5)."""

    def __init__(self, channels: int, ratio: tuple[float, float] | None, patch: int = 8):
        super().__init__()
        self.ratio, self.patch = ratio, patch
        g = _groups(channels)
        if ratio is None:
            self.spatial = _conv_relu(channels, 1, 1, bias=False)
        self.channel1 = _conv_relu(channels, channels, 1, groups=g, bias=False)
        self.channel2 = _conv_relu(channels, channels, 1, groups=g, bias=False)
        self.out = nn.Sequential(_conv_relu(channels, channels, 3), nn.GroupNorm(g, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.ratio is None:
            spatial = x * torch.sigmoid(self.spatial(x))
            mx = F.adaptive_max_pool2d(x, 1).relu()
            avg = F.adaptive_avg_pool2d(x, 1).relu()
        else:
            freq = high_pass(x, self.ratio)
            spatial = x * freq
            mx = F.adaptive_max_pool2d(freq, self.patch).relu().sum((2, 3), keepdim=True)
            avg = F.adaptive_avg_pool2d(freq, self.patch).relu().sum((2, 3), keepdim=True)
        gate = torch.sigmoid(self.channel2(self.channel1(mx) + self.channel1(avg)))
        return self.out(spatial + x * gate)


class SDP(nn.Module):
    """Spatial dependency perception: windowed pixel cross-attention, lower level ← upper level."""

    def __init__(self, channels: int, window: int):
        super().__init__()
        g = _groups(channels)
        self.window = window
        self.q = nn.Sequential(_conv_relu(channels, channels, 1, bias=False),
                               nn.GroupNorm(g, channels))
        self.k = nn.Sequential(_conv_relu(channels, channels, 1, bias=False),
                               nn.GroupNorm(g, channels))

    def forward(self, low: torch.Tensor, high_up: torch.Tensor) -> torch.Tensor:
        n, c, h, w = low.shape
        if high_up.shape[-2:] != (h, w):
            high_up = F.interpolate(high_up, size=(h, w), mode="nearest")
        s = self.window
        ph, pw = (-h) % s, (-w) % s
        q = F.pad(self.q(low), (0, pw, 0, ph))
        k = F.pad(self.k(high_up), (0, pw, 0, ph))
        hh, ww = (h + ph) // s, (w + pw) // s

        def windows(t: torch.Tensor) -> torch.Tensor:   # (n, c, H, W) -> (n·hh·ww, s·s, c)
            t = t.reshape(n, c, hh, s, ww, s).permute(0, 2, 4, 3, 5, 1)
            return t.reshape(n * hh * ww, s * s, c)

        qw, kw = windows(q), windows(k)
        logits = qw @ kw.transpose(1, 2) / math.sqrt(c)
        if ph or pw:   # padded pixels are no keys
            valid = F.pad(low.new_ones((1, 1, h, w)), (0, pw, 0, ph))
            valid = valid.reshape(1, 1, hh, s, ww, s).permute(0, 2, 4, 3, 5, 1)
            valid = valid.reshape(hh * ww, 1, s * s).repeat(n, 1, 1)
            logits = logits.masked_fill(valid == 0, float("-inf"))
        out = logits.softmax(-1) @ kw                       # values are the keys (authors' SDP)
        out = out.reshape(n, hh, ww, s, s, c).permute(0, 5, 1, 3, 2, 4)
        out = out.reshape(n, c, hh * s, ww * s)[:, :, :h, :w]
        return out + low


class HSFPN(nn.Module):
    """HS-FPN over four backbone maps (C2..C5) returning P2..P5 (+ torchvision extra blocks)."""

    def __init__(self, in_channels: list[int], out_channels: int, cfg: HSFPNConfig,
                 extra_blocks: Any = None):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.output = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1)
                                    for _ in in_channels)
        self.hfp = nn.ModuleList([HFP(out_channels, cfg.ratio, cfg.patch_p2),
                                  HFP(out_channels, cfg.ratio, cfg.patch_p3),
                                  HFP(out_channels, None), HFP(out_channels, None)])
        self.sdp = nn.ModuleList(SDP(out_channels, cfg.window) for _ in in_channels[:-1])
        self.extra_blocks = extra_blocks

    def forward(self, feats: OrderedDict[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
        names, xs = list(feats.keys()), list(feats.values())
        lat = [conv(x) for conv, x in zip(self.lateral, xs, strict=True)]
        top = len(lat) - 1
        lat[top] = self.hfp[top](lat[top])
        for i in range(top - 1, -1, -1):   # P4 <- P5, P3 <- P4, P2 <- P3
            up = F.interpolate(lat[i + 1], scale_factor=2.0, mode="nearest")
            lat[i] = self.sdp[i](self.hfp[i](lat[i]), up)
        for i in range(top, 0, -1):        # the usual FPN top-down sum
            lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], size=lat[i - 1].shape[-2:],
                                                    mode="nearest")
        outs = [conv(x) for conv, x in zip(self.output, lat, strict=True)]
        if self.extra_blocks is not None:
            outs, names = self.extra_blocks(outs, xs, names)
        return OrderedDict(zip(names, outs, strict=True))


class BackboneWithHSFPN(nn.Module):
    """A ResNet body + HS-FPN with ``out_channels``, usable as a torchvision detector backbone."""

    def __init__(self, body: nn.Module, in_channels: list[int], out_channels: int,
                 cfg: HSFPNConfig, extra: str = "maxpool"):
        super().__init__()
        from torchvision.models._utils import IntermediateLayerGetter
        from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

        self.body = IntermediateLayerGetter(
            body, {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"})
        blocks = (LastLevelMaxPool() if extra == "maxpool"
                  else LastLevelP6P7(out_channels, out_channels))
        self.fpn = HSFPN(in_channels, out_channels, cfg, blocks)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return self.fpn(self.body(x))


def build_hs_fpn_backbone(spec: Any, cfg: HSFPNConfig = HSFPNConfig(),
                          extra: str = "maxpool") -> BackboneWithHSFPN:
    """The ResNet of ``spec`` (:class:`baselines.detectors.DetectorSpec`) with an HS-FPN neck."""
    from baselines.detectors import BACKBONES, _body

    return BackboneWithHSFPN(_body(spec), list(BACKBONES[spec.backbone][1]), spec.fpn_channels,
                             cfg, extra)
