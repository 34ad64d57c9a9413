"""The DEAL network (paper Fig. 5): encoder once per image, prompt branch + decoder per prompt set.

``encode`` runs the backbone and HFE (the expensive part) and returns :class:`Features`;
``decode`` runs point embedding, density activation, query selection and the decoder for one
batch of prompt sets. ``forward`` is ``decode(encode(images), ...)``, so the cached path of the
predictor is the same computation as a full forward.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deal.backbone import build_backbone
from deal.config import DealConfig
from deal.decoder import MLP, Decoder, ScoreHead, denoising_queries, make_anchors
from deal.hfe import HybridFeatureEnhancement
from deal.prompt import DensityActivation, PointEmbedding, queries_from_density
from tinyset_builder.errors import TinysetError

#: ImageNet statistics; inputs are RGB in [0, 1].
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
#: Entries of ``Features.cache`` that hold one row per image.
PER_IMAGE_CACHE = ("enc", "values", "kv")


@dataclass
class Features:
    """Encoded image(s), reusable for any number of prompt sets.

    Attributes:
        levels: ``[S3 (B, D, H/8, W/8), F4 (B, D, H/16, W/16), F5 (B, D, H/32, W/32)]``.
        input_size: ``(H, W)`` of the padded network input (boxes are normalised to it).
        cache: prompt-independent projections made by ``DEAL.encode`` (see ``DEAL._project``).
    """

    levels: list[Tensor]
    input_size: tuple[int, int]
    cache: dict[str, Any] = field(default_factory=dict)

    def select(self, index: Tensor | list[int]) -> Features:
        """The features of the images at ``index`` (e.g. repeat one image for many sets)."""
        idx = torch.as_tensor(index, dtype=torch.long, device=self.levels[0].device)

        def pick(v: Any) -> Any:
            if isinstance(v, Tensor):
                return v.index_select(0, idx)
            return type(v)(pick(x) for x in v)

        # Per-image entries are re-indexed; shapes/anchors/valid are shared by the batch.
        cache = {k: pick(v) if k in PER_IMAGE_CACHE else v for k, v in self.cache.items()}
        return Features([lvl.index_select(0, idx) for lvl in self.levels], self.input_size, cache)


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
        dn: with denoising queries (training only), ``(logits (L, B, M, 1), boxes (L, B, M, 4),
            gt (B, M), positive (B, M))`` of :func:`deal.decoder.denoising_queries`.
    """

    logits: Tensor
    boxes: Tensor
    enc_logits: Tensor
    enc_boxes: Tensor
    density_logits: Tensor | None
    num_queries: Tensor
    query_mask: Tensor
    input_size: tuple[int, int]
    dn: tuple[Tensor, Tensor, Tensor, Tensor] | None = None


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
                                            cfg.aifi_layers, cfg.csp_blocks, cfg.use_hfe,
                                            cfg.hfe_block)
        self.point_embed = (PointEmbedding(d, cfg.num_heads, cfg.ffn_dim, cfg.prompt_layers,
                                           cfg.roi_output) if cfg.use_pe else None)
        self.density = DensityActivation(d, cfg.num_heads, cfg.kernel_dim) if cfg.use_dgqa else None
        self.enc_output = nn.Sequential(nn.Linear(d, d), nn.LayerNorm(d))
        # With score_head="linear" (the paper's unmodified RT-DETR decoder) the prompts reach
        # the decoder only through Ŝ = S ⊙ DM and the query count.
        compare = cfg.use_pe and cfg.score_head == "prototype"
        self.enc_score = ScoreHead(d, prompted=compare)
        self.enc_bbox = MLP(d, d, 4, 3)
        self.decoder = Decoder(d, cfg.num_heads, cfg.ffn_dim, cfg.decoder_layers,
                               cfg.num_levels, cfg.decoder_points, prompted=compare)
        # RT-DETR's contrastive denoising: the content of a denoising query is this embedding
        # (one "prompted" class) and its reference is a noised GT box.
        self.dn_embed = nn.Embedding(1, d) if cfg.num_denoising > 0 else None
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
        return Features(levels, (h + ph, w + pw), self._project(levels))

    def _project(self, levels: list[Tensor]) -> dict[str, Any]:
        """Prompt-independent projections of the memory, computed once per image.

        The density modulation multiplies each token by a scalar ``s`` (its density times its
        anchor validity), and a linear map commutes with that: ``W(s·m) + b = s·(W m) + b``. So
        the encoder projection, every decoder layer's ``value_proj`` and the cross-attention
        keys/values of the prompt branch are computed here, and a new prompt set only rescales
        them (exactly the same numbers as projecting the modulated memory).
        """
        memory = torch.cat([lvl.flatten(2).transpose(1, 2) for lvl in levels], 1)  # (B, S, D)
        shapes = [(int(lvl.shape[-2]), int(lvl.shape[-1])) for lvl in levels]
        anchors, valid = make_anchors(shapes, self.cfg.anchor_cells, memory.device,
                                      mode=self.cfg.anchor_mode)
        cache: dict[str, Any] = {
            "shapes": shapes, "anchors": anchors, "valid": valid,
            "enc": F.linear(memory, self.enc_output[0].weight),              # (B, S, D), no bias
            "values": [F.linear(memory, layer.cross.value_proj.weight)       # per layer, no bias
                       for layer in self.decoder.layers],
        }
        if self.density is not None:
            cache["kv"] = self.density.project(levels[0])
        return cache

    def decode(self, feats: Features, point_coords: Tensor | None = None,
               point_labels: Tensor | None = None, min_queries: Tensor | None = None,
               dn_targets: list[Tensor] | None = None) -> DealOutput:
        """Prompt branch, query selection and decoder for one prompt set per image.

        Args:
            feats: from :meth:`encode` (batch B).
            point_coords: ``(B, K, 2)`` pixel ``(x, y)`` in the network input (required with PE).
            point_labels: ``(B, K)`` 1 foreground, 0 background, -1 padding.
            min_queries: ``(B,)`` optional lower bound on the query count (training uses the GT
                count so that every object can be matched while DM is still untrained).
            dn_targets: per set, the ``(G, 4)`` normalised cxcywh GT; with ``num_denoising > 0``
                in training mode, RT-DETR's denoising queries are built from them.

        Returns:
            :class:`DealOutput`.
        """
        cfg = self.cfg
        levels = feats.levels
        cache = feats.cache
        shapes, anchors, valid = cache["shapes"], cache["anchors"], cache["valid"]
        b = levels[0].shape[0]
        device = levels[0].device
        proto = None
        density_logits = None
        # Per-token scale of the memory: anchor validity, times DM with DGQA (eq. 9).
        scale = valid.float().expand(b, -1)                           # (B, S)
        if self.point_embed is not None:
            if point_coords is None or point_labels is None:
                raise TinysetError("this DEAL model has a prompt branch: give point prompts")
            pe = self.point_embed(levels, point_coords, point_labels)
            proto = pe.prototype()                                    # (B, D)
            if self.density is not None:
                _, density_logits = self.density(levels[0], pe, cache["kv"])  # (B, 1, h, w)
                dm = density_logits.sigmoid()
                # Ŝ3 = S3 ⊙ DM; "all": the coarser levels use the max-pooled density too.
                dm_tokens = torch.cat([F.adaptive_max_pool2d(dm, s).flatten(1) for s in shapes],
                                      1)                              # (B, S)
                if cfg.density_levels == "all":
                    scale = scale * dm_tokens
                else:  # eq. 9 as printed: only S3 is modulated
                    n3 = shapes[0][0] * shapes[0][1]
                    scale = torch.cat([scale[:, :n3] * dm_tokens[:, :n3], scale[:, n3:]], 1)
        if density_logits is not None:
            counts = queries_from_density(density_logits.sigmoid(), cfg.query_factor,
                                          cfg.min_queries, cfg.max_queries,
                                          mode=cfg.density_mode)
        else:
            counts = torch.full((b,), cfg.max_queries, dtype=torch.long, device=device)
        if min_queries is not None:
            counts = torch.maximum(counts, min_queries.clamp(max=cfg.max_queries))
        counts = counts.clamp(max=int(valid.sum()))
        n = int(counts.max())

        s = scale[..., None]                                          # (B, S, 1)
        out_mem = self.enc_output[1](s * cache["enc"] + self.enc_output[0].bias)  # (B, S, D)
        enc_logits = self.enc_score(out_mem, proto)                   # (B, S, 1)
        select = enc_logits[..., 0].sigmoid()
        if density_logits is not None and cfg.density_selection:
            # Density-guided selection: a location's score is weighted by its density.
            select = select * dm_tokens
        select = select.masked_fill(~valid, -1.0)
        idx = select.topk(n, dim=1).indices                           # (B, N)
        topk_mem = out_mem.gather(1, idx[..., None].expand(-1, -1, out_mem.shape[-1]))  # (B,N,D)
        # The box head is per token: running it on the N selected tokens only gives the same
        # boxes as RT-DETR's head over all S tokens, at a fraction of the cost.
        topk_anchors = anchors.expand(b, -1, -1).gather(1, idx[..., None].expand(-1, -1, 4))
        enc_topk_boxes = (self.enc_bbox(topk_mem) + topk_anchors).sigmoid()  # (B, N, 4)
        enc_topk_logits = enc_logits.gather(1, idx[..., None])
        tgt = topk_mem.detach()
        query_mask = torch.arange(n, device=device)[None] < counts[:, None]  # (B, N)
        values = [s * v + layer.cross.value_proj.bias
                  for v, layer in zip(cache["values"], self.decoder.layers, strict=True)]
        ref, pad, attn_mask = enc_topk_boxes.detach(), ~query_mask, None
        dn = (denoising_queries([t.to(device) for t in dn_targets], cfg.num_denoising, n)
              if self.dn_embed is not None and self.training and dn_targets is not None
              else None)
        if dn is not None:
            dn_ref, dn_gt, dn_pos, attn_mask = dn
            m = dn_ref.shape[1]
            tgt = torch.cat([self.dn_embed.weight.expand(b, m, -1), tgt], 1)
            ref = torch.cat([dn_ref, ref], 1)
            pad = torch.cat([pad.new_zeros(b, m), pad], 1)
        logits, boxes = self.decoder(tgt, ref, values, shapes, proto, pad, attn_mask)
        dn_out = None
        if dn is not None:
            dn_out = (logits[:, :, :m], boxes[:, :, :m], dn_gt, dn_pos)
            logits, boxes = logits[:, :, m:], boxes[:, :, m:]
        return DealOutput(logits=logits, boxes=boxes, enc_logits=enc_topk_logits,
                          enc_boxes=enc_topk_boxes, density_logits=density_logits,
                          num_queries=counts, query_mask=query_mask,
                          input_size=feats.input_size, dn=dn_out)

    def forward(self, images: Tensor, point_coords: Tensor | None = None,
                point_labels: Tensor | None = None, min_queries: Tensor | None = None,
                ) -> DealOutput:
        """``decode(encode(images), point_coords, point_labels)``; see :meth:`decode`."""
        return self.decode(self.encode(images), point_coords, point_labels, min_queries)


def build_model(cfg: DealConfig) -> DEAL:
    """A freshly initialised DEAL for ``cfg``."""
    return DEAL(cfg)
