"""The compiled matching and accumulation core (numba, cached on disk, GIL released).

Every floating-point step repeats pycocotools' own operations in the same order, so the
precision, recall and score arrays come out bit-identical:

* IoU is ``maskApi.c``'s ``bbIou``: ``w = min(x+w) - max(x)``, no +1, ``u = da + ga - i`` (or
  ``da`` for a crowd GT), ``i / u``. No fast-math, so nothing is fused or reordered.
* Greedy matching is ``COCOeval.evaluateImg``: detections in score order, the running best starts
  at ``min(t, 1 - 1e-10)``, a GT is taken when its IoU is ``>=`` the running best (so the later GT
  wins a tie), matched non-crowd GTs are skipped, and ignored GTs are only a fallback.
* Accumulation is ``COCOeval.accumulate``: cumulative TP/FP counts as float64,
  ``tp / npig`` and ``tp / (fp + tp + spacing(1))``, the right-to-left precision envelope and a
  left-side search of the 101 recall points.

What differs is only how much work is done. Candidate pairs come from a uniform grid over the GT
boxes of one unit, so zero-IoU pairs (which can never match, for any threshold > 0) are never
formed, and no dense IoU matrix exists. Per unit, candidates live only while that unit is matched.

Detection outcome codes written to ``flags[a, t, d]``: 0 = false positive, 1 = true positive,
2 = ignored (matched to an ignored GT, or unmatched and outside the area range).
"""

from __future__ import annotations

import math

import numpy as np

from benchmark.evaluate.jit import nb

FP, TP, IGNORED = 0, 1, 2
CRIT_IOU, CRIT_NWD = 0, 1
EPS = float(np.spacing(1))


@nb.njit(cache=True, inline="always")
def _similarity(dx: float, dy: float, dw: float, dh: float, gx: float, gy: float, gw: float,
                gh: float, crowd: bool, criterion: int, c_nwd: float) -> float:
    """IoU as ``bbIou`` (intersection over detection for crowd GTs), or NWD."""
    if criterion == CRIT_NWD and not crowd:
        ddx = (dx + dw / 2.0) - (gx + gw / 2.0)
        ddy = (dy + dh / 2.0) - (gy + gh / 2.0)
        w2 = ddx * ddx + ddy * ddy + ((dw - gw) * (dw - gw) + (dh - gh) * (dh - gh)) / 4.0
        return math.exp(-math.sqrt(w2) / c_nwd)
    w = min(dw + dx, gw + gx) - max(dx, gx)
    if w <= 0:
        return 0.0
    h = min(dh + dy, gh + gy) - max(dy, gy)
    if h <= 0:
        return 0.0
    i = w * h
    da = dw * dh
    u = da if crowd else da + gw * gh - i
    return i / u


@nb.njit(cache=True, inline="always")
def _cell(v: float, vmin: float, side: float, n: int) -> int:
    """Grid cell of coordinate ``v``, clamped to ``[0, n - 1]``."""
    if v <= vmin:
        return 0
    return min(int((v - vmin) / side), n - 1)


