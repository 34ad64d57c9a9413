"""torchvision detectors adapted to tiny objects: Faster R-CNN, RetinaNet and FCOS.

What is changed from torchvision's COCO defaults, and why (AI-TOD-style configs, methods.md §2.1):

* **levels**: Faster R-CNN keeps P2–P6; RetinaNet and FCOS get a **P2** level too (P2–P7, strides
  4–128) because a 4–16 px object leaves nothing on a stride-8 map (``first_level`` = 3 gives
  mmdet's P3–P7, the FCOS of the paper's Table I baselines, ``aitodv2_fcos_r50_1x.py``);
* **anchors** scaled down to the objects: Faster R-CNN 8–128 px (3 ratios; ``anchor_base``
  = 32 gives mmdet's default 32–512), RetinaNet
  ``2·stride`` with 3 octave scales (8–256 px), FCOS size ranges starting at stride 4;
* **up to 3,000 detections per image** (the evaluator's largest maxDets), the RPN keeps 3,000
  proposals at test time, low score thresholds so AP sees the whole precision-recall curve;
* **FCOS's box loss** weighted by the centre-ness target, as mmdet's ``FCOSHead`` (the paper's
  FCOS) and the authors' RFLA head; torchvision's sums it unweighted, and from random
  initialisation its P3–P7 FCOS lost the box regression on tiny objects (:func:`fcos_loss`);
* **input** ``size × size`` without resizing up or down (``min_size = max_size = size``): training
  crops and 1024² test tiles pass at their own scale.

Backbones: ResNet-50 (the paper's) or ResNet-18 (the CPU schedule's light backbone), each from a
**local** ImageNet ``state_dict`` when given (torchvision's downloader is never used), else random
initialisation. The FPN width is configurable (256 as in the paper; narrower on CPU).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from tinyset_builder.errors import TinysetError

MODELS = ("retinanet", "faster_rcnn", "fcos")
#: Backbone name -> (torchvision constructor, channels of layer1..layer4).
BACKBONES: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("resnet18", (64, 128, 256, 512)),
    "resnet34": ("resnet34", (64, 128, 256, 512)),
    "resnet50": ("resnet50", (256, 512, 1024, 2048)),
}
MAX_DETECTIONS = 3000
STRIDES = (4, 8, 16, 32, 64, 128)


@dataclass(frozen=True, slots=True)
class DetectorSpec:
    """Everything that shapes a detector's modules (weights aside).

    Attributes:
        model: ``faster_rcnn``, ``retinanet`` or ``fcos``.
        num_classes: object classes (background excluded).
        size: input side the transform resizes to (no resizing when inputs already have it).
        backbone: a key of :data:`BACKBONES`.
        fpn_channels: FPN width.
        backbone_weights: local ImageNet ``state_dict`` file, or None (random init).
        frozen_bn: frozen batch norm and frozen stem/layer1 (default: when pretrained).
        roi_batch: RoIs sampled per image for Faster R-CNN's box head (mmdet's 512).
        test_proposals: RPN proposals kept per image at test time.
        anchor_base: Faster R-CNN's anchor side on P2 (px), doubling per level up to P6: 8 by
            default (tiny objects), 32 = mmdet's default anchors (scale 8 × stride 4).
        first_level: RetinaNet's and FCOS's lowest pyramid level: 2 (P2–P7, ours) or 3 (P3–P7,
            mmdet's default FPN ``start_level=1``). Faster R-CNN always has P2–P6.
    """

    model: str
    num_classes: int
    size: int
    backbone: str = "resnet50"
    fpn_channels: int = 256
    backbone_weights: str | None = None
    frozen_bn: bool | None = None
    roi_batch: int = 512
    test_proposals: int = 3000
    anchor_base: int = 8
    first_level: int = 2


#: The lowest pyramid levels a one-stage detector can start from.
FIRST_LEVELS = (2, 3)


def level_strides(spec: DetectorSpec) -> tuple[int, ...]:
    """Strides of a one-stage detector's pyramid levels, lowest first (P2: 4 … P7: 128)."""
    if spec.first_level not in FIRST_LEVELS:
        raise TinysetError(f"first_level must be 2 or 3, got {spec.first_level}")
    return STRIDES[spec.first_level - 2:]


def _body(spec: DetectorSpec) -> Any:
    import torch
    import torchvision.models as tvm
    from torch import nn
    from torchvision.ops import FrozenBatchNorm2d

    if spec.backbone not in BACKBONES:
        raise TinysetError(f"unknown backbone {spec.backbone!r} ({', '.join(BACKBONES)})")
    pretrained = spec.backbone_weights is not None
    frozen = pretrained if spec.frozen_bn is None else spec.frozen_bn
    ctor = getattr(tvm, BACKBONES[spec.backbone][0])
    body = ctor(weights=None, norm_layer=FrozenBatchNorm2d if frozen else nn.BatchNorm2d)
    if pretrained:
        state = torch.load(spec.backbone_weights, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, _ = body.load_state_dict(state, strict=False)
        if [k for k in missing if not k.startswith("fc.")]:
            raise TinysetError(f"{spec.backbone_weights}: not a {spec.backbone} state_dict "
                               f"({len(missing)} missing keys, e.g. {missing[0]})")
    if frozen:  # as torchvision does for ImageNet weights: freeze the stem and layer1
        for pname, p in body.named_parameters():
            if not pname.startswith(("layer2", "layer3", "layer4")):
                p.requires_grad_(False)
    return body


def build_backbone(spec: DetectorSpec, extra: str = "maxpool") -> Any:
    """ResNet + FPN returning P2..P6 (``extra="maxpool"``) or P2..P7 (``extra="p6p7"``).

    With ``extra="p6p7"`` the FPN starts at ``spec.first_level`` (P3..P7 from layer2 when 3);
    P6 and P7 come from P5's output as mmdet's ``add_extra_convs='on_output'``.
    """
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

    skip = 0 if extra == "maxpool" else len(STRIDES) - len(level_strides(spec))
    layers = ("layer1", "layer2", "layer3", "layer4")[skip:]
    returned = {name: str(i) for i, name in enumerate(layers)}
    channels = list(BACKBONES[spec.backbone][1])[skip:] if spec.backbone in BACKBONES else []
    blocks = (LastLevelMaxPool() if extra == "maxpool"
              else LastLevelP6P7(spec.fpn_channels, spec.fpn_channels))
    return BackboneWithFPN(_body(spec), returned, channels, spec.fpn_channels,
                           extra_blocks=blocks)


def build_detector(spec: DetectorSpec, backbone: Any = None) -> Any:
    """A torchvision detector adapted to tiny objects (see the module docstring).

    Args:
        spec: the detector's shape.
        backbone: a ready backbone with ``out_channels`` (e.g. an HS-FPN neck); default: ResNet-FPN
            from ``spec``.
    """
    from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    if spec.model not in MODELS:
        raise TinysetError(f"unknown model {spec.model!r} ({', '.join(MODELS)})")
    common = {"min_size": spec.size, "max_size": spec.size}
    strides = level_strides(spec)
    if backbone is not None and spec.first_level != 2:
        raise TinysetError("first_level = 3 is for the plain ResNet-FPN, not a custom neck")
    if spec.model == "faster_rcnn":
        if spec.first_level != 2:
            raise TinysetError("Faster R-CNN has P2–P6 (as mmdet's); first_level applies to "
                               "RetinaNet and FCOS")
        backbone = backbone or build_backbone(spec, "maxpool")
        anchors = AnchorGenerator(tuple((spec.anchor_base * 2 ** i,) for i in range(5)),
                                  ((0.5, 1.0, 2.0),) * 5)
        train_top_n = 3000 if spec.roi_batch >= 512 else 4 * spec.roi_batch
        return FasterRCNN(backbone, spec.num_classes + 1, rpn_anchor_generator=anchors,
                          rpn_pre_nms_top_n_train=3000, rpn_post_nms_top_n_train=train_top_n,
                          rpn_pre_nms_top_n_test=max(3000, spec.test_proposals),
                          rpn_post_nms_top_n_test=spec.test_proposals,
                          box_detections_per_img=MAX_DETECTIONS, box_score_thresh=0.001,
                          box_batch_size_per_image=spec.roi_batch, **common)
    backbone = backbone or build_backbone(spec, "p6p7")  # P2..P7 (or P3..P7)
    if spec.model == "retinanet":
        sizes = tuple((2 * s, round(2 * s * 2 ** (1 / 3)), round(2 * s * 2 ** (2 / 3)))
                      for s in strides)
        anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(strides))
        return RetinaNet(backbone, spec.num_classes + 1, anchor_generator=anchors,
                         score_thresh=0.01, detections_per_img=MAX_DETECTIONS,
                         topk_candidates=MAX_DETECTIONS, **common)
    anchors = AnchorGenerator(tuple((s,) for s in strides), ((1.0,),) * len(strides))
    head = _fcos_head_class()(backbone.out_channels, 1, spec.num_classes + 1)
    return FCOS(backbone, spec.num_classes + 1, anchor_generator=anchors, head=head,
                score_thresh=0.01, detections_per_img=MAX_DETECTIONS,
                topk_candidates=MAX_DETECTIONS, **common)


@functools.cache
def _fcos_head_class() -> type:
    from torchvision.models.detection.fcos import FCOSHead

    class CentrenessWeightedFCOSHead(FCOSHead):
        """torchvision's FCOS head (same modules and weights) with mmdet's box loss
        (:func:`fcos_loss`)."""

        def compute_loss(self, targets: list[dict[str, Any]], head_outputs: dict[str, Any],
                         anchors: list[Any], matched_idxs: list[Any]) -> dict[str, Any]:
            return fcos_loss(self, targets, head_outputs, anchors, matched_idxs)

    return CentrenessWeightedFCOSHead


def fcos_loss(head: Any, targets: list[dict[str, Any]], head_outputs: dict[str, Any],
              anchors: list[Any], matched_idxs: list[Any], cls_weights: Any = None,
              ) -> dict[str, Any]:
    """FCOS's losses (focal, GIoU, centre-ness) for given matches, optionally weighting the
    classification term per point (``cls_weights`` ``(N, A)``, DN-TOD's reweighting).

    As torchvision's ``FCOSHead.compute_loss`` except for the box term: each positive's GIoU is
    weighted by its centre-ness target and the sum normalised by the targets' sum, as mmdet's
    ``FCOSHead.loss`` (the paper's FCOS baselines) and the authors' RFLA head do; torchvision sums
    the GIoU unweighted. The centre-ness target clamps the smaller distance at 0.01 (as RFLA's
    head) because a KLD-assigned point may lie outside its tiny box. Without the weighting, the
    off-centre positives — most of them for objects near or below the stride — pull the ReLU'd
    distances towards zero, and from random initialisation the regression branch can die (every
    predicted box 0 × 0).
    """
    import torch
    import torch.nn.functional as F
    from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

    cls_logits = head_outputs["cls_logits"]
    bbox_regression = head_outputs["bbox_regression"]
    bbox_ctrness = head_outputs["bbox_ctrness"]
    gt_cls, gt_boxes = [], []
    for target, matched in zip(targets, matched_idxs, strict=True):
        if len(target["labels"]) == 0:
            cls_i = target["labels"].new_zeros((len(matched),))
            box_i = target["boxes"].new_zeros((len(matched), 4))
        else:
            cls_i = target["labels"][matched.clip(min=0)].clone()
            box_i = target["boxes"][matched.clip(min=0)]
        cls_i[matched < 0] = -1
        gt_cls.append(cls_i)
        gt_boxes.append(box_i)
    gt_boxes_t, gt_cls_t = torch.stack(gt_boxes), torch.stack(gt_cls)
    anchors_t = torch.stack(anchors)
    fg = gt_cls_t >= 0
    num_fg = max(1, int(fg.sum().item()))
    onehot = torch.zeros_like(cls_logits)
    onehot[fg, gt_cls_t[fg]] = 1.0
    focal = sigmoid_focal_loss(cls_logits, onehot, reduction="none")
    if cls_weights is not None:
        focal = focal * cls_weights[..., None]
    pred_boxes = head.box_coder.decode(bbox_regression, anchors_t)
    ltrb = head.box_coder.encode(anchors_t, gt_boxes_t)
    ctr = centerness_targets(ltrb)
    giou = generalized_box_iou_loss(pred_boxes[fg], gt_boxes_t[fg], reduction="none")
    loss_reg = (giou * ctr[fg]).sum() / ctr[fg].sum().clamp(min=1e-6)
    loss_ctr = F.binary_cross_entropy_with_logits(bbox_ctrness[..., 0][fg], ctr[fg],
                                                  reduction="sum")
    return {"classification": focal.sum() / num_fg, "bbox_regression": loss_reg,
            "bbox_ctrness": loss_ctr / num_fg}


def centerness_targets(ltrb: Any) -> Any:
    """FCOS centre-ness of ``(..., 4)`` point-to-side distances, the smaller distance of each
    axis clamped at 0.01 (a point outside its box gets a small positive target, not NaN)."""
    import torch

    lr, tb = ltrb[..., [0, 2]], ltrb[..., [1, 3]]
    return torch.sqrt((lr.min(-1).values.clamp(min=0.01) / lr.max(-1).values.clamp(min=0.01))
                      * (tb.min(-1).values.clamp(min=0.01) / tb.max(-1).values.clamp(min=0.01)))

