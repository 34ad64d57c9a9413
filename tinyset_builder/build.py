"""``tinyset build``: raw sources → TinySet (1024² images, COCO per split, build.json, stats).

The steps (paper, section III; DESIGN.md "Built dataset"), 1–4 source by source in SOURCES
order, each source released before the next is converted (:func:`run_build`), so memory is
bounded by the largest source rather than the whole dataset:

1. **Convert** a present source (``RAW/<source>/``) to COCO in original pixels.
2. **Plan** one :class:`~tinyset_builder.pipeline.TileTask` per original image, with its split
   decided up front (:mod:`.splits`), so every output of an image lands in one split.
3. **Execute** the tasks that have no valid result yet (:mod:`.executors`): decode, hash,
   crop-or-pad, filter, encode. Finished tasks of an earlier, interrupted run are reused.
4. **Merge** the result files in a fixed order (sources in SOURCES order, original files sorted,
   windows row-major), dropping exact duplicates (:mod:`.dedupe`), streaming the COCO files out
   and collecting the statistics (:class:`~tinyset_builder.stats.StatsCollector`).
5. **Account** for every input annotation in ``build.json`` and sweep files no record refers to.
6. **Statistics** (:mod:`.stats`), then ``build.json`` last: its presence marks a finished build.

Nothing here depends on the number of workers or on the executor, so the bytes do not either.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from tinyset_builder import __version__
from tinyset_builder.built import TOOL, load_build_record
from tinyset_builder.coco import SPLITS, CocoAnnotation, CocoCategory, CocoImage
from tinyset_builder.dedupe import FirstSeen
from tinyset_builder.errors import OnError, TinysetError
from tinyset_builder.filters import LargeObjectFilter
from tinyset_builder.imageio import MAX_PIXELS
from tinyset_builder.io import atomic_path, dumps_json, sha256_file, write_json
from tinyset_builder.paths import safe_join
from tinyset_builder.pipeline import (
    OUTCOMES,
    CodecOptions,
    TileTask,
    load_result,
    output_ext,
    run_task,
    task_boxes,
    tile_boxes,
)
from tinyset_builder.splits import DEFAULT_RATIOS, assign_split, check_ratios
from tinyset_builder.tiling import TileBoxes, TilingOptions

WORK_DIR = ".work"
_SCALAR = (str, int, float, bool, type(None))


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildOptions:
    """Every option that shapes the output; all recorded in ``build.json``.

    Workers and executor are deliberately not here: they never change the output.
    """

    tiling: TilingOptions = field(default_factory=TilingOptions)
    large_filter: LargeObjectFilter = field(default_factory=LargeObjectFilter)
    codec: CodecOptions = field(default_factory=CodecOptions)
    split_ratios: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_RATIOS))
    max_pixels: int = MAX_PIXELS
    on_error: OnError = "skip"

    def to_dict(self) -> dict[str, Any]:
        """The options as recorded in ``build.json``."""
        return {"tiling": self.tiling.to_dict(), "large_object_filter": self.large_filter.to_dict(),
                "codec": {**self.codec.to_dict(), "rule": "jpg for JPEG inputs, png otherwise"},
                "split_ratios": check_ratios(self.split_ratios),
                "split_rule": "official split; else sha256('<source>/<original_file>') "
                              "against the cumulative ratios",
                "dedupe": "xxh3-128 of decoded RGB8 pixels; keep the first in SOURCES order, "
                          "then original_file order",
                "max_pixels": self.max_pixels, "on_error": self.on_error}


@dataclass(slots=True)
class BuildReport:
    """What a build did: the ``build.json`` record plus run-only facts (not in the file)."""

    record: dict[str, Any]
    reused_tasks: int
    ran_tasks: int

    @property
    def failed_images(self) -> int:
        """Original images skipped because they could not be read."""
        return sum(sum(s["images"]["failed"].values()) for s in self.record["sources"].values())


# --------------------------------------------------------------------------------------------
# Categories and manifests


def source_order(name: str) -> tuple[int, str]:
    """Sort key: position in SOURCES (unknown names after, by name)."""
    from tinyset_builder.sources import SOURCES

    names = list(SOURCES)
    return (names.index(name), name) if name in names else (len(names), name)


def manifest_sha256(info: Any) -> str:
    """SHA-256 of the source's manifest file (or of its parsed record when it has no file)."""
    from tinyset_builder.sources.base import MANIFEST_DIR

    path = MANIFEST_DIR / f"{info.name}.toml"
    if path.is_file():
        return sha256_file(path)
    return hashlib.sha256(dumps_json(_jsonable(asdict(info)))).hexdigest()


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def global_categories(infos: Iterable[Any]) -> list[CocoCategory]:
    """TinySet's categories: every known source in SOURCES order, then its manifest order.

    The table covers every source with a manifest, not only those being built, so a category's
    id never depends on which sources are present.
    """
    from tinyset_builder.sources import SOURCES
    from tinyset_builder.sources.base import load_info

    by_name = {i.name: i for i in infos}
    for name in SOURCES:
        if name not in by_name:
            try:
                by_name[name] = load_info(name)
            except TinysetError:
                continue  # a source without a manifest yet has no categories to number
    cats: list[CocoCategory] = []
    for name in sorted(by_name, key=source_order):
        info = by_name[name]
        for c in info.categories:
            cats.append(CocoCategory(id=len(cats) + 1, name=info.category_name(c),
                                     supercategory=info.name))
    return cats


