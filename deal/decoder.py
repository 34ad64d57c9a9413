"""RT-DETR-style decoder: query selection, multi-scale deformable cross-attention, box refinement.

Boxes are normalised ``(cx, cy, w, h)`` in [0, 1] of the network input. Deformable attention is a
pure-PyTorch ``grid_sample`` implementation (the CUDA kernel of Deformable DETR is not needed).
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    """``log(x / (1 - x))`` with clamping, elementwise."""
    x = x.clamp(eps, 1 - eps)
    return torch.log(x / (1 - x))


class MLP(nn.Module):
    """``layers`` Linear layers with ReLU between: ``(..., c_in) -> (..., c_out)``."""

    def __init__(self, c_in: int, hidden: int, c_out: int, layers: int) -> None:
        super().__init__()
        dims = [c_in] + [hidden] * (layers - 1) + [c_out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))

    def forward(self, x: Tensor) -> Tensor:
        """Apply the layers."""
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class ScoreHead(nn.Module):
    """Objectness/class logit of each query, ``(B, N, D) -> (B, N, 1)``.

    With prompts the logit is the scaled dot product between the query and the prompt set's
    prototype (mean foreground point embedding), so the score means "same category as the
    points"; without prompts (the base detector) it is a plain linear "any object" score.
    """

    def __init__(self, dim: int, prompted: bool) -> None:
        super().__init__()
        self.prompted = prompted
        self.dim = dim
        if prompted:
            self.q = nn.Linear(dim, dim)
            self.p = nn.Linear(dim, dim)
            self.bias = nn.Parameter(torch.tensor(-math.log(99.0)))
        else:
            self.linear = nn.Linear(dim, 1)
            nn.init.constant_(self.linear.bias, -math.log(99.0))

    def forward(self, h: Tensor, proto: Tensor | None) -> Tensor:
        """Score ``h (B, N, D)`` against ``proto (B, D)`` (ignored when not prompted)."""
        if not self.prompted:
            return self.linear(h)
        assert proto is not None
        # (W_q h + b_q)·p = h·(W_qᵀ p) + b_q·p: one D-vector per set instead of a D×D projection
        # of every token (the encoder scores thousands of tokens per prompt set).
        p = self.p(proto)                                            # (B, D)
        v = p @ self.q.weight                                        # (B, D) = W_qᵀ p
        c = (p * self.q.bias).sum(-1)                                # (B,)
        sim = torch.bmm(h, v[:, :, None]) + c[:, None, None]         # (B, N, 1)
        return sim / math.sqrt(self.dim) + self.bias


def ms_deform_attn(value: Tensor, shapes: list[tuple[int, int]], loc: Tensor,
                   weights: Tensor) -> Tensor:
    """Multi-scale deformable attention core.

    Args:
        value: ``(B, S, M, Dh)`` values of all levels (``S = Σ h·w``), M heads.
        shapes: ``[(h, w), ...]`` per level.
        loc: ``(B, Nq, M, L, P, 2)`` sampling locations in [0, 1] (x, y).
        weights: ``(B, Nq, M, L, P)`` attention weights (softmax over L·P).

    Returns:
        ``(B, Nq, M·Dh)``.
    """
    b, _, m, dh = value.shape
    _, nq, _, n_lvl, n_pts, _ = loc.shape
    values = value.split([h * w for h, w in shapes], dim=1)
    grids = 2 * loc - 1
    samples = []
    for lvl, (h, w) in enumerate(shapes):
        v = values[lvl].flatten(2).transpose(1, 2).reshape(b * m, dh, h, w)  # (B*M, Dh, h, w)
        g = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)               # (B*M, Nq, P, 2)
        samples.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros",
                                     align_corners=False))                  # (B*M, Dh, Nq, P)
    stacked = torch.stack(samples, dim=-2).flatten(-2)                       # (B*M, Dh, Nq, L*P)
    w = weights.transpose(1, 2).reshape(b * m, 1, nq, n_lvl * n_pts)
    out = (stacked * w).sum(-1)                                              # (B*M, Dh, Nq)
    return out.reshape(b, m * dh, nq).transpose(1, 2)


class MSDeformableAttention(nn.Module):
    """Deformable cross-attention around each query's reference box (RT-DETR variant).

    Args:
        dim: width D.
        heads: attention heads M.
        levels: feature levels L.
        points: sampling points P per level and head.
    """

    def __init__(self, dim: int, heads: int, levels: int, points: int) -> None:
        super().__init__()
        self.heads, self.levels, self.points = heads, levels, points
        self.offsets = nn.Linear(dim, heads * levels * points * 2)
        self.attn = nn.Linear(dim, heads * levels * points)
        self.value_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self._reset()

    def _reset(self) -> None:
        # Deformable DETR initialisation: offsets start on a ring of directions, one per head.
        nn.init.zeros_(self.offsets.weight)
        theta = torch.arange(self.heads, dtype=torch.float32) * (2 * math.pi / self.heads)
        grid = torch.stack([theta.cos(), theta.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True).values
        grid = grid[:, None, None, :].repeat(1, self.levels, self.points, 1)
        grid = grid * torch.arange(1, self.points + 1, dtype=torch.float32)[None, None, :, None]
        with torch.no_grad():
            self.offsets.bias.copy_(grid.flatten())
        nn.init.zeros_(self.attn.weight)
        nn.init.zeros_(self.attn.bias)

    def forward(self, query: Tensor, ref: Tensor, value: Tensor,
                shapes: list[tuple[int, int]]) -> Tensor:
        """``query (B, Nq, D)``, ``ref (B, Nq, 4)`` cxcywh -> ``(B, Nq, D)``.

        ``value (B, S, D)`` is already projected by ``value_proj`` (the model computes it from
        cached, prompt-independent projections; see ``DEAL.decode``).
        """
        b, nq, _ = query.shape
        v = value.reshape(b, value.shape[1], self.heads, -1)          # (B, S, M, Dh)
        off = self.offsets(query).reshape(b, nq, self.heads, self.levels, self.points, 2)
        w = self.attn(query).reshape(b, nq, self.heads, self.levels * self.points).softmax(-1)
        w = w.reshape(b, nq, self.heads, self.levels, self.points)
        centre = ref[:, :, None, None, None, :2]
        size = ref[:, :, None, None, None, 2:]
        loc = centre + off / self.points * size * 0.5                # (B, Nq, M, L, P, 2)
        return self.out_proj(ms_deform_attn(v, shapes, loc, w))


class DecoderLayer(nn.Module):
    """Self-attention, deformable cross-attention, FFN; post-norm (RT-DETR)."""

    def __init__(self, dim: int, heads: int, ffn: int, levels: int, points: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.cross = MSDeformableAttention(dim, heads, levels, points)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.ReLU(inplace=True), nn.Linear(ffn, dim))
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, tgt: Tensor, ref: Tensor, value: Tensor, shapes: list[tuple[int, int]],
                query_pos: Tensor, pad: Tensor | None,
                attn_mask: Tensor | None = None) -> Tensor:
        """``tgt (B, N, D)``, ``ref (B, N, 4)``, projected ``value (B, S, D)``, ``pad (B, N)``.

        ``attn_mask (N, N)`` bool, True = may not attend (denoising groups, see
        :func:`denoising_queries`).

        Returns ``(B, N, D)``.
        """
        q = tgt + query_pos
        tgt = self.norm1(tgt + self.self_attn(q, q, tgt, key_padding_mask=pad,
                                              attn_mask=attn_mask)[0])
        tgt = self.norm2(tgt + self.cross(tgt + query_pos, ref, value, shapes))
        return self.norm3(tgt + self.ffn(tgt))


class Decoder(nn.Module):
    """Stack of :class:`DecoderLayer` with per-layer box and score heads (iterative refinement).

    Args:
        dim: width D.
        heads: attention heads.
        ffn: FFN width.
        layers: depth.
        levels: feature levels.
        points: deformable points.
        prompted: whether score heads compare queries with a prompt prototype.
    """

    def __init__(self, dim: int, heads: int, ffn: int, layers: int, levels: int, points: int,
                 prompted: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(dim, heads, ffn, levels, points)
                                    for _ in range(layers))
        self.query_pos = MLP(4, 2 * dim, dim, 2)
        self.box_heads = nn.ModuleList(MLP(dim, dim, 4, 3) for _ in range(layers))
        self.score_heads = nn.ModuleList(ScoreHead(dim, prompted) for _ in range(layers))
        for head in self.box_heads:
            nn.init.zeros_(head.layers[-1].weight)
            nn.init.zeros_(head.layers[-1].bias)

    def forward(self, tgt: Tensor, ref: Tensor, values: list[Tensor],
                shapes: list[tuple[int, int]], proto: Tensor | None, pad: Tensor | None,
                attn_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Refine ``ref (B, N, 4)`` layer by layer.

        Args:
            tgt: ``(B, N, D)`` content queries.
            ref: ``(B, N, 4)`` initial reference boxes (cxcywh in [0, 1]).
            values: per layer, the ``(B, S, D)`` memory after that layer's ``value_proj``.
            shapes: ``[(h, w), ...]`` of the memory's levels.
            proto: ``(B, D)`` prompt prototype or None.
            pad: ``(B, N)`` True for padding queries.
            attn_mask: ``(N, N)`` bool self-attention mask (True = blocked) or None.

        Returns:
            ``logits (L, B, N, 1)`` and ``boxes (L, B, N, 4)`` (cxcywh in [0, 1]) per layer.
        """
        all_logits, all_boxes = [], []
        for layer, value, box_head, score_head in zip(self.layers, values, self.box_heads,
                                                      self.score_heads, strict=True):
            tgt = layer(tgt, ref, value, shapes, self.query_pos(ref), pad, attn_mask)
            boxes = torch.sigmoid(box_head(tgt) + inverse_sigmoid(ref))
            all_logits.append(score_head(tgt, proto))
            all_boxes.append(boxes)
            ref = boxes.detach()  # RT-DETR detaches references between layers
        return torch.stack(all_logits), torch.stack(all_boxes)


