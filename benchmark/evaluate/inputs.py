"""Ground truth, detections and prompts: loaded once into columns, validated with one-line errors.

The evaluator never holds one Python object per box: a 200-image TinySet test file holds 600k
boxes. Files are read by :mod:`benchmark.evaluate.cocojson` (msgspec, piece by piece) straight
into numpy columns; in-memory dicts are read with list comprehensions. Columns are validated with
array checks, and only on failure scanned record by record to name the first bad one. A GT file
and a detection file are read at the same time (:func:`load_inputs`).

Rules (pycocotools semantics, made explicit):
* GT ``area`` is the annotation's own ``area`` field (``w * h`` when absent); a detection's area is
  ``w * h``. ``iscrowd: 1`` marks an ignore region.
* Detections must name a GT image and a GT category (pycocotools silently drops unknown
  categories, even class-agnostically; we refuse them instead, so a mislabelled file cannot score
  0 AP quietly).
* An empty detection list is valid: every AP is 0.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinyset_builder.errors import TinysetError
from tinyset_builder.io import read_json

PROMPTS_SCHEMA = "tinyset-prompts/1"
IMAGE_FIELDS = ("source", "domain")


@dataclass
class GroundTruth:
    """GT columns. ``img``/``cat`` index ``image_ids``/``cat_ids`` (both sorted, unique)."""

    label: str
    image_ids: np.ndarray
    image_fields: dict[str, list[Any]]
    cat_ids: np.ndarray
    img: np.ndarray
    cat: np.ndarray
    box: np.ndarray
    area: np.ndarray
    crowd: np.ndarray
    ann_id: np.ndarray

    def __len__(self) -> int:
        return len(self.img)


@dataclass
class Detections:
    """Detection columns in file order (``id`` = file position + 1, as ``loadRes``)."""

    label: str
    img: np.ndarray
    cat: np.ndarray
    box: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return len(self.img)

    @property
    def area(self) -> np.ndarray:
        """``w * h``, the float product ``loadRes`` computes (made on demand, not stored)."""
        return self.box[:, 2] * self.box[:, 3]


@dataclass
class Prompts:
    """P2SOD evaluation units: ``(image index, category index)`` pairs, sorted by ids."""

    label: str
    img: np.ndarray
    cat: np.ndarray
    digest: str
    setting: str | None


def _label(src: object, default: str) -> str:
    return str(src) if isinstance(src, (str, os.PathLike)) else default


def _column(records: Sequence[Mapping[str, Any]], key: str, label: str, what: str,
            default: Any = KeyError, base: int = 0) -> list[Any]:
    try:
        if default is KeyError:
            return [r[key] for r in records]
        return [r.get(key, default) for r in records]
    except (KeyError, TypeError, AttributeError):
        for i, r in enumerate(records):
            if not isinstance(r, Mapping):
                raise TinysetError(f"{label}: {what} #{base + i} is not a JSON object") from None
            if key not in r:
                raise TinysetError(f"{label}: {what} #{base + i} (id {r.get('id', '?')}) lacks "
                                   f"key {key!r}") from None
        raise


def _ints(values: list[Any], label: str, what: str, key: str, base: int = 0) -> np.ndarray:
    arr = np.asarray(values) if values else np.zeros(0, np.int64)
    if arr.ndim != 1 or arr.dtype.kind not in "iub":
        for i, v in enumerate(values):
            if not isinstance(v, int) or isinstance(v, bool):
                raise TinysetError(f"{label}: {what} #{base + i}: {key} must be an integer, "
                                   f"got {v!r}")
            if not -2**63 <= v < 2**63:  # numpy falls back to object arrays past int64
                raise TinysetError(f"{label}: {what} #{base + i}: {key} {v} is out of the "
                                   f"64-bit range")
        raise TinysetError(f"{label}: {what}: {key} must be integers")
    return arr.astype(np.int64)


def _floats(values: list[Any], label: str, what: str, key: str, base: int = 0) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64) if values else np.zeros(0)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim != 1:
        for i, v in enumerate(values):
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise TinysetError(f"{label}: {what} #{base + i}: {key} must be a number, "
                                   f"got {v!r}")
        raise TinysetError(f"{label}: {what}: {key} must be numbers")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        v = values[bad[0]]
        i = base + int(bad[0])
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise TinysetError(f"{label}: {what} #{i}: {key} must be a number, got {v!r}")
        raise TinysetError(f"{label}: {what} #{i}: {key} is {v!r} (must be finite)")
    return arr


def _boxes(values: list[Any], label: str, what: str, base: int = 0) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64) if values else np.zeros((0, 4))
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim != 2 or arr.shape[1] != 4:
        for i, b in enumerate(values):
            if (not isinstance(b, (list, tuple)) or len(b) != 4
                    or any(not isinstance(v, (int, float)) or isinstance(v, bool) for v in b)):
                raise TinysetError(f"{label}: {what} #{base + i}: bbox must be [x, y, w, h] "
                                   f"numbers, got {b!r}")
        raise TinysetError(f"{label}: {what}: bbox must be [x, y, w, h]")
    _check_boxes(arr, label, what, base)
    return arr


def _check_boxes(arr: np.ndarray, label: str, what: str, base: int = 0) -> None:
    bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
    if bad.size:
        raise TinysetError(f"{label}: {what} #{base + bad[0]}: bbox {arr[bad[0]].tolist()} is "
                           f"not finite")
    neg = np.flatnonzero((arr[:, 2] < 0) | (arr[:, 3] < 0))
    if neg.size:
        raise TinysetError(f"{label}: {what} #{base + neg[0]}: bbox {arr[neg[0]].tolist()} has "
                           f"a negative width or height")


def _check_finite(arr: np.ndarray, label: str, what: str, key: str, base: int = 0) -> None:
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise TinysetError(f"{label}: {what} #{base + bad[0]}: {key} is {arr[bad[0]]} "
                           f"(must be finite)")


def _unique_ids(ids: np.ndarray, label: str, what: str) -> None:
    if ids.size and np.unique(ids).size != ids.size:
        s = np.sort(ids)
        dup = s[1:][s[1:] == s[:-1]][0]
        raise TinysetError(f"{label}: duplicate {what} id {dup}")


def _index(ids: np.ndarray, table: np.ndarray, label: str, what: str, key: str) -> np.ndarray:
    pos = np.searchsorted(table, ids)
    pos_c = np.minimum(pos, max(len(table) - 1, 0))
    ok = (pos < len(table)) & (table[pos_c] == ids) if len(table) else np.zeros(len(ids), bool)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise TinysetError(f"{label}: {what} #{i}: {key} {ids[i]} is not in the ground truth")
    return pos.astype(np.int64)


class _Growing:
    """Columns appended piece by piece into arrays grown in place (never a second full copy)."""

    def __init__(self) -> None:
        self.cols: dict[str, np.ndarray] = {}
        self.n = 0

    def add(self, piece: dict[str, np.ndarray]) -> None:
        m = len(next(iter(piece.values())))
        for key, v in piece.items():
            arr = self.cols.get(key)
            if arr is None:
                arr = self.cols[key] = np.empty((max(m, 1024), *v.shape[1:]), v.dtype)
            elif len(arr) < self.n + m:
                # realloc: large blocks are remapped by the C library, not copied
                arr.resize((max(self.n + m, len(arr) * 3 // 2), *v.shape[1:]), refcheck=False)
            arr[self.n:self.n + m] = v
        self.n += m

    def finish(self, keys: Sequence[str], shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in keys:
            arr = self.cols.get(key)
            if arr is None:
                dtype = np.float64 if key in ("bbox", "area", "score") else np.int64
                arr = np.zeros((0, *shapes.get(key, ())), dtype)
            else:
                arr.resize((self.n, *arr.shape[1:]), refcheck=False)
            out[key] = arr
        return out


def _ann_dict_columns(anns: list[Any], label: str, base: int = 0) -> dict[str, np.ndarray]:
    """GT annotation columns from ``json``'s dicts, checked record by record."""
    what = "annotation"
    cols = {key: _ints(_column(anns, key, label, what, base=base), label, what, key, base)
            for key in ("id", "image_id", "category_id")}
    cols["bbox"] = _boxes(_column(anns, "bbox", label, what, base=base), label, what, base)
    areas = _column(anns, "area", label, what, default=None, base=base)
    if any(a is None for a in areas):
        box = cols["bbox"]
        areas = [box[i, 2] * box[i, 3] if a is None else a for i, a in enumerate(areas)]
    cols["area"] = _floats(areas, label, what, "area", base)
    cols["iscrowd"] = _ints(_column(anns, "iscrowd", label, what, default=0, base=base), label,
                            what, "iscrowd", base)
    return cols


