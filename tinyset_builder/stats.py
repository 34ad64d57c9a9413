"""``tinyset stats OUT``: the statistics of the paper's Fig. 2, as tables and figures.

From a built dataset's ``annotations/<split>.json`` files this writes, into ``OUT/stats/``:

- ``domain_composition.png`` (Fig. 2a): images and objects per domain;
- ``object_scale.png`` (Fig. 2b): histogram of object scale ``sqrt(w·h)`` in pixels, with the mean
  marked (the paper reports 20.4 px for TinySet-9M);
- ``object_density.png`` (Fig. 2c): histogram of objects per image;
- ``summary.md`` and ``stats.json``: the same numbers, plus the comparison table (Fig. 2d):
  this build, each split, the paper's stated figure, and any COCO file given with ``--compare``.

Objects are labels (``iscrowd=0``); ignore regions are counted apart. Plots use matplotlib's Agg
backend (no display) and carry no time stamp, so they are reproducible.
"""

from __future__ import annotations

import json
import math
from array import array
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tinyset_builder.coco import SPLITS
from tinyset_builder.errors import TinysetError
from tinyset_builder.io import atomic_write_bytes, write_json

#: Scale histogram: 4-px bins up to 64 px, then one bin for everything larger.
SCALE_EDGES = (*range(0, 65, 4), math.inf)
#: Density histogram (objects per image); the paper notes many images above 200, some above 3000.
DENSITY_EDGES = (0, 1, 10, 25, 50, 100, 200, 500, 1000, 3000, math.inf)
#: What the paper states about TinySet-9M in the text of section III.
PAPER = {"name": "TinySet-9M (paper, sec. III)", "mean_scale_px": 20.4}


def _measure(images: Sequence[Mapping[str, Any]], annotations: Sequence[Mapping[str, Any]],
             ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], int]:
    """Object scales, objects per image, and the number of ignore regions of one COCO file."""
    per_image: Counter[int] = Counter()
    scales = []
    ignore = 0
    for a in annotations:
        if a.get("iscrowd", 0):
            ignore += 1
            continue
        per_image[a["image_id"]] += 1
        w, h = a["bbox"][2], a["bbox"][3]
        scales.append(math.sqrt(max(w, 0) * max(h, 0)))
    density = np.asarray([per_image.get(i["id"], 0) for i in images], dtype=np.float64)
    return np.asarray(scales, dtype=np.float64), density, ignore


def _summarise(s: npt.NDArray[np.float64], density: npt.NDArray[np.float64], ignore: int,
               ) -> dict[str, Any]:
    """Counts, scale and density figures from :func:`_measure`'s arrays."""
    return {
        "images": len(density), "objects": len(s), "ignore_regions": ignore,
        "mean_scale_px": round(float(s.mean()), 2) if len(s) else None,
        "median_scale_px": round(float(np.median(s)), 2) if len(s) else None,
        "share_below_16px": round(float((s < 16).mean()), 4) if len(s) else None,
        "share_below_32px": round(float((s < 32).mean()), 4) if len(s) else None,
        "mean_objects_per_image": round(float(density.mean()), 2) if len(density) else None,
        "max_objects_per_image": int(density.max()) if len(density) else 0,
        "_scales": s, "_density": density,
    }


def _histogram(values: npt.NDArray[np.float64], edges: Sequence[float]) -> list[dict[str, Any]]:
    counts = np.histogram(values, bins=np.asarray(edges, dtype=np.float64))[0] \
        if len(values) else np.zeros(len(edges) - 1, dtype=np.int64)
    return [{"from": edges[i], "to": None if math.isinf(edges[i + 1]) else edges[i + 1],
             "count": int(c)} for i, c in enumerate(counts)]