def make_anchors(shapes: list[tuple[int, int]], cells: float, device: torch.device,
                 eps: float = 0.01, mode: str = "cells") -> tuple[Tensor, Tensor]:
    """One anchor per location per level, in inverse-sigmoid space.

    Args:
        shapes: ``[(h, w), ...]`` per level.
        cells: anchor side in cells of its level (``mode="cells"``).
        device: torch device.
        eps: anchors with any coordinate outside ``(eps, 1 - eps)`` are invalid.
        mode: ``"cells"``, or ``"rtdetr"``: side ``0.05 · 2^level`` of the input (RT-DETR's
            ``grid_size``), whatever the level's resolution.

    Returns:
        ``anchors (1, S, 4)`` logits of cxcywh and ``valid (1, S)`` bool.
    """
    out = []
    for lvl, (h, w) in enumerate(shapes):
        gy, gx = torch.meshgrid(torch.arange(h, dtype=torch.float32, device=device),
                                torch.arange(w, dtype=torch.float32, device=device),
                                indexing="ij")
        cx = (gx.flatten() + 0.5) / w
        cy = (gy.flatten() + 0.5) / h
        if mode == "rtdetr":
            bw = torch.full_like(cx, 0.05 * 2.0 ** lvl)
            bh = torch.full_like(cy, 0.05 * 2.0 ** lvl)
        else:
            bw = torch.full_like(cx, min(cells / w, 0.98))
            bh = torch.full_like(cy, min(cells / h, 0.98))
        out.append(torch.stack([cx, cy, bw, bh], -1))
    anchors = torch.cat(out)[None]                                   # (1, S, 4)
    valid = ((anchors > eps) & (anchors < 1 - eps)).all(-1)
    return inverse_sigmoid(anchors), valid


