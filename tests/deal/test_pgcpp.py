"""PG-CPP (Algorithm 1): the worst-matched GT's centre becomes the next prompt."""

from __future__ import annotations

import numpy as np
import torch

from deal.config import DealConfig
from deal.data import PromptSet, Sample, box_centre, initial_prompts, intra_class_sets
from deal.losses import match_quality
from deal.model import build_model
from deal.pgcpp import batch_prompts, cycle_prompts, targets_of, worst_matched


def _sample() -> Sample:
    rng = np.random.default_rng(0)
    boxes = np.array([[4, 4, 10, 10], [30, 30, 38, 37], [50, 8, 56, 14], [12, 40, 20, 48]],
                     dtype=np.float32)
    return Sample(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), boxes,
                  np.array([1, 1, 2, 1], dtype=np.int64))


def test_worst_matched_skips_prompted_instances() -> None:
    q = np.array([0.9, 0.05, 0.2])
    target_idx = np.array([0, 1, 3])
    assert worst_matched(q, target_idx, prompted=[]) == 1
    assert worst_matched(q, target_idx, prompted=[1]) == 3
    assert worst_matched(q, target_idx, prompted=[0, 1, 3]) is None


def test_initial_prompts_intra_and_inter() -> None:
    s, rng = _sample(), np.random.default_rng(3)
    intra = initial_prompts(s, "intra", rng)
    cat = s.categories[intra.prompted_idx[0]]
    assert len(intra.points) == 1
    assert set(intra.target_idx.tolist()) == set(np.flatnonzero(s.categories == cat).tolist())
    x, y = intra.points[0]
    b = s.boxes[intra.prompted_idx[0]]
    assert b[0] <= x <= b[2] and b[1] <= y <= b[3]  # sampled inside its GT box
    inter = initial_prompts(s, "inter", rng)
    assert len(inter.points) == 2 and len(inter.target_idx) == 4
    assert initial_prompts(s, "none", rng).points.shape == (0, 2)


def test_intra_class_sets_one_per_category() -> None:
    s, rng = _sample(), np.random.default_rng(5)
    sets = intra_class_sets(s, rng, max_sets=8)
    assert len(sets) == 2  # categories 1 and 2
    seen = set()
    for ps in sets:
        (j,) = ps.prompted_idx
        cat = int(s.categories[j])
        seen.add(cat)
        assert len(ps.points) == 1
        assert ps.target_idx.tolist() == np.flatnonzero(s.categories == cat).tolist()
        b = s.boxes[j]
        assert b[0] <= ps.points[0, 0] <= b[2] and b[1] <= ps.points[0, 1] <= b[3]
    assert seen == {1, 2}
    assert len(intra_class_sets(s, rng, max_sets=1)) == 1
    empty = Sample(s.image, np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    (only,) = intra_class_sets(empty, rng, max_sets=4)
    assert len(only.points) == 0 and len(only.target_idx) == 0


def test_cycle_adds_the_centre_of_the_worst_matched_gt(cfg: DealConfig) -> None:
    model = build_model(cfg).eval()
    s = _sample()
    ps = PromptSet(box_centre(s.boxes[0])[None], np.array([0, 1, 3]), [0])
    img = torch.from_numpy(s.image).permute(2, 0, 1)[None].float() / 255
    feats = model.encode(img)
    # The quality q = score * IoU of every target under the current prompts.
    coords, labels = batch_prompts([ps], img.device)
    with torch.no_grad():
        out = model.decode(feats, coords, labels)
    q = match_quality(out, targets_of([s], [ps], feats.input_size), cfg)[0]
    expected = int(ps.target_idx[1:][np.argmin(q[1:])])  # lowest q among unprompted targets
    grown = cycle_prompts(model, feats, [s], [ps], 1, cfg, np.random.default_rng(0))[0]
    assert grown.prompted_idx == [0, expected]
    np.testing.assert_allclose(grown.points[1], box_centre(s.boxes[expected]))
    # A second cycle adds the next-worst remaining instance, never one already prompted.
    twice = cycle_prompts(model, feats, [s], [ps], 2, cfg, np.random.default_rng(0))[0]
    assert len(set(twice.prompted_idx)) == 3 and twice.prompted_idx[:2] == [0, expected]
    # Every instance is prompted: nothing is left to add.
    full = cycle_prompts(model, feats, [s], [ps], 5, cfg, np.random.default_rng(0))[0]
    assert sorted(full.prompted_idx) == [0, 1, 3]


def test_unguided_cycles_add_random_target_instances(cfg: DealConfig) -> None:
    model = build_model(cfg).eval()
    s = _sample()
    ps = PromptSet(box_centre(s.boxes[2])[None], np.array([2]), [2])
    feats = model.encode(torch.rand(1, 3, 64, 64))
    same = cycle_prompts(model, feats, [s], [ps], 1, cfg, np.random.default_rng(0), guided=False)
    assert same[0].prompted_idx == [2]  # the only target is already prompted
