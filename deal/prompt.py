"""The prompt branch: point embedding (eq. 4) and point-guided density activation (eq. 5–9).

Prompt conventions follow SAM: ``point_coords`` is ``(B, K, 2)`` float pixel ``(x, y)`` in the
network's input, ``point_labels`` is ``(B, K)`` int with 1 = foreground, 0 = background and
-1 = padding (so prompt sets of different sizes share one batch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import roi_align

from deal.hfe import point_pos, sine_pos_2d

#: Strides of the three maps the point embedding samples (paper: RoI-Align at 8, 16, 32).
PROMPT_STRIDES = (8, 16, 32)


@dataclass
class PromptEmbedding:
    """Output of :class:`PointEmbedding`.

    Attributes:
        tokens: ``(B, K, D)`` refined embeddings (PE of eq. 4).
        valid: ``(B, K)`` bool, True for real (non-padding) prompts.
        fg: ``(B, K)`` bool, True for foreground prompts.
    """

    tokens: Tensor
    valid: Tensor
    fg: Tensor

    def prototype(self) -> Tensor:
        """Mean foreground embedding per prompt set, ``(B, D)`` (zeros when a set has none)."""
        w = self.fg.float()[..., None]  # (B, K, 1)
        return (self.tokens * w).sum(1) / w.sum(1).clamp(min=1.0)


class PointEmbedding(nn.Module):
    """PE = self-attn(RoI-Align(P)) at strides 8, 16, 32, plus position and label embeddings.

    Args:
        dim: feature width D.
        heads: attention heads.
        ffn: FFN width of the self-attention layers.
        layers: number of self-attention layers among the prompts.
        roi_output: RoI-Align output side ``r`` (each level gives ``D·r²`` values).
    """

    def __init__(self, dim: int, heads: int, ffn: int, layers: int, roi_output: int) -> None:
        super().__init__()
        self.dim, self.roi_output = dim, roi_output
        self.fuse = nn.Sequential(nn.Linear(len(PROMPT_STRIDES) * dim * roi_output ** 2, dim),
                                  nn.LayerNorm(dim))
        self.label_embed = nn.Embedding(2, dim)
        self.pos_proj = nn.Linear(dim, dim)
        self.attn = nn.ModuleList([
            nn.TransformerEncoderLayer(dim, heads, ffn, dropout=0.0, batch_first=True)
            for _ in range(layers)])

    def forward(self, feats: list[Tensor], point_coords: Tensor, point_labels: Tensor,
                ) -> PromptEmbedding:
        """Embed the prompts.

        Args:
            feats: ``[S3 (B, D, H/8, W/8), F4 (B, D, H/16, W/16), F5 (B, D, H/32, W/32)]``.
            point_coords: ``(B, K, 2)`` pixel ``(x, y)`` in the network input.
            point_labels: ``(B, K)`` 1 foreground, 0 background, -1 padding.

        Returns:
            The ``(B, K, D)`` embeddings with their validity masks.
        """
        b, k, _ = point_coords.shape
        valid = point_labels >= 0
        fg = point_labels == 1
        # One RoI per prompt: a box of two cells around the point at each stride.
        batch_idx = torch.arange(b, device=point_coords.device, dtype=point_coords.dtype)
        batch_idx = batch_idx[:, None].expand(b, k).reshape(-1, 1)  # (B*K, 1)
        xy = point_coords.reshape(-1, 2)                             # (B*K, 2)
        pooled = []
        for feat, stride in zip(feats, PROMPT_STRIDES, strict=True):
            rois = torch.cat([batch_idx, xy - stride, xy + stride], dim=1)  # (B*K, 5)
            r = roi_align(feat, rois, output_size=self.roi_output, spatial_scale=1.0 / stride,
                          sampling_ratio=2, aligned=True)           # (B*K, D, r, r)
            pooled.append(r.flatten(1))
        x = self.fuse(torch.cat(pooled, 1)).reshape(b, k, self.dim)  # (B, K, D)
        x = x + self.pos_proj(point_pos(point_coords / PROMPT_STRIDES[0], self.dim))
        x = x + self.label_embed(point_labels.clamp(min=0).long())
        # A set with no valid prompt would make attention all -inf (NaN); unmask its first slot,
        # the result is ignored anyway because ``valid`` stays False.
        pad = ~valid
        if k:
            pad = pad.clone()
            pad[~valid.any(1), 0] = False
        for layer in self.attn if k else ():
            x = layer(x, src_key_padding_mask=pad)
        return PromptEmbedding(tokens=x * valid[..., None].float(), valid=valid, fg=fg)


class DensityActivation(nn.Module):
    """Point-guided density activation: W = cross-attn(PE, S3), C3 = S3 ⊗ W, DM = Conv(C3).

    Each foreground prompt's attended vector becomes a dynamic 1×1 kernel bank ``(kernel_dim, D)``;
    convolving S3 with it gives one correlation map per prompt, and C3 is their mean over the
    set's foreground prompts (computed as one convolution with the mean kernel).

    Args:
        dim: feature width D.
        heads: attention heads.
        kernel_dim: channels of C3.
    """

    def __init__(self, dim: int, heads: int, kernel_dim: int) -> None:
        super().__init__()
        self.dim, self.kernel_dim = dim, kernel_dim
        self.cross = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.to_kernel = nn.Linear(dim, kernel_dim * dim)
        self.head = nn.Sequential(nn.Conv2d(kernel_dim, kernel_dim, 3, padding=1),
                                  nn.ReLU(inplace=True), nn.Conv2d(kernel_dim, 1, 1))
        # Focal-loss prior: the density starts near 0.01 everywhere (most cells are background).
        nn.init.constant_(self.head[-1].bias, -math.log(99.0))

    def project(self, s3: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values of S3 for the cross-attention, ``(B, h*w, D)`` each.

        They do not depend on the prompts, so the model computes them once per image (encode).
        """
        _, d, h, w = s3.shape
        tokens = s3.flatten(2).transpose(1, 2)                       # (B, h*w, D)
        pos = sine_pos_2d(h, w, d, device=s3.device)[None]           # (1, h*w, D)
        _, wk, wv = self.cross.in_proj_weight.chunk(3)
        _, bk, bv = self.cross.in_proj_bias.chunk(3)
        return F.linear(tokens + pos, wk, bk), F.linear(tokens, wv, bv)

    def _attend(self, queries: Tensor, keys: Tensor, values: Tensor) -> Tensor:
        """``nn.MultiheadAttention`` on pre-projected keys/values: ``(B, K, D) -> (B, K, D)``."""
        b, k, d = queries.shape
        m = self.cross.num_heads
        wq = self.cross.in_proj_weight[:d]
        bq = self.cross.in_proj_bias[:d]
        q = F.linear(queries, wq, bq).reshape(b, k, m, d // m).transpose(1, 2)  # (B, M, K, Dh)
        kk = keys.reshape(b, -1, m, d // m).transpose(1, 2)                      # (B, M, S, Dh)
        vv = values.reshape(b, -1, m, d // m).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, kk, vv)                          # (B, M, K, Dh)
        return self.cross.out_proj(out.transpose(1, 2).reshape(b, k, d))

    def forward(self, s3: Tensor, pe: PromptEmbedding,
                kv: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """Correlate S3 with the prompts.

        Args:
            s3: ``(B, D, h, w)`` enhanced features.
            pe: prompt embeddings ``(B, K, D)``.
            kv: keys and values from :meth:`project` (computed here when None).

        Returns:
            ``C3 (B, kernel_dim, h, w)`` and density logits ``DM (B, 1, h, w)``.
        """
        b, d, h, w = s3.shape
        k = pe.tokens.shape[1]
        if k == 0:
            c3 = s3.new_zeros(b, self.kernel_dim, h, w)
            return c3, self.head(c3)
        keys, values = kv if kv is not None else self.project(s3)
        # PE already carries each point's position (PointEmbedding adds it).
        attended = self._attend(pe.tokens, keys, values)             # W of eq. 5, (B, K, D)
        kernels = self.to_kernel(self.norm(pe.tokens + attended))    # (B, K, kd*D)
        kernels = kernels.reshape(b, k, self.kernel_dim, d)          # (B, K, kd, D)
        # C3 is the mean of the prompts' correlation maps. Convolution is linear, so that equals
        # one convolution with the mean kernel: the cost does not grow with the number of points.
        # A set without foreground prompt has no kernel: its C3 is zero.
        w = pe.fg.float()[:, :, None, None]                          # (B, K, 1, 1)
        kernel = (kernels * w).sum(1) / w.sum(1).clamp(min=1.0)      # (B, kd, D)
        c3 = torch.einsum("bod,bdhw->bohw", kernel, s3) / math.sqrt(d)  # (B, kd, h, w)
        return c3, self.head(c3)


def queries_from_density(density: Tensor, factor: float, min_q: int, max_q: int,
                         mode: str = "peak") -> Tensor:
    """Number of decoder queries per image from the density integral (eq. 8).

    Args:
        density: ``(B, 1, h, w)`` density map in [0, 1] (sigmoid of DM).
        factor: queries per unit of integral (``mode="peak"``: a margin >1 keeps recall when a
            peak-1 heatmap under-counts).
        min_q: lower bound.
        max_q: upper bound.
        mode: ``"peak"``: ``clamp(ceil(factor · Σ DM), min_q, max_q)``; ``"count"`` (eq. 8 as
            printed, DM trained to sum to the object count): ``clamp(round(Σ DM), min_q, max_q)``.

    Returns:
        ``(B,)`` int64 counts.
    """
    total = density.flatten(1).sum(1)
    n = torch.round(total) if mode == "count" else torch.ceil(total * factor)
    return n.clamp(min_q, max_q).long()