# --------------------------------------------------------------------------------------------
# Planning


def output_stem(source: str, original_file: str) -> str:
    """``<source>__<original path without suffix, '/' → '__'>`` (flat, readable, unique)."""
    no_suffix = original_file.rsplit(".", 1)[0] if "." in Path(original_file).name else \
        original_file
    return f"{source}__{no_suffix.replace('/', '__')}"


def plan_source(conv: Any, raw: Path, out: Path, options: BuildOptions, *,
                by_image: Mapping[int, list[CocoAnnotation]] | None = None) -> list[TileTask]:
    """One task per image of a converted source, sorted by ``original_file``.

    ``by_image`` is the dataset's :meth:`~tinyset_builder.coco.CocoDataset.annotations_by_image`
    when the caller already has it (grouping a crowded source's annotations is not free).
    """
    info, ds = conv.info, conv.dataset
    downscale = float(info.build.get("downscale", 1.0)) if info.build else 1.0
    if not 0.0 < downscale <= 1.0:
        raise TinysetError(f"manifest {info.name}: [build] downscale must be in (0, 1], "
                           f"got {downscale}")
    root = Path(raw) / info.name
    by_image = ds.annotations_by_image() if by_image is None else by_image
    tasks = []
    work = out / WORK_DIR / "tasks" / info.name
    for img in sorted(ds.images, key=lambda i: i.original_file or i.file_name):
        original = img.original_file or img.file_name
        anns = by_image[img.id]
        # fromiter over the flat numbers: a third faster than np.array of thousands of tuples
        xywh = np.fromiter(chain.from_iterable([a.bbox for a in anns]), dtype=np.float64,
                           count=4 * len(anns)).reshape(-1, 4)
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        iscrowd = np.fromiter([a.iscrowd for a in anns], dtype=np.int64, count=len(anns))
        # Options of docs/build.md "Open build choices" (both no-ops by default): letterbox
        # scale, and the per-image large-object verdict (in the pixels the image is cut in).
        scale = options.tiling.image_scale(img.width, img.height, downscale)
        large_filter = options.large_filter.for_image(boxes * scale, iscrowd, img.width * scale,
                                                      img.height * scale)
        tasks.append(TileTask(
            key=f"{info.name}/{original}", source=info.name, domain=img.domain or info.domain,
            original_file=original, image_path=str(safe_join(root, original)),
            width=img.width, height=img.height,
            split=assign_split(img, options.split_ratios), stem=output_stem(info.name, original),
            ext=output_ext(original), boxes=boxes, iscrowd=iscrowd,
            scale=scale, tiling=options.tiling, large_filter=large_filter,
            codec=options.codec, max_pixels=options.max_pixels, out=str(out),
            result=str(work / (hashlib.sha1(original.encode()).hexdigest()[:20] + ".json"))))
    return tasks