def _refused(e: Any, label: str, what: str) -> TinysetError:
    field = f"{e.field}: " if e.field else ""
    return TinysetError(f"{label}: {what} #{e.index}: {field}{e.reason}")


_GT_KEYS = ("id", "image_id", "category_id", "bbox", "area", "iscrowd")
_DT_KEYS = ("image_id", "category_id", "bbox", "score")
_SHAPES = {"bbox": (4,)}


def _gt_file(path: str | os.PathLike[str], label: str
             ) -> tuple[list[Any], list[Any], dict[str, list[Any]], dict[str, Any]] | Any:
    """Image ids, category ids, image fields and annotation columns of a GT file via msgspec,
    or the whole file as ``json`` reads it when msgspec refuses its top level."""
    from benchmark.evaluate import cocojson

    head = cocojson.read_gt_head(path)
    if not isinstance(head, cocojson.GtHead):
        return head
    grow = _Growing()
    try:
        for piece in cocojson.read_annotations(
                head.annotations, lambda recs, base: _ann_dict_columns(recs, label, base)):
            grow.add(piece)
    except cocojson.NotAnArray:
        raise TinysetError(f"{label}: ground truth lacks the 'annotations' list") from None
    except cocojson.RecordRefused as e:
        raise _refused(e, label, "annotation") from None
    except ValueError as e:
        raise TinysetError(f"{label}: not valid JSON ({e})") from None
    img_ids, sources, domains = cocojson.image_columns(head.images)
    cat_ids = [c.id for c in head.categories]
    return img_ids, cat_ids, {"source": sources, "domain": domains}, grow.finish(_GT_KEYS,
                                                                                  _SHAPES)


