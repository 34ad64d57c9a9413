"""The native backend: pycocotools' COCOeval arrays from the compiled core, per unit in parallel.

Order matters for bit-identity, and it is pycocotools' order throughout:
* GTs of a unit are taken category by category (sorted ids), file order within a category;
* detections of a unit likewise, then stably sorted by descending score and cut to the largest
  maxDets; smaller maxDets are prefixes of that list;
* units are accumulated in image-id order, with one stable (merge) sort of all their scores.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from benchmark.evaluate.inputs import Detections, GroundTruth, Units
from benchmark.evaluate.params import NWD_CONSTANT, EvalParams


@dataclass
class EvalArrays:
    """COCOeval's ``eval`` arrays: precision/scores ``(T, R, K, A, M)``, recall ``(T, K, A, M)``."""

    precision: np.ndarray
    recall: np.ndarray
    scores: np.ndarray


def n_threads() -> int:
    """Worker threads: ``TINYSET_EVAL_THREADS`` or the CPUs this process may use."""
    env = os.environ.get("TINYSET_EVAL_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else (os.cpu_count() or 1))


def _in_threads(fn: Callable[[int, int], None], bounds: list[int]) -> None:
    """Run ``fn(lo, hi)`` over consecutive ``bounds`` ranges in threads (the core drops the GIL)."""
    ranges = [(lo, hi) for lo, hi in itertools.pairwise(bounds) if hi > lo]
    workers = min(n_threads(), len(ranges))
    if workers <= 1:
        for lo, hi in ranges:
            fn(lo, hi)
        return
    with ThreadPoolExecutor(workers) as pool:
        for f in [pool.submit(fn, lo, hi) for lo, hi in ranges]:
            f.result()


def _balanced(weights: np.ndarray, parts: int) -> list[int]:
    """Split ``range(len(weights))`` into about ``parts`` consecutive ranges of similar weight."""
    n = len(weights)
    if n == 0:
        return [0]
    cum = np.cumsum(weights, dtype=np.float64)
    cuts = np.searchsorted(cum, cum[-1] * np.arange(1, parts) / parts, side="right")
    return sorted({0, n, *np.clip(cuts, 0, n).tolist()})


@dataclass
class _Prepared:
    """Rows of GT and detections sorted into cells (units, or category x unit), CSR offsets."""

    n_k: int
    cell_k: np.ndarray
    g_rows: np.ndarray   # original GT row of each sorted GT
    g_off: np.ndarray
    d_rows: np.ndarray   # original detection row of each sorted, truncated detection
    d_off: np.ndarray
    d_rank: np.ndarray   # position of each detection within its cell (score order)


def _cells(g_key: np.ndarray, d_key: np.ndarray, n_keys: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted distinct keys of GT and detections, and each row's index among them."""
    if n_keys <= 4 * (len(g_key) + len(d_key)) + 1024:  # small key space: a lookup table
        present = np.zeros(n_keys, bool)
        present[g_key] = True
        present[d_key] = True
        cells = np.flatnonzero(present)
        index = np.cumsum(present) - 1
        del present
        return cells, index[g_key], index[d_key]
    cells = np.union1d(np.unique(g_key), np.unique(d_key))
    return cells, np.searchsorted(cells, g_key), np.searchsorted(cells, d_key)


def _prepare(gt: GroundTruth, dt: Detections, units: Units, class_agnostic: bool,
             max_det: int | None) -> _Prepared:
    """Sort GT and detection rows into cells; lean on memory (10 M detections, issue 23):
    no row copies when every detection belongs to a unit, temporaries freed as soon as used."""
    n_units = len(units.unit_img)
    n_k = 1 if class_agnostic else max(len(gt.cat_ids), 1)
    g_sel = np.flatnonzero(units.gt_unit >= 0)
    d_in = units.dt_unit >= 0
    d_sel = None if d_in.all() else np.flatnonzero(d_in)
    del d_in
    # views when every detection is in a unit (the usual case), else the selected rows
    d_unit, d_cat, d_score = ((units.dt_unit, dt.cat, dt.score) if d_sel is None else
                              (units.dt_unit[d_sel], dt.cat[d_sel], dt.score[d_sel]))
    if class_agnostic:
        g_key, d_key = units.gt_unit[g_sel], d_unit
    else:
        g_key = gt.cat[g_sel] * n_units + units.gt_unit[g_sel]
        d_key = d_cat * n_units + d_unit
    cells, g_cell, d_cell = _cells(g_key, d_key, n_units * n_k)
    del g_key, d_key, d_unit
    # lexsort is stable: ties keep file order, the last tie-break pycocotools has.
    g_ord = np.lexsort((gt.cat[g_sel], g_cell))
    d_ord = np.lexsort((d_cat, -d_score, d_cell))
    del d_cat, d_score
    g_rows = g_sel[g_ord]
    d_rows = d_ord if d_sel is None else d_sel[d_ord]
    del d_sel
    g_cell = g_cell[g_ord]
    d_cell = d_cell[d_ord]
    del d_ord
    n_cells = len(cells)
    g_off = np.searchsorted(g_cell, np.arange(n_cells + 1)).astype(np.int64)
    d_off = np.searchsorted(d_cell, np.arange(n_cells + 1)).astype(np.int64)
    if len(d_rows):
        d_rank = np.arange(len(d_rows)) - d_off[d_cell]
    else:
        d_rank = np.zeros(0, np.int64)
    if max_det is not None and len(d_rows) and d_rank.max() >= max_det:
        keep = d_rank < max_det
        d_rows, d_cell, d_rank = d_rows[keep], d_cell[keep], d_rank[keep]
        d_off = np.searchsorted(d_cell, np.arange(n_cells + 1)).astype(np.int64)
    del d_cell
    cell_k = cells // n_units if not class_agnostic else np.zeros(n_cells, np.int64)
    return _Prepared(n_k, cell_k.astype(np.int64), g_rows, g_off, d_rows, d_off,
                     d_rank.astype(np.int64))


def _match(gt: GroundTruth, dt: Detections, prep: _Prepared, thrs: np.ndarray,
           arng: np.ndarray, criterion: str, nwd_c: float, links: bool):
    from benchmark.evaluate import core

    n_cells = len(prep.cell_k)
    g, d = prep.g_rows, prep.d_rows
    gbox = np.ascontiguousarray(gt.box[g])
    dbox = np.ascontiguousarray(dt.box[d])
    flags = np.empty((len(arng), len(thrs), len(d)), np.uint8)
    npig = np.zeros((len(arng), n_cells), np.int64)
    dt_link = np.full(len(d) if links else 0, -1, np.int64)
    gt_link = np.full(len(g) if links else 0, -1, np.int64)
    if criterion == "nwd":
        crit, t_min = core.CRIT_NWD, float(np.min(thrs))
        if t_min <= 0:
            raise ValueError("NWD thresholds must be > 0")
        margin, keep_min = -nwd_c * np.log(t_min) + 1.0, t_min
    else:
        crit, margin, keep_min = core.CRIT_IOU, 0.0, 0.0
    garea = np.ascontiguousarray(gt.area[g])
    gcrowd = np.ascontiguousarray(gt.crowd[g])
    gid_ok = np.ascontiguousarray(gt.ann_id[g] != 0)
    darea = dbox[:, 2] * dbox[:, 3]  # Detections.area, for these rows only

    def work(u0: int, u1: int) -> None:
        core.match_units(u0, u1, prep.g_off, gbox, garea, gcrowd, gid_ok, prep.d_off, dbox,
                         darea, thrs, arng, crit, float(nwd_c), float(margin), float(keep_min),
                         flags, npig, links, dt_link, gt_link)

    # Work per unit grows with its detections times its GTs' density; balance on d + g.
    weight = np.diff(prep.g_off) + np.diff(prep.d_off) + 1
    _in_threads(work, _balanced(weight, 8 * n_threads()))
    return flags, npig, dt_link, gt_link


#: Detections matched per batch: the batch's gathered boxes and byte outcomes live only while
#: it is matched (~100 B per detection), the packed outcomes until accumulation (16 B).
MATCH_BATCH = 1 << 20


def _match_packed(gt: GroundTruth, dt: Detections, prep: _Prepared, thrs: np.ndarray,
                  arng: np.ndarray, criterion: str, nwd_c: float, pos: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Match cell batches of about :data:`MATCH_BATCH` detections; packed outcomes per row.

    Returns:
        ``tp_bits``, ``fp_bits``: ``(n_dt, W)`` uint64 in accumulation order (``pos`` gives each
        prepared row's place), bit ``a * T + t`` set where the detection is a TP / FP at area
        ``a`` and threshold ``t``; ``npig``: ``(A, n_cells)`` non-ignored GT counts.
    """
    n_cells = len(prep.cell_k)
    n_jobs = len(arng) * len(thrs)
    words = max(1, (n_jobs + 63) // 64)
    n_d = len(prep.d_rows)
    tp_bits = np.zeros((n_d, words), np.uint64)
    fp_bits = np.zeros((n_d, words), np.uint64)
    npig = np.zeros((len(arng), n_cells), np.int64)
    if n_cells == 0:
        return tp_bits, fp_bits, npig
    from benchmark.evaluate import core

    # Consecutive cells, cut where the running detection count passes each batch boundary.
    bounds = np.searchsorted(prep.d_off, np.arange(MATCH_BATCH, n_d, MATCH_BATCH), side="right")
    bounds = sorted({0, n_cells, *np.clip(bounds - 1, 1, n_cells).tolist()})
    for c0, c1 in itertools.pairwise(bounds):
        g0, g1, d0, d1 = prep.g_off[c0], prep.g_off[c1], prep.d_off[c0], prep.d_off[c1]
        sub = _Prepared(prep.n_k, prep.cell_k[c0:c1], prep.g_rows[g0:g1],
                        prep.g_off[c0:c1 + 1] - g0, prep.d_rows[d0:d1],
                        prep.d_off[c0:c1 + 1] - d0, prep.d_rank[d0:d1])
        flags, npig_b, _, _ = _match(gt, dt, sub, thrs, arng, criterion, nwd_c, links=False)
        npig[:, c0:c1] = npig_b
        core.pack_outcomes(flags, tp_bits, fp_bits, d0, pos)
        del flags
    return tp_bits, fp_bits, npig


def run_native(gt: GroundTruth, dt: Detections, units: Units, params: EvalParams, *,
               criterion: str = "iou", nwd_c: float = NWD_CONSTANT) -> EvalArrays:
    """COCOeval ``precision``/``recall``/``scores`` for ``units`` under ``params``."""
    from benchmark.evaluate import core

    thrs = np.asarray(params.iou_thrs, np.float64)
    rec = np.asarray(params.rec_thrs, np.float64)
    arng = np.asarray([[lo, hi] for _, lo, hi in params.area_ranges], np.float64)
    max_dets = np.asarray(sorted(params.max_dets), np.int64)
    prep = _prepare(gt, dt, units, params.class_agnostic, int(max_dets[-1]))
    del units  # the caller's last reference, in the usual call: freed before matching
    n_t, n_r, n_k, n_a, n_m = len(thrs), len(rec), prep.n_k, len(arng), len(max_dets)
    # The accumulation order is known before matching: one stable sort of each category's
    # scores (ties keep unit order, then rank order, as pycocotools' concatenation). Outcomes
    # are packed straight into it, so no second copy of them is ever made.
    n_d = len(prep.d_rows)
    pos = np.empty(n_d, np.int32 if n_d < 2**31 else np.int64)
    score_s = np.empty(n_d)
    rank_s = np.empty(n_d, np.int32)
    c_bounds = np.searchsorted(prep.cell_k, np.arange(n_k + 1))
    for k in range(n_k):
        r0, r1 = prep.d_off[c_bounds[k]], prep.d_off[c_bounds[k + 1]]
        order = np.argsort(-dt.score[prep.d_rows[r0:r1]], kind="mergesort") + r0
        pos[order] = np.arange(r0, r1, dtype=pos.dtype)
        score_s[r0:r1] = dt.score[prep.d_rows[order]]
        rank_s[r0:r1] = prep.d_rank[order]
        del order
    tp_bits, fp_bits, npig = _match_packed(gt, dt, prep, thrs, arng, criterion, nwd_c, pos)
    del pos
    precision = -np.ones((n_t, n_r, n_k, n_a, n_m))
    recall = -np.ones((n_t, n_k, n_a, n_m))
    scores = -np.ones((n_t, n_r, n_k, n_a, n_m))
    for k in range(n_k):
        c0, c1 = c_bounds[k], c_bounds[k + 1]
        if c0 == c1:
            continue
        r0, r1 = prep.d_off[c0], prep.d_off[c1]
        tp_s, fp_s, rk_s, sc_s = tp_bits[r0:r1], fp_bits[r0:r1], rank_s[r0:r1], score_s[r0:r1]
        npig_k = npig[:, c0:c1].sum(axis=1)
        p_v, r_v, s_v = precision[:, :, k], recall[:, k], scores[:, :, k]

        def work(j0: int, j1: int, tp_s=tp_s, fp_s=fp_s, rk_s=rk_s, sc_s=sc_s,
                 npig_k=npig_k, p_v=p_v, r_v=r_v, s_v=s_v) -> None:
            core.accumulate_bits(j0, j1, n_t, tp_s, fp_s, rk_s, sc_s, max_dets, npig_k,
                                 rec, p_v, r_v, s_v)

        n_jobs = n_a * n_t
        _in_threads(work, np.linspace(0, n_jobs, min(n_jobs, 4 * n_threads()) + 1)
                    .astype(int).tolist())
    return EvalArrays(precision, recall, scores)


@dataclass(frozen=True)
class ImageMatches:
    """Matching outcome of one image at one IoU threshold (for tagging objects in a browser).

    Lists follow the order of the inputs: ``dt_*`` the image's detections in the order they
    appear in the detection list, ``gt_*`` the image's GT annotations in file order.

    Attributes:
        dt_index: position of each detection in the full detection list.
        dt_outcome: ``"tp"``, ``"fp"``, ``"ignored"`` (matched to a crowd region, or beyond the
            maxDets cap ``"unevaluated"``).
        dt_gt_id: the GT annotation id each detection matched, or None.
        gt_id: GT annotation ids.
        gt_matched: whether each GT was matched (for a crowd region: by at least one detection).
    """

    dt_index: list[int]
    dt_outcome: list[str]
    dt_gt_id: list[int | None]
    gt_id: list[int]
    gt_matched: list[bool]


def match_native(gt: GroundTruth, dt: Detections, units: Units, *, iou: float,
                 class_agnostic: bool, max_det: int | None) -> dict[int, ImageMatches]:
    """Per-image TP/FP flags and matched GTs at one IoU, area range ``all``."""
    from benchmark.evaluate import core

    prep = _prepare(gt, dt, units, class_agnostic, max_det)
    flags, _, dt_link, gt_link = _match(gt, dt, prep, np.asarray([iou], np.float64),
                                        np.asarray([[0.0, 1e10]]), "iou", NWD_CONSTANT,
                                        links=True)
    names = {core.TP: "tp", core.FP: "fp", core.IGNORED: "ignored"}
    dt_out = np.full(len(dt), "unevaluated", dtype=object)
    dt_out[prep.d_rows] = [names[int(f)] for f in flags[0, 0]]
    dt_gt = np.full(len(dt), -1, np.int64)
    dt_gt[prep.d_rows] = np.where(dt_link >= 0, prep.g_rows[np.maximum(dt_link, 0)], -1)
    gt_m = np.zeros(len(gt), bool)
    gt_m[prep.g_rows] = gt_link >= 0
    out: dict[int, ImageMatches] = {}
    g_by_img = np.argsort(gt.img, kind="stable")
    d_by_img = np.argsort(dt.img, kind="stable")
    g_b = np.searchsorted(gt.img[g_by_img], np.arange(len(gt.image_ids) + 1))
    d_b = np.searchsorted(dt.img[d_by_img], np.arange(len(gt.image_ids) + 1))
    for i in np.unique(units.unit_img):
        gi = g_by_img[g_b[i]:g_b[i + 1]]
        di = d_by_img[d_b[i]:d_b[i + 1]]
        di = di[units.dt_unit[di] >= 0]
        gi = gi[units.gt_unit[gi] >= 0]
        out[int(gt.image_ids[i])] = ImageMatches(
            dt_index=di.tolist(), dt_outcome=dt_out[di].tolist(),
            dt_gt_id=[int(gt.ann_id[j]) if j >= 0 else None for j in dt_gt[di]],
            gt_id=gt.ann_id[gi].tolist(), gt_matched=gt_m[gi].tolist())
    return out
