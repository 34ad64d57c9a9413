"""The large-object filter: union (not sum) of large boxes, strict 40 % boundary."""

from __future__ import annotations

import numpy as np
import pytest

from tinyset_builder.errors import TinysetError
from tinyset_builder.filters import LargeObjectFilter, union_area

F = LargeObjectFilter()  # large = area > 96², drop when covered share > 0.4
IMAGE = 1024.0 * 1024.0


def _box(w: float, h: float, x: float = 0.0, y: float = 0.0) -> list[float]:
    return [x, y, x + w, y + h]


def test_union_area_counts_overlap_once() -> None:
    assert union_area(np.array([_box(10, 10), _box(10, 10, 5, 0)])) == 150.0
    assert union_area(np.array([_box(10, 10), _box(10, 10)])) == 100.0
    assert union_area(np.array([_box(10, 10), _box(4, 4, 20, 20)])) == 116.0
    assert union_area(np.zeros((0, 4))) == 0.0


def test_union_area_matches_a_raster_count() -> None:
    rng = np.random.default_rng(0)
    xy = rng.integers(0, 80, size=(12, 2))
    wh = rng.integers(1, 40, size=(12, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float64)
    raster = np.zeros((128, 128), dtype=bool)
    for x0, y0, x1, y1 in boxes.astype(int):
        raster[y0:y1, x0:x1] = True
    assert union_area(boxes) == raster.sum()


@pytest.mark.parametrize(("boxes", "dropped"), [
    # Image content 1000×1000; one 1000×400 box covers exactly 40 %: kept (the test is strict).
    pytest.param([_box(1000, 400)], False, id="exactly-40%-kept"),
    pytest.param([_box(1000, 400.01)], True, id="just-above-40%-dropped"),
    # Two 30 % boxes overlapping by 20 %: union 40 %, kept (the sum, 60 %, would drop it).
    pytest.param([_box(1000, 300), _box(1000, 300, 0, 100)], False, id="union-not-sum"),
    pytest.param([_box(1000, 300), _box(1000, 300, 0, 500)], True, id="disjoint-60%-dropped"),
    # 64 % covered by boxes of exactly 96×96, which are not large (area must exceed 96²): kept.
    pytest.param([_box(96, 96, 96 * i, 96 * j) for i in range(10) for j in range(7)], False,
                 id="many-96px-are-not-large"),
    pytest.param([_box(96, 96.01, 96 * i, 97 * j) for i in range(10) for j in range(7)], True,
                 id="many-just-large-dropped"),
])
def test_filter_boundary(boxes: list[list[float]], dropped: bool) -> None:
    assert F.rejects(np.array(boxes), 1000.0 * 1000.0) is dropped


def test_share_is_of_the_image_content_not_the_padding() -> None:
    box = np.array([_box(300, 300)])       # 90,000 px²
    assert not F.rejects(box, IMAGE)       # 8.6 % of a full tile
    assert F.rejects(box, 400.0 * 400.0)   # 56 % of a 400×400 image padded to 1024


def test_filter_is_configurable() -> None:
    strict = LargeObjectFilter(large_area=32 ** 2, max_fraction=0.1)
    boxes = np.array([_box(40, 40, 40 * i, 0) for i in range(10)])  # 16,000 px² of 100×100
    assert strict.covered_fraction(boxes, 400 * 400) == pytest.approx(0.1)
    assert not strict.rejects(boxes, 400 * 400)
    assert strict.rejects(boxes, 390 * 390)
    with pytest.raises(TinysetError):
        LargeObjectFilter(max_fraction=1.5)
