"""A small real TinySet build for the browse and publish tests.

Two synthetic sources in their native layouts (SIRST: masks, one category; CrowdHuman: odgt
with ignore regions), built by the real ``tinyset build`` pipeline: 12 images over the three
splits, about 300 annotations of which some are ignore regions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SOURCES = ("sirst", "crowdhuman")


def build_small(root: Path) -> Path:
    """Synthesize the sources under ``root/raw`` and build them into ``root/out``."""
    from tinyset_builder.build import build
    from tinyset_builder.sources import get_source

    raw, out = root / "raw", root / "out"
    for i, name in enumerate(SOURCES):
        get_source(name).synthesize(raw / name, i)
    build(raw, out, workers=1)
    return out


def load_split(out: Path, split: str) -> dict[str, Any]:
    """The build's COCO file of ``split`` as a plain dict."""
    return json.loads((out / "annotations" / f"{split}.json").read_text(encoding="utf-8"))