@dataclass(frozen=True, slots=True)
class _Labels:
    """What the merge needs of one image's annotations besides the task's boxes and iscrowd.

    Attributes:
        category: the source's category id of each annotation.
        extras: each annotation's scalar attributes as JSON members (:func:`_extra_json`),
            or None when no annotation of the image has any (most crowded sources).
    """

    category: np.ndarray
    extras: tuple[str, ...] | None

    @classmethod
    def of(cls, anns: Sequence[CocoAnnotation], memo: dict[int, str] | None = None,
           ) -> _Labels:
        """The labels of ``anns``; ``memo`` shares the text of attribute dicts that records
        share (the source assembler shares equal ones), keyed by the dict's ``id``, so it must
        not outlive the records."""
        category = np.fromiter([a.category_id for a in anns], dtype=np.int64, count=len(anns))
        if not any(a.extra for a in anns):
            return cls(category, None)
        memo = {} if memo is None else memo
        extras = []
        for a in anns:
            text = memo.get(id(a.extra))
            if text is None:
                text = memo[id(a.extra)] = _extra_json(a.extra) if a.extra else ""
            extras.append(text)
        return cls(category, tuple(extras))


@dataclass(slots=True)
class SourcePlan:
    """One source, planned: all the build keeps of it once its converted dataset is released.

    Per annotation that is about 60 bytes (the tasks' box and iscrowd arrays and a category
    id), against several hundred for the converted records, so a build holds at most one
    source as records at a time.
    """

    info: Any
    skipped: dict[str, int]
    examples: dict[str, str]
    counts: dict[str, int]
    categories: list[tuple[int, str]]
    tasks: list[TileTask]
    labels: list[_Labels]


def plan_conversion(conv: Any, raw: Path, out: Path, options: BuildOptions) -> SourcePlan:
    """Plan a converted source (:func:`plan_source`) and keep what the merge needs of it."""
    ds = conv.dataset
    by_image = ds.annotations_by_image()
    tasks = plan_source(conv, raw, out, options, by_image=by_image)
    memo: dict[int, str] = {}
    # plan_source's order: images sorted by original file
    labels = [_Labels.of(by_image[img.id], memo)
              for img in sorted(ds.images, key=lambda i: i.original_file or i.file_name)]
    return SourcePlan(info=conv.info, skipped=dict(conv.skipped), examples=dict(conv.examples),
                      counts=dict(conv.counts),
                      categories=[(c.id, c.name) for c in ds.categories], tasks=tasks,
                      labels=labels)


# --------------------------------------------------------------------------------------------
# The build


def build(raw: Path, out: Path, *, sources: str | None = None, workers: int = 1,
          executor: str = "local", options: BuildOptions | None = None, stats: bool = True,
          ) -> BuildReport:
    """Build TinySet from ``raw`` into ``out`` (see the module docstring).

    Args:
        raw: folder holding ``<source>/`` folders in their native layouts.
        out: output folder (created; an interrupted earlier build there is resumed).
        sources: ``"a,b"`` to build only some sources; by default every source present.
        workers: parallel workers.
        executor: ``"local"`` (process pool) or ``"ray"``.
        options: output-shaping options (defaults: the paper's).
        stats: also write ``out/stats/`` (Fig. 2).
    """
    from tinyset_builder.progress import console
    from tinyset_builder.sources import SOURCES, convert_source, parse_source_names

    options = options or BuildOptions()
    raw = Path(raw)
    if not raw.is_dir():
        raise TinysetError(f"{raw}: raw folder not found")
    names = parse_source_names(sources)
    if sources is None or sources.strip() in ("", "all"):
        names = [n for n in SOURCES if (raw / n).is_dir()]
        if not names:
            raise TinysetError(f"{raw}: no source folder found (expected some of "
                               f"{', '.join(SOURCES)})")
    from tinyset_builder.sources.base import load_info

    names = sorted(names, key=source_order)
    infos = [load_info(n) for n in names]
    # Converted lazily, one source at a time, in build order (see run_build).
    conversions = (convert_source(n, raw, on_error=options.on_error) for n in names)
    report = run_build(conversions, infos, raw, out, workers=workers, executor=executor,
                       options=options, stats=stats)
    console.print(summary_table(report.record))
    return report


