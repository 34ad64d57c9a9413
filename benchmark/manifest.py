"""The methods manifest (``manifests/methods.toml``): the paper's 39 Table I rows plus DEAL.

Each ``[[methods]]`` entry is parsed into a frozen :class:`Method` and validated: known paradigm,
a setting that belongs to that paradigm, a known adapter (or an explicit ``module:Class``), a
schedule in the paper's notation (``1x`` = 3 epochs) and, when present, all seven paper metrics.
Errors are one line naming the file and the entry.

Example:
    >>> from benchmark.manifest import load_methods
    >>> [m.id for m in load_methods().select(paradigm="semi")][:3]
    ['15', '16', '17']
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from tinyset_builder.errors import TinysetError

#: The manifest shipped with the toolkit.
DEFAULT_MANIFEST = Path(__file__).resolve().parents[1] / "manifests" / "methods.toml"

#: The seven metric columns of the paper's Tables I and II, in print order.
PAPER_METRICS = ("AP25", "AP50", "AP75", "APvt", "APt", "APs", "APm")

#: One epoch count per "1x" of the paper's schedule notation.
EPOCHS_PER_1X = 3

#: Paradigm -> the settings a row of that paradigm may use (DESIGN.md's setting names, plus
#: ``full`` = the plain train split and ``zero-shot`` = no training data at all).
PARADIGM_SETTINGS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "full": ("full",),
    "noise": ("noise-20", "noise-40"),
    "semi": ("semi-1", "semi-5", "semi-10"),
    "sparse": ("shot-1", "shot-3", "shot-5"),
    "weak": ("points-center",),
    "zero-shot": ("zero-shot", "p2sod-1", "p2sod-2", "p2sod-3", "p2sod-4"),
    "p2sod": ("p2sod-1", "p2sod-2", "p2sod-3", "p2sod-4"),
    # DEAL's ablation rows (Tables IV(a)-(d), laid out by manifests/studies.toml); not in "all".
    "deal-studies": ("p2sod-1", "p2sod-2", "p2sod-3", "p2sod-4"),
    # Transfer rows of Tables III and VI (adapters/transfer.py, run on a target build); not in
    # "all": they need a target dataset and a TinySet build to pre-train on.
    "transfer": ("full", "p2sod-1"),
})

#: How the paper names each paradigm's block in Table I.
PARADIGM_TITLES: Mapping[str, str] = MappingProxyType({
    "full": "fully-supervised", "noise": "label noise", "semi": "semi-supervised",
    "sparse": "sparse-shot", "weak": "weakly-supervised", "zero-shot": "zero-shot",
    "p2sod": "point-prompted (P2SOD)", "deal-studies": "DEAL studies (Table IV)",
    "transfer": "transfer (Tables III, VI)",
})
#: Paradigms that ``select(paradigm="all")`` leaves out (study rows, not the paper's Tables I/II).
STUDY_PARADIGMS = ("deal-studies", "transfer")

KNOWN_ADAPTERS = ("torchvision", "ultralytics", "mmdet", "external", "zeroshot", "deal", "native")
_SCHEDULE = re.compile(r"^(\d+(?:\.\d+)?)x$")
_REQUIRED = ("id", "name", "paradigm", "setting", "backbone", "schedule", "adapter")
_OPTIONAL = ("alternatives", "table2", "repo", "framework", "licence", "note", "options", "paper")


@dataclass(frozen=True, slots=True, kw_only=True)
class Method:
    """One manifest entry (one row of the paper's tables, or an extra baseline).

    Attributes:
        id: ``"1"`` … ``"39"`` for Table I rows (the paper's ids), else a slug (``"deal"``).
        name: the method's name as the paper prints it (official spelling).
        paradigm: ``full``, ``noise``, ``semi``, ``sparse``, ``weak``, ``zero-shot`` or ``p2sod``.
        setting: the derived dataset variant the row trains/predicts on (e.g. ``semi-5``).
        backbone: as printed in the paper (``ResNet-50``, ``ViT``, ``Swin-T``).
        schedule: the paper's notation, ``"1x"`` = 3 epochs; ``"0x"`` = no training.
        adapter: a name of ``adapters.ADAPTERS`` or ``"module:Class"``.
        alternatives: other adapters able to run this row (chosen with ``--adapter``).
        options: adapter options, read by the adapter.
        paper: the paper's seven metrics (``AP25`` … ``APm``), empty if the paper has none.
        table2: the Table II group this row also appears in, if any.
        repo, framework, licence, note: provenance shown in docs and reports.
    """

    id: str
    name: str
    paradigm: str
    setting: str
    backbone: str
    schedule: str
    adapter: str
    alternatives: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    paper: Mapping[str, float] = field(default_factory=dict)
    table2: str | None = None
    repo: str = ""
    framework: str = ""
    licence: str = ""
    note: str = ""

    @property
    def row(self) -> int | None:
        """The paper's Table I id as an int, or None for rows outside Table I."""
        return int(self.id) if self.id.isdigit() else None

    @property
    def schedule_factor(self) -> float:
        """The ``N`` of ``Nx``."""
        m = _SCHEDULE.match(self.schedule)
        assert m is not None  # validated at load
        return float(m.group(1))

    @property
    def epochs(self) -> float:
        """Training epochs of the paper's schedule (``1x`` = 3 epochs)."""
        return self.schedule_factor * EPOCHS_PER_1X

    def with_adapter(self, adapter: str) -> Method:
        """This row run through ``adapter`` (must be the default or one of the alternatives)."""
        if adapter == self.adapter:
            return self
        if adapter not in self.alternatives:
            known = ", ".join((self.adapter, *self.alternatives))
            raise TinysetError(f"method {self.id} ({self.name}) cannot run with adapter "
                               f"{adapter!r}; it lists: {known}")
        return replace(self, adapter=adapter)

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping (for :class:`adapters.base.Job` and the results store)."""
        return {"id": self.id, "name": self.name, "paradigm": self.paradigm,
                "setting": self.setting, "backbone": self.backbone, "schedule": self.schedule,
                "epochs": self.epochs, "adapter": self.adapter,
                "alternatives": list(self.alternatives), "options": dict(self.options),
                "paper": dict(self.paper), "table2": self.table2}


@dataclass(frozen=True, slots=True)
class Manifest:
    """All methods of one manifest file, in file order."""

    path: Path
    methods: tuple[Method, ...]

    def __iter__(self) -> Iterator[Method]:
        return iter(self.methods)

    def __len__(self) -> int:
        return len(self.methods)

    def get(self, method_id: str) -> Method:
        """The method with ``method_id``; a one-line error listing close ids otherwise."""
        for m in self.methods:
            if m.id == method_id:
                return m
        raise TinysetError(f"unknown method {method_id!r} in {self.path} "
                           f"(ids: {', '.join(m.id for m in self.methods)})")

    def select(self, *, paradigm: str | None = None,
               ids: Sequence[str] | None = None) -> list[Method]:
        """Methods of ``paradigm`` (``None`` or ``"all"`` = every paradigm but the
        study rows), restricted to ``ids``.

        Raises:
            TinysetError: unknown paradigm, unknown id, or an id outside the paradigm.
        """
        if paradigm not in (None, "all") and paradigm not in PARADIGM_SETTINGS:
            raise TinysetError(f"unknown paradigm {paradigm!r}; choose one of: all, "
                               f"{', '.join(PARADIGM_SETTINGS)}")
        chosen = [m for m in self.methods if m.paradigm == paradigm
                  or (paradigm in (None, "all") and m.paradigm not in STUDY_PARADIGMS)]
        if ids is None:
            return chosen
        wanted = [self.get(i) for i in ids]  # unknown ids raise here
        outside = [m.id for m in wanted if m not in chosen]
        if outside:
            raise TinysetError(f"method(s) {', '.join(outside)} are not in paradigm {paradigm!r}")
        return wanted


def _str(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry[key]
    if not isinstance(value, str) or not value:
        raise TinysetError(f"{where}: {key} must be a non-empty string, got {value!r}")
    return value


def parse_method(entry: Mapping[str, Any], where: str) -> Method:
    """Validate one ``[[methods]]`` table; ``where`` names it in error messages."""
    missing = [k for k in _REQUIRED if k not in entry]
    if missing:
        raise TinysetError(f"{where}: missing {', '.join(missing)}")
    unknown = sorted(set(entry) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise TinysetError(f"{where}: unknown field(s) {', '.join(unknown)}")
    values = {k: _str(entry, k, where) for k in _REQUIRED}
    where = f"{where} (id {values['id']})"
    paradigm, setting = values["paradigm"], values["setting"]
    if paradigm not in PARADIGM_SETTINGS:
        raise TinysetError(f"{where}: unknown paradigm {paradigm!r}")
    if setting not in PARADIGM_SETTINGS[paradigm]:
        raise TinysetError(f"{where}: setting {setting!r} is not a {paradigm} setting "
                           f"({', '.join(PARADIGM_SETTINGS[paradigm])})")
    if not _SCHEDULE.match(values["schedule"]):
        raise TinysetError(f"{where}: schedule must look like '1x' or '1.5x', "
                           f"got {values['schedule']!r}")
    alternatives = tuple(entry.get("alternatives", ()))
    for name in (values["adapter"], *alternatives):
        if name not in KNOWN_ADAPTERS and ":" not in name:
            raise TinysetError(f"{where}: unknown adapter {name!r} "
                               f"({', '.join(KNOWN_ADAPTERS)}, or 'module:Class')")
    options = entry.get("options", {})
    if not isinstance(options, Mapping):
        raise TinysetError(f"{where}: options must be a table")
    paper = entry.get("paper", {})
    if paper:
        if set(paper) != set(PAPER_METRICS):
            raise TinysetError(f"{where}: paper must hold exactly {', '.join(PAPER_METRICS)}")
        for k, v in paper.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 100:
                raise TinysetError(f"{where}: paper.{k} must be a number in [0, 100], got {v!r}")
    return Method(**values, alternatives=alternatives,
                  options=MappingProxyType(dict(options)),
                  paper=MappingProxyType({k: float(paper[k]) for k in PAPER_METRICS if k in paper}),
                  table2=entry.get("table2"), repo=entry.get("repo", ""),
                  framework=entry.get("framework", ""), licence=entry.get("licence", ""),
                  note=entry.get("note", ""))


def load_methods(path: str | Path | None = None) -> Manifest:
    """Load and validate a methods manifest (default: the toolkit's ``manifests/methods.toml``).

    Raises:
        TinysetError: unreadable TOML, a bad entry, or duplicate ids (one line each).
    """
    path = Path(path) if path is not None else DEFAULT_MANIFEST
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TinysetError(f"{path}: methods manifest not found") from None
    except tomllib.TOMLDecodeError as e:
        raise TinysetError(f"{path}: invalid TOML ({e})") from None
    entries = data.get("methods")
    if not isinstance(entries, list) or not entries:
        raise TinysetError(f"{path}: no [[methods]] entries")
    methods = tuple(parse_method(e, f"{path}: methods[{i}]") for i, e in enumerate(entries))
    _unique_ids(path, methods)
    return Manifest(path, methods)


def _unique_ids(path: Path, methods: Iterable[Method]) -> None:
    seen: set[str] = set()
    for m in methods:
        if m.id in seen:
            raise TinysetError(f"{path}: duplicate method id {m.id!r}")
        seen.add(m.id)