def _readable(path: str | os.PathLike[str], label: str) -> None:
    """Raise the one-line error for a path that cannot be opened for reading."""
    try:
        with open(path, "rb"):
            pass
    except FileNotFoundError:
        raise TinysetError(f"{label}: file not found") from None
    except OSError as e:
        raise TinysetError(f"{label}: cannot be read ({e.strerror})") from None


def load_gt(gt: Any) -> GroundTruth:
    """Read GT from a COCO JSON path, a COCO dict or a :class:`tinyset_builder.coco.CocoDataset`."""
    label = _label(gt, "<gt>")
    if isinstance(gt, (str, os.PathLike)):
        _readable(gt, label)
    got = _gt_file(gt, label) if isinstance(gt, (str, os.PathLike)) else None
    if isinstance(got, tuple):
        img_list, cat_list, fields_in_file, cols = got
        image_ids = _ints(img_list, label, "image", "id")
        cat_ids = _ints(cat_list, label, "category", "id")
    else:
        if got is not None:
            gt = got
        elif not isinstance(gt, Mapping) and hasattr(gt, "to_dict") and hasattr(gt, "annotations"):
            gt = gt.to_dict()
        if not isinstance(gt, Mapping):
            raise TinysetError(f"{label}: ground truth must be a COCO JSON object")
        for key in ("images", "annotations", "categories"):
            if not isinstance(gt.get(key), list):
                raise TinysetError(f"{label}: ground truth lacks the {key!r} list")
        images, cats = gt["images"], gt["categories"]
        image_ids = _ints(_column(images, "id", label, "image"), label, "image", "id")
        cat_ids = _ints(_column(cats, "id", label, "category"), label, "category", "id")
        fields_in_file = {f: [im.get(f) for im in images] for f in IMAGE_FIELDS}
        cols = _ann_dict_columns(gt["annotations"], label)
    _unique_ids(image_ids, label, "image")
    _unique_ids(cat_ids, label, "category")
    order = np.argsort(image_ids, kind="stable")
    fields = {f: [fields_in_file[f][i] for i in order] for f in IMAGE_FIELDS}
    image_ids, cat_ids = image_ids[order], np.sort(cat_ids)
    what = "annotation"
    _check_boxes(cols["bbox"], label, what)
    _check_finite(cols["area"], label, what, "area")
    ann_id = cols["id"]
    _unique_ids(ann_id, label, what)
    img = _index(cols["image_id"], image_ids, label, what, "image_id")
    cat = _index(cols["category_id"], cat_ids, label, what, "category_id")
    area = cols["area"]
    if (area < 0).any():
        i = int(np.flatnonzero(area < 0)[0])
        raise TinysetError(f"{label}: annotation #{i}: area {area[i]} is negative")
    return GroundTruth(label, image_ids, fields, cat_ids, img, cat, cols["bbox"], area,
                       cols["iscrowd"] != 0, ann_id)


