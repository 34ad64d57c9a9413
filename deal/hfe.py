"""Hybrid Feature Enhancement (paper eq. 2–3): AIFI on L5, top-down and bottom-up CSP fusion.

S3 = CSP(Fuse↓(L̃5, L4, L3), Fuse↑(L2)) at stride 8. For the multi-scale decoder the path goes on
bottom-up to stride 16 and 32 (F4, F5), as RT-DETR's CCFM does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deal.backbone import ConvNormAct


def sine_pos_2d(h: int, w: int, dim: int, temperature: float = 10000.0,
                device: torch.device | None = None) -> Tensor:
    """2-D sine-cosine position embedding as in RT-DETR, ``(h*w, dim)`` (row-major tokens)."""
    if dim % 4:
        raise ValueError("dim must be divisible by 4")
    gy, gx = torch.meshgrid(torch.arange(h, dtype=torch.float32, device=device),
                            torch.arange(w, dtype=torch.float32, device=device), indexing="ij")
    quarter = dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float32, device=device)
                                  / quarter)
    ox = gx.flatten()[:, None] * omega[None]  # (h*w, dim/4)
    oy = gy.flatten()[:, None] * omega[None]
    return torch.cat([ox.sin(), ox.cos(), oy.sin(), oy.cos()], dim=1)


def point_pos(xy: Tensor, dim: int, temperature: float = 10000.0) -> Tensor:
    """Sine embedding of continuous positions in cells: ``(..., 2) -> (..., dim)``."""
    quarter = dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=xy.dtype, device=xy.device)
                                  / quarter)
    ox = xy[..., :1] * omega
    oy = xy[..., 1:2] * omega
    return torch.cat([ox.sin(), ox.cos(), oy.sin(), oy.cos()], dim=-1)


class RepVGGBlock(nn.Module):
    """RepVGG block (Ding et al. 2021) as in RT-DETR's CSPRepLayer: ``SiLU(BN(3×3) + BN(1×1))``.

    Training uses the two branches; :meth:`fused` folds them (and the BatchNorms, in eval mode)
    into the single 3×3 convolution RepVGG deploys, which gives the same output.
    """

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv3 = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))
        self.conv1 = nn.Sequential(nn.Conv2d(c, c, 1, 1, 0, bias=False), nn.BatchNorm2d(c))
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W) -> (B, C, H, W)``."""
        return self.act(self.conv3(x) + self.conv1(x))

    @staticmethod
    def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
        std = (bn.running_var + bn.eps).sqrt()
        w = conv.weight * (bn.weight / std)[:, None, None, None]
        return w, bn.bias - bn.running_mean * bn.weight / std

    @torch.no_grad()
    def fused(self) -> nn.Sequential:
        """The equivalent ``3×3 conv (with bias) + SiLU`` of this block in eval mode."""
        w3, b3 = self._fold(self.conv3[0], self.conv3[1])
        w1, b1 = self._fold(self.conv1[0], self.conv1[1])
        conv = nn.Conv2d(w3.shape[1], w3.shape[0], 3, 1, 1)
        conv.weight.copy_(w3 + F.pad(w1, (1, 1, 1, 1)))  # the 1×1 kernel is the 3×3's centre
        conv.bias.copy_(b3 + b1)
        return nn.Sequential(conv, nn.SiLU())


class CSPBlock(nn.Module):
    """CSP fusion layer: two 1×1 branches, ``n`` blocks on one, summed, 1×1 out.

    Args:
        c_in: input channels (usually 2·hidden after a concatenation).
        c_out: output channels.
        n: number of blocks (RT-DETR uses 3 RepVGG blocks).
        block: ``"conv3x3"`` (ConvNormAct 3×3) or ``"repvgg"`` (:class:`RepVGGBlock`).
    """

    def __init__(self, c_in: int, c_out: int, n: int = 1, block: str = "conv3x3") -> None:
        super().__init__()
        self.a = ConvNormAct(c_in, c_out, 1)
        self.b = ConvNormAct(c_in, c_out, 1)
        make = (lambda: RepVGGBlock(c_out)) if block == "repvgg" else (
            lambda: ConvNormAct(c_out, c_out, 3))
        self.blocks = nn.Sequential(*[make() for _ in range(n)])
        self.out = ConvNormAct(c_out, c_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, c_in, H, W) -> (B, c_out, H, W)``."""
        return self.out(self.blocks(self.a(x)) + self.b(x))


class AIFI(nn.Module):
    """Post-norm transformer encoder on the L5 tokens with 2-D sine positions (RT-DETR AIFI)."""

    def __init__(self, dim: int, heads: int, ffn: int, layers: int) -> None:
        super().__init__()
        self.dim = dim
        self.layers = nn.ModuleList([
            nn.TransformerEncoderLayer(dim, heads, ffn, dropout=0.0, activation="gelu",
                                       batch_first=True) for _ in range(layers)])

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W) -> (B, C, H, W)``: every location attends to every other."""
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, H*W, C)
        pos = sine_pos_2d(h, w, c, device=x.device)[None]
        for layer in self.layers:
            # RT-DETR adds the position to queries and keys only; adding it to the input of a
            # plain PyTorch layer is the standard approximation (values carry it too).
            tokens = layer(tokens + pos)
        return tokens.transpose(1, 2).reshape(b, c, h, w)


