"""P2SOD prompt sets obey settings 1–4, nest, take k-prefixes, skip empty images, are seeded."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from protocols_fixture import datasets, make_image

from benchmark.protocols.prompts import SCHEMA, prompt_file
from tinyset_builder.coco import CocoAnnotation, CocoDataset

DEFAULT_K = {1: 1, 2: None, 3: 1, 4: None}


def prompts(ds: CocoDataset, setting: int, seed: int, *, k: int | None = None,
            jitter: float = 0.0) -> tuple[dict, dict]:
    return prompt_file(ds, setting_name=f"p2sod-{setting}", setting=setting, split="val",
                       seed=seed, dataset_sha256="0" * 64,
                       num_points=DEFAULT_K[setting] if k is None else k, jitter=jitter)


def objects_by_image_category(ds: CocoDataset) -> dict[int, dict[int, dict[int, CocoAnnotation]]]:
    out: dict[int, dict[int, dict[int, CocoAnnotation]]] = defaultdict(lambda: defaultdict(dict))
    for a in ds.annotations:
        if not a.iscrowd:
            out[a.image_id][a.category_id][a.id] = a
    return out


def pairs(doc: dict) -> dict[tuple[int, int], list[tuple[int, tuple[float, float]]]]:
    return {(p["image_id"], p["category_id"]): list(zip(p["ann_ids"], map(tuple, p["points"]),
                                                        strict=True))
            for p in doc["prompts"]}


@settings(max_examples=40, deadline=None)
@given(ds=datasets(), seed=st.integers(0, 2**32), jitter=st.sampled_from([0.0, 0.5]))
def test_prompt_sets_obey_their_setting(ds: CocoDataset, seed: int, jitter: float) -> None:
    gt = objects_by_image_category(ds)
    docs = {s: prompts(ds, s, seed, jitter=jitter) for s in (1, 2, 3, 4)}
    for s, (doc, counts) in docs.items():
        assert doc["schema"] == SCHEMA and doc["setting"] == f"p2sod-{s}"
        assert doc["num_points"] == DEFAULT_K[s] and doc["jitter"] == jitter
        keys = [(p["image_id"], p["category_id"]) for p in doc["prompts"]]
        assert keys == sorted(set(keys))  # sorted, each pair once
        images = {i for i, _ in keys}
        assert images == {i for i in gt if gt[i]}  # exactly the images with objects
        assert counts["images_without_prompts"] == len(ds.images) - len(images)
        assert counts["prompt_sets"] == len(keys)
        for p in doc["prompts"]:
            anns = gt[p["image_id"]][p["category_id"]]
            assert len(set(p["ann_ids"])) == len(p["ann_ids"]) == len(p["points"]) >= 1
            assert set(p["ann_ids"]) <= set(anns)  # only non-crowd objects of this category
            for ann_id, (px, py) in zip(p["ann_ids"], p["points"], strict=True):
                x, y, w, h = anns[ann_id].bbox
                assert x <= px <= x + w and y <= py <= y + h
                if jitter == 0.0:
                    assert (px, py) == (x + w / 2, y + h / 2)
            if s in (1, 3):
                assert len(p["points"]) == 1
            else:
                assert set(p["ann_ids"]) == set(anns)  # every instance
        if s in (1, 2):
            assert set(keys) == {(i, c) for i in gt for c in gt[i]}  # every category present
        else:
            assert len(keys) == len(images)  # one category per image
    # The same draws feed every setting: 1 ⊆ 2 and 3 ⊆ 4, point by point.
    for small, big in ((1, 2), (3, 4)):
        big_pairs = pairs(docs[big][0])
        for key, pts in pairs(docs[small][0]).items():
            assert set(pts) <= set(big_pairs[key])
    assert {k for k in pairs(docs[3][0])} == {k for k in pairs(docs[4][0])}
    assert prompts(ds, 3, seed, jitter=jitter)[0] == docs[3][0]


@settings(max_examples=25, deadline=None)
@given(ds=datasets(max_anns=10), seed=st.integers(0, 1000), setting=st.sampled_from([1, 3]))
def test_num_points_takes_nested_prefixes(ds: CocoDataset, seed: int, setting: int) -> None:
    full = pairs(prompts(ds, setting + 1, seed)[0])
    gt = objects_by_image_category(ds)
    previous = None
    for k in (1, 2, 3, 1000):
        doc, _ = prompts(ds, setting, seed, k=k)
        assert doc["num_points"] == k
        got = pairs(doc)
        for key, pts in got.items():
            assert len(pts) == min(k, len(gt[key[0]][key[1]]))
            assert pts == full[key][: len(pts)]  # prefix of the "all instances" order
            if previous is not None:
                assert previous[key] == pts[: len(previous[key])]
        previous = got
    assert previous == full


def test_choices_are_uniform_and_seeded() -> None:
    """Setting 3 picks the category uniformly (not by instance count) and varies with the seed."""
    anns = [CocoAnnotation(id=i, image_id=1, category_id=1 if i <= 6 else 2,
                           bbox=(10.0 * i, 10.0, 4.0, 4.0)) for i in range(1, 9)]
    ds = CocoDataset(images=[make_image(1), make_image(2)], annotations=anns, categories=[])
    cats = [prompts(ds, 3, seed)[0]["prompts"][0]["category_id"] for seed in range(600)]
    assert cats.count(1) == pytest.approx(300, abs=50)  # not 6/8 · 600 = 450
    first = [prompts(ds, 1, seed)[0]["prompts"][0]["ann_ids"][0] for seed in range(600)]
    assert set(first) == {1, 2, 3, 4, 5, 6}
    assert min(first.count(i) for i in range(1, 7)) > 60


def test_image_without_objects_gets_no_entry() -> None:
    crowd_only = CocoAnnotation(id=1, image_id=1, category_id=1, bbox=(5.0, 5.0, 50.0, 50.0),
                                iscrowd=1)
    obj = CocoAnnotation(id=2, image_id=3, category_id=2, bbox=(5.0, 5.0, 8.0, 8.0))
    ds = CocoDataset(images=[make_image(i) for i in (1, 2, 3)], annotations=[crowd_only, obj],
                     categories=[])
    for s in (1, 2, 3, 4):
        doc, counts = prompts(ds, s, 0)
        assert [p["image_id"] for p in doc["prompts"]] == [3]
        assert counts["images_without_prompts"] == 2
        assert doc["prompts"][0]["points"] == [[9.0, 9.0]]