@nb.njit(cache=True)
def _candidates(gbox, gcrowd, g0, ng, dbox, d0, nd, criterion, c_nwd, margin, keep_min):
    """Per detection, the GTs with similarity > 0 and >= ``keep_min``, in GT order (CSR)."""
    off = np.zeros(nd + 1, np.int64)
    cap = max(16, 4 * nd)
    cg = np.empty(cap, np.int64)
    cs = np.empty(cap, np.float64)
    if ng == 0 or nd == 0:
        return off, cg, cs
    # Grid over the GT extent; cell side ~ the mean GT size, at most ~256 cells per axis.
    xmin, ymin, xmax, ymax = np.inf, np.inf, -np.inf, -np.inf
    mean_side = 0.0
    for j in range(ng):
        x, y, w, h = gbox[g0 + j, 0], gbox[g0 + j, 1], gbox[g0 + j, 2], gbox[g0 + j, 3]
        xmin = min(xmin, x)
        ymin = min(ymin, y)
        xmax = max(xmax, x + w)
        ymax = max(ymax, y + h)
        mean_side += max(w, h)
    side = max(mean_side / ng, 1.0, (xmax - xmin) / 256.0, (ymax - ymin) / 256.0)
    nx = int((xmax - xmin) / side) + 1
    ny = int((ymax - ymin) / side) + 1
    big_limit = 16.0 * side
    # Small GTs go into every cell they touch (CSR); the few large ones are checked against all.
    count = np.zeros(nx * ny + 1, np.int64)
    n_big = 0
    for j in range(ng):
        x, y, w, h = gbox[g0 + j, 0], gbox[g0 + j, 1], gbox[g0 + j, 2], gbox[g0 + j, 3]
        if w > big_limit or h > big_limit:
            n_big += 1
            continue
        for by in range(_cell(y, ymin, side, ny), _cell(y + h, ymin, side, ny) + 1):
            for bx in range(_cell(x, xmin, side, nx), _cell(x + w, xmin, side, nx) + 1):
                count[by * nx + bx + 1] += 1
    for b in range(nx * ny):
        count[b + 1] += count[b]
    fill = count[:-1].copy()
    items = np.empty(count[nx * ny], np.int64)
    bigs = np.empty(n_big, np.int64)
    n_big = 0
    for j in range(ng):
        x, y, w, h = gbox[g0 + j, 0], gbox[g0 + j, 1], gbox[g0 + j, 2], gbox[g0 + j, 3]
        if w > big_limit or h > big_limit:
            bigs[n_big] = j
            n_big += 1
            continue
        for by in range(_cell(y, ymin, side, ny), _cell(y + h, ymin, side, ny) + 1):
            for bx in range(_cell(x, xmin, side, nx), _cell(x + w, xmin, side, nx) + 1):
                items[fill[by * nx + bx]] = j
                fill[by * nx + bx] += 1
    stamp = np.full(ng, -1, np.int64)
    tmp = np.empty(ng, np.int64)
    n = 0
    for d in range(nd):
        x, y, w, h = dbox[d0 + d, 0], dbox[d0 + d, 1], dbox[d0 + d, 2], dbox[d0 + d, 3]
        qx0, qy0, qx1, qy1 = x - margin, y - margin, x + w + margin, y + h + margin
        k = 0
        if not (qx1 < xmin or qy1 < ymin or qx0 > xmax or qy0 > ymax):
            for by in range(_cell(qy0, ymin, side, ny), _cell(qy1, ymin, side, ny) + 1):
                for bx in range(_cell(qx0, xmin, side, nx), _cell(qx1, xmin, side, nx) + 1):
                    b = by * nx + bx
                    for ii in range(count[b], count[b + 1]):
                        j = items[ii]
                        if stamp[j] != d:
                            stamp[j] = d
                            tmp[k] = j
                            k += 1
        for ii in range(n_big):
            tmp[k] = bigs[ii]
            k += 1
        # The greedy scan must visit GTs in their sorted order.
        if k > 1:
            tmp[:k].sort()
        if n + k > cap:
            cap = max(2 * cap, n + k)
            cg2 = np.empty(cap, np.int64)
            cs2 = np.empty(cap, np.float64)
            cg2[:n] = cg[:n]
            cs2[:n] = cs[:n]
            cg, cs = cg2, cs2
        for ii in range(k):
            j = tmp[ii]
            g = g0 + j
            s = _similarity(x, y, w, h, gbox[g, 0], gbox[g, 1], gbox[g, 2], gbox[g, 3],
                            gcrowd[g], criterion, c_nwd)
            if s > 0.0 and (s >= keep_min or gcrowd[g]):
                cg[n] = j
                cs[n] = s
                n += 1
        off[d + 1] = n
    return off, cg, cs


