"""The DEAL network (paper Fig. 5): encoder once per image, prompt branch + decoder per prompt set.

``encode`` runs the backbone and HFE (the expensive part) and returns :class:`Features`;
``decode`` runs point embedding, density activation, query selection and the decoder for one
batch of prompt sets. ``forward`` is ``decode(encode(images), ...)``, so the cached path of the
predictor is the same computation as a full forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deal.backbone import build_backbone
from deal.config import DealConfig
from deal.decoder import MLP, Decoder, ScoreHead, make_anchors
from deal.hfe import HybridFeatureEnhancement
from deal.prompt import DensityActivation, PointEmbedding, queries_from_density
from tinyset_builder.errors import TinysetError

#: ImageNet statistics; inputs are RGB in [0, 1].
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@dataclass
class Features:
    """Encoded image(s), reusable for any number of prompt sets.

    Attributes:
        levels: ``[S3 (B, D, H/8, W/8), F4 (B, D, H/16, W/16), F5 (B, D, H/32, W/32)]``.
        input_size: ``(H, W)`` of the padded network input (boxes are normalised to it).
    """

    levels: list[Tensor]
    input_size: tuple[int, int]

    def select(self, index: Tensor | list[int]) -> Features:
        """The features of the images at ``index`` (e.g. repeat one image for many sets)."""
        idx = torch.as_tensor(index, dtype=torch.long, device=self.levels[0].device)
        return Features([lvl.index_select(0, idx) for lvl in self.levels], self.input_size)


@dataclass
class DealOutput:
    """Predictions for a batch of prompt sets.

    Attributes:
        logits: ``(L, B, N, 1)`` per decoder layer (last = final).
        boxes: ``(L, B, N, 4)`` cxcywh in [0, 1] of the padded input.
        enc_logits: ``(B, N, 1)`` encoder scores of the selected queries.
        enc_boxes: ``(B, N, 4)`` encoder boxes of the selected queries.
        density_logits: ``(B, 1, H/8, W/8)`` DM before the sigmoid, or None without DGQA.
        num_queries: ``(B,)`` queries allocated to each set (density integral, eq. 8).
        query_mask: ``(B, N)`` True for the queries an image really has (``< num_queries``).
        input_size: ``(H, W)`` of the padded input.
    """

    logits: Tensor
    boxes: Tensor
    enc_logits: Tensor
    enc_boxes: Tensor
    density_logits: Tensor | None
    num_queries: Tensor
    query_mask: Tensor
    input_size: tuple[int, int]


class DEAL(nn.Module):
    """DEtect Any smalL object: point-prompted detector on an RT-DETR-style base.

    Args:
        cfg: the configuration (see :mod:`deal.config`); its switches remove components.
    """

    def __init__(self, cfg: DealConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden_dim
        self.backbone = build_backbone(cfg)
        self.hfe = HybridFeatureEnhancement(self.backbone.channels, d, cfg.num_heads, cfg.ffn_dim,
                                            cfg.aifi_layers, cfg.csp_blocks, cfg.use_hfe)
        self.point_embed = (PointEmbedding(d, cfg.num_heads, cfg.ffn_dim, cfg.prompt_layers,
                                           cfg.roi_output) if cfg.use_pe else None)
        self.density = DensityActivation(d, cfg.num_heads, cfg.kernel_dim) if cfg.use_dgqa else None
        self.enc_output = nn.Sequential(nn.Linear(d, d), nn.LayerNorm(d))
        self.enc_score = ScoreHead(d, prompted=cfg.use_pe)
        self.enc_bbox = MLP(d, d, 4, 3)
        self.decoder = Decoder(d, cfg.num_heads, cfg.ffn_dim, cfg.decoder_layers,
                               cfg.num_levels, cfg.decoder_points, prompted=cfg.use_pe)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    @property
    def prompted(self) -> bool:
        """Whether the network has a prompt branch (PE on)."""
        return self.point_embed is not None

    def encode(self, images: Tensor) -> Features:
        """Backbone + HFE.

        Args:
            images: ``(B, 3, H, W)`` RGB in [0, 1]; padded bottom/right to multiples of 32.

        Returns:
            The cached :class:`Features`.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise TinysetError(f"DEAL expects images of shape (B, 3, H, W), got "
                               f"{tuple(images.shape)}")
        h, w = images.shape[-2:]
        ph, pw = (-h) % 32, (-w) % 32
        x = (images - self.mean) / self.std
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        levels = self.hfe(self.backbone(x))
        return Features(levels, (h + ph, w + pw))

    def decode(self, feats: Features, point_coords: Tensor | None = None,
               point_labels: Tensor | None = None, min_queries: Tensor | None = None,
               ) -> DealOutput:
        """Prompt branch, query selection and decoder for one prompt set per image.

        Args:
            feats: from :meth:`encode` (batch B).
            point_coords: ``(B, K, 2)`` pixel ``(x, y)`` in the network input (required with PE).
            point_labels: ``(B, K)`` 1 foreground, 0 background, -1 padding.
            min_queries: ``(B,)`` optional lower bound on the query count (training uses the GT
                count so that every object can be matched while DM is still untrained).

        Returns:
            :class:`DealOutput`.
        """
        cfg = self.cfg
        levels = feats.levels
        b = levels[0].shape[0]
        proto = None
        density_logits = None
        if self.point_embed is not None:
            if point_coords is None or point_labels is None:
                raise TinysetError("this DEAL model has a prompt branch: give point prompts")
            pe = self.point_embed(levels, point_coords, point_labels)
            proto = pe.prototype()                                    # (B, D)
            if self.density is not None:
                _, density_logits = self.density(levels[0], pe)       # (B, 1, h, w)
                dm = density_logits.sigmoid()
                # Ŝ3 = S3 ⊙ DM (eq. 9); coarser levels use the max-pooled density.
                levels = [lvl * F.adaptive_max_pool2d(dm, lvl.shape[-2:]) for lvl in levels]
        if density_logits is not None:
            counts = queries_from_density(density_logits.sigmoid(), cfg.query_factor,
                                          cfg.min_queries, cfg.max_queries)
        else:
            counts = torch.full((b,), cfg.max_queries, dtype=torch.long,
                                device=levels[0].device)
        if min_queries is not None:
            counts = torch.maximum(counts, min_queries.clamp(max=cfg.max_queries))

        shapes = [(int(lvl.shape[-2]), int(lvl.shape[-1])) for lvl in levels]
        memory = torch.cat([lvl.flatten(2).transpose(1, 2) for lvl in levels], 1)  # (B, S, D)
        anchors, valid = make_anchors(shapes, cfg.anchor_cells, memory.device)
        counts = counts.clamp(max=int(valid.sum()))
        n = int(counts.max())
        memory = memory * valid[..., None].float()
        out_mem = self.enc_output(memory)                             # (B, S, D)
        enc_logits = self.enc_score(out_mem, proto)                   # (B, S, 1)
        enc_boxes_unact = self.enc_bbox(out_mem) + anchors            # (B, S, 4)
        select = enc_logits[..., 0].sigmoid()
        if density_logits is not None:
            # Density-guided selection: a location's score is weighted by its density.
            dm_tokens = torch.cat([F.adaptive_max_pool2d(density_logits.sigmoid(), s).flatten(1)
                                   for s in shapes], 1)                # (B, S)
            select = select * dm_tokens
        select = select.masked_fill(~valid, -1.0)
        idx = select.topk(n, dim=1).indices                           # (B, N)
        gather4 = idx[..., None].expand(-1, -1, 4)
        ref_unact = enc_boxes_unact.gather(1, gather4)
        enc_topk_boxes = ref_unact.sigmoid()
        enc_topk_logits = enc_logits.gather(1, idx[..., None])
        tgt = out_mem.gather(1, idx[..., None].expand(-1, -1, out_mem.shape[-1])).detach()
        query_mask = torch.arange(n, device=memory.device)[None] < counts[:, None]  # (B, N)
        logits, boxes = self.decoder(tgt, enc_topk_boxes.detach(), memory, shapes, proto,
                                     ~query_mask)
        return DealOutput(logits=logits, boxes=boxes, enc_logits=enc_topk_logits,
                          enc_boxes=enc_topk_boxes, density_logits=density_logits,
                          num_queries=counts, query_mask=query_mask,
                          input_size=feats.input_size)

    def forward(self, images: Tensor, point_coords: Tensor | None = None,
                point_labels: Tensor | None = None, min_queries: Tensor | None = None,
                ) -> DealOutput:
        """``decode(encode(images), point_coords, point_labels)``; see :meth:`decode`."""
        return self.decode(self.encode(images), point_coords, point_labels, min_queries)


def build_model(cfg: DealConfig) -> DEAL:
    """A freshly initialised DEAL for ``cfg``."""
    return DEAL(cfg)