def build_from_conversions(conversions: Sequence[Any], raw: Path, out: Path, *,
                           workers: int = 1, executor: str = "local",
                           options: BuildOptions | None = None, stats: bool = True,
                           ) -> BuildReport:
    """Plan, execute, merge and account for already converted sources."""
    conversions = sorted(conversions, key=lambda c: source_order(c.info.name))
    return run_build(iter(conversions), [c.info for c in conversions], raw, out,
                     workers=workers, executor=executor, options=options, stats=stats)


def run_build(conversions: Iterator[Any], infos: Sequence[Any], raw: Path, out: Path, *,
              workers: int = 1, executor: str = "local", options: BuildOptions | None = None,
              stats: bool = True) -> BuildReport:
    """Build source by source: convert → plan → tile → merge → release.

    ``conversions`` yields the sources in build order (SOURCES order), ideally converting each
    only when asked, and ``infos`` are their manifests (for the category table, which the
    split files need only at the end). Each source is planned, its converted records are
    dropped, its images are tiled and its results merged into the split files before the next
    source is converted, so memory is bounded by the largest source, not by the sum: what
    stays from a merged source is per-image bookkeeping (output names, pixel hashes,
    accounting) and 8 bytes per object for the statistics, which are collected while merging.
    """
    from tinyset_builder.executors import make_executor
    from tinyset_builder.progress import make_progress
    from tinyset_builder.stats import StatsCollector, write_stats

    options = options or BuildOptions()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "build.json").unlink(missing_ok=True)  # an unfinished folder must not look built
    collector = StatsCollector() if stats else None
    merger = _Merger(out, options, global_categories(infos), collector)
    ex = make_executor(executor, workers)
    stems: dict[str, str] = {}
    reused = ran = 0
    with make_progress() as progress:
        bar = progress.add_task("sources", total=len(infos))
        for conv in conversions:
            plan = plan_conversion(conv, Path(raw), out, options)
            del conv  # the converted records go here (when the caller does not keep them)
            _check_unique_names(plan.tasks, stems)
            todo = [t for t in plan.tasks if load_result(t) is None]
            tiles = progress.add_task(f"tiling {plan.info.name}", total=len(todo))
            for _ in ex.map_unordered(run_task, todo):
                progress.advance(tiles)
            merger.add(plan)
            reused += len(plan.tasks) - len(todo)
            ran += len(todo)
            del plan, todo
            progress.advance(bar)
    record = merger.finish()
    sweep(out, record)
    if collector is not None:
        write_stats(out, collected=collector)
    write_json(out / "build.json", record, indent=1)
    return BuildReport(record=record, reused_tasks=reused, ran_tasks=ran)


def _check_unique_names(tasks: Sequence[TileTask], seen: dict[str, str]) -> None:
    """Raise if two images map to one output name; ``seen`` carries the names across sources."""
    for t in tasks:
        if t.stem in seen:
            raise TinysetError(f"{t.key} and {seen[t.stem]} map to the same output name "
                               f"{t.stem!r}; rename one of them")
        seen[t.stem] = t.key


# --------------------------------------------------------------------------------------------
# Merging


class _SplitWriter:
    """Streams one split's COCO file: images and annotations go to two part files first."""

    def __init__(self, out: Path, split: str) -> None:
        self.dir = out / WORK_DIR / "merge"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.split = split
        self.images: BinaryIO = (self.dir / f"{split}.images.part").open("wb")
        self.annotations: BinaryIO = (self.dir / f"{split}.annotations.part").open("wb")
        self.n_images = 0
        self.n_annotations = 0

    @staticmethod
    def _dump(obj: Any) -> bytes:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False).encode("utf-8")

    def add_image(self, d: dict[str, Any]) -> None:
        self.images.write((b"," if self.n_images else b"") + self._dump(d))
        self.n_images += 1

    def add_annotation_text(self, text: str, n: int) -> None:
        """Append ``n`` annotation records given as comma-separated JSON objects."""
        if not n:
            return
        self.annotations.write((b"," if self.n_annotations else b"") + text.encode("utf-8"))
        self.n_annotations += n

    def discard(self) -> None:
        """Close and remove the part files of a split that got no image."""
        self.images.close()
        self.annotations.close()
        for part in ("images", "annotations"):
            (self.dir / f"{self.split}.{part}.part").unlink()

    def finish(self, path: Path, info: dict[str, Any], categories: list[dict[str, Any]],
               ) -> str:
        """Assemble the COCO file atomically (same bytes as :func:`io.write_json` would give)."""
        self.images.close()
        self.annotations.close()
        digest = hashlib.sha256()
        with atomic_path(path) as tmp, tmp.open("wb") as f:
            def put(b: bytes) -> None:
                digest.update(b)
                f.write(b)
            put(b'{"info":' + self._dump(info) + b',"images":[')
            _copy(self.dir / f"{self.split}.images.part", put)
            put(b'],"annotations":[')
            _copy(self.dir / f"{self.split}.annotations.part", put)
            put(b'],"categories":' + self._dump(categories) + b"}\n")
        for part in ("images", "annotations"):
            (self.dir / f"{self.split}.{part}.part").unlink()
        return digest.hexdigest()


