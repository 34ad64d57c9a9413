"""The open build choices made options (docs/build.md "Open build choices"): letterbox geometry,
the per-image large-object filter and its boundary, disjoint test tiling, and defaults that
leave the recorded options (hence the bytes) unchanged."""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from tinyset_builder.build import BuildOptions, build
from tinyset_builder.errors import TinysetError
from tinyset_builder.filters import ImageDecision, LargeObjectFilter
from tinyset_builder.sources import get_source
from tinyset_builder.tiling import TilingOptions, window_grid

# ------------------------------------------------------------------------------ recorded options


def test_defaults_record_the_options_of_builds_made_before_them() -> None:
    assert set(TilingOptions().to_dict()) == {"tile", "overlap", "min_visible", "pad_value",
                                              "keep_empty"}
    assert LargeObjectFilter().to_dict() == {"large_area": 96.0 ** 2, "max_fraction": 0.4}
    on = TilingOptions(letterbox=True, test_disjoint=True).to_dict()
    assert on["letterbox"] is True and on["test_disjoint"] is True
    assert LargeObjectFilter(scope="image").to_dict()["scope"] == "image"
    with pytest.raises(TinysetError, match="scope"):
        LargeObjectFilter(scope="window")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ letterbox


@pytest.mark.parametrize(("size", "scale", "resized"), [
    ((700, 500), 1024 / 700, (1024, 731)),
    ((320, 240), 3.2, (1024, 768)),
    ((240, 320), 3.2, (768, 1024)),
    ((1024, 600), 1.0, (1024, 600)),      # the longer side already fills the tile
    ((2000, 300), 1.0, (2000, 300)),      # larger images are cut, never resized
])
def test_letterbox_scale_makes_the_longer_side_the_tile(size: tuple[int, int], scale: float,
                                                        resized: tuple[int, int]) -> None:
    got = TilingOptions(letterbox=True).image_scale(*size)
    assert got == pytest.approx(scale, rel=1e-12)
    # the pipeline resizes to round(side * scale) (pipeline.downscale)
    assert (round(size[0] * got), round(size[1] * got)) == resized
    assert TilingOptions().image_scale(*size) == 1.0


@pytest.mark.parametrize("tile", [1024, 1000, 800, 640])
def test_letterbox_never_scales_the_longer_side_past_the_tile(tile: int) -> None:
    # 1000 / 15 * 15 > 1000 in floating point: without care a box on the border would be cut
    opts = TilingOptions(tile=tile, overlap=0, letterbox=True)
    for side in range(1, tile):
        scale = opts.image_scale(side, 1)
        assert side * scale <= tile and round(side * scale) == tile


def test_letterbox_applies_after_a_manifest_downscale() -> None:
    opts = TilingOptions(letterbox=True)
    assert opts.image_scale(1600, 1200, 0.5) == pytest.approx(1024 / 1600)  # 800 < 1024
    assert opts.image_scale(4000, 3000, 0.5) == 0.5                         # 2000 >= 1024


