"""Interactive inference: encode an image once, answer many prompt sets from the cached features.

Prompt conventions follow SAM: ``point_coords`` is an ``(N, 2)`` float array of pixel ``(x, y)``
in the *original* image, ``point_labels`` an ``(N,)`` int array, 1 = foreground, 0 = background.
Boxes come back as ``(M, 4)`` float32 ``xyxy`` in original pixels with ``(M,)`` scores, best
first. A click on one object returns every instance of that object's category.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from deal.config import DealConfig
from deal.data import scale_image
from deal.model import DEAL, DealOutput, Features
from tinyset_builder.errors import TinysetError


@dataclass(frozen=True)
class Prediction:
    """Detections of one prompt set in original pixels.

    Attributes:
        xyxy: ``(M, 4)`` float32 boxes.
        scores: ``(M,)`` float32, descending.
        num_queries: queries the density integral allocated to the set.
    """

    xyxy: npt.NDArray[np.float32]
    scores: npt.NDArray[np.float32]
    num_queries: int


class DealPredictor:
    """Wraps a trained :class:`~deal.model.DEAL` for one image at a time.

    Args:
        model: the network (put in eval mode).
        device: torch device.
        min_score: detections below this score are dropped (0 keeps every query).
    """

    def __init__(self, model: DEAL, device: str = "cpu", min_score: float = 0.0) -> None:
        self.model = model.eval().to(device)
        self.device = device
        self.min_score = min_score
        self._features: Features | None = None
        self._size: tuple[int, int] | None = None  # original (H, W)

    @classmethod
    def from_checkpoint(cls, path: str | Path, cfg: DealConfig | None = None,
                        device: str = "cpu") -> DealPredictor:
        """Load a checkpoint written by :func:`deal.train.train` (checked against ``cfg``)."""
        from deal.train import load_model

        return cls(load_model(Path(path), cfg), device)

    @property
    def cfg(self) -> DealConfig:
        """The model's configuration."""
        return self.model.cfg

    @property
    def scale(self) -> float:
        """Factor from original pixels to network pixels."""
        return self.cfg.input_scale

    @torch.no_grad()
    def set_image(self, image: npt.NDArray[np.uint8]) -> None:
        """Encode ``image`` (``(H, W, 3)`` uint8 RGB) and cache its features."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise TinysetError(f"DEAL predictor: expected an (H, W, 3) uint8 RGB image, got "
                               f"{image.shape} {image.dtype}")
        self._size = (int(image.shape[0]), int(image.shape[1]))
        x = torch.from_numpy(np.array(scale_image(image, self.scale), copy=True))
        x = x.permute(2, 0, 1)[None].float().to(self.device) / 255.0  # (1, 3, h, w)
        self._features = self.model.encode(x)

    @property
    def features(self) -> Features:
        """The cached features of the current image."""
        if self._features is None:
            raise TinysetError("DEAL predictor: call set_image() before predict()")
        return self._features

    def check_points(self, point_coords: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Validate prompt points against the current image; returns ``(N, 2)`` float32."""
        if self._size is None:
            raise TinysetError("DEAL predictor: call set_image() before predict()")
        pts = np.asarray(point_coords, dtype=np.float32).reshape(-1, 2) \
            if np.size(point_coords) else np.zeros((0, 2), np.float32)
        if len(pts) == 0:
            raise TinysetError("DEAL predictor: empty prompt list; give at least one point x,y")
        if not np.isfinite(pts).all():
            raise TinysetError("DEAL predictor: prompt points must be finite numbers")
        h, w = self._size
        bad = (pts[:, 0] < 0) | (pts[:, 0] > w) | (pts[:, 1] < 0) | (pts[:, 1] > h)
        if bad.any():
            x, y = pts[int(np.flatnonzero(bad)[0])]
            raise TinysetError(f"DEAL predictor: point ({x:g}, {y:g}) is outside the {w}x{h} "
                               f"image")
        return pts

    @torch.no_grad()
    def predict(self, point_coords: npt.ArrayLike,
                point_labels: npt.ArrayLike | None = None) -> Prediction:
        """Detect every instance of the category the points show.

        Args:
            point_coords: ``(N, 2)`` pixel ``(x, y)`` in the original image.
            point_labels: ``(N,)`` 1 foreground / 0 background (default all 1).

        Returns:
            A :class:`Prediction` in original pixels.
        """
        return self.predict_many([point_coords],
                                 None if point_labels is None else [point_labels])[0]

    @torch.no_grad()
    def predict_many(self, coords: Sequence[npt.ArrayLike],
                     labels: Sequence[npt.ArrayLike] | None = None) -> list[Prediction]:
        """Answer several prompt sets on the cached image in one batched decode.

        Args:
            coords: per set, ``(N_i, 2)`` pixel ``(x, y)`` in the original image.
            labels: per set, ``(N_i,)`` 1 foreground / 0 background (default all 1).
        """
        sets = [self.check_points(c) for c in coords]
        k = max(len(s) for s in sets)
        pc = torch.zeros(len(sets), k, 2)
        pl = torch.full((len(sets), k), -1, dtype=torch.long)
        for i, s in enumerate(sets):
            pc[i, :len(s)] = torch.from_numpy(s) * self.scale
            lab = np.ones(len(s), np.int64) if labels is None else np.asarray(labels[i]).reshape(-1)
            if len(lab) != len(s) or not np.isin(lab, (0, 1)).all():
                raise TinysetError("DEAL predictor: point_labels must be 0/1, one per point")
            pl[i, :len(s)] = torch.from_numpy(lab.astype(np.int64))
        feats = self.features.select([0] * len(sets))
        out = self.predict_torch(feats, pc.to(self.device), pl.to(self.device))
        return [self._postprocess(out, i) for i in range(len(sets))]

    @torch.no_grad()
    def predict_unprompted(self) -> Prediction:
        """Detections of the base detector (a model built with ``use_pe=False``)."""
        if self.model.prompted:
            raise TinysetError("DEAL predictor: this model needs point prompts")
        return self._postprocess(self.model.decode(self.features), 0)

    @torch.no_grad()
    def predict_torch(self, feats: Features, point_coords: Tensor, point_labels: Tensor,
                      ) -> DealOutput:
        """Torch-facing decode: ``point_coords (B, K, 2)`` in *network* pixels, ``(B, K)`` labels.
        """
        if not self.model.prompted:
            return self.model.decode(feats)
        return self.model.decode(feats, point_coords, point_labels)

    def _postprocess(self, out: DealOutput, i: int) -> Prediction:
        assert self._size is not None
        h, w = self._size
        mask = out.query_mask[i]
        scores = out.logits[-1, i, mask, 0].sigmoid()
        boxes = out.boxes[-1, i, mask]                                # (M, 4) cxcywh in [0, 1]
        ih, iw = out.input_size
        cx, cy = boxes[:, 0] * iw / self.scale, boxes[:, 1] * ih / self.scale
        bw, bh = boxes[:, 2] * iw / self.scale, boxes[:, 3] * ih / self.scale
        xyxy = torch.stack([(cx - bw / 2).clamp(0, w), (cy - bh / 2).clamp(0, h),
                            (cx + bw / 2).clamp(0, w), (cy + bh / 2).clamp(0, h)], -1)
        keep = (scores >= self.min_score) & (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
        scores, xyxy = scores[keep], xyxy[keep]
        order = torch.argsort(scores, descending=True, stable=True)
        return Prediction(xyxy[order].cpu().numpy().astype(np.float32),
                          scores[order].cpu().numpy().astype(np.float32),
                          int(out.num_queries[i]))


def predict_prompt_file(predictor: DealPredictor, images: dict[int, Path],
                        prompts: list[dict], progress: bool = True) -> list[dict]:
    """COCO detections for every entry of a P2SOD prompt file (docs/prompts.md).

    Each image is encoded once; all its prompt sets are answered from the cached features in one
    batched decode. Detections carry the entry's ``category_id``. A model without a prompt
    branch follows ``cfg.unprompted_credit``: ``"none"`` (the paper's Table IV(d) reading) — it
    cannot be told what to find, so it answers no prompt set (AP 0 by construction);
    ``"all-prompted"`` — it predicts once per image and its boxes are labelled with every
    prompted category of the image (a category-blind detector scored under the prompts).

    Args:
        predictor: the predictor.
        images: image id -> image file.
        prompts: the ``prompts`` list of the file.
        progress: show a progress bar.
    """
    from tinyset_builder.imageio import read_image
    from tinyset_builder.progress import track

    model = predictor.model
    if not model.prompted and model.cfg.unprompted_credit == "none":
        return []
    by_image: dict[int, list[dict]] = {}
    for e in prompts:
        by_image.setdefault(int(e["image_id"]), []).append(e)
    results: list[dict] = []
    items = sorted(by_image.items())
    for image_id, entries in (track(items, "DEAL predict") if progress else items):
        if image_id not in images:
            raise TinysetError(f"prompt file names image {image_id}, which the GT does not have")
        predictor.set_image(read_image(images[image_id]))
        if predictor.model.prompted:
            preds = predictor.predict_many([e["points"] for e in entries])
        else:
            preds = [predictor.predict_unprompted()] * len(entries)
        for e, p in zip(entries, preds, strict=True):
            for (x0, y0, x1, y1), s in zip(p.xyxy.tolist(), p.scores.tolist(), strict=True):
                results.append({"image_id": image_id, "category_id": int(e["category_id"]),
                                "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2),
                                         round(y1 - y0, 2)], "score": round(s, 5)})
    return results