@nb.njit(cache=True)
def _match_unit(u, g_off, gbox, garea, gcrowd, gid_ok, d_off, dbox, darea, thrs, arng,
                criterion, c_nwd, margin, keep_min, flags, npig, links, dt_link, gt_link):
    g0, ng = g_off[u], g_off[u + 1] - g_off[u]
    d0, nd = d_off[u], d_off[u + 1] - d_off[u]
    off, cg, cs = _candidates(gbox, gcrowd, g0, ng, dbox, d0, nd, criterion, c_nwd, margin,
                              keep_min)
    ign = np.empty(ng, np.bool_)
    taken = np.empty(ng, np.bool_)
    # Best similarity of each detection: below the threshold, no GT can be taken (skip scans).
    cmax = np.zeros(nd, np.float64)
    for d in range(nd):
        for c in range(off[d], off[d + 1]):
            cmax[d] = max(cmax[d], cs[c])
    for a in range(arng.shape[0]):
        lo, hi = arng[a, 0], arng[a, 1]
        cnt = 0
        for j in range(ng):
            ar = garea[g0 + j]
            ign[j] = gcrowd[g0 + j] or ar < lo or ar > hi
            if not ign[j]:
                cnt += 1
        npig[a, u] = cnt
        for t in range(thrs.shape[0]):
            taken[:] = False
            best0 = min(thrs[t], 1 - 1e-10)
            for d in range(nd):
                m = -1
                best = best0
                c_end = off[d + 1] if cmax[d] >= best0 else off[d]
                # Non-ignored GTs first (pycocotools sorts them first, stably) ...
                for c in range(off[d], c_end):
                    j = cg[c]
                    if ign[j] or taken[j] or cs[c] < best:
                        continue
                    best = cs[c]
                    m = j
                # ... ignored ones only if none matched (the ``break`` of evaluateImg).
                if m == -1:
                    for c in range(off[d], c_end):
                        j = cg[c]
                        if not ign[j] or (taken[j] and not gcrowd[g0 + j]) or cs[c] < best:
                            continue
                        best = cs[c]
                        m = j
                out_ign = False
                matched = False
                if m >= 0:
                    taken[m] = True
                    out_ign = ign[m]
                    # dtMatches stores the GT id; a GT with id 0 reads as "unmatched" later.
                    matched = gid_ok[g0 + m]
                    if links:
                        dt_link[d0 + d] = g0 + m
                        gt_link[g0 + m] = d0 + d
                if not matched:
                    ar = darea[d0 + d]
                    out_ign = out_ign or ar < lo or ar > hi
                flags[a, t, d0 + d] = IGNORED if out_ign else (TP if matched else FP)


@nb.njit(cache=True, nogil=True)
def match_units(u0, u1, g_off, gbox, garea, gcrowd, gid_ok, d_off, dbox, darea, thrs, arng,
                criterion, c_nwd, margin, keep_min, flags, npig, links, dt_link, gt_link):
    """Greedy matching of units ``u0 .. u1-1`` (images, image x category, or prompt sets).

    Releases the GIL, so callers run disjoint unit ranges in threads.

    Args:
        g_off, d_off: CSR offsets of each unit's GT rows / detection rows.
        gbox, dbox: ``(N, 4)`` float64 ``[x, y, w, h]``; GTs in pycocotools' unit order,
            detections sorted by score (stable) and cut to the largest maxDets.
        garea: GT ``area`` field; darea: detection ``w * h``; gcrowd: GT crowd flags;
        gid_ok: GT id != 0 (pycocotools reads a match to GT id 0 as no match).
        thrs, arng: threshold grid and ``(A, 2)`` area ranges.
        criterion, c_nwd, margin, keep_min: IoU (0) or NWD (1), NWD constant, the search margin
            in px and the lowest similarity that can ever match.
        flags: ``(A, T, n_dt)`` uint8 output; npig: ``(A, n_units)`` non-ignored GT counts.
        links, dt_link, gt_link: with ``links`` (one area, one threshold) also write the matched
            GT row of each detection and the detection row of each GT (-1 = none).
    """
    for u in range(u0, u1):
        _match_unit(u, g_off, gbox, garea, gcrowd, gid_ok, d_off, dbox, darea, thrs, arng,
                    criterion, c_nwd, margin, keep_min, flags, npig, links, dt_link, gt_link)


