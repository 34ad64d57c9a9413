"""RFLA: receptive-field-based label assignment for tiny objects, on torchvision's detectors.

Paper: C. Xu, J. Wang, W. Yang, H. Yu, L. Yu, G.-S. Xia, "RFLA: Gaussian Receptive Field based
Label Assignment for Tiny Object Detection", ECCV 2022. Authors' code: ``Chasel-Tsui/mmdet-rfla``
@ 198977b5e198005fec783e81f10f9363946d2ef8 (``mmdet/core/bbox/assigners/hierarchical_assigner.py``,
``mmdet/core/anchor/anchor_generator.py:RFGenerator``, ``mmdet/core/bbox/iou_calculators/
metric_calculator.py`` mode ``kl``, ``mmdet/models/dense_heads/rfla_fcos_head.py``, configs
``configs/rfla/aitodv2_{faster,fcos}_r50_*rfla_kld_1x.py``). Own implementation.

The three mechanisms:

* **Receptive-field priors.** Each feature point of level ``l`` gets a square prior of side
  ``fraction · TRF_l`` (the effective receptive field taken as a fraction, 0.5, of the theoretical
  one) centred on the point — :func:`theoretical_receptive_fields` computes the TRF of P2..P7 of a
  ResNet-FPN with the authors' recurrence. Faster R-CNN's RPN uses them as anchors (3 aspect ratios,
  ``RFGenerator``); FCOS uses them only to assign its points.
* **Receptive-field distance.** Priors and ground truths are 2-D Gaussians
  ``N(centre, diag(w²/4, h²/4))`` (:func:`box_gaussians`); their distance is the KL divergence
  ``KL(prior ‖ gt)`` mapped to a similarity ``1 / (1 + KL)`` (:func:`kld_similarity`).
* **Hierarchical label assignment** (:func:`hierarchical_assign`): stage 1 gives every ground truth
  its ``topk[0]`` (3) most similar priors; stage 2 shrinks every prior by ``ratio`` (0.9) and gives
  every ground truth its ``topk[1]`` (1) most similar among the priors stage 1 left unassigned.
  A prior whose best similarity is below 0.8 and that no ground truth picked is negative; one at
  or above 0.8 that none picked is ignored (``-1``, only the RPN's sampler honours it; FCOS counts
  it as background, as the authors' FCOS head does).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: 3×3 convolutions per ResNet stage (layer1..layer4): bottlenecks hold one, basic blocks two.
RESNET_3X3_CONVS: dict[str, tuple[int, int, int, int]] = {
    "resnet18": (4, 4, 4, 4),
    "resnet34": (6, 8, 12, 6),
    "resnet50": (3, 4, 6, 3),
}
#: Similarity under which an unpicked prior is negative (the authors' hard-coded 0.8).
NEGATIVE_BELOW = 0.8


@dataclass(frozen=True, slots=True)
class RFLAConfig:
    """The authors' defaults (``HieAssigner(topk=[3, 1], ratio=0.9)``, ``fraction=0.5`` on P2)."""

    topk: tuple[int, int] = (3, 1)
    ratio: float = 0.9
    fraction: float = 0.5


def theoretical_receptive_fields(backbone: str, levels: int = 6) -> tuple[float, ...]:
    """Theoretical receptive field (pixels) of P2, P3, ... of a ResNet-FPN.

    The authors' recurrence (``gen_trf``): the 7×7/2 stem and 3×3/2 max-pool give 11 pixels at
    jump 4; every 3×3 convolution adds ``2 · jump``; each later stage's first convolution has stride
    2 (adds ``2 · jump`` at the incoming jump, then the jump doubles); each extra level (P6, P7)
    adds ``2 ×`` the next jump, as the authors count it. ResNet-50 gives 35, 91, 267, 427, 555,
    811 (the authors' numbers); FPN's top-down path is not counted, as in the paper.
    """
    if backbone not in RESNET_3X3_CONVS:
        raise ValueError(f"no receptive-field table for backbone {backbone!r}")
    convs = RESNET_3X3_CONVS[backbone]
    r, jump = 1 + 6 * 1, 2          # 7×7 stride-2 stem
    r += 2 * jump                   # 3×3 stride-2 max-pool
    jump *= 2
    out = []
    for stage, n in enumerate(convs):
        if stage == 0:
            r += 2 * jump * n
        else:
            r += 2 * jump           # the stride-2 3×3 convolution, at the incoming jump
            jump *= 2
            r += 2 * jump * (n - 1)
        out.append(float(r))
    while len(out) < levels:        # P6, P7: the authors add 2 × the next level's jump
        jump *= 2
        r += 2 * jump
        out.append(float(r))
    return tuple(out[:levels])