def test_letterboxed_build_scales_boxes_and_maps_back_to_the_original(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    get_source("sirst").synthesize(raw / "sirst", seed=0)  # 256², 320x240, 480x360 images
    plain = build(raw, tmp_path / "plain", stats=False).record
    boxed = build(raw, tmp_path / "lb", stats=False,
                  options=BuildOptions(tiling=TilingOptions(letterbox=True))).record
    assert boxed["options"]["tiling"]["letterbox"] is True
    for split, f in boxed["annotation_files"].items():
        a = json.loads((tmp_path / "plain" / plain["annotation_files"][split]["file"]).read_text())
        b = json.loads((tmp_path / "lb" / f["file"]).read_text())
        assert len(a["images"]) == len(b["images"]) and len(a["annotations"]) == len(
            b["annotations"])
        for ia, ib in zip(a["images"], b["images"], strict=True):
            w, h = ia["window"][2], ia["window"][3]
            assert ib["window"] == ia["window"] == [0, 0, w, h]   # window stays in original px
            assert ib["scale"] == pytest.approx(1024 / max(w, h))
            from PIL import Image

            with Image.open(tmp_path / "lb" / "images" / split / ib["file_name"]) as im:
                assert im.size == (1024, 1024)
                # content fills the longer side; padding (value 0) only beyond the shorter one
                px = np.asarray(im.convert("L"))
                short = round(min(w, h) * ib["scale"])
                pad = px[short + 2:, :] if h <= w else px[:, short + 2:]
                assert pad.size == 0 or pad.max() == 0
        sa = {x["id"]: x["bbox"] for x in a["annotations"]}
        scale = {x["id"]: x["scale"] for x in b["images"]}
        for x in b["annotations"]:
            expect = np.asarray(sa[x["id"]]) * scale[x["image_id"]]
            np.testing.assert_allclose(x["bbox"], expect, atol=1.5e-3)  # rounded to 3 decimals


# ------------------------------------------------------------------------------ per-image filter


def _image_filter() -> LargeObjectFilter:
    return LargeObjectFilter(scope="image")  # 96² large, 40 % threshold


def test_per_image_filter_boundary_is_strictly_above_forty_percent() -> None:
    # A 2000x1000 image (2,000,000 px²); a 1000 x 800 box covers exactly 40 % of it.
    exact = np.array([[0.0, 0.0, 1000.0, 800.0]])
    kept = _image_filter().for_image(exact, np.zeros(1, np.int64), 2000, 1000)
    assert isinstance(kept, ImageDecision) and kept.covered == 0.4 and not kept.rejected
    over = np.array([[0.0, 0.0, 1000.0, 800.5]])
    dropped = _image_filter().for_image(over, np.zeros(1, np.int64), 2000, 1000)
    assert dropped.rejected
    # the verdict holds for every window, whatever the window sees
    assert dropped.rejects(np.zeros((0, 4)), 1024.0 ** 2)
    assert not kept.rejects(np.array([[0.0, 0.0, 1000.0, 800.0]]), 1000.0 * 1000.0)


def test_per_image_filter_counts_the_union_and_ignores_crowd_and_small_boxes() -> None:
    f = _image_filter()
    twice = np.array([[0.0, 0.0, 1000.0, 850.0], [0.0, 0.0, 1000.0, 850.0]])  # one 42.5 % union
    assert f.for_image(twice, np.zeros(2, np.int64), 2000, 1000).covered == 0.425
    crowd = f.for_image(twice, np.ones(2, np.int64), 2000, 1000)
    assert crowd.covered == 0.0 and not crowd.rejected
    small = np.array([[x, 0.0, x + 96.0, 96.0] for x in range(0, 1900, 100)], dtype=float)
    assert f.for_image(small, np.zeros(len(small), np.int64), 200, 100).covered == 0.0


def test_per_tile_and_per_image_differ_on_a_large_scene() -> None:
    # A 2000x1000 scene whose left 900x900 structure covers 40.5 % of it: per image, the whole
    # scene goes; per tile, only the windows it dominates.
    boxes = np.array([[0.0, 0.0, 900.0, 900.0]])
    per_image = _image_filter().for_image(boxes, np.zeros(1, np.int64), 2000, 1000)
    assert per_image.rejected
    tile = LargeObjectFilter()
    assert tile.for_image(boxes, np.zeros(1, np.int64), 2000, 1000) is tile
    rejected = []
    for x0, y0, x1, y1 in window_grid(2000, 1000):
        clipped = np.clip(boxes, [x0, y0, x0, y0], [x1, y1, x1, y1]) - [x0, y0, x0, y0]
        rejected.append(tile.rejects(clipped, float((x1 - x0) * (y1 - y0))))
    # windows at x = 0 (79 % covered), 824 (a 76 px strip: 6.7 %) and 976 (none)
    assert rejected == [True, False, False]


# ------------------------------------------------------------------------------ disjoint test tiles


def test_disjoint_test_windows_share_no_pixel_and_cover_the_image() -> None:
    opts = TilingOptions(test_disjoint=True)
    assert opts.windows(1920, 800, "test") == [(0, 0, 1024, 800), (1024, 0, 1920, 800)]
    assert opts.windows(1920, 800, "train") == window_grid(1920, 800)
    for w, h in [(3000, 2100), (1025, 4000), (700, 500), (2048, 2048)]:
        grid = opts.windows(w, h, "test")
        assert sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in grid) == w * h
        for a, b in combinations(grid, 2):
            assert min(a[2], b[2]) <= max(a[0], b[0]) or min(a[3], b[3]) <= max(a[1], b[1])
