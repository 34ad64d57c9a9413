"""Crop-or-pad geometry: window grid, snapping, clipping, ignore conversion, padding."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyset_builder.errors import TinysetError
from tinyset_builder.tiling import (
    TilingOptions,
    axis_starts,
    boxes_in_window,
    boxes_in_windows,
    clip_to_window,
    crop_or_pad,
    window_grid,
)


@pytest.mark.parametrize(("size", "expected"), [
    pytest.param(700, [0], id="short-side-one-window"),
    pytest.param(1024, [0], id="exactly-one-tile"),
    pytest.param(1025, [0, 1], id="one-pixel-over-snaps"),
    pytest.param(1848, [0, 824], id="stride-lands-on-border"),
    pytest.param(1920, [0, 824, 896], id="last-snapped-to-border"),
    pytest.param(3000, [0, 824, 1648, 1976], id="long-side"),
])
def test_axis_starts(size: int, expected: list[int]) -> None:
    assert axis_starts(size, 1024, 200) == expected


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 20000), tile=st.integers(16, 2048), frac=st.floats(0, 0.9))
def test_axis_windows_cover_the_side_with_the_overlap(size: int, tile: int, frac: float) -> None:
    overlap = int(tile * frac)
    starts = axis_starts(size, tile, overlap)
    ends = [min(s + tile, size) for s in starts]
    assert starts[0] == 0 and ends[-1] == size          # covers both borders
    assert all(0 <= s and s + min(tile, size) <= size for s in starts)  # never past the image
    assert starts == sorted(set(starts))                 # strictly increasing, no repeats
    for prev_end, nxt in zip(ends, starts[1:], strict=False):
        assert prev_end - nxt >= overlap                 # neighbours share at least the overlap


def test_window_grid_is_row_major_and_pads_short_axes() -> None:
    assert window_grid(1920, 800) == [(0, 0, 1024, 800), (824, 0, 1848, 800),
                                      (896, 0, 1920, 800)]
    assert window_grid(500, 300) == [(0, 0, 500, 300)]
    grid = window_grid(2000, 2000)
    assert grid[:2] == [(0, 0, 1024, 1024), (824, 0, 1848, 1024)]
    assert grid[-1] == (976, 976, 2000, 2000)


def test_clip_to_window_moves_boxes_and_reports_visible_fraction() -> None:
    boxes = np.array([[10, 10, 20, 30],       # inside
                      [1014, 0, 1034, 10],     # half outside on the right
                      [2000, 0, 2010, 10]],    # outside
                     dtype=np.float64)
    clipped, visible = clip_to_window(boxes, (0, 0, 1024, 1024))
    np.testing.assert_allclose(visible, [1.0, 0.5, 0.0])
    np.testing.assert_allclose(clipped[1], [1014, 0, 1024, 10])
    clipped, _ = clip_to_window(boxes, (824, 0, 1848, 1024))
    np.testing.assert_allclose(clipped[1], [190, 0, 210, 10])   # shifted by the window origin


def test_boxes_in_window_keeps_clips_and_makes_ignore_at_the_threshold() -> None:
    window = (0, 0, 100, 100)
    boxes = np.array([[10, 10, 20, 20],        # whole label
                      [90, 0, 110, 10],        # exactly half visible -> still a label
                      [95, 0, 115, 10],        # a quarter visible -> ignore
                      [80, 80, 140, 140],      # source ignore region, cut -> stays ignore
                      [200, 200, 210, 210]],   # elsewhere
                     dtype=np.float64)
    crowd = np.array([0, 0, 0, 1, 0])
    tb = boxes_in_window(boxes, crowd, window, min_visible=0.5)
    assert tb.index.tolist() == [0, 1, 2, 3]
    assert tb.iscrowd.tolist() == [0, 0, 1, 1]
    assert tb.whole.tolist() == [True, False, False, False]
    assert tb.made_ignore.tolist() == [False, False, True, False]
    np.testing.assert_allclose(tb.xyxy[2], [95, 0, 100, 10])


def test_a_box_touching_the_window_edge_is_not_inside() -> None:
    tb = boxes_in_window(np.array([[100.0, 0, 110, 10]]), np.array([0]), (0, 0, 100, 100), 0.5)
    assert len(tb.index) == 0


def test_crop_or_pad_pads_right_and_bottom_and_keeps_pixels() -> None:
    from PIL import Image

    img = np.arange(300 * 200 * 3, dtype=np.uint64).reshape(200, 300, 3).astype(np.uint8)
    out = np.asarray(crop_or_pad(Image.fromarray(img), (0, 0, 300, 200), tile=512, pad_value=7))
    assert out.shape == (512, 512, 3)
    np.testing.assert_array_equal(out[:200, :300], img)
    assert (out[200:] == 7).all() and (out[:, 300:] == 7).all()
    big = np.random.default_rng(0).integers(0, 256, size=(1500, 2048, 3), dtype=np.uint8)
    full = np.asarray(crop_or_pad(Image.fromarray(big), (1024, 476, 2048, 1500), tile=1024))
    np.testing.assert_array_equal(full, big[476:1500, 1024:2048])


@pytest.mark.parametrize("kwargs", [dict(tile=0), dict(overlap=1024), dict(min_visible=0.0),
                                    dict(pad_value=300)])
def test_tiling_options_reject_nonsense(kwargs: dict) -> None:
    with pytest.raises(TinysetError):
        TilingOptions(**kwargs)


@settings(max_examples=100, deadline=None)
@given(w=st.integers(50, 3000), h=st.integers(50, 3000), data=st.data())
def test_every_box_is_represented_in_some_window(w: int, h: int, data: st.DataObject) -> None:
    """Each box inside the image is whole in some window, or clipped in one (never lost)."""
    n = data.draw(st.integers(1, 20))
    xs = data.draw(st.lists(st.floats(0, w - 1), min_size=n, max_size=n))
    ys = data.draw(st.lists(st.floats(0, h - 1), min_size=n, max_size=n))
    boxes = np.array([[x, y, min(x + 1 + (i * 37) % 150, w), min(y + 1 + (i * 53) % 150, h)]
                      for i, (x, y) in enumerate(zip(xs, ys, strict=False))])
    seen = np.zeros(n, dtype=bool)
    whole = np.zeros(n, dtype=bool)
    for win in window_grid(w, h, 1024, 200):
        tb = boxes_in_window(boxes, np.zeros(n, dtype=np.int64), win, 0.5)
        seen[tb.index] = True
        whole[tb.index[tb.whole]] = True
        assert (tb.xyxy[:, :2] >= 0).all() and (tb.xyxy[:, 2:] <= 1024).all()
    assert seen.all()
    # a box no larger than the overlap always fits whole in some window
    small = (boxes[:, 2] - boxes[:, 0] <= 200) & (boxes[:, 3] - boxes[:, 1] <= 200)
    assert whole[small].all()


def _reference_window(boxes: list[list[float]], crowd: list[int], win: tuple[int, ...],
                      min_visible: float) -> list[tuple[int, list[float], int, bool, bool]]:
    """Crop-or-pad of one window, box by box in plain Python (the oracle)."""
    x0, y0, x1, y1 = win
    rows = []
    for i, (bx0, by0, bx1, by1) in enumerate(boxes):
        cx0, cx1 = min(max(bx0, x0), x1), min(max(bx1, x0), x1)
        cy0, cy1 = min(max(by0, y0), y1), min(max(by1, y0), y1)
        area = (bx1 - bx0) * (by1 - by0)
        inter = max(cx1 - cx0, 0) * max(cy1 - cy0, 0)
        if area <= 0 or inter <= 0:
            continue
        made_ignore = crowd[i] == 0 and inter / area < min_visible
        whole = bx0 >= x0 and by0 >= y0 and bx1 <= x1 and by1 <= y1
        rows.append((i, [cx0 - x0, cy0 - y0, cx1 - x0, cy1 - y0], 1 if made_ignore else crowd[i],
                     whole, made_ignore))
    return rows


@settings(max_examples=60, deadline=None)
@given(w=st.integers(50, 4000), h=st.integers(50, 4000), chunk=st.sampled_from([1, 7, 1 << 21]),
       data=st.data())
def test_boxes_in_windows_matches_a_box_by_box_reference(
        w: int, h: int, chunk: int, data: st.DataObject) -> None:
    """All windows at once (in chunks of any size) == each window box by box."""
    import tinyset_builder.tiling as tiling

    n = data.draw(st.integers(0, 40))
    coord = st.floats(-50, 4100, allow_nan=False)
    boxes = []
    for _ in range(n):
        x, y = data.draw(coord), data.draw(coord)
        bw, bh = data.draw(st.floats(0, 400)), data.draw(st.floats(0, 400))
        boxes.append([x, y, x + bw, y + bh])
    crowd = data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    grid = window_grid(w, h, 1024, 200)
    old = tiling.PAIRS_PER_CHUNK
    tiling.PAIRS_PER_CHUNK = chunk
    try:
        got = boxes_in_windows(np.array(boxes).reshape(-1, 4), np.array(crowd), grid, 0.5)
    finally:
        tiling.PAIRS_PER_CHUNK = old
    assert len(got) == len(grid)
    for win, tb in zip(grid, got, strict=True):
        ref = _reference_window(boxes, crowd, win, 0.5)
        assert tb.index.tolist() == [r[0] for r in ref]
        assert tb.xyxy.tolist() == [r[1] for r in ref]           # the same floats, exactly
        assert tb.iscrowd.tolist() == [r[2] for r in ref]
        assert tb.whole.tolist() == [r[3] for r in ref]
        assert tb.made_ignore.tolist() == [r[4] for r in ref]


def test_boxes_in_windows_rounds_and_drops_boxes_rounding_squeezes_away() -> None:
    boxes = np.array([[10.12345, 10.0, 20.98765, 20.0],    # rounded to 3 decimals
                      [30.0, 30.0, 30.0004, 40.0],        # 0.0004 wide: zero after rounding
                      [1000.0, 0.0, 1100.0, 10.0]])       # in the second window only
    first, second = boxes_in_windows(boxes, np.zeros(3, dtype=np.int64),
                                     [(0, 0, 1024, 1024), (1024, 0, 2048, 1024)], 0.5,
                                     decimals=3)
    assert first.index.tolist() == [0, 2]
    assert first.xyxy[0].tolist() == [10.123, 10.0, 20.988, 20.0]
    assert second.index.tolist() == [2]
    assert second.xyxy.tolist() == [[0.0, 0.0, 76.0, 10.0]]
    unrounded = boxes_in_windows(boxes, np.zeros(3, dtype=np.int64), [(0, 0, 1024, 1024)], 0.5)
    assert unrounded[0].index.tolist() == [0, 1, 2]


def test_boxes_in_windows_without_boxes_or_windows() -> None:
    empty = boxes_in_windows(np.zeros((0, 4)), np.zeros(0, dtype=np.int64),
                             [(0, 0, 10, 10), (5, 0, 15, 10)], 0.5)
    assert [len(tb.index) for tb in empty] == [0, 0]
    assert boxes_in_windows(np.array([[1.0, 1, 2, 2]]), np.array([0]), [], 0.5) == []


def test_a_coordinate_on_the_window_border_is_kept_as_given() -> None:
    """Only coordinates strictly outside are replaced, so even a -0.0 keeps its sign (bytes)."""
    boxes = np.array([[-0.0, 5.0, 10.0, 15.0], [-3.0, 5.0, 10.0, 15.0]])
    clipped, _ = clip_to_window(boxes, (0, 0, 100, 100))
    assert np.signbit(clipped[0, 0]) and not np.signbit(clipped[1, 0])
    (tb,) = boxes_in_windows(boxes, np.zeros(2, dtype=np.int64), [(0, 0, 100, 100)], 0.5)
    assert repr(tb.xyxy[0, 0].item()) == "-0.0" and repr(tb.xyxy[1, 0].item()) == "0.0"