def _dt_dict_columns(dt: list[Any], label: str, base: int = 0) -> dict[str, Any]:
    """Detection columns from ``json``'s dicts, checked record by record."""
    what = "detection"
    cols: dict[str, Any] = {
        key: _ints(_column(dt, key, label, what, base=base), label, what, key, base)
        for key in ("image_id", "category_id")}
    cols["bbox"] = _boxes(_column(dt, "bbox", label, what, base=base), label, what, base)
    cols["score"] = _floats(_column(dt, "score", label, what, base=base), label, what, "score",
                            base)
    cols["id"] = [d.get("id") for d in dt] if dt and "id" in dt[0] else None
    return cols


def _id_column(ids: list[Any] | None) -> np.ndarray | None:
    """Detection ids as int64, or None when they cannot be checked (absent, not all integers)."""
    if ids is None or not all(type(i) is int and -2**63 <= i < 2**63 for i in ids):
        return None
    return np.asarray(ids, np.int64)


def _dt_file(path: str | os.PathLike[str], label: str) -> dict[str, Any]:
    """Detection columns of a COCO results file, read piece by piece (bounded memory)."""
    from benchmark.evaluate import cocojson

    grow, ids = _Growing(), _Growing()
    check_ids = True
    try:
        for piece in cocojson.read_results(
                path, lambda recs, base: _dt_dict_columns(recs, label, base)):
            id_list = piece.pop("id")
            id_col = _id_column(id_list) if check_ids else None
            if id_col is None:
                check_ids = False
            else:
                ids.add({"id": id_col})
            grow.add(piece)
    except cocojson.NotAnArray:
        raise TinysetError(f"{label}: detections must be a JSON list of COCO results") from None
    except cocojson.RecordRefused as e:
        raise _refused(e, label, "detection") from None
    except ValueError as e:
        raise TinysetError(f"{label}: not valid JSON ({e})") from None
    cols = grow.finish(_DT_KEYS, _SHAPES)
    cols["id"] = ids.finish(["id"], {})["id"] if check_ids and ids.n else None
    return cols


