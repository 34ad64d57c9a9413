"""Semi-supervised splits: exact labeled counts, nesting, disjointness, folds, determinism."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from protocols_fixture import random_dataset

from benchmark.protocols.semi import labeled_count, split_semi
from tinyset_builder.errors import TinysetError


@settings(deadline=None)
@given(n=st.integers(0, 10**7), percent=st.sampled_from([1, 5, 10]))
def test_labeled_count_is_exact_floor(n: int, percent: int) -> None:
    count, clamped = labeled_count(n, percent)
    exact = int(Fraction(percent, 100) * n)  # floor of the exact rational p·N
    assert clamped == (exact == 0 and n > 0)
    assert count == (1 if clamped else exact)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 400), seed=st.integers(0, 2**31), fold=st.integers(0, 9),
       data_seed=st.integers(0, 1000))
def test_splits_are_nested_disjoint_and_complete(n: int, seed: int, fold: int,
                                                 data_seed: int) -> None:
    ds = random_dataset(np.random.default_rng(data_seed), images=n, max_anns=3)
    all_ids = {i.id for i in ds.images}
    previous: set[int] = set()
    for percent in (1, 5, 10):
        labeled, unlabeled, counts = split_semi(ds, percent, seed, fold)
        lab = {i.id for i in labeled.images}
        unl = {i.id for i in unlabeled.images}
        assert len(lab) == labeled_count(n, percent)[0] == counts["labeled_images"]
        assert lab | unl == all_ids and not lab & unl
        assert previous <= lab  # 1 % ⊂ 5 % ⊂ 10 %
        previous = lab
        # Labeled file: every annotation of the labeled images, nothing else, unchanged.
        assert labeled.annotations == [a for a in ds.annotations if a.image_id in lab]
        assert unlabeled.annotations == []
        assert labeled.categories == ds.categories == unlabeled.categories
        # Images keep the source file's order.
        assert [i.id for i in labeled.images] == [i.id for i in ds.images if i.id in lab]
        again = split_semi(ds, percent, seed, fold)
        assert again[0].to_dict() == labeled.to_dict()
        assert again[1].to_dict() == unlabeled.to_dict()


def test_folds_and_seeds_give_different_samples_uniformly() -> None:
    ds = random_dataset(np.random.default_rng(0), images=200, max_anns=1)
    splits = {(seed, fold): frozenset(i.id for i in split_semi(ds, 10, seed, fold)[0].images)
              for seed in range(3) for fold in range(5)}
    assert len(set(splits.values())) == len(splits)
    # Over many folds every image is labeled about 10 % of the time (sampling is uniform).
    hits = np.zeros(201)
    for fold in range(400):
        for image_id in (i.id for i in split_semi(ds, 10, 0, fold)[0].images):
            hits[image_id] += 1
    freq = hits[1:] / 400
    assert abs(freq.mean() - 0.10) < 1e-12  # exactly 20 of 200 each time
    assert freq.min() > 0.03 and freq.max() < 0.19


def test_empty_train_split_is_refused() -> None:
    ds = random_dataset(np.random.default_rng(0), images=0)
    with pytest.raises(TinysetError, match="no images"):
        split_semi(ds, 5, 0, 0)
