"""A compiled reader for the two big COCO arrays: GT ``annotations`` and the results list.

``json.load`` builds a Python dict per box; for a 600k-box file that is most of an evaluation's
time and memory. This reader scans the bytes once (numba), keeps only the numeric fields the
evaluator needs, and never builds per-box objects.

It is a fast path, not a second JSON dialect: whenever a file holds anything it does not handle
exactly (a missing or non-numeric field, an escaped key, a number it cannot convert exactly,
``NaN``), it answers ``None`` and the caller reads the file with :mod:`json`, which then also
produces the precise error message. Numbers are converted exactly as ``float()`` converts them:
integer mantissas below 2**53 scaled by an exact power of ten (one correctly rounded IEEE
operation: Clinger's fast path); every other number is handed to ``float()`` itself.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from benchmark.evaluate.jit import nb

# Value counts per (record, key): >= 0 numbers read, MISSING, OTHER (not a number / array).
MISSING, OTHER = -1, -2
F_INT, F_HARD = 1, 2  # number flags: integer literal; needs float() (no exact fast path)
_POW10 = np.array([10.0 ** k for k in range(23)])


@nb.njit(cache=True, inline="always")
def _ws(buf, i, n):
    while i < n and (buf[i] == 32 or buf[i] == 10 or buf[i] == 13 or buf[i] == 9):
        i += 1
    return i


@nb.njit(cache=True)
def _skip_value(buf, i, n):
    """Index just after the JSON value starting at ``i`` (-1 if malformed)."""
    i = _ws(buf, i, n)
    if i >= n:
        return -1
    c = buf[i]
    if c == 34:  # string
        i += 1
        while i < n:
            if buf[i] == 92:
                i += 2
            elif buf[i] == 34:
                return i + 1
            else:
                i += 1
        return -1
    if c == 123 or c == 91:  # object / array: track depth, skip strings
        depth = 0
        while i < n:
            c = buf[i]
            if c == 34:
                i = _skip_value(buf, i, n)
                if i < 0:
                    return -1
                continue
            if c == 123 or c == 91:
                depth += 1
            elif c == 125 or c == 93:
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        return -1
    while i < n and not (buf[i] == 44 or buf[i] == 125 or buf[i] == 93 or buf[i] == 32
                         or buf[i] == 10 or buf[i] == 13 or buf[i] == 9):
        i += 1
    return i


@nb.njit(cache=True)
def _number(buf, i, n, pow10):
    """Parse a JSON number at ``i``: (end, value, flags); end = -1 if it is not a number."""
    neg = False
    if i < n and buf[i] == 45:
        neg = True
        i += 1
    m = 0
    digits = 0
    frac = 0
    is_int = True
    nd = 0
    while i < n and 48 <= buf[i] <= 57:
        if m > 0 or buf[i] != 48:
            digits += 1
        if digits <= 18:
            m = m * 10 + (buf[i] - 48)
        nd += 1
        i += 1
    if nd == 0:
        return -1, 0.0, 0
    if i < n and buf[i] == 46:
        is_int = False
        i += 1
        nf = 0
        while i < n and 48 <= buf[i] <= 57:
            if m > 0 or buf[i] != 48:
                digits += 1
            if digits <= 18:
                m = m * 10 + (buf[i] - 48)
                frac += 1
            nf += 1
            i += 1
        if nf == 0:
            return -1, 0.0, 0
    e = 0
    if i < n and (buf[i] == 101 or buf[i] == 69):
        is_int = False
        i += 1
        eneg = False
        if i < n and (buf[i] == 43 or buf[i] == 45):
            eneg = buf[i] == 45
            i += 1
        ne = 0
        while i < n and 48 <= buf[i] <= 57:
            if e < 100000:
                e = e * 10 + (buf[i] - 48)
            ne += 1
            i += 1
        if ne == 0:
            return -1, 0.0, 0
        if eneg:
            e = -e
    if i < n and not (buf[i] == 44 or buf[i] == 125 or buf[i] == 93 or buf[i] == 32
                      or buf[i] == 10 or buf[i] == 13 or buf[i] == 9):
        return -1, 0.0, 0
    flags = F_INT if is_int else 0
    exp10 = e - frac
    if m == 0:
        v = 0.0
    elif digits > 15 or m >= 9007199254740992 or exp10 > 22 or exp10 < -22:
        return i, 0.0, flags | F_HARD
    elif exp10 >= 0:
        v = float(m) * pow10[exp10]
    else:
        v = float(m) / pow10[-exp10]
    if neg:
        v = -v
    return i, v, flags


@nb.njit(cache=True)
def _scan_records(buf, i, n, keytab, keylen, pow10):
    """Scan a JSON array of objects starting at ``i`` (at ``[``).

    Returns (status, n_rec, cnt (n_rec, n_keys) int8, off (n_rec, n_keys) int64, num (f64),
    flg (u8), hard_start, hard_end, n_num, n_hard); status 0 = ok, 1 = not handled.
    """
    n_keys = keytab.shape[0]
    cap_r = 1024
    cnt = np.full((cap_r, n_keys), MISSING, np.int8)
    off = np.zeros((cap_r, n_keys), np.int64)
    cap_n = 8192
    num = np.empty(cap_n, np.float64)
    flg = np.empty(cap_n, np.uint8)
    hs = np.empty(cap_n, np.int64)
    he = np.empty(cap_n, np.int64)
    n_num = 0
    n_hard = 0
    r = 0
    i = _ws(buf, i, n)
    if i >= n or buf[i] != 91:
        return 1, 0, cnt, off, num, flg, hs, he, 0, 0
    i = _ws(buf, i + 1, n)
    if i < n and buf[i] == 93:
        return 0, 0, cnt, off, num, flg, hs, he, 0, 0
    while True:
        i = _ws(buf, i, n)
        if i >= n or buf[i] != 123:
            return 1, r, cnt, off, num, flg, hs, he, n_num, n_hard
        if r == cap_r:
            cap_r *= 2
            c2 = np.full((cap_r, n_keys), MISSING, np.int8)
            o2 = np.zeros((cap_r, n_keys), np.int64)
            c2[:r] = cnt[:r]
            o2[:r] = off[:r]
            cnt, off = c2, o2
        i = _ws(buf, i + 1, n)
        if i < n and buf[i] == 125:
            i += 1
        else:
            while True:
                i = _ws(buf, i, n)
                if i >= n or buf[i] != 34:
                    return 1, r, cnt, off, num, flg, hs, he, n_num, n_hard
                ks = i + 1
                i += 1
                while i < n and buf[i] != 34:
                    if buf[i] == 92:  # escaped key: leave it to json
                        return 1, r, cnt, off, num, flg, hs, he, n_num, n_hard
                    i += 1
                ke = i
                i = _ws(buf, i + 1, n)
                if i >= n or buf[i] != 58:
                    return 1, r, cnt, off, num, flg, hs, he, n_num, n_hard
                i = _ws(buf, i + 1, n)
                k = -1
                for q in range(n_keys):
                    if keylen[q] == ke - ks:
                        same = True
                        for z in range(ke - ks):
                            if buf[ks + z] != keytab[q, z]:
                                same = False
                                break
                        if same:
                            k = q
                            break
                if k < 0:
                    i = _skip_value(buf, i, n)
                    if i < 0:
                        return 1, r, cnt, off, num, flg, hs, he, n_num, n_hard
                else:
                    if n_num + 8 > cap_n:
                        cap_n *= 2
                        num2 = np.empty(cap_n, np.float64)
                        flg2 = np.empty(cap_n, np.uint8)
                        num2[:n_num] = num[:n_num]
                        flg2[:n_num] = flg[:n_num]
                        num, flg = num2, flg2
                    if n_hard + 8 > hs.shape[0]:
                        hs2 = np.empty(2 * hs.shape[0], np.int64)
                        he2 = np.empty(2 * hs.shape[0], np.int64)
                        hs2[:n_hard] = hs[:n_hard]
                        he2[:n_hard] = he[:n_hard]
                        hs, he = hs2, he2
                    off[r, k] = n_num
                    if buf[i] == 91:
                        vstart = i
                        i = _ws(buf, i + 1, n)
                        c = 0
                        ok = True
                        if i < n and buf[i] == 93:
                            i += 1
                        else:
                            while True:
                                s0 = i
                                e_, v, f = _number(buf, i, n, pow10)
                                if e_ < 0 or c >= 8:
                                    ok = False
                                    break
                                num[n_num] = v
                                flg[n_num] = f
                                if f & F_HARD:
                                    hs[n_hard] = s0
                                    he[n_hard] = e_
                                    n_hard += 1
                                n_num += 1
                                c += 1
                                i = _ws(buf, e_, n)
                                if i < n and buf[i] == 44:
                                    i = _ws(buf, i + 1, n)
                                    continue
                                if i < n and buf[i] == 93:
                                    i += 1
                                    break
                                ok = False
                                break
                        if ok:
                            cnt[r, k] = c
                        else:
                            cnt[r, k] = OTHER
                            i = _skip_value(buf, vstart, n)
                            if i < 0:
                                return 1, r, cnt, off, num, flg, hs, he, n_num, n_hard
                    else:
                        s0 = i
                        e_, v, f = _number(buf, i, n, pow10)
                        if e_ < 0:
                            cnt[r, k] = OTHER
                            i = _skip_value(buf, i, n)
                            if i < 0:
                                return 1, r, cnt, off, num, flg, hs, he, n_num, n_hard
                        else:
                            num[n_num] = v
                            flg[n_num] = f
                            if f & F_HARD:
                                hs[n_hard] = s0
                                he[n_hard] = e_
                                n_hard += 1
                            n_num += 1
                            cnt[r, k] = 1
                            i = e_
                i = _ws(buf, i, n)
                if i < n and buf[i] == 44:
                    i += 1
                    continue
                if i < n and buf[i] == 125:
                    i += 1
                    break
                return 1, r, cnt, off, num, flg, hs, he, n_num, n_hard
        r += 1
        i = _ws(buf, i, n)
        if i < n and buf[i] == 44:
            i += 1
            continue
        if i < n and buf[i] == 93:
            i = _ws(buf, i + 1, n)
            return 0, r, cnt, off, num, flg, hs, he, n_num, n_hard
        return 1, r, cnt, off, num, flg, hs, he, n_num, n_hard


@nb.njit(cache=True)
def _top_level(buf, n, keytab, keylen):
    """Byte spans of the values of ``keys`` in a top-level JSON object (-1 if absent)."""
    spans = np.full((keytab.shape[0], 2), -1, np.int64)
    i = _ws(buf, 0, n)
    if i >= n or buf[i] != 123:
        return 1, spans
    i = _ws(buf, i + 1, n)
    if i < n and buf[i] == 125:
        return 0, spans
    while True:
        i = _ws(buf, i, n)
        if i >= n or buf[i] != 34:
            return 1, spans
        ks = i + 1
        i += 1
        while i < n and buf[i] != 34:
            if buf[i] == 92:
                return 1, spans
            i += 1
        ke = i
        i = _ws(buf, i + 1, n)
        if i >= n or buf[i] != 58:
            return 1, spans
        i = _ws(buf, i + 1, n)
        end = _skip_value(buf, i, n)
        if end < 0:
            return 1, spans
        for q in range(keytab.shape[0]):
            if keylen[q] == ke - ks:
                same = True
                for z in range(ke - ks):
                    if buf[ks + z] != keytab[q, z]:
                        same = False
                        break
                if same:
                    spans[q, 0] = i
                    spans[q, 1] = end
        i = _ws(buf, end, n)
        if i < n and buf[i] == 44:
            i += 1
            continue
        if i < n and buf[i] == 125:
            return 0, spans
        return 1, spans


def _keytab(keys: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    raw = [k.encode() for k in keys]
    tab = np.zeros((len(raw), max(map(len, raw))), np.uint8)
    for q, k in enumerate(raw):
        tab[q, :len(k)] = np.frombuffer(k, np.uint8)
    return tab, np.array([len(k) for k in raw], np.int64)


def _records(buf: np.ndarray, start: int, keys: tuple[str, ...],
             required: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    """Columns of the array of objects at ``buf[start:]``; None when the fast path declines."""
    tab, lens = _keytab(keys)
    status, n_rec, cnt, off, num, flg, hs, he, n_num, n_hard = _scan_records(
        buf, start, len(buf), tab, lens, _POW10)
    if status != 0:
        return None
    cnt, off = cnt[:n_rec], off[:n_rec]
    num, flg = num[:n_num], flg[:n_num]
    if n_hard:
        hard = np.flatnonzero(flg & F_HARD)
        mv = memoryview(buf)
        num[hard] = [float(bytes(mv[s:e])) for s, e in zip(hs[:n_hard].tolist(),
                                                           he[:n_hard].tolist(), strict=True)]
    out: dict[str, np.ndarray] = {}
    for q, key in enumerate(keys):
        c = cnt[:, q]
        if key in required and (c == MISSING).any():
            return None
        if (c == OTHER).any():
            return None
        if key == "bbox":
            if (c != 4).any():
                return None
            idx = off[:, q][:, None] + np.arange(4)
            out[key] = num[idx] if n_rec else np.zeros((0, 4))
        else:
            if ((c != 1) & (c != MISSING)).any():
                return None
            present = c == 1
            out[key] = num[off[:, q]] if n_rec else np.zeros(0)
            out[key + ":present"] = present
            out[key + ":int"] = (flg[off[:, q]] & F_INT).astype(bool) if n_rec else \
                np.zeros(0, bool)
    return out


def read_results(path: str | os.PathLike[str]) -> dict[str, np.ndarray] | None:
    """Columns ``image_id category_id bbox score`` (+ ``id``) of a COCO results file, or None."""
    buf = np.fromfile(path, np.uint8)
    return _records(buf, 0, ("image_id", "category_id", "bbox", "score", "id"),
                    ("image_id", "category_id", "bbox", "score"))


def read_gt(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """``images``/``categories`` (parsed by json) and the annotation columns, or None."""
    buf = np.fromfile(path, np.uint8)
    tab, lens = _keytab(("images", "annotations", "categories"))
    status, spans = _top_level(buf, len(buf), tab, lens)
    if status != 0 or (spans[:, 0] < 0).any():
        return None
    small = {key: json.loads(buf[s:e].tobytes())
             for key, (s, e) in zip(("images", "categories"), spans[[0, 2]].tolist(), strict=True)}
    cols = _records(buf, int(spans[1, 0]),
                    ("id", "image_id", "category_id", "bbox", "area", "iscrowd"),
                    ("id", "image_id", "category_id", "bbox", "area"))
    if cols is None:
        return None
    return small, cols