def _dt_columns(dt: Any, label: str) -> dict[str, Any]:
    """Detection columns (ids not yet checked against the GT)."""
    if isinstance(dt, (str, os.PathLike)):
        from benchmark.evaluate import columnar

        _readable(dt, label)
        if columnar.is_columnar(dt):
            return columnar.read_columnar(dt, label)
        return _dt_file(dt, label)
    if isinstance(dt, Mapping) and isinstance(dt.get("annotations"), list):
        dt = dt["annotations"]
    if not isinstance(dt, list):
        raise TinysetError(f"{label}: detections must be a JSON list of COCO results")
    cols = _dt_dict_columns(dt, label)
    cols["id"] = _id_column(cols["id"])
    return cols


def _detections(cols: dict[str, Any], gt: GroundTruth, label: str) -> Detections:
    what = "detection"
    _check_boxes(cols["bbox"], label, what)
    _check_finite(cols["score"], label, what, "score")
    if cols["id"] is not None:
        _unique_ids(cols["id"], label, what)
    img = _index(cols["image_id"], gt.image_ids, label, what, "image_id")
    cat = _index(cols["category_id"], gt.cat_ids, label, what, "category_id")
    return Detections(label, img, cat, cols["bbox"], cols["score"])


def load_dt(dt: Any, gt: GroundTruth) -> Detections:
    """Read COCO results (a JSON path or a list of dicts) against ``gt``."""
    label = _label(dt, "<detections>")
    return _detections(_dt_columns(dt, label), gt, label)


#: Below this many bytes of input, a helper process costs more than it saves.
CONCURRENT_MIN_BYTES = 4 << 20


def _can_fork(gt: Any, dt: Any) -> bool:
    if not (isinstance(gt, (str, os.PathLike)) and isinstance(dt, (str, os.PathLike))):
        return False
    if not hasattr(os, "fork") or threading.active_count() > 1 or _n_cpus() < 2:
        return False  # forking beside other threads is unsafe; one CPU gains nothing
    try:
        return os.path.getsize(gt) + os.path.getsize(dt) >= CONCURRENT_MIN_BYTES
    except OSError:
        return False


def _n_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


def load_inputs(gt: Any, dt: Any, *, native: bool = False) -> tuple[GroundTruth, Detections]:
    """GT and detections; two files are read at the same time, the GT in a forked process.

    msgspec holds the GIL while it decodes, so threads would not overlap the two reads; a
    forked child reads the GT and sends its columns back through a pipe. The GT's errors come
    first, as when the files are read one after the other. With ``native``, the compiled core
    (numba, ~0.4 s of imports) is loaded while the child is still reading.
    """
    if not _can_fork(gt, dt):
        g = load_gt(gt)
        return g, load_dt(dt, g)
    import pickle

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: read the GT, send it (or its error), leave without cleanup
        code = 0
        try:
            os.close(r)
            try:
                payload: tuple[str, Any] = ("ok", load_gt(gt))
            except Exception as e:  # the parent re-raises it
                payload = ("error", e)
            with os.fdopen(w, "wb") as f:
                pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    label = _label(dt, "<detections>")
    dt_error: BaseException | None = None
    cols: dict[str, Any] | None = None
    try:
        cols = _dt_columns(dt, label)
        if native:
            import benchmark.evaluate.core  # noqa: F401
    except Exception as e:  # reported after the GT's own errors
        dt_error = e
    try:
        with os.fdopen(r, "rb") as f:
            status, got = pickle.load(f)
    except EOFError:
        status, got = "error", RuntimeError("the GT reader process ended without an answer")
    finally:
        os.waitpid(pid, 0)
    if status != "ok":
        raise got
    if dt_error is not None:
        raise dt_error
    assert cols is not None
    return got, _detections(cols, got, label)