def denoising_queries(targets: list[Tensor], num_denoising: int, num_queries: int,
                      box_noise: float = 1.0, generator: torch.Generator | None = None,
                      ) -> tuple[Tensor, Tensor, Tensor, Tensor] | None:
    """RT-DETR's contrastive denoising groups for one "prompted" class.

    Each group holds a positive and a negative noised copy of every GT box: the corners move by
    up to ``box_noise · wh/2`` (positives: a fraction in [0, 1) of that, negatives: in [1, 2)), so
    a positive should be refined back onto its GT and a negative rejected. There are
    ``max(1, num_denoising // max_gt)`` groups.

    Args:
        targets: per image, ``(G_i, 4)`` normalised cxcywh GT.
        num_denoising: RT-DETR's ``num_denoising`` (100).
        num_queries: the matching queries that follow the denoising ones.
        box_noise: RT-DETR's ``box_noise_scale``.
        generator: random generator (default: torch's global one).

    Returns:
        None without GT, else ``ref (B, M, 4)`` noised boxes (cxcywh in [0, 1]), ``gt (B, M)``
        the GT index each query copies (-1 = padding), ``positive (B, M)`` bool and
        ``attn_mask (M + num_queries, M + num_queries)`` bool (True = blocked): matching
        queries do not see denoising ones, groups do not see each other.
    """
    from torchvision.ops import box_convert

    max_gt = max((len(t) for t in targets), default=0)
    if max_gt == 0 or num_denoising <= 0:
        return None
    groups = max(1, num_denoising // max_gt)
    b = len(targets)
    device = targets[0].device
    per_group = 2 * max_gt
    m = groups * per_group
    gt = torch.full((b, m), -1, dtype=torch.long, device=device)
    positive = torch.zeros(b, m, dtype=torch.bool, device=device)
    boxes = torch.zeros(b, m, 4, device=device)
    for i, t in enumerate(targets):
        g = len(t)
        for k in range(groups):
            base = k * per_group
            gt[i, base:base + g] = torch.arange(g, device=device)
            gt[i, base + max_gt:base + max_gt + g] = torch.arange(g, device=device)
            positive[i, base:base + g] = True
            boxes[i, base:base + g] = t
            boxes[i, base + max_gt:base + max_gt + g] = t
    xyxy = box_convert(boxes, "cxcywh", "xyxy")
    half = torch.cat([boxes[..., 2:], boxes[..., 2:]], -1) / 2 * box_noise
    sign = torch.randint(0, 2, boxes.shape, generator=generator, device=device) * 2.0 - 1.0
    part = torch.rand(boxes.shape, generator=generator, device=device)
    part = part + (~positive).float()[..., None]          # negatives move by [1, 2) half-sizes
    xyxy = (xyxy + sign * part * half).clamp(0.0, 1.0)
    ref = box_convert(xyxy, "xyxy", "cxcywh").clamp(1e-4, 1 - 1e-4)
    n = m + num_queries
    mask = torch.zeros(n, n, dtype=torch.bool, device=device)
    mask[m:, :m] = True                                   # matching queries never see the GT
    for k in range(groups):
        lo, hi = k * per_group, (k + 1) * per_group
        mask[lo:hi, :lo] = True
        mask[lo:hi, hi:m] = True
    return ref, gt, positive, mask
