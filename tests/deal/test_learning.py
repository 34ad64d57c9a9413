"""DEAL learns, and its matching and box loss are right (issue 19, item 7).

The matching is checked against a cost matrix built here from the formulas (RT-DETR's focal
class cost, L1, GIoU written out by hand) and solved by brute force and by
``scipy.optimize.linear_sum_assignment``; the GIoU against hand-computed values and
``torchvision.ops.generalized_box_iou``. The overfit test trains two small images for a fixed
number of steps and requires the prompted AP on them to rise.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from torchvision.ops import generalized_box_iou

from deal.config import DealConfig
from deal.losses import Target, _set_loss, hungarian_match, xyxy


def _giou_by_hand(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """GIoU of two xyxy boxes from its definition: IoU − |C \\ (A ∪ B)| / |C|."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    union = area(a) + area(b) - inter
    hull = (max(a[2], b[2]) - min(a[0], b[0])) * (max(a[3], b[3]) - min(a[1], b[1]))
    return inter / union - (hull - union) / hull


def test_giou_on_hand_cases() -> None:
    cases = [((0.0, 0.0, 0.2, 0.2), (0.1, 0.1, 0.3, 0.3)),    # overlap 1/7, hull 0.09
             ((0.0, 0.0, 0.1, 0.1), (0.2, 0.0, 0.3, 0.1)),    # disjoint: 0 − 0.01/0.03
             ((0.1, 0.1, 0.4, 0.3), (0.1, 0.1, 0.4, 0.3))]    # identical: 1
    expected = [1 / 7 - (0.09 - 0.07) / 0.09, -1 / 3, 1.0]
    for (a, b), e in zip(cases, expected, strict=True):
        assert _giou_by_hand(a, b) == pytest.approx(e, abs=1e-9)
        tv = generalized_box_iou(torch.tensor([a], dtype=torch.float64),
                                 torch.tensor([b], dtype=torch.float64))
        assert float(tv) == pytest.approx(e, abs=1e-9)
    # The loss's cxcywh -> xyxy conversion feeds torchvision the same boxes.
    assert torch.allclose(xyxy(torch.tensor([[0.25, 0.2, 0.3, 0.2]])),
                          torch.tensor([[0.1, 0.1, 0.4, 0.3]]))


def _cost_by_hand(p: np.ndarray, pred: np.ndarray, gt: np.ndarray, cfg: DealConfig) -> np.ndarray:
    alpha, gamma = 0.25, 2.0
    cls = (alpha * (1 - p) ** gamma * -np.log(p + 1e-8)
           - (1 - alpha) * p ** gamma * -np.log(1 - p + 1e-8))
    to_xyxy = lambda b: (b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2,  # noqa: E731
                         b[1] + b[3] / 2)
    cost = np.zeros((len(pred), len(gt)))
    for i, j in itertools.product(range(len(pred)), range(len(gt))):
        cost[i, j] = (cfg.cost_class * cls[i] + cfg.cost_l1 * np.abs(pred[i] - gt[j]).sum()
                      - cfg.cost_giou * _giou_by_hand(to_xyxy(pred[i]), to_xyxy(gt[j])))
    return cost


@pytest.mark.parametrize("case", ["near-each", "crossed", "more-gt-than-queries"])
def test_hungarian_matching_minimises_the_hand_computed_cost(cfg: DealConfig, case: str) -> None:
    gt = np.array([[0.2, 0.2, 0.1, 0.1], [0.7, 0.3, 0.08, 0.12], [0.5, 0.8, 0.2, 0.1]])
    if case == "near-each":      # each query sits on one GT, in shuffled order
        pred = gt[[2, 0, 1]] + 0.01
        logits = np.array([0.5, -1.0, 2.0])
    elif case == "crossed":      # a confident query far from everything, a weak one on GT 1
        pred = np.array([[0.9, 0.9, 0.05, 0.05], [0.71, 0.31, 0.08, 0.1],
                         [0.25, 0.18, 0.12, 0.1], [0.45, 0.75, 0.2, 0.2]])
        logits = np.array([3.0, -2.0, 0.0, 1.0])
    else:
        pred = np.array([[0.52, 0.79, 0.2, 0.1], [0.2, 0.25, 0.1, 0.1]])
        logits = np.array([0.0, 0.0])
    p = 1 / (1 + np.exp(-logits))
    cost = _cost_by_hand(p, pred, gt, cfg)
    # Brute force over every assignment of min(N, G) pairs.
    n, g = cost.shape
    k = min(n, g)
    best = min(sum(cost[i, j] for i, j in zip(rows, cols, strict=True))
               for rows in itertools.permutations(range(n), k)
               for cols in itertools.combinations(range(g), k))
    sq, sg = linear_sum_assignment(cost)
    assert cost[sq, sg].sum() == pytest.approx(best, abs=1e-6)
    qi, gi = hungarian_match(torch.tensor(logits, dtype=torch.float32)[:, None],
                             torch.tensor(pred, dtype=torch.float32),
                             torch.tensor(gt, dtype=torch.float32), cfg)
    assert len(qi) == min(n, g)
    assert cost[qi.numpy(), gi.numpy()].sum() == pytest.approx(best, abs=1e-4)


