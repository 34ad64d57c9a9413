"""Sparse-shot labels: min(k, n) instances per image, nesting, ignore regions, uniform choice."""

from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from protocols_fixture import datasets, make_image
from scipy import stats

from benchmark.protocols.shot import sparse_shot
from tinyset_builder.coco import CocoAnnotation, CocoDataset


@settings(max_examples=40, deadline=None)
@given(ds=datasets(), seed=st.integers(0, 2**32))
def test_shot_keeps_min_k_per_image_nested_with_ignore_regions(ds: CocoDataset,
                                                               seed: int) -> None:
    originals = {a.id: a for a in ds.annotations}
    objects_per_image = Counter(a.image_id for a in ds.annotations if not a.iscrowd)
    crowd = {a.id for a in ds.annotations if a.iscrowd}
    previous: set[int] = set()
    for k in (1, 3, 5):
        sparse, counts = sparse_shot(ds, k, seed)
        assert sparse.images == ds.images  # every image kept
        kept = {a.id for a in sparse.annotations}
        assert crowd <= kept  # ignore regions always kept, not counted towards k
        per_image = Counter(a.image_id for a in sparse.annotations if not a.iscrowd)
        for img in ds.images:
            assert per_image[img.id] == min(k, objects_per_image[img.id])
        assert all(originals[a.id] == a for a in sparse.annotations)  # records unchanged
        assert [a.id for a in sparse.annotations] == [a.id for a in ds.annotations
                                                      if a.id in kept]
        assert previous <= kept  # 1-shot ⊂ 3-shot ⊂ 5-shot
        previous = kept
        assert counts["instances_kept"] + counts["instances_withheld"] == counts["instances"]
        assert counts["ignore_regions_kept"] == len(crowd)
        assert sparse_shot(ds, k, seed)[0].to_dict() == sparse.to_dict()
    shuffled = CocoDataset(images=ds.images, annotations=ds.annotations[::-1],
                           categories=ds.categories)
    assert {a.id for a in sparse_shot(shuffled, 3, seed)[0].annotations} == \
        {a.id for a in sparse_shot(ds, 3, seed)[0].annotations}


def test_one_shot_choice_is_uniform_over_instances() -> None:
    anns = [CocoAnnotation(id=i, image_id=5, category_id=1, bbox=(10.0 * i, 5.0, 4.0, 4.0))
            for i in range(1, 6)]
    ds = CocoDataset(images=[make_image(5)], annotations=anns, categories=[])
    picks = Counter(sparse_shot(ds, 1, seed)[0].annotations[0].id for seed in range(1000))
    assert set(picks) == {1, 2, 3, 4, 5}
    assert stats.chisquare([picks[i] for i in range(1, 6)]).pvalue > 1e-3
    # Two images under one seed are drawn independently (per-image streams, not one shared).
    two = CocoDataset(images=[make_image(5), make_image(6)],
                      annotations=anns + [CocoAnnotation(id=10 + a.id, image_id=6,
                                                         category_id=1, bbox=a.bbox)
                                          for a in anns], categories=[])
    same = sum(
        np.diff(sorted(a.id % 10 for a in sparse_shot(two, 1, s)[0].annotations))[0] == 0
        for s in range(300))
    assert 30 < same < 95  # ~1/5 of 300 when independent
