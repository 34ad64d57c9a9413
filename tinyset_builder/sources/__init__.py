"""The 24 TinySet-9M sources: one explicit dict from manifest name to converter module.

The paper (section III) says it merged 23 datasets but names 24; every named one is here. Modules
are imported on demand by :func:`get_source`, so listing sources imports nothing heavy.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Protocol, cast

from tinyset_builder.coco import CocoDataset
from tinyset_builder.errors import ErrorPolicy, OnError, SourceError, TinysetError
from tinyset_builder.sources.base import SourceInfo, SynthSummary, load_info

#: manifest name -> module, in the paper's order (section III, by domain).
SOURCES: dict[str, str] = {
    # Satellite images
    "aitod_v2": "tinyset_builder.sources.aitod_v2",
    "soda_a": "tinyset_builder.sources.soda_a",
    "hrsid": "tinyset_builder.sources.hrsid",
    "irstd_1k": "tinyset_builder.sources.irstd_1k",
    "ls_ssdd": "tinyset_builder.sources.ls_ssdd",
    "sardet_100k": "tinyset_builder.sources.sardet_100k",
    "sirst": "tinyset_builder.sources.sirst",
    # Unmanned aerial vehicles
    "rgbt_tiny": "tinyset_builder.sources.rgbt_tiny",
    "visdrone": "tinyset_builder.sources.visdrone",
    # Daily-life scenarios
    "coco": "tinyset_builder.sources.coco",
    "crowdhuman": "tinyset_builder.sources.crowdhuman",
    "dfl": "tinyset_builder.sources.dfl",
    "jhu_crowd": "tinyset_builder.sources.jhu_crowd",
    "scut_head": "tinyset_builder.sources.scut_head",
    "sh17": "tinyset_builder.sources.sh17",
    "sku110k": "tinyset_builder.sources.sku110k",
    # Autonomous driving
    "soda_d": "tinyset_builder.sources.soda_d",
    "license_plate": "tinyset_builder.sources.license_plate",
    # Microscopic observation
    "livecell": "tinyset_builder.sources.livecell",
    "tyc": "tinyset_builder.sources.tyc",
    "visalgae": "tinyset_builder.sources.visalgae",
    # Agricultural monitoring
    "ir_wildlife": "tinyset_builder.sources.ir_wildlife",
    "pest24": "tinyset_builder.sources.pest24",
    "tacna_olive": "tinyset_builder.sources.tacna_olive",
}

#: Transfer targets (Tables III and VI): converted and built through the same framework, but never
#: part of TinySet: ``tinyset build`` and ``tinyset sources synth`` leave them out unless named
#: (``--sources dior``), so they go into an output of their own.
TARGETS: dict[str, str] = {
    "dior": "tinyset_builder.sources.dior",
    "dota_v2": "tinyset_builder.sources.dota_v2",
    "tinyperson": "tinyset_builder.sources.tinyperson",
}


class SourceModule(Protocol):
    """The two functions every source module defines (see :mod:`.base`)."""

    def convert(self, root: Path, info: SourceInfo, policy: ErrorPolicy) -> CocoDataset: ...

    def synthesize(self, root: Path, seed: int) -> SynthSummary: ...


def _known() -> str:
    return f"{', '.join(SOURCES)}; transfer targets: {', '.join(TARGETS)}"


def get_source(name: str) -> SourceModule:
    """Import the converter module of source (or transfer target) ``name``."""
    module_name = SOURCES.get(name) or TARGETS.get(name)
    if module_name is None:
        raise TinysetError(f"unknown source {name!r}; known: {_known()}")
    module: ModuleType = importlib.import_module(module_name)
    return cast(SourceModule, module)


def parse_source_names(spec: str | None) -> list[str]:
    """``"a,b"`` → ``["a", "b"]`` checked against :data:`SOURCES` and :data:`TARGETS`;
    ``None`` or ``"all"`` → the 24 TinySet sources (never the transfer targets)."""
    if spec is None or spec.strip() in ("", "all"):
        return list(SOURCES)
    names = [s.strip() for s in spec.split(",") if s.strip()]
    for n in names:
        if n not in SOURCES and n not in TARGETS:
            raise TinysetError(f"unknown source {n!r}; known: {_known()}")
    return names


@dataclass(frozen=True, slots=True)
class Conversion:
    """One converted source: its dataset and what was skipped or clipped on the way."""

    info: SourceInfo
    dataset: CocoDataset
    skipped: dict[str, int]
    examples: dict[str, str]
    counts: dict[str, int]


def convert_source(name: str, raw: Path, *, on_error: OnError = "raise") -> Conversion:
    """Convert ``raw/<name>/`` to a COCO dataset in original pixels.

    Raises:
        SourceError: the folder is missing, or (with ``on_error="raise"``) a record is bad.
    """
    info = load_info(name)
    root = Path(raw) / name
    if not root.is_dir():
        raise SourceError(f"{root}: source folder not found; `tinyset sources check` shows the "
                          f"expected layout and where to download {info.title}")
    policy = ErrorPolicy(on_error)
    module = get_source(name)
    dataset = module.convert(root, info, policy)
    dataset.validate()
    counts = dict(dataset.info.get("counts", {}))
    return Conversion(info=info, dataset=dataset, skipped=dict(policy.skipped),
                      examples=dict(policy.examples), counts=counts)


def synthesize_sources(out: Path, names: list[str] | None = None, *, seed: int = 0,
                       ) -> dict[str, SynthSummary]:
    """Write the miniature native copy of each source under ``out/<name>/``."""
    summaries = {}
    for i, name in enumerate(names or list(SOURCES)):
        summaries[name] = get_source(name).synthesize(Path(out) / name, seed + i)
    return summaries