def _extra_json(extra: Mapping[str, Any]) -> str:
    """A source's scalar attributes as JSON members (``,"key":value`` sorted by key).

    Lists and dicts (segmentations, keypoints) are left out: they are in original pixels and
    would be wrong in a tile.
    """
    return "".join(f",{json.dumps(k, ensure_ascii=False)}:"
                   f"{json.dumps(extra[k], ensure_ascii=False, allow_nan=False)}"
                   for k in sorted(extra) if isinstance(extra[k], _SCALAR))


class _FloatText(dict[float, str]):
    """``repr`` of floats, memoised (one original image's boxes repeat few distinct values).

    Exact: floats that compare equal have the same ``repr``, except ``0.0`` and ``-0.0``, which
    are therefore never stored.
    """

    def __missing__(self, v: float) -> str:
        text = repr(v)
        if v != 0.0:
            self[v] = text
        return text


class _RecordText:
    """Writes one original image's annotations as COCO records, for each output that shows them.

    Formatted directly: :func:`json.dumps` would give the same bytes (it writes floats with
    ``float.__repr__``; ``test_output_contract`` checks the files against ``json.dumps``) at a
    fraction of the cost, which matters at thousands of boxes per image. What does not depend
    on the output is made once per annotation: ``heads[i]`` is ``,"category_id":C,"bbox":[`` and
    ``tails[iscrowd][i]`` is ``,"iscrowd":0`` or ``1`` (a cut can make a label ignore), the
    source's scalar attributes and ``}``.
    """

    def __init__(self, labels: _Labels, category_id: Mapping[int, int]) -> None:
        head = {c: f',"category_id":{g},"bbox":[' for c, g in category_id.items()}
        self.heads = [head[c] for c in labels.category.tolist()]
        if labels.extras is None:  # no attributes: two shared tails
            n = len(self.heads)
            self.tails = ([',"iscrowd":0}'] * n, [',"iscrowd":1}'] * n)
        else:
            self.tails = ([f',"iscrowd":0{e}}}' for e in labels.extras],
                          [f',"iscrowd":1{e}}}' for e in labels.extras])
        self.floats = _FloatText()

    def records(self, tb: TileBoxes, first_id: int, image_id: int) -> str:
        """The records of one output's boxes as comma-separated JSON objects."""
        x0, y0, x1, y1 = tb.xyxy.T
        bw, bh = x1 - x0, y1 - y0
        image = f',"image_id":{image_id}'
        heads, tails, text = self.heads, self.tails, self.floats.__getitem__
        # The float texts are looked up by C-level maps (a few per cent faster than r[x] in
        # the f-string); the f-string itself is most of the cost.
        return ",".join([
            f'{{"id":{k}{image}{heads[i]}{x},{y},{w},{h}],"area":{area}{tails[c][i]}'
            for k, i, x, y, w, h, area, c in zip(
                range(first_id, first_id + len(tb.index)), tb.index.tolist(),
                map(text, x0.tolist()), map(text, y0.tolist()), map(text, bw.tolist()),
                map(text, bh.tolist()), map(text, (bw * bh).tolist()), tb.iscrowd.tolist(),
                strict=True)])


def _copy(path: Path, put: Any) -> None:
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            put(chunk)


def _results(tasks: Sequence[TileTask]) -> Iterator[tuple[TileTask, dict[str, Any]]]:
    for t in tasks:
        r = load_result(t)
        if r is None:
            raise TinysetError(f"{t.key}: task has no valid result after execution "
                               f"(was {t.result} removed during the build?)")
        yield t, r


