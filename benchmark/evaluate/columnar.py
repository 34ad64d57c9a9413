"""Detections as columns on disk: ``.npz`` (always) and Parquet (with pyarrow), beside COCO JSON.

A columnar file holds one column per field, all of the same length, in detection-list order:

=============== ============ ==========================================
column          dtype        meaning
=============== ============ ==========================================
``image_id``    integer      GT image id
``category_id`` integer      GT category id
``x y w h``     float64      the box, as COCO ``bbox`` ``[x, y, w, h]``
``score``       float64      confidence
=============== ============ ==========================================

It evaluates to exactly the same numbers as the COCO results JSON it was written from (floats are
stored as the float64 values JSON's shortest reprs denote). It is read in bounded memory (one
column, or one Parquet row group, at a time) and is about 56 B per detection instead of ~150.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tinyset_builder.errors import TinysetError

COLUMNS = ("image_id", "category_id", "x", "y", "w", "h", "score")
SUFFIXES = (".npz", ".parquet")
_INT_COLUMNS = ("image_id", "category_id")


def is_columnar(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a columnar detection file (by its suffix)."""
    return Path(path).suffix.lower() in SUFFIXES


def _check(name: str, arr: np.ndarray, n: int | None, label: str) -> np.ndarray:
    if arr.ndim != 1 or (n is not None and len(arr) != n):
        raise TinysetError(f"{label}: column {name!r} must be one-dimensional with one value per "
                           f"detection ({n} rows), got shape {arr.shape}")
    kinds = "iu" if name in _INT_COLUMNS else "fiu"
    if arr.dtype.kind not in kinds:
        need = "integers" if name in _INT_COLUMNS else "numbers"
        raise TinysetError(f"{label}: column {name!r} must hold {need}, got {arr.dtype}")
    if arr.dtype.kind == "u" and arr.size and arr.max() >= 2**63:
        i = int(np.flatnonzero(arr >= 2**63)[0])
        raise TinysetError(f"{label}: detection #{i}: {name} {arr[i]} is out of the 64-bit range")
    return arr.astype(np.int64 if name in _INT_COLUMNS else np.float64, copy=False)


def _assemble(get: Any, n: int, label: str) -> dict[str, Any]:
    """Detection columns (the JSON reader's layout) from ``get(name) -> 1-D array``."""
    cols: dict[str, Any] = {"bbox": np.empty((n, 4), np.float64), "id": None}
    for name in COLUMNS:
        arr = _check(name, np.asarray(get(name)), n, label)
        if name in "xywh":
            cols["bbox"][:, "xywh".index(name)] = arr
        else:
            cols[name] = arr
    return cols


def read_npz(path: str | os.PathLike[str], label: str) -> dict[str, Any]:
    """Columns of an ``.npz`` detection file (one array loaded at a time)."""
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise TinysetError(f"{label}: not a readable .npz file ({e})") from None
    with npz:
        missing = [c for c in COLUMNS if c not in npz.files]
        if missing:
            raise TinysetError(f"{label}: lacks column(s) {', '.join(map(repr, missing))} "
                               f"(needs {' '.join(COLUMNS)})")
        try:
            n = len(_check("score", npz["score"], None, label))
            return _assemble(lambda name: npz[name], n, label)
        except ValueError as e:  # e.g. an object array, which needs pickle
            raise TinysetError(f"{label}: {e}") from None


def read_parquet(path: str | os.PathLike[str], label: str) -> dict[str, Any]:
    """Columns of a Parquet detection file, read one row group at a time (needs pyarrow)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise TinysetError(f"{label}: reading Parquet needs pyarrow (pip install pyarrow), or "
                           f"write the detections as .npz or COCO JSON") from None
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises its own ArrowInvalid / OSError kinds
        raise TinysetError(f"{label}: not a readable Parquet file ({e})") from None
    names = set(pf.schema_arrow.names)
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise TinysetError(f"{label}: lacks column(s) {', '.join(map(repr, missing))} "
                           f"(needs {' '.join(COLUMNS)})")
    n = pf.metadata.num_rows
    cols: dict[str, Any] = {"bbox": np.empty((n, 4), np.float64), "id": None,
                            "image_id": np.empty(n, np.int64),
                            "category_id": np.empty(n, np.int64), "score": np.empty(n)}
    at = 0
    for g in range(pf.num_row_groups):
        table = pf.read_row_group(g, columns=list(COLUMNS))
        m = table.num_rows
        for name in COLUMNS:
            col = table.column(name)
            if col.null_count:
                raise TinysetError(f"{label}: column {name!r} has null values")
            arr = _check(name, col.to_numpy(), m, label)
            if name in "xywh":
                cols["bbox"][at:at + m, "xywh".index(name)] = arr
            else:
                cols[name][at:at + m] = arr
        at += m
        del table
    return cols


def read_columnar(path: str | os.PathLike[str], label: str) -> dict[str, Any]:
    """Detection columns of an ``.npz`` or ``.parquet`` file."""
    if Path(path).suffix.lower() == ".npz":
        return read_npz(path, label)
    return read_parquet(path, label)


def results_to_columns(results: Iterable[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """COCO results records as the columns of :data:`COLUMNS`."""
    recs = list(results)
    n = len(recs)
    box = np.array([r["bbox"] for r in recs], np.float64).reshape(n, 4)
    return {"image_id": np.array([r["image_id"] for r in recs], np.int64).reshape(n),
            "category_id": np.array([r["category_id"] for r in recs], np.int64).reshape(n),
            "x": box[:, 0].copy(), "y": box[:, 1].copy(), "w": box[:, 2].copy(),
            "h": box[:, 3].copy(), "score": np.array([r["score"] for r in recs],
                                                     np.float64).reshape(n)}


def write_npz(path: str | os.PathLike[str], columns: Mapping[str, np.ndarray]) -> Path:
    """Write the columns as an uncompressed ``.npz``, atomically and byte-reproducibly.

    ``numpy.savez`` stamps each member with the current time; here every member gets the same
    fixed zip date, so equal detections give equal bytes.
    """
    from tinyset_builder.io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED,
                                                   allowZip64=True) as zf:
        for name in COLUMNS:
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(columns[name]),
                                          allow_pickle=False)
    return path


__all__ = ["COLUMNS", "SUFFIXES", "is_columnar", "read_columnar", "read_npz", "read_parquet",
           "results_to_columns", "write_npz"]