def test_regression_loss_equals_l1_and_giou_of_the_matched_pairs(cfg: DealConfig) -> None:
    gt = torch.tensor([[0.2, 0.2, 0.1, 0.1], [0.7, 0.3, 0.08, 0.12]])
    pred = torch.tensor([[[0.69, 0.31, 0.1, 0.1], [0.5, 0.5, 0.3, 0.3], [0.21, 0.2, 0.1, 0.12]]])
    logits = torch.zeros(1, 3, 1)
    _, reg = _set_loss(logits, pred, torch.ones(1, 3, dtype=torch.bool), [Target(gt)], cfg, 2.0)
    pairs = [(2, 0), (0, 1)]  # the obvious matching of this case
    expected = 0.0
    for q, g in pairs:
        a, b = pred[0, q].tolist(), gt[g].tolist()
        to = lambda c: (c[0] - c[2] / 2, c[1] - c[3] / 2, c[0] + c[2] / 2, c[1] + c[3] / 2)  # noqa: E731
        expected += (cfg.w_l1 * sum(abs(x - y) for x, y in zip(a, b, strict=True))
                     + cfg.w_giou * (1 - _giou_by_hand(to(a), to(b))))
    assert float(reg) == pytest.approx(expected / 2.0, rel=1e-5)


def test_overfitting_two_images_raises_prompted_ap(tmp_path: Path) -> None:
    from benchmark.evaluate import evaluate
    from deal.config import get_config
    from deal.predictor import DealPredictor, predict_prompt_file
    from deal.synthetic import make_scene_coco
    from deal.train import load_model, train

    root = tmp_path / "data"
    ann = make_scene_coco(root, n_images=2, size=64, n_objects=6, n_categories=2, seed=0,
                          min_size=6, max_size=12)
    gt = json.loads(ann.read_text())
    prompts = []  # every category of each image, one point on its first instance (setting 1)
    for img in gt["images"]:
        anns = [a for a in gt["annotations"] if a["image_id"] == img["id"]]
        for c in sorted({a["category_id"] for a in anns}):
            x, y, w, h = next(a for a in anns if a["category_id"] == c)["bbox"]
            prompts.append({"image_id": img["id"], "category_id": c,
                            "points": [[x + w / 2, y + h / 2]]})
    doc = {"schema": "tinyset-prompts/1", "setting": "p2sod-1", "split": "train", "seed": 0,
           "dataset": "-", "num_points": 1, "jitter": 0.0, "prompts": prompts}
    images = {i["id"]: root / "images" / "train" / i["file_name"] for i in gt["images"]}
    cfg = get_config("tiny", input_scale=1.0, train_crop=None, batch_size=2, max_queries=20,
                     min_queries=5, warmup_steps=1)

    def ap50_after(steps: int) -> float:
        res = train(cfg, ann, root, tmp_path / f"run{steps}", steps=steps, seed=0)
        dets = predict_prompt_file(DealPredictor(load_model(res.checkpoint)), images, prompts,
                                   progress=False)
        return float(evaluate(gt, dets, prompts=doc)["AP50"])

    before, after = ap50_after(1), ap50_after(40)
    assert before < 0.2
    assert after >= 0.4 and after > before + 0.3, (before, after)