class StatsCollector:
    """The numbers of Fig. 2 gathered output by output, in the order the split files hold them.

    The build feeds it while merging (:meth:`add`), so a build never reads its split files back
    and holds 8 bytes per object for the scale histogram and its median instead of the records;
    :func:`compute_stats` feeds it from the files. Fed the same records in the same order, both
    give the same floats (scales are ``sqrt(w·h)`` of the very numbers written).
    """

    def __init__(self) -> None:
        # Flat typed buffers: 8 bytes per object and per image, nothing per call (the build
        # adds one output tile at a time; an array per call would cost ~100 bytes each).
        self._scales: dict[str, array[float]] = {}
        self._density: dict[str, array[int]] = {}
        self._ignore: Counter[str] = Counter()
        self.domains: dict[str, Counter[str]] = {"images": Counter(), "objects": Counter()}
        self.sources: dict[str, Counter[str]] = {"images": Counter(), "objects": Counter()}

    def add(self, split: str, images: Sequence[tuple[str, str]], image_of: npt.ArrayLike,
            w: npt.ArrayLike, h: npt.ArrayLike, iscrowd: npt.ArrayLike) -> None:
        """Add a run of one split's images and their records.

        Args:
            split: the split file they are in.
            images: ``(domain, source)`` of each image, in file order.
            image_of: per record, the index into ``images`` of its image.
            w, h, iscrowd: per record, its box size and ignore flag, in file order.
        """
        crowd = np.asarray(iscrowd) != 0
        obj = ~crowd
        w, h = np.asarray(w, dtype=np.float64)[obj], np.asarray(h, dtype=np.float64)[obj]
        scales = np.sqrt(np.maximum(w, 0) * np.maximum(h, 0))
        self._scales.setdefault(split, array("d")).frombytes(scales.tobytes())
        counts = np.bincount(np.asarray(image_of, dtype=np.int64)[obj], minlength=len(images))
        self._density.setdefault(split, array("q")).frombytes(counts.astype(np.int64).tobytes())
        self._ignore[split] += int(crowd.sum())
        for (domain, source), n in zip(images, counts.tolist(), strict=True):
            self.domains["images"][domain] += 1
            self.sources["images"][source] += 1
            self.domains["objects"][domain] += n
            self.sources["objects"][source] += n

    @property
    def splits(self) -> list[str]:
        """The splits that have images, in :data:`SPLITS` order (the order of the results)."""
        return [s for s in SPLITS if s in self._density]

    def stats(self, compare: Mapping[str, Path] | None = None) -> dict[str, Any]:
        """All statistics (and those of the ``compare`` COCO files) as one dict."""
        per_split, scales, densities, ignores = {}, [], [], 0
        for split in self.splits:
            s = np.frombuffer(self._scales[split], dtype=np.float64)
            dens = np.frombuffer(self._density[split], dtype=np.int64).astype(np.float64)
            per_split[split] = _summarise(s, dens, self._ignore[split])
            scales.append(s)
            densities.append(dens)
            ignores += self._ignore[split]
        if not per_split:
            raise TinysetError("no image in any split: nothing to make statistics of")
        overall = _summarise(np.concatenate(scales), np.concatenate(densities), ignores)
        comparisons = {}
        for name, path in (compare or {}).items():
            coco = json.loads(Path(path).read_bytes())
            comparisons[name] = _summarise(*_measure(coco["images"], coco["annotations"]))
        # Objects per domain and source count labels only; zero counts stay, as in the files.
        return {
            "overall": overall, "splits": per_split, "comparisons": comparisons,
            "domains": {k: dict(sorted(v.items())) for k, v in self.domains.items()},
            "sources": {k: dict(sorted(v.items())) for k, v in self.sources.items()},
            "scale_histogram": _histogram(overall["_scales"], SCALE_EDGES),
            "density_histogram": _histogram(overall["_density"], DENSITY_EDGES),
            "paper": PAPER,
        }


def compute_stats(out: Path, compare: Mapping[str, Path] | None = None) -> dict[str, Any]:
    """All statistics of a built dataset (and of the ``compare`` COCO files) as one dict.

    Reads one split file at a time (``tinyset stats``; the build itself collects them while
    merging, see :class:`StatsCollector`).
    """
    out = Path(out)
    files = [(s, out / "annotations" / f"{s}.json") for s in SPLITS]
    files = [(s, p) for s, p in files if p.is_file()]
    if not files:
        raise TinysetError(f"{out}/annotations: no split file found; is this a built dataset?")
    collector = StatsCollector()
    for split, path in files:
        coco = json.loads(path.read_bytes())
        images = [(i.get("domain", "?"), i.get("source", "?")) for i in coco["images"]]
        index = {i["id"]: k for k, i in enumerate(coco["images"])}
        anns = coco["annotations"]
        try:
            image_of = [index[a["image_id"]] for a in anns]
        except KeyError as e:
            raise TinysetError(f"{path}: an annotation refers to unknown image {e}") from None
        collector.add(split, images, image_of, [a["bbox"][2] for a in anns],
                      [a["bbox"][3] for a in anns],
                      [1 if a.get("iscrowd", 0) else 0 for a in anns])
        del coco, anns
    return collector.stats(compare)


def _public(stats: Mapping[str, Any]) -> Any:
    """Drop the raw arrays (keys starting with ``_``) for JSON output."""
    if isinstance(stats, Mapping):
        return {k: _public(v) for k, v in stats.items() if not str(k).startswith("_")}
    return stats


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1 else f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


COLUMNS = ("images", "objects", "mean_objects_per_image", "max_objects_per_image",
           "mean_scale_px", "median_scale_px", "share_below_16px", "share_below_32px")