@nb.njit(cache=True, nogil=True)
def pack_outcomes(flags, tp_bits, fp_bits, row0, pos):
    """Pack ``flags[a, t, i]`` into bit ``a * T + t`` of ``tp_bits`` / ``fp_bits`` row
    ``pos[row0 + i]`` (the detection's place in accumulation order).

    The compact per-threshold form kept until accumulation: two bits per detection and
    (area, threshold) job instead of a byte, so 16 B per detection for the 55 TinySet jobs.
    ``tp_bits`` and ``fp_bits`` must start zeroed; an ignored detection sets neither bit.
    """
    n_a, n_t, n = flags.shape
    for i in range(n):
        for a in range(n_a):
            for t in range(n_t):
                f = flags[a, t, i]
                if f == IGNORED:
                    continue
                q = a * n_t + t
                bit = np.uint64(1) << np.uint64(q & 63)
                if f == TP:
                    tp_bits[pos[row0 + i], q >> 6] |= bit
                else:
                    fp_bits[pos[row0 + i], q >> 6] |= bit


@nb.njit(cache=True, nogil=True)
def accumulate_bits(j0, j1, n_t, tp_bits, fp_bits, rank, scores_sorted, max_dets, npig,
                    rec_thrs, precision, recall, scores):
    """Precision/recall/scores of one category for (area, threshold) jobs ``j0 .. j1-1``.

    Job ``j`` is area ``j // n_t``, threshold ``j % n_t``, for every maxDets at once, without
    per-job arrays; releases the GIL, so callers run disjoint job ranges in threads.

    Rows are in accumulation order (one stable sort of the scores); ``rank`` is each row's
    position in its unit, so maxDets ``m`` keeps the rows with ``rank < m``. A forward pass
    counts TP/FP and finds the first row reaching each recall point (``searchsorted`` left of
    ``rc``); a backward pass walks the counts down again and keeps the running maximum of
    ``tp / (fp + tp + eps)``, which is pycocotools' precision envelope at that row. Counts are
    whole numbers in float64, so both passes see exactly pycocotools' ``rc`` and ``pr`` values.

    Args:
        precision, scores: ``(T, R, A, M)`` views to fill; recall: ``(T, A, M)``.
    """
    n = rank.shape[0]
    n_r = rec_thrs.shape[0]
    first = np.empty(n_r, np.int64)
    for job in range(j0, j1):
        a = job // n_t
        t = job % n_t
        if npig[a] == 0:
            continue
        npig_f = float(npig[a])
        w = job >> 6
        bit = np.uint64(1) << np.uint64(job & 63)
        for m in range(max_dets.shape[0]):
            md = max_dets[m]
            tp = 0.0
            fp = 0.0
            r = 0
            kept = 0
            for i in range(n):
                if rank[i] >= md:
                    continue
                kept += 1
                if tp_bits[i, w] & bit:
                    tp += 1.0
                elif fp_bits[i, w] & bit:
                    fp += 1.0
                rc = tp / npig_f
                while r < n_r and rc >= rec_thrs[r]:
                    first[r] = i
                    r += 1
            recall[t, a, m] = tp / npig_f if kept > 0 else 0.0
            for rr in range(r, n_r):  # out of reach: pycocotools leaves these at 0
                precision[t, rr, a, m] = 0.0
                scores[t, rr, a, m] = 0.0
            rr = r - 1
            best = -1.0
            for i in range(n - 1, -1, -1):
                if rr < 0:
                    break
                if rank[i] >= md:
                    continue
                pr = tp / (fp + tp + EPS)
                if pr > best:
                    best = pr
                while rr >= 0 and first[rr] == i:
                    precision[t, rr, a, m] = best
                    scores[t, rr, a, m] = scores_sorted[i]
                    rr -= 1
                if tp_bits[i, w] & bit:
                    tp -= 1.0
                elif fp_bits[i, w] & bit:
                    fp -= 1.0