class _Merger:
    """Writes ``annotations/<split>.json`` source by source and makes the ``build.json`` record.

    Sources must be added in build order: the keep rule of dedupe ("first in build order") is
    decided on the way, and image and annotation ids follow that order.
    """

    def __init__(self, out: Path, options: BuildOptions, categories: list[CocoCategory],
                 stats: Any = None) -> None:
        self.out, self.options, self.stats = out, options, stats
        self.cat_dicts = [c.to_dict() for c in categories]
        self.global_id = {c.name: c.id for c in categories}
        self.first_seen = FirstSeen()
        self.writers = {s: _SplitWriter(out, s) for s in SPLITS}
        self.sources: dict[str, Any] = {}
        self.referenced: dict[str, list[str]] = {s: [] for s in SPLITS}

    def add(self, plan: SourcePlan) -> None:
        """Merge one source whose tasks all have results."""
        info, tile = plan.info, self.options.tiling.tile
        # local category id -> global one
        category_id = {c: self.global_id[name] for c, name in plan.categories
                       if name in self.global_id}
        acc = _Accounting()
        failed: list[dict[str, str]] = []
        dups: list[dict[str, str]] = []
        for (task, res), labels in zip(_results(plan.tasks), plan.labels, strict=True):
            acc.images_in += 1
            acc.annotations_in += res["annotations_in"]
            acc.ignore_in += int(task.iscrowd.sum())
            if res["status"] == "error":
                acc.failed[res["reason"]] += 1
                acc.dropped["image_error"] += res["annotations_in"]
                failed.append({"file": task.original_file, "reason": res["reason"],
                               "message": res["message"]})
                continue
            kept = self.first_seen.check(task.key, res["pixel_hash"])
            if kept is not None:
                acc.duplicates += 1
                acc.dropped["duplicate_image"] += res["annotations_in"]
                dups.append({"file": task.original_file, "kept": str(kept)})
                continue
            acc.add_outcomes(res)
            if not res["outputs"]:
                continue
            text = _RecordText(labels, category_id)
            boxes, iscrowd = task_boxes(task)
            w = self.writers[task.split]
            per_output = tile_boxes(task, boxes, iscrowd,
                                    [tuple(o["tile_window"]) for o in res["outputs"]])
            for o, tb in zip(res["outputs"], per_output, strict=True):
                image_id = w.n_images + 1
                w.add_image(CocoImage(
                    id=image_id, file_name=o["file_name"], width=tile, height=tile,
                    source=info.name, domain=task.domain, split=task.split,
                    original_file=task.original_file, window=tuple(o["window"]),
                    scale=task.scale).to_dict())
                self.referenced[task.split].append(o["file_name"])
                acc.out_images[task.split] += 1
                n = len(tb.index)
                w.add_annotation_text(text.records(tb, w.n_annotations + 1, image_id), n)
                acc.out_annotations += n
                if self.stats is not None:
                    x0, y0, x1, y1 = tb.xyxy.T
                    self.stats.add(task.split, [(task.domain, info.name)],
                                   np.zeros(n, dtype=np.int64), x1 - x0, y1 - y0, tb.iscrowd)
        self.sources[info.name] = {
            "title": info.title, "domain": info.domain,
            "manifest_sha256": manifest_sha256(info),
            "downscale": float(info.build.get("downscale", 1.0)) if info.build else 1.0,
            "converter": {"skipped": dict(sorted(plan.skipped.items())),
                          "examples": dict(sorted(plan.examples.items())),
                          "counts": dict(sorted(plan.counts.items()))},
            **acc.to_dict(), "failed_images": failed, "duplicates": dups}

    def finish(self) -> dict[str, Any]:
        """Assemble the split files; return the ``build.json`` record."""
        files = {}
        for split, w in self.writers.items():
            path = self.out / "annotations" / f"{split}.json"
            info_d = {"description": "TinySet, rebuilt from its public sources", "tool": TOOL,
                      "version": __version__, "split": split}
            if w.n_images == 0:
                w.discard()
                path.unlink(missing_ok=True)  # left by an earlier build with other sources
                continue
            n_img, n_ann = w.n_images, w.n_annotations
            files[split] = {"file": f"annotations/{split}.json",
                            "sha256": w.finish(path, info_d, self.cat_dicts),
                            "images": n_img, "annotations": n_ann}
        return {"tool": TOOL, "version": __version__, "options": self.options.to_dict(),
                "categories": len(self.cat_dicts), "annotation_files": files,
                "sources": self.sources, "totals": _totals(self.sources),
                "_referenced": self.referenced}


