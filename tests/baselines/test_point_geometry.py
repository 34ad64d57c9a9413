"""The point-supervised methods' mechanisms against values computed by hand (no training)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from baselines import points as P


def test_point_bag_geometry_scale_ratio_order() -> None:
    bags = P.point_bags(np.array([[50.0, 40.0], [0.0, 0.0]], np.float32), [10, 20], [0.5, 2.0])
    assert bags.shape == (2, 4, 4)
    # scale 10, ratio 2: w = 20, h = 5, centred on (50, 40)
    np.testing.assert_allclose(bags[0, 1], [40.0, 37.5, 60.0, 42.5])
    # scale 20, ratio 0.5: w = 10, h = 40
    np.testing.assert_allclose(bags[0, 2], [45.0, 20.0, 55.0, 60.0])
    centres = (bags[..., :2] + bags[..., 2:]) / 2
    np.testing.assert_allclose(centres[1], 0.0)


def test_p2bnet_bag_unit_is_a_hundredth_of_the_tile() -> None:
    from baselines.methods.p2bnet import Config, _bags

    cfg = Config()
    bags = _bags(cfg, np.array([[512.0, 512.0]], np.float32), 1.0, 1024, 1024)
    sides = np.sqrt((bags[0, :, 2] - bags[0, :, 0]) * (bags[0, :, 3] - bags[0, :, 1]))
    # square proposals (ratio 1) of scale 4 * 10.24 px; the smallest bag box is ~41 px wide:
    # larger than most TinySet objects (the reason P2BNet's bags miss tiny objects)
    assert math.isclose(float(sides[3]), 40.96, rel_tol=1e-5)
    # the symmetric cut keeps each proposal centred on its point inside the 1024² input
    near = _bags(cfg, np.array([[10.0, 500.0]], np.float32), 1.0, 1024, 1024)
    assert np.all(near[0, :, 0] >= -1e-4) and np.allclose((near[0, :, 0] + near[0, :, 2]) / 2, 10)


def test_fine_bag_shifts_and_rescales() -> None:
    fb = P.fine_bags(np.array([[0, 0, 10, 20]], np.float32), [1.0], [0.1])
    np.testing.assert_allclose(fb[0], [[0, 0, 10, 20], [-1, 0, 9, 20], [1, 0, 11, 20],
                                       [0, -2, 10, 18], [0, 2, 10, 22]], atol=1e-5)
    fb2 = P.fine_bags(np.array([[0, 0, 10, 10]], np.float32), [1.0, 2.0], [])
    assert fb2.shape == (1, 4, 4)
    np.testing.assert_allclose(fb2[0, 1], [0, -5, 10, 15])  # w × 1, h × 2 about the centre


def test_mil_selection_on_a_hand_made_score_table() -> None:
    # one bag, three proposals; cls logits 0 -> sigmoid 0.5 for all, ins logits favour #1, #2
    cls = np.zeros((1, 3), np.float32)
    ins = np.log(np.array([[1.0, 6.0, 3.0]], np.float32))  # softmax = 0.1, 0.6, 0.3
    w = P.mil_weights(cls, ins)
    np.testing.assert_allclose(w, [[0.05, 0.30, 0.15]], atol=1e-6)
    bags = np.array([[[0, 0, 10, 10], [0, 0, 20, 20], [0, 0, 40, 40]]], np.float32)
    merged = P.mil_merge(bags, w, k=2)  # proposals 1 and 2, weights 0.30 / 0.15
    np.testing.assert_allclose(merged, [[0, 0, (20 * 0.30 + 40 * 0.15) / 0.45,
                                         (20 * 0.30 + 40 * 0.15) / 0.45]], atol=1e-4)
    assert np.allclose(P.mil_merge(bags, w, k=1), [[0, 0, 20, 20]])


@pytest.mark.parametrize("degrees", [30.0, -60.0, 0.0, 89.0])
def test_pca_orientation_of_an_elongated_map(degrees: float) -> None:
    theta = math.radians(degrees)
    ys, xs = np.mgrid[0:41, 0:41] - 20.0
    u = xs * math.cos(theta) + ys * math.sin(theta)      # along the major axis (image coords)
    v = -xs * math.sin(theta) + ys * math.cos(theta)
    prob = np.exp(-(u / 7.0) ** 2 / 2 - (v / 1.5) ** 2 / 2)
    got, major, minor = P.pca_orientation(prob)
    diff = (got - theta + math.pi / 2) % math.pi - math.pi / 2
    assert abs(diff) < math.radians(0.5)
    assert major > 10 * minor


def test_axis_extent_stops_at_the_threshold() -> None:
    ys, xs = np.mgrid[0:41, 0:41]
    disc = ((xs - 20) ** 2 + (ys - 20) ** 2 <= 25).astype(float)  # radius-5 disc
    ext = P.axis_extent(disc, (20.0, 20.0), (1.0, 0.0), 0.5, 30.0)
    assert 4.5 <= ext <= 5.5
    assert P.axis_extent(np.ones((5, 5)), (2.0, 2.0), (0.0, 1.0), 0.5, 100.0) <= 3.0


def test_rotated_to_horizontal_envelope() -> None:
    r = np.array([[50, 50, 20, 10, math.radians(30)], [0, 0, 8, 2, math.pi / 2],
                  [5, 5, 4, 4, 0.0]], np.float32)
    hb = P.rbox_to_hbox(r)
    hw = 10 * math.cos(math.radians(30)) + 5 * math.sin(math.radians(30))  # 11.160
    hh = 10 * math.sin(math.radians(30)) + 5 * math.cos(math.radians(30))  # 9.330
    np.testing.assert_allclose(hb[0], [50 - hw, 50 - hh, 50 + hw, 50 + hh], atol=1e-3)
    np.testing.assert_allclose(hb[1], [-1, -4, 1, 4], atol=1e-4)  # a quarter turn swaps w, h
    np.testing.assert_allclose(hb[2], [3, 3, 7, 7], atol=1e-5)
    poly = P.rbox_polygons(r[2:])
    assert sorted(map(tuple, poly[0].round(4).tolist())) == [(3, 3), (3, 7), (7, 3), (7, 7)]


def test_mask_rbox_of_a_rectangle() -> None:
    mask = np.zeros((20, 20), bool)
    mask[5:8, 4:10] = True  # 6 wide, 3 high
    rb = P.mask_rbox(mask)
    assert rb is not None
    np.testing.assert_allclose(rb[:2], [7.0, 6.5], atol=1e-4)
    assert sorted(rb[2:4].round(3).tolist()) == [3.0, 6.0]
    np.testing.assert_allclose(P.rbox_to_hbox(rb[None]), [[4, 5, 10, 8]], atol=1e-3)
    assert P.mask_rbox(np.zeros((3, 3), bool)) is None


def test_progressive_assignment_level_choice() -> None:
    levels = P.assign_levels([4, 16, 16.1, 33, 64, 200], (16, 32, 64))
    assert levels.tolist() == [0, 0, 1, 2, 2, 3]


def test_point2rbox_positive_cells_and_pseudo_level() -> None:
    torch = pytest.importorskip("torch")
    from baselines.methods.point2rbox_v3 import positive_cells, pseudo_from_outputs

    rr, cc = positive_cells(np.array([10.0, 10.0]), 4, 16, 16, 0.75)
    # cell centres 2, 6, 10, 14 …: within 3 px of 10 only the one at 10 → row/col 2
    assert rr.tolist() == [2] and cc.tolist() == [2]
    rr, cc = positive_cells(np.array([8.0, 8.0]), 4, 16, 16, 0.75)
    assert sorted(zip(rr.tolist(), cc.tolist(), strict=True)) == [(1, 1), (1, 2), (2, 1), (2, 2)]
    # two levels; the point's best score is on level 1, whose size is exp(1)·8 × exp(0)·8
    outs = [torch.zeros(1, 5, 8, 8), torch.zeros(1, 5, 4, 4)]
    outs[0][0, 0] = -2.0
    outs[1][0, 0] = 3.0
    outs[1][0, 1] = 1.0
    outs[1][0, 3] = 1.0  # cos 2θ = 1 → θ = 0
    rb = pseudo_from_outputs(outs, np.array([[12.0, 12.0]], np.float32))
    np.testing.assert_allclose(rb[0], [12, 12, 8 * math.e, 8, 0], rtol=1e-5)


def test_watershed_regions_stop_at_edges_and_neighbours() -> None:
    img = np.zeros((40, 40))
    img[8:14, 8:14] = 1.0
    img[24:30, 22:30] = 1.0
    lab = P.watershed_regions(img, np.array([[11, 11], [26, 27]], np.float32), radius=12)
    # each square is (up to its ambiguous corner pixels) its own point's region, never the other's
    assert (lab[8:14, 8:14] == 1).mean() > 0.85 and (lab[24:30, 22:30] == 2).mean() > 0.85
    assert not (lab[8:14, 8:14] == 2).any() and not (lab[24:30, 22:30] == 1).any()
    assert (lab == 1).sum() < 100 and (lab == 2).sum() < 100  # background (3) stops each region
    from baselines.methods.point2rbox_v3 import watershed_priors

    pri = watershed_priors(img, np.array([[11, 11], [26, 27]], np.float32), 12)
    np.testing.assert_allclose(P.rbox_to_hbox(pri), [[8, 8, 14, 14], [22, 24, 30, 30]],
                               atol=1.01)


def test_watershed_follows_colour_edges_of_equal_brightness() -> None:
    # A red square whose mean brightness equals its grey ground: a grey-level gradient sees no
    # edge, so a region seeded inside would spill to the background marker; colour stops it.
    img = np.full((40, 40, 3), 100.0)
    img[14:20, 15:23] = (200.0, 50.0, 50.0)
    assert np.allclose(img.mean(axis=-1), 100.0)
    lab = P.watershed_regions(img, np.array([[18, 16]], np.float32), radius=14)
    inside = lab[14:20, 15:23]
    assert (inside == 1).mean() > 0.85 and not (inside == 2).any()
    assert (lab == 1).sum() <= 6 * 8  # nothing outside the square
    np.testing.assert_allclose(P.rbox_to_hbox(P.mask_rbox(lab == 1)[None]), [[15, 14, 23, 20]],
                               atol=1.01)


def test_cpm_sampling_positive_negative_ignored() -> None:
    from baselines.methods.pointobb_v2 import Config, cpm_targets

    pts = np.array([[10.0, 10.0], [30.0, 10.0]], np.float32)
    nn = P.nearest_neighbour_distance(pts)
    assert nn.tolist() == [20.0, 20.0]
    lab = cpm_targets(pts, nn, 8, 16, Config(stride=4))  # cell centres at 2, 6, 10, …
    assert lab[2, 2] == 1 and lab[2, 7] == 1        # on each point (distance 0 < min(10, 8))
    assert lab[2, 3] == 1                            # (14, 10): 4 px < min(20/2, 8)
    assert lab[2, 4] == 0                            # (18, 10): 2 px from the midpoint (20, 10)
    assert lab[1, 4] == -1                           # (18, 6): 8.9 px away, 4.5 from the midpoint
    assert lab[7, 15] == 0                           # farther than 20 px from both: negative


def test_pseudo_quality_mean_iou_and_bins() -> None:
    true = [np.array([[0, 0, 10, 10], [0, 0, 40, 40]], np.float32), None]
    pseudo = [np.array([[0, 0, 10, 10], [0, 0, 20, 40]], np.float32),
              np.zeros((0, 4), np.float32)]
    q = P.pseudo_quality(pseudo, true)
    assert q["pseudo_boxes_scored"] == 2
    assert q["pseudo_mean_iou"] == pytest.approx(0.75)
    assert q["pseudo_mean_iou_t"] == pytest.approx(1.0) and q["pseudo_mean_iou_m"] == 0.5
    np.testing.assert_allclose(P.paired_iou(pseudo[0], true[0]), [1.0, 0.5])
