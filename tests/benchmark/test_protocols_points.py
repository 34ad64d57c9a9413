"""Point labels: exact centres, jittered points inside their box, distribution, ignore regions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from protocols_fixture import datasets, make_image
from scipy import stats

from benchmark.protocols.points import add_points
from tinyset_builder.coco import CocoAnnotation, CocoDataset


@settings(max_examples=40, deadline=None)
@given(ds=datasets(), jitter=st.sampled_from([0.0, 0.3, 1.0]), seed=st.integers(0, 2**32))
def test_points_lie_within_jitter_of_the_centre(ds: CocoDataset, jitter: float,
                                                seed: int) -> None:
    pts, counts = add_points(ds, jitter, seed)
    assert [a.id for a in pts.annotations] == [a.id for a in ds.annotations]
    for clean, a in zip(ds.annotations, pts.annotations, strict=True):
        assert (a.bbox, a.area, a.iscrowd, a.category_id) == (clean.bbox, clean.area,
                                                              clean.iscrowd, clean.category_id)
        if clean.iscrowd:
            assert "point" not in a.extra
            continue
        x, y, w, h = clean.bbox
        px, py = a.extra["point"]
        assert x <= px <= x + w and y <= py <= y + h
        if jitter == 0.0:
            assert (px, py) == (x + w / 2, y + h / 2)
        else:
            assert abs(px - (x + w / 2)) <= jitter * w / 2 + 1e-9
            assert abs(py - (y + h / 2)) <= jitter * h / 2 + 1e-9
    assert counts["points"] == sum(not a.iscrowd for a in ds.annotations)
    assert add_points(ds, jitter, seed)[0].to_dict() == pts.to_dict()


@pytest.mark.parametrize("jitter", [0.3, 1.0])
def test_jittered_points_are_uniform_over_the_scaled_box(jitter: float) -> None:
    n = 3000
    anns = [CocoAnnotation(id=i + 1, image_id=1, category_id=1, bbox=(100.0, 200.0, 30.0, 10.0))
            for i in range(n)]
    ds = CocoDataset(images=[make_image(1)], annotations=anns, categories=[])
    p = np.array([a.extra["point"] for a in add_points(ds, jitter, 11)[0].annotations])
    u = np.stack([(p[:, 0] - 115.0) / (jitter * 15.0), (p[:, 1] - 205.0) / (jitter * 5.0)], 1)
    for j in range(2):
        assert stats.kstest(u[:, j], stats.uniform(loc=-1, scale=2).cdf).pvalue > 1e-3
    assert abs(np.corrcoef(u.T)[0, 1]) < 0.06
