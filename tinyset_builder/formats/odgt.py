"""CrowdHuman ``.odgt``: one JSON object per line, one line per image.

``{"ID": "<image name without .jpg>", "gtboxes": [<gtbox>, ...]}``; each gtbox has

- ``tag``: ``"person"``, or ``"mask"`` for crowds, reflections, posters and other non-human
  regions to ignore (these carry ``extra.ignore = 1``);
- ``fbox`` (full body, may extend outside the image, even to negative coordinates), ``vbox``
  (visible body) and ``hbox`` (head), each ``[x, y, w, h]`` in pixels;
- ``head_attr``: ``{ignore, occ, unsure}``; the head box is invalid when ``ignore == 1``;
- ``extra``: ``{box_id, occ, ignore?, unsure?}``; ``ignore == 1`` means ignore the person.

Image IDs contain commas (``283554,35288000868e92d4``), so nothing here splits on them.

Sample (shortened from CrowdHuman's ``annotation_train.odgt``)::

    {"ID": "283554,35288000868e92d4", "gtboxes": [{"tag": "person", "hbox": [1482, 380, 154,
     178], "head_attr": {"ignore": 0, "occ": 0, "unsure": 0}, "fbox": [1330, 317, 418, 1338],
     "vbox": [1355, 323, 381, 1033], "extra": {"box_id": 0, "occ": 1}}]}
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinyset_builder.errors import ErrorPolicy, where
from tinyset_builder.formats.text import read_lines

BOX_KEYS = ("fbox", "vbox", "hbox")


@dataclass(frozen=True, slots=True)
class OdgtBox:
    """One gtbox: its tag, whichever of ``fbox``/``vbox``/``hbox`` it has, and its flags."""

    location: str
    tag: str
    boxes: Mapping[str, tuple[float, float, float, float]]
    ignore: bool
    head_ignore: bool
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: The head's own attributes (``ignore``, ``occ``, ``unsure``); ``extra`` is the body's.
    head_attr: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OdgtRecord:
    """One line: the image ``id`` (file stem) and its boxes; ``line`` is 1-based."""

    line: int
    id: str
    boxes: list[OdgtBox]


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _flag(d: object, key: str) -> bool:
    return isinstance(d, Mapping) and d.get(key) in (1, True)


def _parse_box(raw: object, loc: str, policy: ErrorPolicy) -> OdgtBox | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("tag"), str):
        policy.fail(loc, f"gtbox must be an object with a 'tag', got {raw!r}")
        return None
    boxes = {}
    for key in BOX_KEYS:
        if key not in raw:
            continue
        b = raw[key]
        if not (isinstance(b, list) and len(b) == 4 and all(map(_is_number, b))):
            policy.fail(loc, f"{key} {b!r} is not four finite numbers")
            return None
        boxes[key] = (float(b[0]), float(b[1]), float(b[2]), float(b[3]))
    extra = raw.get("extra") if isinstance(raw.get("extra"), Mapping) else {}
    head_attr = raw.get("head_attr") if isinstance(raw.get("head_attr"), Mapping) else {}
    return OdgtBox(location=loc, tag=raw["tag"], boxes=boxes, ignore=_flag(extra, "ignore"),
                   head_ignore=_flag(head_attr, "ignore"), extra=dict(extra or {}),
                   head_attr=dict(head_attr or {}))


def read_odgt(path: Path, policy: ErrorPolicy) -> list[OdgtRecord]:
    """Parse an ``.odgt`` file; a bad line or gtbox goes through ``policy``.

    Raises:
        SourceError: the file does not exist.
    """
    records = []
    for lineno, text in read_lines(path, policy):
        loc = where(path, lineno)
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            policy.fail(loc, f"invalid JSON ({e.msg}, column {e.colno})")
            continue
        if not (isinstance(obj, dict) and isinstance(obj.get("ID"), str) and obj["ID"]
                and isinstance(obj.get("gtboxes"), list)):
            policy.fail(loc, "expected an object with a string 'ID' and a 'gtboxes' list")
            continue
        boxes = []
        for j, raw in enumerate(obj["gtboxes"]):
            box = _parse_box(raw, f"{loc} gtboxes[{j}]", policy)
            if box is not None:
                boxes.append(box)
        records.append(OdgtRecord(line=lineno, id=obj["ID"], boxes=boxes))
    return records


def odgt_gtbox(tag: str, fbox: Sequence[float], vbox: Sequence[float], hbox: Sequence[float],
               *, box_id: int | None = None, ignore: bool = False, head_ignore: bool = False,
               occ: int = 0, head_occ: int = 0) -> dict[str, Any]:
    """One gtbox dict in CrowdHuman's key order (``tag, hbox, head_attr, fbox, vbox, extra``);
    ``occ`` is the body's occlusion flag, ``head_occ`` the head's."""
    extra: dict[str, Any] = {}
    if box_id is not None:
        extra["box_id"] = box_id
        extra["occ"] = occ
    if ignore:
        extra["ignore"] = 1
    head_attr = {} if tag == "mask" else {"ignore": int(head_ignore), "occ": head_occ,
                                            "unsure": 0}
    return {"tag": tag, "hbox": list(hbox), "head_attr": head_attr, "fbox": list(fbox),
            "vbox": list(vbox), "extra": extra}


def format_odgt_line(image_id: str, gtboxes: Sequence[Mapping[str, Any]]) -> str:
    """One ``.odgt`` line (no newline), as the release writes it."""
    return json.dumps({"ID": image_id, "gtboxes": list(gtboxes)})