class HybridFeatureEnhancement(nn.Module):
    """HFE: ``[L2, L3, L4, L5] -> [S3 (stride 8), F4 (16), F5 (32)]``, all ``hidden`` channels.

    With ``enabled=False`` (Table IV(d) "HFE off") the outputs are 1×1 projections of L3, L4, L5:
    no attention on L5 and no cross-scale fusion.
    """

    def __init__(self, in_channels: tuple[int, ...], hidden: int, heads: int, ffn: int,
                 aifi_layers: int, csp_blocks: int, enabled: bool = True,
                 block: str = "conv3x3") -> None:
        super().__init__()
        self.enabled = enabled
        # Input projection of every level (RT-DETR: 1×1 conv + BN).
        self.proj = nn.ModuleList([nn.Sequential(nn.Conv2d(c, hidden, 1, bias=False),
                                                 nn.BatchNorm2d(hidden)) for c in in_channels])
        if not enabled:
            return
        self.aifi = AIFI(hidden, heads, ffn, aifi_layers)
        self.lateral5 = ConvNormAct(hidden, hidden, 1)
        self.td4 = CSPBlock(2 * hidden, hidden, csp_blocks, block)
        self.lateral4 = ConvNormAct(hidden, hidden, 1)
        self.td3 = CSPBlock(2 * hidden, hidden, csp_blocks, block)
        self.down2 = ConvNormAct(hidden, hidden, 3, 2)
        # S3 = CSP(top-down, L2 upward)
        self.bu3 = CSPBlock(2 * hidden, hidden, csp_blocks, block)
        self.down3 = ConvNormAct(hidden, hidden, 3, 2)
        self.bu4 = CSPBlock(2 * hidden, hidden, csp_blocks, block)
        self.down4 = ConvNormAct(hidden, hidden, 3, 2)
        self.bu5 = CSPBlock(2 * hidden, hidden, csp_blocks, block)

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        """``[L2 (B,C2,H/4,W/4), L3, L4, L5]`` -> ``[S3 (B,D,H/8,W/8), F4 (H/16), F5 (H/32)]``."""
        p2, p3, p4, p5 = (proj(f) for proj, f in zip(self.proj, feats, strict=True))
        if not self.enabled:
            return [p3, p4, p5]
        p5 = self.lateral5(self.aifi(p5))                                    # L̃5
        t4 = self.td4(torch.cat([_up_to(p5, p4), p4], 1))
        t4l = self.lateral4(t4)
        t3 = self.td3(torch.cat([_up_to(t4l, p3), p3], 1))                   # Fuse↓(L̃5, L4, L3)
        s3 = self.bu3(torch.cat([t3, _fit(self.down2(p2), t3)], 1))         # Fuse↑(L2)
        f4 = self.bu4(torch.cat([_fit(self.down3(s3), t4l), t4l], 1))
        f5 = self.bu5(torch.cat([_fit(self.down4(f4), p5), p5], 1))
        return [s3, f4, f5]


def _up_to(x: Tensor, ref: Tensor) -> Tensor:
    """Nearest upsampling of ``x`` to ``ref``'s spatial size."""
    return F.interpolate(x, size=ref.shape[-2:], mode="nearest")


def _fit(x: Tensor, ref: Tensor) -> Tensor:
    """Crop/pad ``x`` to ``ref``'s spatial size (odd sizes differ by one after stride 2)."""
    h, w = ref.shape[-2:]
    x = x[..., :h, :w]
    ph, pw = h - x.shape[-2], w - x.shape[-1]
    return F.pad(x, (0, pw, 0, ph)) if ph or pw else x


__all__ = ["AIFI", "CSPBlock", "HybridFeatureEnhancement", "RepVGGBlock", "point_pos",
           "sine_pos_2d"]