def summary_markdown(stats: Mapping[str, Any]) -> str:
    """The Markdown summary (Fig. 2 as tables)."""
    lines = ["# TinySet statistics", "",
             "Objects are labels (`iscrowd=0`); scale is `sqrt(w·h)` in output pixels.", "",
             "## Comparison (Fig. 2d)", "",
             "| dataset | " + " | ".join(COLUMNS) + " |",
             "|---|" + "---|" * len(COLUMNS)]
    rows: list[tuple[str, Mapping[str, Any]]] = [("this build", stats["overall"])]
    rows += [(f"this build, {s}", v) for s, v in stats["splits"].items()]
    rows += list(stats["comparisons"].items())
    rows.append((stats["paper"]["name"], stats["paper"]))
    for name, r in rows:
        lines.append(f"| {name} | " + " | ".join(_fmt(r.get(c)) for c in COLUMNS) + " |")
    lines += ["", "## Domain composition (Fig. 2a)", "", "| domain | images | objects |",
              "|---|---|---|"]
    for d, n in stats["domains"]["images"].items():
        lines.append(f"| {d} | {n:,} | {stats['domains']['objects'].get(d, 0):,} |")
    lines += ["", "## Object scale (Fig. 2b)", "",
              f"Mean object scale: **{_fmt(stats['overall']['mean_scale_px'])} px** "
              f"(paper: {PAPER['mean_scale_px']} px).", "", "| scale (px) | objects |",
              "|---|---|"]
    for b in stats["scale_histogram"]:
        hi = "∞" if b["to"] is None else _fmt(b["to"])
        lines.append(f"| [{_fmt(b['from'])}, {hi}) | {b['count']:,} |")
    lines += ["", "## Object density (Fig. 2c)", "", "| objects per image | images |",
              "|---|---|"]
    for b in stats["density_histogram"]:
        hi = "∞" if b["to"] is None else _fmt(b["to"])
        lines.append(f"| [{_fmt(b['from'])}, {hi}) | {b['count']:,} |")
    lines += ["", "## Sources", "", "| source | images | objects |", "|---|---|---|"]
    for s, n in stats["sources"]["images"].items():
        lines.append(f"| {s} | {n:,} | {stats['sources']['objects'].get(s, 0):,} |")
    return "\n".join(lines) + "\n"


def _save(fig: Any, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    atomic_write_bytes(path, buf.getvalue())


def plot(stats: Mapping[str, Any], folder: Path) -> list[Path]:
    """Write the three figures of Fig. 2 (a–c) as PNG files into ``folder``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    doms = stats["domains"]["images"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ("images", "objects"), strict=True):
        names = list(stats["domains"][key])
        ax.pie([stats["domains"][key][n] for n in names] or [1], labels=names or ["none"],
               autopct="%1.1f%%", startangle=90, counterclock=False)
        ax.set_title(f"{key} per domain")
    fig.suptitle(f"Domain composition ({sum(doms.values()):,} images)")
    _save(fig, folder / "domain_composition.png")
    paths.append(folder / "domain_composition.png")
    plt.close(fig)

    for name, hist, xlabel, ylabel in (
            ("object_scale.png", stats["scale_histogram"], "object scale sqrt(w·h) (px)",
             "objects"),
            ("object_density.png", stats["density_histogram"], "objects per image", "images")):
        fig, ax = plt.subplots(figsize=(8, 4))
        labels = [f"{_fmt(b['from'])}–{'∞' if b['to'] is None else _fmt(b['to'])}" for b in hist]
        ax.bar(range(len(hist)), [b["count"] for b in hist], color="#3b75af")
        ax.set_xticks(range(len(hist)), labels, rotation=60, fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if name == "object_scale.png":
            mean = stats["overall"]["mean_scale_px"]
            ax.set_title(f"Object scale: mean {_fmt(mean)} px (paper: {PAPER['mean_scale_px']})")
        else:
            ax.set_title(f"Object density: mean "
                         f"{_fmt(stats['overall']['mean_objects_per_image'])} per image")
        fig.tight_layout()
        _save(fig, folder / name)
        paths.append(folder / name)
        plt.close(fig)
    return paths


def write_stats(out: Path, compare: Mapping[str, Path] | None = None, *,
                collected: StatsCollector | None = None) -> Path:
    """Compute and write ``OUT/stats/`` (summary.md, stats.json, three PNGs); returns the folder.

    ``collected``: the build's :class:`StatsCollector`, so the split files are not read back.
    """
    out = Path(out)
    stats = compute_stats(out, compare) if collected is None else collected.stats(compare)
    folder = out / "stats"
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "stats.json", _public(stats), indent=1)
    atomic_write_bytes(folder / "summary.md", summary_markdown(stats).encode("utf-8"))
    plot(stats, folder)
    return folder