@dataclass
class _Accounting:
    images_in: int = 0
    annotations_in: int = 0
    ignore_in: int = 0
    duplicates: int = 0
    windows: int = 0
    dropped_large: int = 0
    dropped_empty: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    out_images: Counter[str] = field(default_factory=Counter)
    out_annotations: int = 0

    def add_outcomes(self, res: Mapping[str, Any]) -> None:
        self.windows += res["windows"]
        self.dropped_large += res["dropped_images"]["large_objects"]
        self.dropped_empty += res["dropped_images"]["empty"]
        for name, n in res["outcomes"].items():
            if name.startswith("dropped_"):
                self.dropped[name.removeprefix("dropped_")] += n
            else:
                self.outcomes[name] += n

    def to_dict(self) -> dict[str, Any]:
        dropped_keys = [o.removeprefix("dropped_") for o in OUTCOMES if o.startswith("dropped_")]
        return {
            "images": {"in": self.images_in, "failed": dict(sorted(self.failed.items())),
                       "duplicate": self.duplicates, "windows": self.windows,
                       "dropped_large_objects": self.dropped_large,
                       "dropped_empty": self.dropped_empty,
                       "out": sum(self.out_images.values()),
                       "out_by_split": {s: self.out_images[s] for s in SPLITS}},
            # "ignore" counts labels the cut made ignore; "ignore_in" says how many of "in" are
            # the source's own ignore regions (counted under kept/clipped/dropped like the rest).
            "annotations": {"in": self.annotations_in, "ignore_in": self.ignore_in,
                            "kept": self.outcomes["kept"],
                            "clipped": self.outcomes["clipped"],
                            "ignore": self.outcomes["ignore"],
                            "dropped": {k: self.dropped[k] for k in
                                        [*dropped_keys, "duplicate_image", "image_error"]},
                            "records_out": self.out_annotations}}


def _totals(sources: Mapping[str, Any]) -> dict[str, Any]:
    t: dict[str, Any] = {"images_in": 0, "images_out": 0, "images_failed": 0,
                         "images_duplicate": 0, "annotations_in": 0, "annotation_records_out": 0}
    for s in sources.values():
        t["images_in"] += s["images"]["in"]
        t["images_out"] += s["images"]["out"]
        t["images_failed"] += sum(s["images"]["failed"].values())
        t["images_duplicate"] += s["images"]["duplicate"]
        t["annotations_in"] += s["annotations"]["in"]
        t["annotation_records_out"] += s["annotations"]["records_out"]
    return t


def sweep(out: Path, record: dict[str, Any]) -> int:
    """Delete files under ``out/images`` that no annotation file refers to, and stray ``.part``s.

    They come from duplicates (tiled before dedupe could know), interrupted writes, or an
    earlier build with other options. Returns how many files were removed.
    """
    referenced = record.pop("_referenced")
    removed = 0
    images = out / "images"
    for split_dir in sorted(images.iterdir()) if images.is_dir() else []:
        keep = set(referenced.get(split_dir.name, ()))
        if not split_dir.is_dir():
            continue
        with os.scandir(split_dir) as it:
            for entry in it:
                if entry.name not in keep:
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path)
                    else:
                        os.unlink(entry.path)
                    removed += 1
        if not keep:
            split_dir.rmdir()
    shutil.rmtree(out / WORK_DIR / "merge", ignore_errors=True)
    # Temporary files of atomic writes a killed build left elsewhere (annotations/, stats/,
    # .work/ results, build.json): never read, but they must not pile up or be published.
    for child in out.iterdir():
        if child.name == "images":
            continue
        stray = [child] if child.name.endswith(".part") else (
            list(child.rglob("*.part")) if child.is_dir() else [])
        for path in stray:
            if path.is_file() and not path.is_symlink():
                path.unlink()
                removed += 1
    return removed


# --------------------------------------------------------------------------------------------
# Reporting and verification