def box_gaussians(boxes: Any) -> tuple[Any, Any]:
    """Means ``(N, 2)`` and diagonal variances ``(N, 2)`` of boxes as Gaussians (w²/4, h²/4)."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1e-6)
    return centre, wh ** 2 / 4


def kld_similarity(gt: Any, priors: Any) -> Any:
    """``1 / (1 + KL(prior ‖ gt))`` for every (gt, prior) pair, shape ``(G, N)``.

    For diagonal Gaussians ``KL(N_p ‖ N_g) = ½ [Σ σ²_p/σ²_g + Σ (μ_p − μ_g)²/σ²_g − 2
    + Σ ln(σ²_g/σ²_p)]``.
    """
    mu_g, var_g = box_gaussians(gt)
    mu_p, var_p = box_gaussians(priors)
    var_g, mu_g = var_g[:, None, :], mu_g[:, None, :]
    var_p, mu_p = var_p[None, :, :], mu_p[None, :, :]
    kl = 0.5 * ((var_p / var_g) + (mu_p - mu_g) ** 2 / var_g + (var_g / var_p).log()).sum(-1) - 1.0
    return 1.0 / (1.0 + kl)


def scale_boxes(boxes: Any, ratio: float) -> Any:
    """Boxes scaled about their centres by ``ratio`` (a copy)."""
    import torch

    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) * ratio / 2
    return torch.cat([centre - half, centre + half], dim=1)


def _rank_assign(sim: Any, k: int) -> Any:
    """One ranking stage: ``-1`` ignore, ``0`` negative, ``i + 1`` picked by gt ``i``.

    Every gt picks its top-``k`` priors; a prior picked by several gts goes to the last of them
    (the authors' loop overwrites in gt order).
    """
    import torch

    g, n = sim.shape
    out = torch.full((n,), -1, dtype=torch.long, device=sim.device)
    out[sim.max(dim=0).values < NEGATIVE_BELOW] = 0
    idx = sim.topk(min(k, n), dim=1).indices                       # (G, k)
    picked = torch.zeros((g, n), dtype=torch.long, device=sim.device)
    gt_ids = torch.arange(1, g + 1, device=sim.device)[:, None].expand_as(idx)
    picked.scatter_(1, idx, gt_ids)
    winner = picked.max(dim=0).values
    return torch.where(winner > 0, winner, out)


def hierarchical_assign(gt: Any, priors: Any, topk: Sequence[int] = (3, 1),
                        ratio: float = 0.9) -> Any:
    """RFLA's hierarchical label assignment of ``priors`` (N, 4) to ``gt`` (G, 4) boxes.

    Returns ``(N,)`` long: ``i + 1`` = assigned to gt ``i``, ``0`` = negative, ``-1`` = ignored.
    """
    import torch

    n = priors.shape[0]
    if gt.shape[0] == 0 or n == 0:
        return torch.zeros((n,), dtype=torch.long, device=priors.device)
    first = _rank_assign(kld_similarity(gt, priors), topk[0])
    second = _rank_assign(kld_similarity(gt, scale_boxes(priors, ratio)), topk[1])
    return torch.where(first > 0, first, second)


def point_priors(centres: Any, sizes: Any) -> Any:
    """Square priors of side ``sizes`` (N,) centred on ``centres`` (N, 2)."""
    import torch

    half = sizes[:, None] / 2
    return torch.cat([centres - half, centres + half], dim=1)


# --------------------------------------------------------------------------- detectors


@functools.cache
def _rfla_rpn_class() -> type:
    from torchvision.models.detection.rpn import RegionProposalNetwork

    class RFLARegionProposalNetwork(RegionProposalNetwork):
        """torchvision's RPN whose anchors are receptive-field priors assigned by RFLA."""

        rfla: RFLAConfig

        def assign_targets_to_anchors(self, anchors: list[Any], targets: list[dict[str, Any]],
                                      ) -> tuple[list[Any], list[Any]]:
            labels, matched = [], []
            for anchors_i, target in zip(anchors, targets, strict=True):
                gt = target["boxes"]
                if gt.numel() == 0:
                    labels.append(anchors_i.new_zeros(anchors_i.shape[0]))
                    matched.append(anchors_i.new_zeros(anchors_i.shape))
                    continue
                inds = hierarchical_assign(gt, anchors_i, self.rfla.topk, self.rfla.ratio)
                lab = (inds > 0).to(anchors_i.dtype)
                lab[inds < 0] = -1.0        # ignored by the fg/bg sampler
                labels.append(lab)
                matched.append(gt[(inds - 1).clamp(min=0)])
            return labels, matched

    return RFLARegionProposalNetwork


def fcos_point_priors(anchors_i: Any, num_anchors_per_level: Sequence[int],
                      erf: Sequence[float]) -> Any:
    """RFLA priors of an FCOS image's points (anchors are stride-sized squares on the points)."""
    import torch

    centres = (anchors_i[:, :2] + anchors_i[:, 2:]) / 2
    sizes = torch.cat([anchors_i.new_full((n,), float(e))
                       for n, e in zip(num_anchors_per_level, erf, strict=False)])
    return point_priors(centres, sizes)


def rfla_fcos_matches(anchors: list[Any], targets: list[dict[str, Any]],
                      num_anchors_per_level: Sequence[int], erf: Sequence[float],
                      cfg: RFLAConfig) -> list[Any]:
    """Per image: the gt index of each FCOS point (``-1`` background), by RFLA."""
    out = []
    for anchors_i, target in zip(anchors, targets, strict=True):
        priors = fcos_point_priors(anchors_i, num_anchors_per_level, erf)
        inds = hierarchical_assign(target["boxes"], priors, cfg.topk, cfg.ratio)
        out.append((inds - 1).clamp(min=-1))   # ignored (-1) counts as background here
    return out


@functools.cache
def _rfla_fcos_class() -> type:
    from torchvision.models.detection.fcos import FCOS

    class RFLAFCOS(FCOS):
        """torchvision's FCOS whose points are assigned by RFLA (see the module docstring)."""

        rfla: RFLAConfig
        erf: tuple[float, ...]

        def compute_loss(self, targets: list[dict[str, Any]], head_outputs: dict[str, Any],
                         anchors: list[Any], num_anchors_per_level: list[int],
                         ) -> dict[str, Any]:
            matched = rfla_fcos_matches(anchors, targets, num_anchors_per_level, self.erf,
                                        self.rfla)
            return self.head.compute_loss(targets, head_outputs, anchors, matched)

    return RFLAFCOS


def apply_rfla(model: Any, backbone: str, cfg: RFLAConfig = RFLAConfig()) -> Any:
    """Turn a detector of :func:`baselines.detectors.build_detector` into its RFLA variant.

    Faster R-CNN: the RPN's anchors become receptive-field priors (P2–P6, ratios 0.5/1/2) and its
    matching becomes :func:`hierarchical_assign` (the RoI head keeps its IoU matching, as in the
    authors' config). FCOS: the points' matching becomes RFLA's. Modules and weights are unchanged
    (same state-dict keys), so a saved model reloads into ``apply_rfla(build_detector(spec))``.
    """
    from torchvision.models.detection import FCOS, FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    erf = tuple(cfg.fraction * t for t in theoretical_receptive_fields(backbone, 6))
    if isinstance(model, FasterRCNN):
        levels = len(model.rpn.anchor_generator.sizes)
        model.rpn.anchor_generator = AnchorGenerator(tuple((e,) for e in erf[:levels]),
                                                     ((0.5, 1.0, 2.0),) * levels)
        model.rpn.__class__ = _rfla_rpn_class()
        model.rpn.rfla = cfg
    elif isinstance(model, FCOS):
        model.__class__ = _rfla_fcos_class()
        model.rfla, model.erf = cfg, erf
    else:
        raise TypeError(f"RFLA applies to Faster R-CNN and FCOS, not {type(model).__name__}")
    return model
