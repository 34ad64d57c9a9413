"""COCO GT and results files into NumPy columns: msgspec typed decoding, read in bounded chunks.

``json.load`` builds a Python dict per box, and that was most of an evaluation's time and memory
(a 600k-box file; 10 M detections took 9.5 GiB). Here each file is decoded by msgspec into
:class:`msgspec.Struct` records holding only the fields the evaluator uses, and the records are
turned into NumPy columns at once. msgspec parses numbers with correct rounding, so every float
equals what ``float()`` gives for the same text (``tests/benchmark/test_eval_cocojson.py``).

Big arrays are never decoded whole. A results list is read from the file in pieces of about
:data:`CHUNK_BYTES`, each cut just before a record (at ``}`` ``,`` ``{``) and decoded as a JSON
array of its own; the GT file is decoded once with its ``annotations`` kept raw
(:class:`msgspec.Raw`, no objects) and that array is read in the same pieces. Only one piece's
records exist as Python objects at any time.

Where the standard :mod:`json` is still used (a piece at a time, never a whole results list):

* a piece msgspec rejects as malformed JSON: either the cut fell inside a record (a nested
  ``}, {`` in some extra field; then the piece is grown to the next cut) or the text uses
  Python's JSON extensions ``NaN``/``Infinity``, which msgspec refuses and ``json`` reads;
* a piece msgspec rejects by type (a string score, a missing key, a huge integer): ``json`` reads
  it so the caller's record-by-record checks can name the first bad record exactly as before;
* a GT file whose top level msgspec rejects (then the whole GT goes through ``json``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter
from typing import Any

import msgspec
import numpy as np

#: Bytes of JSON decoded at a time (about 100k-200k records).
CHUNK_BYTES = 16 << 20

Box = tuple[float, float, float, float]


class _Image(msgspec.Struct, gc=False):
    id: int
    source: Any = None
    domain: Any = None


class _Category(msgspec.Struct, gc=False):
    id: int


class _GtFile(msgspec.Struct, gc=False):
    images: list[_Image]
    categories: list[_Category]
    annotations: msgspec.Raw


class _Annotation(msgspec.Struct, gc=False):
    id: int
    image_id: int
    category_id: int
    bbox: Box
    area: float | None = None
    iscrowd: bool | int = 0


class _Detection(msgspec.Struct, gc=False):
    image_id: int
    category_id: int
    bbox: Box
    score: float
    id: Any = None


class _Wrapped(msgspec.Struct, gc=False):
    annotations: msgspec.Raw


_ANN_DECODER = msgspec.json.Decoder(list[_Annotation])
_DET_DECODER = msgspec.json.Decoder(list[_Detection])
_WS = b" \t\r\n"


class NotAnArray(ValueError):
    """The value where a JSON array was expected is something else."""


class RecordRefused(ValueError):
    """msgspec refused a record's type that the ``json`` path let through (e.g. ``"0.5"``).

    Attributes:
        index: the record's position in the array; field: the key, or "" for the record.
    """

    def __init__(self, index: int, field: str, reason: str) -> None:
        super().__init__(reason)
        self.index, self.field, self.reason = index, field, reason


@dataclass
class GtHead:
    """The small GT lists, and the ``annotations`` array still as bytes."""

    images: list[dict[str, Any]] | list[_Image]
    categories: list[dict[str, Any]] | list[_Category]
    annotations: Any  # msgspec.Raw (bytes-like), or a list of dicts on the json path


def read_gt_head(path: str | os.PathLike[str]) -> GtHead | dict[str, Any] | Any:
    """The GT file's images and categories, with its annotations undecoded.

    Returns a :class:`GtHead`, or the whole file as ``json`` reads it when msgspec refuses the
    top level (the caller's checks then explain what is wrong with it).
    """
    from tinyset_builder.io import read_json

    with open(path, "rb") as f:
        data = f.read()
    try:
        top = msgspec.json.decode(data, type=_GtFile)
    except msgspec.DecodeError:
        del data
        return read_json(path)  # json's reading, or its one-line error naming the line
    return GtHead(top.images, top.categories, top.annotations)


def image_columns(images: list[_Image]) -> tuple[list[int], list[Any], list[Any]]:
    """``id``, ``source`` and ``domain`` of each image."""
    return ([i.id for i in images], [i.source for i in images], [i.domain for i in images])


class ByteReader:
    """Forward reads from a binary file or from an in-memory buffer."""

    def __init__(self, f: Any = None, buf: Any = None) -> None:
        self._f = f
        self._mv = memoryview(buf).cast("B") if buf is not None else None
        self._pos = 0

    def read(self, n: int) -> bytes:
        if self._f is not None:
            return self._f.read(n)
        assert self._mv is not None
        out = bytes(self._mv[self._pos:self._pos + n])
        self._pos += len(out)
        return out


def _last_cut(buf: bytearray) -> int:
    """Index of the last ``,`` that separates two records (``}`` ws ``,`` ws ``{``), or -1."""
    end = len(buf)
    while True:
        o = buf.rfind(b"{", 0, end)
        if o <= 0:
            return -1
        j = o - 1
        while j >= 0 and buf[j] in _WS:
            j -= 1
        if j > 0 and buf[j] == 44:  # ','
            k = j - 1
            while k >= 0 and buf[k] in _WS:
                k -= 1
            if k >= 0 and buf[k] == 125:  # '}'
                return j
        end = o


def array_pieces(reader: ByteReader, chunk_bytes: int | None = None
                 ) -> Iterator[tuple[bytes, bool, Callable[[], None]]]:
    """Pieces of one JSON array, each a JSON array of whole records: ``(piece, last, grow)``.

    Call ``grow()`` before taking the next piece when a piece did not decode: the cut may have
    fallen inside a record, and the same bytes come back with more behind them. The last piece
    holds the array's own closing bracket and whatever follows it.

    Raises:
        NotAnArray: the value does not start with ``[``.
    """
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    pending = bytearray()
    while True:  # skip whitespace up to the opening bracket
        b = reader.read(4096)
        if not b:
            raise NotAnArray
        pending += b
        stripped = pending.lstrip(_WS)
        if stripped:
            if stripped[:1] != b"[":
                raise NotAnArray
            pending = bytearray(stripped[1:])
            break
        pending.clear()
    eof = False
    want = chunk_bytes
    grown = [False]

    def grow() -> None:
        grown[0] = True

    while True:
        while not eof and len(pending) < want:
            b = reader.read(want - len(pending))
            if b:
                pending += b
            else:
                eof = True
        cut = -1 if eof else _last_cut(pending)
        if not eof and cut < 0:
            want = 2 * len(pending)
            continue
        piece = b"[" + (bytes(pending) if eof else bytes(pending[:cut]) + b"]")
        grown[0] = False
        yield piece, eof, grow
        if eof:
            return
        if grown[0]:
            want = 2 * len(pending)
            continue
        del pending[:cut + 1]
        want = chunk_bytes


def _column(recs: list[Any], name: str, dtype: type) -> np.ndarray:
    return np.fromiter(map(attrgetter(name), recs), dtype, len(recs))


def _box_column(recs: list[Any]) -> np.ndarray:
    flat = chain.from_iterable(map(attrgetter("bbox"), recs))
    return np.fromiter(flat, np.float64, 4 * len(recs)).reshape(len(recs), 4)


def annotation_columns(recs: list[_Annotation]) -> dict[str, np.ndarray]:
    """GT columns of decoded records (raises OverflowError for ids past int64)."""
    box = _box_column(recs)
    # fromiter reads an absent area (None) as NaN, which msgspec itself never yields
    area = _column(recs, "area", np.float64)
    missing = np.isnan(area)
    if missing.any():  # w * h, as the json path computes it
        area[missing] = box[missing, 2] * box[missing, 3]
    return {"id": _column(recs, "id", np.int64), "image_id": _column(recs, "image_id", np.int64),
            "category_id": _column(recs, "category_id", np.int64), "bbox": box, "area": area,
            "iscrowd": _column(recs, "iscrowd", np.int64)}


def detection_columns(recs: list[_Detection]) -> dict[str, Any]:
    """Detection columns of decoded records; ``id``: the ids, or None if the first has none."""
    out: dict[str, Any] = {"image_id": _column(recs, "image_id", np.int64),
                           "category_id": _column(recs, "category_id", np.int64),
                           "bbox": _box_column(recs), "score": _column(recs, "score", np.float64)}
    out["id"] = [r.id for r in recs] if recs and recs[0].id is not None else None
    return out


def _decode_piece(piece: bytes, base: int, decoder: msgspec.json.Decoder,
                  columns: Callable[[list[Any]], dict[str, Any]],
                  slow: Callable[[list[Any], int], dict[str, Any]]
                  ) -> tuple[dict[str, Any], int] | None:
    """Columns and record count of one piece, or None if the piece is not JSON as cut."""
    refused: msgspec.ValidationError | None = None
    try:
        recs = decoder.decode(piece)
    except msgspec.ValidationError as e:  # a type error: the record checks name the record
        refused = e
    except msgspec.DecodeError:  # NaN / Infinity, or a cut inside a record
        pass
    else:
        try:
            return columns(recs), len(recs)
        except OverflowError:  # an integer past int64: the record checks name it
            pass
    try:
        objs = json.loads(piece)
    except ValueError:
        return None
    cols = slow(objs, base)
    if refused is not None:  # the json path is laxer (numeric strings, booleans as ints)
        raise _refusal(refused, base)
    return cols, len(objs)


def _refusal(e: msgspec.ValidationError, base: int) -> RecordRefused:
    """``Expected `float`, got `str` - at `$[3].score` `` → record 3 + base, field ``score``."""
    msg = str(e)
    reason, _, where = msg.rpartition(" - at `")
    where = where.rstrip("`")
    index, field = 0, ""
    if where.startswith("$["):
        head, _, rest = where[2:].partition("]")
        index = int(head) if head.isdigit() else 0
        field = rest.lstrip(".")
    return RecordRefused(base + index, field, reason or msg)


def decode_pieces(reader: ByteReader, decoder: msgspec.json.Decoder,
                  columns: Callable[[list[Any]], dict[str, Any]],
                  slow: Callable[[list[Any], int], dict[str, Any]],
                  chunk_bytes: int | None = None) -> Iterator[dict[str, Any]]:
    """Columns of each piece of a JSON array of records, in order.

    ``slow(records, first_index)`` builds the columns of a piece from ``json``'s dicts and
    raises the one-line error naming the record when one is bad.

    Raises:
        NotAnArray: the value is not an array.
        json.JSONDecodeError: the array is not valid JSON (not even for ``json``).
    """
    base = 0
    for piece, last, grow in array_pieces(reader, chunk_bytes):
        got = _decode_piece(piece, base, decoder, columns, slow)
        if got is None:
            if last:
                json.loads(piece)  # raises the JSON error
            grow()
            continue
        cols, n = got
        base += n
        yield cols


def read_annotations(raw: Any, slow: Callable[[list[Any], int], dict[str, Any]],
                     chunk_bytes: int | None = None) -> Iterator[dict[str, Any]]:
    """Columns of the GT ``annotations`` array (raw bytes from :func:`read_gt_head`), by piece."""
    return decode_pieces(ByteReader(buf=raw), _ANN_DECODER, annotation_columns, slow,
                         chunk_bytes)


def read_results(path: str | os.PathLike[str], slow: Callable[[list[Any], int], dict[str, Any]],
                 chunk_bytes: int | None = None) -> Iterator[dict[str, Any]]:
    """Columns of a COCO results file (a list, or an object with an ``annotations`` list).

    Raises:
        NotAnArray: neither form.
    """
    with open(path, "rb") as f:
        head = f.read(4096).lstrip(_WS)[:1]
        f.seek(0)
        if head == b"{":
            data = f.read()
            try:
                raw = msgspec.json.decode(data, type=_Wrapped).annotations
            except msgspec.DecodeError:
                obj = json.loads(data)
                if not isinstance(obj, dict) or not isinstance(obj.get("annotations"), list):
                    raise NotAnArray from None
                yield slow(obj["annotations"], 0)
                return
            del data
            yield from decode_pieces(ByteReader(buf=raw), _DET_DECODER, detection_columns,
                                     slow, chunk_bytes)
            return
        yield from decode_pieces(ByteReader(f), _DET_DECODER, detection_columns, slow,
                                 chunk_bytes)


__all__ = ["CHUNK_BYTES", "ByteReader", "GtHead", "NotAnArray", "RecordRefused",
           "annotation_columns",
           "array_pieces", "decode_pieces", "detection_columns", "image_columns",
           "read_annotations", "read_gt_head", "read_results"]