def load_prompts(prompts: Any, gt: GroundTruth) -> Prompts:
    """Read a P2SOD prompt file (docs/prompts.md) into sorted evaluation units."""
    label = _label(prompts, "<prompts>")
    if isinstance(prompts, (str, os.PathLike)):
        raw = Path(prompts).read_bytes() if Path(prompts).is_file() else None
        prompts = read_json(prompts)
        digest = hashlib.sha256(raw or b"").hexdigest()
    else:
        digest = ""
    if not isinstance(prompts, Mapping) or not isinstance(prompts.get("prompts"), list):
        raise TinysetError(f"{label}: not a prompt file (needs a 'prompts' list, see "
                           f"docs/prompts.md)")
    schema = prompts.get("schema", PROMPTS_SCHEMA)
    if schema != PROMPTS_SCHEMA:
        raise TinysetError(f"{label}: schema {schema!r} is not {PROMPTS_SCHEMA!r}")
    entries = prompts["prompts"]
    what = "prompt"
    img_ids = _ints(_column(entries, "image_id", label, what), label, what, "image_id")
    cat_ids = _ints(_column(entries, "category_id", label, what), label, what, "category_id")
    img = _index(img_ids, gt.image_ids, label, what, "image_id")
    cat = _index(cat_ids, gt.cat_ids, label, what, "category_id")
    key = img * max(len(gt.cat_ids), 1) + cat
    order = np.argsort(key, kind="stable")
    key = key[order]
    if key.size > 1 and (key[1:] == key[:-1]).any():
        i = int(np.flatnonzero(key[1:] == key[:-1])[0]) + 1
        j = order[i]
        raise TinysetError(f"{label}: prompt #{j}: (image_id {img_ids[j]}, category_id "
                           f"{cat_ids[j]}) appears twice")
    return Prompts(label, img[order], cat[order], digest, prompts.get("setting"))


@dataclass
class Units:
    """Evaluation units in accumulation order, and which GT/detection rows belong to each.

    A unit is what pycocotools calls an image: one image (default), or one ``(image, category)``
    prompt set with ``--prompts``. ``gt_unit``/``dt_unit`` are -1 for rows outside every unit.
    """

    unit_img: np.ndarray
    gt_unit: np.ndarray
    dt_unit: np.ndarray


def make_units(gt: GroundTruth, dt: Detections, prompts: Prompts | None,
               image_mask: np.ndarray | None = None) -> Units:
    """Units for the whole set, or for the images where ``image_mask`` is True."""
    n_img = len(gt.image_ids)
    keep = np.ones(n_img, bool) if image_mask is None else image_mask
    if prompts is None:
        unit_of_img = np.where(keep, np.cumsum(keep) - 1, -1)
        return Units(np.flatnonzero(keep), unit_of_img[gt.img], unit_of_img[dt.img])
    sel = keep[prompts.img]
    p_img, p_cat = prompts.img[sel], prompts.cat[sel]
    n_cat = max(len(gt.cat_ids), 1)
    pkey = p_img * n_cat + p_cat

    def lookup(img: np.ndarray, cat: np.ndarray) -> np.ndarray:
        k = img * n_cat + cat
        pos = np.searchsorted(pkey, k)
        pos_c = np.minimum(pos, max(len(pkey) - 1, 0))
        hit = (pos < len(pkey)) & (pkey[pos_c] == k) if len(pkey) else np.zeros(len(k), bool)
        return np.where(hit, pos, -1)

    return Units(p_img, lookup(gt.img, gt.cat), lookup(dt.img, dt.cat))


def image_groups(gt: GroundTruth, field: str) -> dict[str, np.ndarray]:
    """Image masks by the value of an image field (``source``/``domain``), sorted by value."""
    if field not in IMAGE_FIELDS:
        raise TinysetError(f"--by must be one of {', '.join(IMAGE_FIELDS)}, got {field!r}")
    values = ["(none)" if v is None else str(v) for v in gt.image_fields[field]]
    arr = np.asarray(values, dtype=object)
    return {v: arr == v for v in sorted(set(values))}
