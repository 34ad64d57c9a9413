"""Pascal VOC XML: one file per image with ``<size>`` and ``<object>`` records.

Read by LS-SSDD, SCUT-HEAD, Pest24 and SIRST (its ``bboxes`` XML). Every file is parsed with
:mod:`defusedxml`, which refuses entity declarations (the "billion laughs" expansion) and external
references: annotation files come from the internet.

Sample (LabelImg output, the tool most VOC-style datasets were drawn with)::

    <annotation><filename>11_3_14.jpg</filename>
     <size><width>800</width><height>800</height><depth>3</depth></size>
     <object><name>ship</name><difficult>0</difficult>
      <bndbox><xmin>402</xmin><ymin>118</ymin><xmax>411</xmax><ymax>126</ymax></bndbox></object>
    </annotation>

Coordinates: :func:`voc_xywh` converts ``<bndbox>`` to ``[x, y, w, h]`` in one of two
conventions, chosen per source. ``corners`` (LabelImg, torchvision, mmdetection): the numbers are
the rectangle's corners, ``w = xmax - xmin``. ``inclusive``: they are the first and last pixel
*indices* a target covers, ``w = xmax - xmin + 1`` (SIRST v2, whose boxes are tight mask extents:
``71..73`` is a 3-pixel target).

Quirks the reader tolerates: ``<filename>`` without an extension (SIRST v2, Pest24), objects
without ``<bndbox>`` (SIRST v2 background images; returned with ``xyxy=None``), missing
``<difficult>`` (false), sizes written as ``800.0``, and files with no ``<object>`` (empty images).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

from tinyset_builder.boxes import XYWH
from tinyset_builder.errors import ErrorPolicy, where

BOX_TAGS = ("xmin", "ymin", "xmax", "ymax")
_OBJECT_TAG = re.compile(rb"<object[\s>]")


@dataclass(frozen=True, slots=True)
class VocObject:
    """One ``<object>``; ``location`` names the file, line and object number for errors."""

    name: str
    xyxy: tuple[float, float, float, float] | None
    difficult: bool = False
    truncated: bool = False
    location: str = ""


@dataclass(frozen=True, slots=True)
class VocAnnotation:
    """One parsed file. ``width``/``height``/``depth`` are ``None`` when absent or zero."""

    path: Path
    filename: str
    folder: str
    width: int | None
    height: int | None
    depth: int | None
    objects: tuple[VocObject, ...]


def read_voc_xml(path: Path, policy: ErrorPolicy) -> VocAnnotation | None:
    """Parse one VOC XML file; returns ``None`` if the whole file is bad (reported via ``policy``).

    A bad object (no name, a non-numeric coordinate) is reported and left out; the rest of the
    file is kept.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        policy.fail(str(path), f"cannot read annotation file ({e.__class__.__name__})")
        return None
    try:
        root = fromstring(data)
    except ParseError as e:
        line, col = getattr(e, "position", (0, 0))
        policy.fail(where(path, line), f"malformed XML (column {col})")
        return None
    except DefusedXmlException as e:
        policy.fail(str(path), f"unsafe XML refused ({e.__class__.__name__})")
        return None
    if root.tag != "annotation":
        policy.fail(str(path), f"root element is <{root.tag}>, expected <annotation>")
        return None
    size = root.find("size")
    dims: list[int | None] = []
    for tag in ("width", "height", "depth"):
        text = size.findtext(tag) if size is not None else None
        value = _number(text)
        if text is not None and text.strip() and (value is None or value != int(value)):
            policy.fail(where(path, f"size/{tag}"), f"not an integer: {text!r}")
            return None
        dims.append(int(value) if value else None)
    lines = [data.count(b"\n", 0, m.start()) + 1 for m in _OBJECT_TAG.finditer(data)]
    objects = []
    for k, obj in enumerate(root.iter("object"), start=1):
        line = lines[k - 1] if k <= len(lines) else "?"
        loc = where(path, f"{line} (object {k})")
        parsed = _parse_object(obj, loc, policy)
        if parsed is not None:
            objects.append(parsed)
    return VocAnnotation(path=path, filename=(root.findtext("filename") or "").strip(),
                         folder=(root.findtext("folder") or "").strip(), width=dims[0],
                         height=dims[1], depth=dims[2], objects=tuple(objects))


def _parse_object(obj: Any, loc: str, policy: ErrorPolicy) -> VocObject | None:
    name = (obj.findtext("name") or "").strip()
    if not name:
        policy.fail(loc, "object without <name>")
        return None
    flags = []
    for tag in ("difficult", "truncated"):
        text = obj.findtext(tag)
        value = _number(text) if text is not None and text.strip() else 0.0
        if value not in (0.0, 1.0):
            policy.fail(loc, f"<{tag}> must be 0 or 1, got {text!r}")
            return None
        flags.append(bool(value))
    box = obj.find("bndbox")
    xyxy = None
    if box is not None:
        values = []
        for tag in BOX_TAGS:
            text = box.findtext(tag)
            v = _number(text)
            if v is None:
                policy.fail(loc, f"bndbox <{tag}> is not a number: {text!r}")
                return None
            values.append(v)
        xyxy = (values[0], values[1], values[2], values[3])
    return VocObject(name=name, xyxy=xyxy, difficult=flags[0], truncated=flags[1], location=loc)


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        v = float(text.strip())
    except ValueError:
        return None
    return v if v == v and abs(v) != float("inf") else None


def voc_xywh(xyxy: Sequence[float], *, inclusive: bool = False) -> XYWH:
    """``<bndbox>`` → ``[x, y, w, h]`` (see the module docstring for the two conventions)."""
    x0, y0, x1, y1 = xyxy
    extra = 1.0 if inclusive else 0.0
    return (x0, y0, x1 - x0 + extra, y1 - y0 + extra)


def format_voc_xml(filename: str, width: int, height: int, objects: Sequence[VocObject], *,
                   depth: int = 3, folder: str = "", declaration: bool = False,
                   indent: str = "\t") -> str:
    """One VOC XML file in LabelImg's layout (the synthesizers' single definition of the format).

    Objects with ``xyxy=None`` are written without ``<bndbox>``; numbers that are whole are written
    as integers, as the real files do.
    """
    i1, i2, i3 = indent, indent * 2, indent * 3
    out = ["<?xml version='1.0' encoding='UTF-8'?>"] if declaration else []
    out.append("<annotation>")
    if folder:
        out.append(f"{i1}<folder>{escape(folder)}</folder>")
    out += [f"{i1}<filename>{escape(filename)}</filename>", f"{i1}<size>",
            f"{i2}<width>{width}</width>", f"{i2}<height>{height}</height>",
            f"{i2}<depth>{depth}</depth>", f"{i1}</size>", f"{i1}<segmented>0</segmented>"]
    for obj in objects:
        out += [f"{i1}<object>", f"{i2}<name>{escape(obj.name)}</name>",
                f"{i2}<pose>Unspecified</pose>",
                f"{i2}<truncated>{int(obj.truncated)}</truncated>",
                f"{i2}<difficult>{int(obj.difficult)}</difficult>"]
        if obj.xyxy is not None:
            out.append(f"{i2}<bndbox>")
            out += [f"{i3}<{t}>{_fmt(v)}</{t}>" for t, v in zip(BOX_TAGS, obj.xyxy, strict=True)]
            out.append(f"{i2}</bndbox>")
        out.append(f"{i1}</object>")
    out.append("</annotation>")
    return "\n".join(out) + "\n"


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))
