"""Box noise: bounds, the empirical distribution of the perturbation, clean boxes, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from protocols_fixture import SIZE, datasets, make_image
from scipy import stats

from benchmark.protocols.noise import add_box_noise, perturb_boxes
from tinyset_builder.coco import CocoAnnotation, CocoDataset


@settings(max_examples=40, deadline=None)
@given(ds=datasets(), level=st.sampled_from([0.2, 0.4]), seed=st.integers(0, 2**32))
def test_noisy_boxes_stay_within_bounds(ds: CocoDataset, level: float, seed: int) -> None:
    noisy, counts = add_box_noise(ds, level, seed)
    noisy.validate()
    assert [a.id for a in noisy.annotations] == [a.id for a in ds.annotations]
    assert [i.id for i in noisy.images] == [i.id for i in ds.images]
    for clean, a in zip(ds.annotations, noisy.annotations, strict=True):
        assert (a.image_id, a.category_id, a.iscrowd) == (clean.image_id, clean.category_id,
                                                          clean.iscrowd)
        assert a.extra["clean_bbox"] == list(clean.bbox)
        if clean.iscrowd:
            assert a.bbox == clean.bbox and a.area == clean.area
            continue
        x, y, w, h = clean.bbox
        nx, ny, nw, nh = a.bbox
        assert nw > 0 and nh > 0
        assert a.area == pytest.approx(nw * nh)
        # Inside the image, and inside the clean box grown by the largest shift + growth.
        assert 0 <= nx and nx + nw <= SIZE + 1e-9 and 0 <= ny and ny + nh <= SIZE + 1e-9
        slack = 1.5 * level
        assert nx >= x - slack * w - 1e-9 and nx + nw <= x + w + slack * w + 1e-9
        assert ny >= y - slack * h - 1e-9 and ny + nh <= y + h + slack * h + 1e-9
        # Width can only shrink below (1-n)·w through clipping at the border.
        assert nw <= (1 + level) * w + 1e-9 and nh <= (1 + level) * h + 1e-9
    n_objects = sum(not a.iscrowd for a in ds.annotations)
    assert counts["perturbed"] + counts["kept_original_degenerate"] == n_objects
    assert counts["ignore_regions_unchanged"] == len(ds.annotations) - n_objects
    again, _ = add_box_noise(ds, level, seed)
    assert again.to_dict() == noisy.to_dict()


@given(ds=datasets(max_images=6), seed=st.integers(0, 1000))
@settings(max_examples=25, deadline=None)
def test_noise_does_not_depend_on_annotation_order(ds: CocoDataset, seed: int) -> None:
    shuffled = CocoDataset(images=ds.images[::-1], annotations=ds.annotations[::-1],
                           categories=ds.categories)
    a = {x.id: x.bbox for x in add_box_noise(ds, 0.4, seed)[0].annotations}
    b = {x.id: x.bbox for x in add_box_noise(shuffled, 0.4, seed)[0].annotations}
    assert a == b


@pytest.mark.parametrize("level", [0.2, 0.4])
def test_perturbation_matches_its_definition(level: float) -> None:
    """Recover (u1..u4) from interior boxes: each ~ U(-1, 1), independent, and seeds differ."""
    rng = np.random.default_rng(7)
    n = 4000
    img = make_image(1)
    w, h = rng.uniform(4, 60, size=(2, n))
    x, y = rng.uniform(100, 900, size=(2, n))  # far from the border: no clipping
    anns = [CocoAnnotation(id=i + 1, image_id=1, category_id=1,
                           bbox=(float(x[i]), float(y[i]), float(w[i]), float(h[i])))
            for i in range(n)]
    ds = CocoDataset(images=[img], annotations=anns, categories=[])
    noisy, counts = add_box_noise(ds, level, seed=3)
    assert counts["perturbed"] == n
    b = np.array([a.bbox for a in noisy.annotations])
    cx, cy = b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2
    u = np.stack([(cx - (x + w / 2)) / (level * w), (cy - (y + h / 2)) / (level * h),
                  (b[:, 2] / w - 1) / level, (b[:, 3] / h - 1) / level], axis=1)
    assert np.all(np.abs(u) <= 1 + 1e-9)
    for j in range(4):
        # Fixed seeds: the test is deterministic; a wrong scale or distribution fails it.
        assert stats.kstest(u[:, j], stats.uniform(loc=-1, scale=2).cdf).pvalue > 1e-3
        assert abs(u[:, j].mean()) < 0.05
        assert u[:, j].var() == pytest.approx(1 / 3, rel=0.08)
    corr = np.corrcoef(u.T)
    assert np.all(np.abs(corr[~np.eye(4, dtype=bool)]) < 0.06)
    other = np.array([a.bbox for a in add_box_noise(ds, level, seed=4)[0].annotations])
    assert not np.allclose(other, b)


def test_clipping_and_degenerate_boxes() -> None:
    boxes = np.array([[1000.0, 10.0, 20.0, 20.0],    # runs off the right edge
                      [1030.0, 10.0, 5.0, 5.0]])     # lies outside: clipping leaves nothing
    u = np.array([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    noisy, degenerate = perturb_boxes(boxes, u, 0.4, 1024, 1024)
    assert degenerate.tolist() == [False, True]
    # centre 1010 + 8 = 1018, width 28 -> [1004, 1032] clipped to [1004, 1024].
    assert noisy[0].tolist() == pytest.approx([1004.0, 10.0, 20.0, 20.0])
    assert noisy[1].tolist() == boxes[1].tolist()
