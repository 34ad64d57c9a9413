"""HS-FPN (Shi et al., AAAI 2025) replacing FPN in Faster R-CNN — Table I row 5 (``full``).

Paper: "HS-FPN: High Frequency and Spatial Perception FPN for Tiny Object Detection"
(arXiv 2412.10116). Authors' code: ``ShiZican/HS-FPN`` (``hs_fpn.py``; no snapshot could be fetched
here, public copies of the module were read instead — see :mod:`baselines.necks.hs_fpn`, which
holds the neck). The detector is the shared Faster R-CNN (:mod:`baselines.detectors`) with its FPN
swapped for HS-FPN; everything else (anchors, heads, schedule, training loop) is the plain row's.

Options: ``ratio`` (DCT low-frequency block, [0.25, 0.25]), ``patch_p2`` (16), ``patch_p3`` (8),
``window`` (SDP attention window, 8), ``model`` (``faster_rcnn``), ``class_agnostic`` (true).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from baselines.methods import MethodContext, Prediction
from baselines.methods.rfla import predict_variant, train_variant


@dataclass(frozen=True)
class Config:
    """The authors' defaults (``HS_FPN(ratio=(0.25, 0.25))``, patches 16/8) and our window."""

    model: str = "faster_rcnn"
    ratio: tuple[float, float] = (0.25, 0.25)
    patch_p2: int = 16
    patch_p3: int = 8
    window: int = 8
    class_agnostic: bool = True


def neck_settings(cfg: Config) -> dict[str, Any]:
    """The neck part of a variant (plain types)."""
    return {"type": "hs_fpn", "ratio": [float(r) for r in cfg.ratio],
            "patch_p2": int(cfg.patch_p2), "patch_p3": int(cfg.patch_p3),
            "window": int(cfg.window)}


def train(ctx: MethodContext) -> dict[str, Any]:
    """Train Faster R-CNN with an HS-FPN neck."""
    cfg = ctx.config(Config)
    return train_variant(ctx, method="hs_fpn", model_name=cfg.model,
                         variant={"neck": neck_settings(cfg)},
                         class_agnostic=bool(cfg.class_agnostic), notes={"hs_fpn": asdict(cfg)})


def predict(ctx: MethodContext) -> list[Prediction]:
    """Detections of every image of ``ctx.eval_json``."""
    return predict_variant(ctx)
