"""Recognising a dataset that ``tinyset build`` wrote (the contract later stages rely on).

Every stage after the build (derive, benchmark, browse, publish) refuses a folder the toolkit did
not write, with one line saying what is wrong, rather than failing deep inside on a missing key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tinyset_builder.errors import TinysetError
from tinyset_builder.io import read_json

#: The ``"tool"`` value of ``build.json``: its presence marks a finished toolkit build.
TOOL = "tinyset-builder"


def load_build_record(out: Path) -> dict[str, Any]:
    """Return ``OUT/build.json``; refuse (one-line :class:`TinysetError`) any other folder."""
    out = Path(out)
    if not out.is_dir():
        raise TinysetError(f"{out}: dataset folder not found")
    path = out / "build.json"
    if not path.is_file():
        raise TinysetError(f"{out}: not a dataset built by tinyset (no build.json); "
                           f"build one with `tinyset build`")
    record = read_json(path)
    tool = record.get("tool") if isinstance(record, dict) else None
    if tool != TOOL:
        raise TinysetError(f"{path}: not written by {TOOL} (\"tool\" is {tool!r})")
    return record
