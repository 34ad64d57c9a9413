"""Prediction-Guided Cyclic Point Prompting (PG-CPP, paper Algorithm 1 and eq. 12–13).

Each training step encodes the batch once, then runs ``k`` no-grad cycles of prompt branch +
decoder on the cached features: after each cycle, the GT instance whose matched prediction has
the lowest quality ``q = score · IoU`` is prompted next. The loss is then computed on the final
prompt set. Intra-class cycles (one category) and inter-class cycles (one point per category,
all categories are targets) alternate from step to step.

``cfg.pgcpp_variant`` chooses the point: ``"ours"`` adds the centre of that *GT box* (a GT no
query was matched to has ``q = 0`` and comes first); ``"paper"`` adds ``Center(b*)``, the centre
of the worst matched *prediction* (eq. 12–13 as printed), among predictions matched to a GT not
yet prompted.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from deal.config import DealConfig
from deal.data import PromptSet, Sample, add_prompt, point_in_box
from deal.losses import Target, matched_predictions
from deal.model import DEAL, Features


def batch_prompts(sets: list[PromptSet], device: torch.device) -> tuple[Tensor, Tensor]:
    """Pad prompt sets into ``point_coords (B, K, 2)`` and ``point_labels (B, K)`` (-1 = pad)."""
    k = max((len(s.points) for s in sets), default=0)
    coords = torch.zeros(len(sets), k, 2)
    labels = torch.full((len(sets), k), -1, dtype=torch.long)
    for i, s in enumerate(sets):
        n = len(s.points)
        if n:
            coords[i, :n] = torch.from_numpy(s.points)
            labels[i, :n] = 1
    return coords.to(device), labels.to(device)


def targets_of(samples: list[Sample], sets: list[PromptSet], size: tuple[int, int],
               ) -> list[Target]:
    """GT of each prompt set as normalised cxcywh of an input of ``size = (H, W)``."""
    h, w = size
    out = []
    for s, ps in zip(samples, sets, strict=True):
        b = torch.from_numpy(s.boxes[ps.target_idx]).reshape(-1, 4)
        cxcywh = torch.stack([(b[:, 0] + b[:, 2]) / 2 / w, (b[:, 1] + b[:, 3]) / 2 / h,
                              (b[:, 2] - b[:, 0]) / w, (b[:, 3] - b[:, 1]) / h], -1)
        out.append(Target(cxcywh))
    return out


def worst_matched(quality: np.ndarray, target_idx: np.ndarray, prompted: list[int],
                  matched: np.ndarray | None = None) -> int | None:
    """GT index (into the sample) with the lowest ``q`` among targets not yet prompted.

    ``matched`` (``(G,)`` bool) restricts the choice to GTs that have a matched prediction.
    """
    order = np.argsort(quality, kind="stable")
    for j in order:
        g = int(target_idx[j])
        if g not in prompted and (matched is None or matched[j]):
            return g
    return None


def prediction_centre(box: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``Center(b*)`` of a normalised cxcywh prediction, in input pixels inside the input."""
    h, w = size
    return np.array([np.clip(box[0] * w, 0, w), np.clip(box[1] * h, 0, h)], dtype=np.float32)


@torch.no_grad()
def cycle_prompts(model: DEAL, feats: Features, samples: list[Sample], sets: list[PromptSet],
                  cycles: int, cfg: DealConfig, rng: np.random.Generator,
                  guided: bool = True) -> list[PromptSet]:
    """Grow each prompt set by ``cycles`` points.

    Args:
        model: the detector (its mode is left unchanged).
        feats: the batch's encoded features (reused, no backbone re-run).
        samples: the images' GT.
        sets: the initial prompt sets.
        cycles: number of points to add (``K`` of Algorithm 1 for this step).
        cfg: config (matching costs).
        rng: random generator (for the unguided ablation).
        guided: True = PG-CPP (worst-matched centre); False = a random unprompted target
            instance (the "PG-CPP off" row of Table IV(d)).

    Returns:
        The grown prompt sets.
    """
    device = feats.levels[0].device
    for _ in range(cycles):
        if guided:
            coords, labels = batch_prompts(sets, device)
            out = model.decode(feats, coords, labels)
            matched = matched_predictions(out, targets_of(samples, sets, feats.input_size), cfg)
        new_sets = []
        for i, (s, ps) in enumerate(zip(samples, sets, strict=True)):
            if len(ps.points) >= cfg.max_prompts or len(ps.points) == 0:
                new_sets.append(ps)
                continue
            if guided and cfg.pgcpp_variant == "paper":
                q, pred = matched[i]
                has_pred = ~np.isnan(pred[:, 0])
                g = worst_matched(q, ps.target_idx, ps.prompted_idx, matched=has_pred)
                if g is None:
                    new_sets.append(ps)
                    continue
                j = int(np.flatnonzero(ps.target_idx == g)[0])
                new_sets.append(add_prompt(ps, s, g, prediction_centre(pred[j],
                                                                       feats.input_size)))
            elif guided:
                g = worst_matched(matched[i][0], ps.target_idx, ps.prompted_idx)
                new_sets.append(ps if g is None else add_prompt(ps, s, g))
            else:
                free = [int(j) for j in ps.target_idx if int(j) not in ps.prompted_idx]
                if not free:
                    new_sets.append(ps)
                    continue
                g = free[int(rng.integers(len(free)))]
                pts = np.concatenate([ps.points, point_in_box(s.boxes[g], rng)[None]], 0)
                new_sets.append(PromptSet(pts.astype(np.float32), ps.target_idx,
                                          [*ps.prompted_idx, g]))
        sets = new_sets
    return sets
