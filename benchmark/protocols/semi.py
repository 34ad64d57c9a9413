"""Semi-supervised splits (``semi-1``, ``semi-5``, ``semi-10``): image-level, nested, per fold.

The training images, sorted by id, are permuted once by the stream ``(seed, SEMI, fold)``; the
labeled set of ``p %`` is the first ``floor(p·N/100)`` images of that permutation (computed in
integers, so it is exactly ``int(p·N)`` with no floating-point off-by-one). Hence:

* sampling is without replacement (unlike mmdet's ``split_coco.py``, methods.md §4.2);
* the splits are nested: ``1 % ⊂ 5 % ⊂ 10 %`` for the same seed and fold;
* different folds are different permutations.

If ``floor(p·N/100)`` is 0 (fewer than ``100/p`` images, e.g. a demo dataset) one image is
labeled instead, since no detector trains on zero images; ``meta.json`` then says
``"labeled_clamped_to_one": true``.

``train_labeled.json`` holds the labeled images with all their annotations (ignore regions
included: they are part of an image's labels). ``train_unlabeled.json`` holds the other images
and *no* annotations, so no label can leak into the unlabeled stream.
"""

from __future__ import annotations

from typing import Any

from benchmark.protocols.common import derived
from benchmark.protocols.rng import Purpose, stream
from tinyset_builder.coco import CocoDataset
from tinyset_builder.errors import TinysetError


def labeled_count(num_images: int, percent: int) -> tuple[int, bool]:
    """Number of labeled images for ``percent`` of ``num_images``, and whether it was clamped to 1.

    Example:
        >>> labeled_count(1000, 5)
        (50, False)
        >>> labeled_count(30, 1)
        (1, True)
    """
    exact = percent * num_images // 100
    if exact == 0 and num_images > 0:
        return 1, True
    return exact, False


def labeled_order(image_ids: list[int], seed: int, fold: int) -> list[int]:
    """All image ids in the order they become labeled (prefixes give the nested splits)."""
    ids = sorted(image_ids)
    perm = stream(seed, Purpose.SEMI, fold).permutation(len(ids))
    return [ids[i] for i in perm.tolist()]


def split_semi(ds: CocoDataset, percent: int, seed: int,
               fold: int) -> tuple[CocoDataset, CocoDataset, dict[str, Any]]:
    """The labeled and unlabeled datasets for ``percent`` % labeled images, and the counts."""
    if not ds.images:
        raise TinysetError("the train split has no images: nothing to split into labeled and "
                           "unlabeled")
    n_labeled, clamped = labeled_count(len(ds.images), percent)
    labeled_ids = set(labeled_order([i.id for i in ds.images], seed, fold)[:n_labeled])
    labeled_images = [i for i in ds.images if i.id in labeled_ids]
    unlabeled_images = [i for i in ds.images if i.id not in labeled_ids]
    labeled_anns = [a for a in ds.annotations if a.image_id in labeled_ids]
    variant = {"protocol": "semi", "percent": percent, "seed": seed, "fold": fold}
    labeled = derived(ds, images=labeled_images, annotations=labeled_anns,
                      variant={**variant, "part": "labeled"})
    unlabeled = derived(ds, images=unlabeled_images, annotations=[],
                        variant={**variant, "part": "unlabeled"})
    counts = {"images": len(ds.images), "labeled_images": len(labeled_images),
              "unlabeled_images": len(unlabeled_images),
              "labeled_annotations": len(labeled_anns),
              "labeled_ignore_regions": sum(a.iscrowd for a in labeled_anns),
              "withheld_annotations": len(ds.annotations) - len(labeled_anns),
              "labeled_clamped_to_one": clamped}
    return labeled, unlabeled, counts