def accounting_problems(record: Mapping[str, Any]) -> list[str]:
    """Sources whose annotations do not add up: in = kept + clipped + ignore + dropped."""
    problems = []
    for name, s in record["sources"].items():
        a = s["annotations"]
        total = a["kept"] + a["clipped"] + a["ignore"] + sum(a["dropped"].values())
        if total != a["in"]:
            problems.append(f"{name}: annotations in {a['in']} != kept {a['kept']} + clipped "
                            f"{a['clipped']} + ignore {a['ignore']} + dropped "
                            f"{sum(a['dropped'].values())}")
        im = s["images"]
        if sum(im["failed"].values()) + im["duplicate"] > im["in"]:
            problems.append(f"{name}: more images failed or duplicate than came in")
    return problems


def verify_build(out: Path) -> dict[str, Any]:
    """Re-check a finished build; raise :class:`TinysetError` listing what is wrong.

    Checks: ``build.json`` is ours; each annotation file's SHA-256; per-source accounting adds up;
    per-split image and annotation counts agree with the files; every image exists and is
    ``tile × tile``; every box lies inside its image; no original image spans two splits.
    """
    from tinyset_builder.imageio import image_size
    from tinyset_builder.progress import track
    from tinyset_builder.splits import find_leaks

    out = Path(out)
    record = load_build_record(out)
    problems = accounting_problems(record)
    tile = record["options"]["tiling"]["tile"]
    all_images: list[CocoImage] = []
    for split, f in record["annotation_files"].items():
        path = out / f["file"]
        data = path.read_bytes() if path.is_file() else b""
        if hashlib.sha256(data).hexdigest() != f["sha256"]:
            problems.append(f"{path}: sha256 differs from build.json")
            continue
        coco = json.loads(data)
        n_expected = sum(s["images"]["out_by_split"][split] for s in record["sources"].values())
        if len(coco["images"]) != f["images"] or len(coco["images"]) != n_expected:
            problems.append(f"{path}: {len(coco['images'])} images, build.json says "
                            f"{f['images']} (sources: {n_expected})")
        if len(coco["annotations"]) != f["annotations"]:
            problems.append(f"{path}: {len(coco['annotations'])} annotations, build.json says "
                            f"{f['annotations']}")
        images = [CocoImage.from_dict(d) for d in coco["images"]]
        all_images += images
        for img in track(images, f"checking {split} images"):
            try:
                size = image_size(out / "images" / split / img.file_name)
            except TinysetError as e:
                problems.append(str(e))
                continue
            if size != (tile, tile):
                problems.append(f"{img.file_name}: {size[0]}x{size[1]}, expected {tile}x{tile}")
        for a in coco["annotations"]:
            x, y, w, h = a["bbox"]
            if not (x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= tile + 1e-6
                    and y + h <= tile + 1e-6):
                problems.append(f"{path}: annotation {a['id']} box {a['bbox']} outside the image")
    n_records = sum(s["annotations"]["records_out"] for s in record["sources"].values())
    n_files = sum(f["annotations"] for f in record["annotation_files"].values())
    if n_records != n_files:
        problems.append(f"annotation records: sources say {n_records}, files hold {n_files}")
    for (source, original), splits in find_leaks(all_images).items():
        problems.append(f"{source}/{original}: outputs in several splits {sorted(splits)}")
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise TinysetError(f"{out}: build does not verify: {'; '.join(problems[:5])}{more}")
    return record


def summary_table(record: Mapping[str, Any]) -> Any:
    """A rich table of the per-source accounting."""
    from rich.table import Table

    table = Table("source", "images in", "failed", "dup", "outputs", "large-obj drop",
                  "empty drop", "ann in", "kept", "clipped", "ignore", "dropped",
                  title="TinySet build")
    for name, s in record["sources"].items():
        im, a = s["images"], s["annotations"]
        dropped = ", ".join(f"{k} {v}" for k, v in a["dropped"].items() if v) or "0"
        table.add_row(name, str(im["in"]), str(sum(im["failed"].values())),
                      str(im["duplicate"]), str(im["out"]), str(im["dropped_large_objects"]),
                      str(im["dropped_empty"]), str(a["in"]), str(a["kept"]),
                      str(a["clipped"]), str(a["ignore"]),
                      dropped)
    return table
