"""Label-efficient methods beside their plain baselines: same labels, backbone and CPU budget.

Each *family* of Table I pairs its methods with the plain detectors they improve on, under the
same derived labels (``tinyset derive``'s variants, one per seed), the same backbone and the same
``cpu`` budget (CPU-minutes spent as counted FLOPs, so a method whose step costs more gets fewer
steps). Every pair runs through the benchmark runner (``adapter = native`` rows of
``manifests/methods.toml``), over seeds; the table gives AP50 mean ± sd (sample sd over seeds)
and each method's gap to each baseline, with the paper's gap beside it; a plot goes with it.

Families (``--family``; each is one function registered in :data:`FAMILIES`, owned by the
engineer of its methods): ``semi`` (Soft Teacher, PseCo vs labelled-only Faster R-CNN at
semi-1/5/10; the baseline trains on the methods' labelled views, flip + one colour operation,
:data:`TEACHER_VIEWS`), ``sparse`` (Co-mining, Calibrated Teacher vs Faster R-CNN and RetinaNet
at shot-1/3/5), ``noise`` (DN-TOD vs FCOS, SSD-Det vs Faster R-CNN at
noise-20/40), ``full`` (RFLA, HS-FPN vs Faster R-CNN), ``weak`` (P2BNet, PointOBB-v2/v3,
Point Teacher, Point2RBox-v3 from ``points-center`` beside Faster R-CNN on the true boxes and
DEAL; its table gives AP25 and AP50 mean ± sd, AP25 by object size (re-evaluated from the stored
predictions, :func:`size_ap`) and each method's pseudo-box quality on the training split). APvt
and APt (means) are reported beside AP50.

The synthetic demo build may be too small to learn from: ``--synth DIR`` writes a larger built
dataset of the synthetic sources' learnable shapes (``--synth-train`` images of
``--synth-size``² with ``--synth-objects`` objects each, sides in ``--synth-sides MIN,MAX`` px:
4,24 by default; 2,10 gives a very-tiny build on which a plain Faster R-CNN does not saturate)
and benchmarks on it. ``--devices cpu,cpu`` runs two runs at a time, one torch thread each.

Usage::

    python benchmarks/label_efficient.py --family semi --synth /tmp/le_synth \\
        --settings semi-1 --seeds 0,1,2 --minutes 2 --runs /tmp/le_runs --out /tmp/le_out

CPU is scarce: every run costs its budget plus prediction; start with one setting and one seed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@dataclass(frozen=True)
class Pairing:
    """One family's rows for one setting: baselines and the methods compared with them."""

    setting: str
    baselines: tuple[Any, ...]  # benchmark.manifest.Method
    methods: tuple[Any, ...]
    #: plan options for every run of the pairing (before ``--extra``)
    extra: Mapping[str, Any] = field(default_factory=dict)


#: Soft Teacher's and PseCo's labelled branch flips and applies one colour operation, as Soft
#: Teacher's authors' supervised baseline does; the semi family's baseline sees the same views.
TEACHER_VIEWS = {"augment": "flip_colour"}


#: family name -> function(manifest methods, settings or None) -> pairings.
FAMILIES: dict[str, Callable[[Sequence[Any], Sequence[str] | None], list[Pairing]]] = {}


def family(name: str) -> Callable[[Callable], Callable]:
    """Register a family's pairing function under ``name``."""
    def register(fn: Callable) -> Callable:
        FAMILIES[name] = fn
        return fn
    return register


def _rows(manifest: Sequence[Any], paradigm: str, setting: str) -> list[Any]:
    return [m for m in manifest if m.paradigm == paradigm and m.setting == setting]


@family("semi")
def semi_family(manifest: Sequence[Any], settings: Sequence[str] | None) -> list[Pairing]:
    """Soft Teacher and PseCo vs the labelled-only Faster R-CNN (rows 15–23)."""
    out = []
    for s in settings or ("semi-1", "semi-5", "semi-10"):
        rows = _rows(manifest, "semi", s)
        out.append(Pairing(s, tuple(m for m in rows if m.adapter == "torchvision"),
                           tuple(m for m in rows if m.adapter == "native"), TEACHER_VIEWS))
    return out


@family("sparse")
def sparse_family(manifest: Sequence[Any], settings: Sequence[str] | None) -> list[Pairing]:
    """Co-mining and Calibrated Teacher vs Faster R-CNN (rows 24–32) and RetinaNet (the
    torchvision RetinaNet of row 1 on the same k-shot labels; both methods are RetinaNets)."""
    retina = next(m for m in manifest if m.id == "1")
    out = []
    for s in settings or ("shot-1", "shot-3", "shot-5"):
        rows = _rows(manifest, "sparse", s)
        base = tuple(m for m in rows if m.adapter == "torchvision")
        extra = replace(retina, id=f"retinanet-{s}", paradigm="sparse", setting=s, paper={})
        out.append(Pairing(s, (*base, extra), tuple(m for m in rows if m.adapter == "native")))
    return out


@family("noise")
def noise_family(manifest: Sequence[Any], settings: Sequence[str] | None) -> list[Pairing]:
    """DN-TOD vs FCOS and SSD-Det vs Faster R-CNN on the same noisy boxes (rows 7–14)."""
    out = []
    for s in settings or ("noise-20", "noise-40"):
        rows = _rows(manifest, "noise", s)
        out.append(Pairing(s, tuple(m for m in rows if m.adapter == "torchvision"),
                           tuple(m for m in rows if m.adapter == "native")))
    return out


@family("full")
def full_family(manifest: Sequence[Any], settings: Sequence[str] | None) -> list[Pairing]:
    """RFLA and HS-FPN (rows 5, 6) vs Faster R-CNN (row 2) on the full labels."""
    rows = _rows(manifest, "full", "full")
    return [Pairing("full", tuple(m for m in rows if m.id == "2"),
                    tuple(m for m in rows if m.id in ("5", "6")))]


@family("weak")
def weak_family(manifest: Sequence[Any], settings: Sequence[str] | None) -> list[Pairing]:
    """The point-supervised rows 33–37 (trained from ``points-center``) beside Faster R-CNN on the
    true boxes (row 2, ``full``) and DEAL (its own setting: boxes for training, one point prompt
    per category at inference, ``p2sod-1``). ``settings`` may swap ``points-center`` for another
    points variant (e.g. ``points-jitter``)."""
    rows = [m for m in manifest if m.paradigm == "weak"]
    base = tuple(m for m in manifest if m.id in ("2", "deal"))
    out = []
    for s in settings or ("points-center",):
        out.append(Pairing(s, base, tuple(replace(m, setting=s) for m in rows)))
    return out


#: IoU at which a family's table also gives AP by object size (the stored size APs are at 0.5,
#: the paper's convention). The weak family's headline is AP25, and its bag methods fail on the
#: very tiny objects first, so its table shows AP25 per size.
SIZE_IOU: dict[str, str] = {"weak": "0.25"}


def size_ap(record: Mapping[str, Any] | None, iou: str) -> dict[str, float | None] | None:
    """AP of each size bucket (vt, t, s, m; in %, None without objects of that size) at ``iou``,
    re-evaluated from the run's stored predictions against its ground truth and prompts; None
    when the run or its files are gone."""
    params = (((record or {}).get("metrics") or {}).get("params")) or {}
    gt, dt = params.get("gt"), params.get("dt")
    prompts = (params.get("prompts") or {}).get("file")
    if not gt or not dt or not Path(gt).is_file() or not Path(dt).is_file():
        return None
    from benchmark.evaluate.api import evaluate

    m = evaluate(gt, dt, prompts=prompts, size_iou=iou,
                 class_agnostic=bool(params.get("class_agnostic", True)))
    return {k: None if m[f"AP{k}"] < 0 else round(100 * m[f"AP{k}"], 2)   # -1: no such object
            for k in ("vt", "t", "s", "m")}


#: Score above which a detection counts as confident in :func:`detection_fit`.
FIT_SCORE = 0.3


def detection_fit(record: Mapping[str, Any] | None, *, score_thr: float = FIT_SCORE,
                  iou: float = 0.25) -> dict[str, float | None] | None:
    """How a run's confident detections (score ≥ ``score_thr``) sit on the test objects,
    matched with the evaluator's own greedy rule (:func:`benchmark.evaluate.api.match_detections`)
    at ``iou``: ``recall`` (share of the non-crowd objects matched), ``precision`` (share of
    the confident detections matched; those matching a crowd region are left out),
    ``per_image`` (confident detections per test image) and ``side_ratio``, the median of
    sqrt(detection area / object area) over the matches (1 = the right size; above 1, boxes too
    large). AP folds all of this into one number with the ranking; these say apart whether
    the objects were found, how many boxes were wrong and how well the found boxes fit. None
    for a prompted run (DEAL is scored on its prompted units only) or when the run's files are
    gone."""
    params = (((record or {}).get("metrics") or {}).get("params")) or {}
    gt, dt = params.get("gt"), params.get("dt")
    if params.get("prompts") or not gt or not dt or not Path(gt).is_file() \
            or not Path(dt).is_file():
        return None
    import numpy as np

    from benchmark.evaluate.api import match_detections
    from tinyset_builder.io import read_json

    truth = read_json(gt)
    dets = [d for d in read_json(dt) if d["score"] >= score_thr]
    matches = match_detections(truth, dets, iou=iou,
                               class_agnostic=bool(params.get("class_agnostic", True)))
    gt_area = {a["id"]: a["bbox"][2] * a["bbox"][3] for a in truth["annotations"]}
    crowd = {a["id"] for a in truth["annotations"] if a.get("iscrowd")}
    found = total = false = 0
    ratios = []
    for m in matches.values():
        for gid, hit in zip(m.gt_id, m.gt_matched, strict=True):
            if gid not in crowd:
                total += 1
                found += bool(hit)
        for k, outcome, gid in zip(m.dt_index, m.dt_outcome, m.dt_gt_id, strict=True):
            false += outcome == "fp"
            if outcome == "tp":
                w, h = dets[k]["bbox"][2:]
                ratios.append(float(np.sqrt(w * h / max(gt_area[gid], 1e-9))))
    judged = len(ratios) + false
    return {"recall": round(found / total, 4) if total else None,
            "precision": round(len(ratios) / judged, 4) if judged else None,
            "per_image": round(len(dets) / max(len(truth["images"]), 1), 2),
            "side_ratio": round(float(np.median(ratios)), 3) if ratios else None}


def weak_table(rows: list[dict[str, Any]]) -> str:
    """Markdown for the weak family: AP25 and AP50 mean ± sd, AP25 by object size (means),
    pseudo-box quality on the training split (mean IoU with the true boxes, by size, median
    size ratio), paper's AP25, and how the test detections fit the objects
    (:func:`detection_fit`, means over seeds)."""
    def cell(values: Sequence[float | None]) -> str:
        mean, sd, n = mean_sd(values)
        if mean is None:
            return "—"
        return f"{mean:.2f}" + (f" ± {sd:.2f}" if sd is not None else "") + f" (n={n})"

    lines = ["| row | AP25 (mean ± sd) | AP50 (mean ± sd) | AP25 vt / t / s / m "
             "| paper AP25 / AP50 | pseudo mIoU (train) | mIoU vt / t / s / m "
             "| pseudo size ratio | objects found (IoU ≥ 0.25, score ≥ 0.3) "
             "| found boxes' side / true side | status |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        pq = [p for p in r.get("pseudo", []) if p]
        by_size = [b for b in r.get("AP25_by_size", []) if b]
        fit = [f for f in r.get("fit", []) if f]

        def avg(key: str, dicts: list = pq, digits: int = 3) -> str:
            vals = [d[key] for d in dicts if d.get(key) is not None]
            return "—" if not vals else f"{sum(vals) / len(vals):.{digits}f}"

        paper = (f"{r['paper_AP25'] if r.get('paper_AP25') is not None else '—'} / "
                 f"{r['paper_AP50'] if r['paper_AP50'] is not None else '—'}")
        sizes = " / ".join(avg(f"pseudo_mean_iou_{k}") for k in ("vt", "t", "s", "m"))
        ap_sizes = " / ".join(avg(k, by_size, 1) for k in ("vt", "t", "s", "m"))
        # the row's own labels: row 2 trains on the true boxes, DEAL on p2sod-1
        labels = r.get("labels", r["setting"])
        lines.append(f"| {r['id']} {r['name']} ({labels}) | {cell(r.get('AP25', []))} | "
                     f"{cell(r['AP50'])} | {ap_sizes} | {paper} | {avg('pseudo_mean_iou')} | "
                     f"{sizes} | "
                     f"{avg('pseudo_size_ratio_median')} | {avg('recall', fit, 2)} | "
                     f"{avg('side_ratio', fit, 2)} | {', '.join(r['status'])} |")
    return "\n".join(lines)


def bag_ceiling(coco_json: Path, data_dir: Path, watershed_images: int = 0) -> str:
    """The best IoU any proposal of P2BNet's / PointOBB-v3's bag can reach, per object size.

    A MIL method can only pick (a weighted mean of) its bag's proposals, so the best proposal's
    IoU with the true box bounds its pseudo box. Bags are the authors' (scales in units of
    ``min(H, W)/100`` of the tile, 7 ratios, centred on the point, symmetric cut); measured on
    the training split's true boxes (``points-center`` keeps them beside the points). With
    ``watershed_images``, a last row gives the IoU of Point2RBox-v3's watershed box priors on
    that many tiles: what its generator starts from instead of a bag.
    """
    import numpy as np

    from baselines.methods import p2bnet, pointobb_v3
    from baselines.point_nets import cut_symmetric
    from baselines.points import load_point_samples, paired_iou, point_bags
    from tinyset_builder.io import read_json

    sides = {int(i["id"]): min(int(i["width"]), int(i["height"]))
             for i in read_json(coco_json)["images"]}
    samples, _ = load_point_samples(coco_json, data_dir)
    lines = ["| bag | objects | best-IoU mean: all / vt / t / s / m | share ≥ 0.25 | share ≥ 0.5 "
             "| smallest proposal (px) |", "|---|---|---|---|---|---|"]
    for name, cfg in (("P2BNet", p2bnet.Config()), ("PointOBB-v3", pointobb_v3.Config())):
        best, true, smallest = [], [], []
        for s in samples:
            if s.true_boxes is None or not len(s.points):
                continue
            tile = sides[s.image_id]
            unit = tile / 100.0
            bags = cut_symmetric(point_bags(s.points, [k * unit for k in cfg.base_scales],
                                            cfg.base_ratios), s.points, tile)
            n, m = bags.shape[:2]
            iou = paired_iou(bags.reshape(-1, 4), np.repeat(s.true_boxes, m, axis=0))
            best.append(iou.reshape(n, m).max(axis=1))
            true.append(s.true_boxes)
            smallest.append(min(cfg.base_scales) * unit)
        if not best:
            continue
        lines.append(_ceiling_row(name, best, true, f"{min(smallest):.1f}–{max(smallest):.1f}"))
    if watershed_images:
        lines.append(_watershed_row(samples, watershed_images))
    return "\n".join(lines)


def _watershed_row(samples: list[Any], images: int) -> str:
    """Point2RBox-v3's watershed box priors on the first ``images`` whole tiles: the boxes its
    generator learns to regress (no proposal: the last column is the prior's median side
    ratio)."""
    import numpy as np

    from baselines.methods.point2rbox_v3 import Config, watershed_priors
    from baselines.points import paired_iou, pseudo_quality, rbox_to_hbox
    from tinyset_builder.imageio import read_image

    priors, true = [], []
    for s in [s for s in samples if s.true_boxes is not None and len(s.points)][:images]:
        # the pixels the generator sees in training (baselines.data.read_tensor), as an array
        pixels = read_image(s.path).astype(np.float32) / 255
        priors.append(rbox_to_hbox(watershed_priors(pixels, s.points, Config().max_radius)))
        true.append(s.true_boxes)
    ratio = pseudo_quality(priors, true)["pseudo_size_ratio_median"]
    return _ceiling_row(f"Point2RBox-v3 watershed priors ({len(priors)} tiles)",
                        [paired_iou(p, t) for p, t in zip(priors, true, strict=True)], true,
                        f"side ratio {ratio:.2f}")


def _ceiling_row(name: str, best: list[Any], true: list[Any], last: str) -> str:
    """One row of the ceiling table: IoUs with the ``true`` boxes (xyxy), binned by their side
    (vt < 8, t, s < 32, m)."""
    import numpy as np

    b, t = np.concatenate(best), np.concatenate(true)
    z = np.sqrt((t[:, 2] - t[:, 0]) * (t[:, 3] - t[:, 1]))
    bins = [b]
    for lo, hi in ((0, 8), (8, 16), (16, 32), (32, np.inf)):
        bins.append(b[(z >= lo) & (z < hi)])
    means = " / ".join("—" if not len(x) else f"{x.mean():.3f}" for x in bins)
    return (f"| {name} | {len(b)} | {means} | {(b >= 0.25).mean():.3f} | "
            f"{(b >= 0.5).mean():.3f} | {last} |")


#: Families with a table of their own (the default is :func:`table`).
TABLES: dict[str, Callable[[list[dict[str, Any]]], str]] = {"weak": weak_table}


# ------------------------------------------------------------------------- synthetic build
def write_synth_build(root: Path, *, train: int, test: int, size: int, objects: int,
                      min_side: int = 4, max_side: int = 24, seed: int = 0) -> Path:
    """A built dataset of synthetic scenes with tiny objects (sides in ``[min_side, max_side]``
    px, :func:`tinyset_builder.synth.built.write_scene_build`); reused when it exists with the
    same parameters, an error when its parameters differ."""
    from tinyset_builder.io import read_json
    from tinyset_builder.synth.built import write_scene_build

    options = {"size": size, "objects": objects, "train": train, "test": test, "seed": seed,
               "min_side": min_side, "max_side": max_side}
    if (root / "build.json").is_file():
        found = read_json(root / "build.json").get("options", {})
        # Builds written before the side range was an option used 4-24 px.
        found = {"min_side": 4, "max_side": 24, **found}
        if found != options:
            raise SystemExit(f"{root} holds a synthetic build with other parameters "
                             f"({found}); choose another --synth folder")
        return root
    return write_scene_build(root, {"train": train, "val": 1, "test": test}, size=size,
                             objects=objects, min_side=min_side, max_side=max_side, seed=seed,
                             options=options)


# ------------------------------------------------------------------------------- running
def tile_size(data: Path) -> int | None:
    """The side shared by every image of a build's test split (None if they differ), so a
    synthetic build passed with ``--data`` is tested at its own scale, as with ``--synth``
    (the ``cpu`` schedule's ``test_size`` of 1024 would upscale a 256² image 4×)."""
    from tinyset_builder.io import read_json

    images = read_json(data / "annotations" / "test.json").get("images", [])
    sides = {int(v) for img in images for v in (img["width"], img["height"])}
    return sides.pop() if len(sides) == 1 else None


def row_detector(m: Any) -> str | None:
    """The detector a row trains: a plain baseline's ``model``, a native method's ``DETECTOR``
    (None for methods without one, e.g. the point generators)."""
    if m.adapter != "native":
        return str(m.options.get("model", "faster_rcnn"))
    from importlib import import_module

    from baselines.methods import METHODS

    return getattr(import_module(METHODS[m.options["method"]]), "DETECTOR", None)


def burn_in(pairing: Pairing, rows: Sequence[Any], data: Path, runs: Path, *,
            seeds: Sequence[int], minutes: float, extra: dict[str, Any],
            devices: Sequence[str]) -> dict[tuple[str, int], Path]:
    """The warm start of a pairing: for each detector its rows train, the first plain baseline
    of that detector trained ``minutes`` CPU-minutes on the pairing's labels (stored under
    ``runs/burn-in-<minutes>``); returns ``(detector, seed) -> model file``."""
    from baselines.supervised import FINAL
    from benchmark.results import ResultsStore
    from benchmark.runner import plan, run_benchmark

    wanted = {row_detector(m) for m in rows}
    if None in wanted:
        raise SystemExit("--warm-start: a row has no detector to warm-start "
                         f"({', '.join(m.id for m in rows if row_detector(m) is None)})")
    first = {}
    for b in pairing.baselines:
        first.setdefault(row_detector(b), b)
    missing = wanted - set(first)
    if missing:
        raise SystemExit(f"--warm-start: no plain baseline trains {', '.join(sorted(missing))}")
    store_dir = runs / f"burn-in-{minutes:g}"
    specs = plan([first[d] for d in sorted(wanted)], data, store_dir, seeds=seeds, schedule="cpu",
                 extra={"minutes": minutes, **extra})
    run_benchmark(specs, devices=devices)
    out = {}
    detector_of = {m.id: d for d, m in first.items()}
    store = ResultsStore(store_dir)
    for s in specs:
        rec = store.load(s.key) or {}
        if rec.get("status") != "ok":
            raise SystemExit(f"--warm-start: burn-in run {s.key} is {rec.get('status')}")
        out[(detector_of[s.method["id"]], s.seed)] = (
            Path(rec["config"]["job"]["work_dir"]) / FINAL)
    return out


def control(row: Any, method: str) -> Any:
    """A control row: ``row`` (labels, options, budget) trained by another native ``method``,
    e.g. SSD-Det's row with ``rfla`` is its detector and RPN on the noisy boxes without bags."""
    return replace(row, id=f"{row.id}-as-{method}", name=f"{row.name} as {method}",
                   options={**row.options, "method": method}, paper={})


def run_family(name: str, data: Path, runs: Path, *, settings: Sequence[str] | None,
               seeds: Sequence[int], minutes: float, extra: dict[str, Any],
               only: Sequence[str] | None = None, devices: Sequence[str] = ("cpu",),
               warm_start: float | None = None,
               as_method: str | None = None) -> list[dict[str, Any]]:
    """Run (or reuse) every baseline and method run of a family; return one row per
    (setting, row id) with AP50 per seed. ``devices`` as ``tinyset benchmark --device``
    (``cpu,cpu`` runs two at once, one torch thread each).

    ``warm_start``: every row (baselines included) starts from the same labelled-only model of
    its detector, trained that many CPU-minutes (:func:`burn_in`), then spends ``minutes``
    more; the budgets stay equal and the methods' teachers start from a detector that detects.

    ``as_method``: the selected method rows run as :func:`control` rows of that native method.
    """
    from benchmark.manifest import load_methods
    from benchmark.results import ResultsStore
    from benchmark.runner import plan, run_benchmark

    manifest = list(load_methods().methods)
    out = []
    for pairing in FAMILIES[name](manifest, settings):
        rows = [m for m in (*pairing.baselines, *pairing.methods)
                if not only or m.id in only or m.options.get("method") in only]
        if as_method:
            rows = [control(m, as_method) if m in pairing.methods else m for m in rows]
        run_extra = {**pairing.extra, **extra}
        if warm_start:
            ckpt = burn_in(pairing, rows, data, runs, seeds=seeds, minutes=warm_start,
                           extra=run_extra, devices=devices)
            specs = [spec for m in rows for seed in seeds for spec in plan(
                [m], data, runs, seeds=[seed], schedule="cpu",
                extra={"minutes": minutes, **run_extra,
                       "init_checkpoint": str(ckpt[(row_detector(m), seed)])})]
        else:
            specs = plan(rows, data, runs, seeds=seeds, schedule="cpu",
                         extra={"minutes": minutes, **run_extra})
        run_benchmark(specs, devices=devices)
        store = ResultsStore(runs)
        for m in rows:
            recs = [store.load(s.key) for s in specs if s.method["id"] == m.id]
            ap = [((r or {}).get("metrics") or {}).get("AP50") for r in recs]
            out.append({"setting": pairing.setting, "labels": m.setting, "id": m.id,
                        "name": m.name,
                        "role": "baseline" if m in pairing.baselines else "method",
                        "model": m.options.get("method") or m.options.get("model"),
                        "paper_AP50": m.paper.get("AP50"),
                        "status": [(r or {}).get("status", "missing") for r in recs],
                        "AP50": [None if v is None else round(100 * v, 2) for v in ap],
                        **{k: [None if v is None else round(100 * v, 2) for v in
                               [((r or {}).get("metrics") or {}).get(k) for r in recs]]
                           for k in ("AP25", "APvt", "APt")},
                        "paper_AP25": m.paper.get("AP25"),
                        "pseudo": [{k: v for k, v in ((r or {}).get("notes") or {}).items()
                                    if k.startswith("pseudo_") and k != "pseudo_labels"}
                                   for r in recs],
                        "iterations": [((r or {}).get("notes") or {}).get("iterations")
                                       for r in recs],
                        "sub_pixel": [((r or {}).get("detections") or {}).get("sub_pixel")
                                      for r in recs],
                        "fit": [detection_fit(r) for r in recs]})
            if name in SIZE_IOU:
                iou = SIZE_IOU[name]
                out[-1][f"AP{round(100 * float(iou))}_by_size"] = [size_ap(r, iou) for r in recs]
    return out


def mean_sd(values: Sequence[float | None]) -> tuple[float | None, float | None, int]:
    """Mean and sample standard deviation of the measured values (None = not measured)."""
    got = [v for v in values if v is not None]
    if not got:
        return None, None, 0
    mean = sum(got) / len(got)
    sd = math.sqrt(sum((v - mean) ** 2 for v in got) / (len(got) - 1)) if len(got) > 1 else None
    return mean, sd, len(got)


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: AP50 mean ± sd per row, gap to each baseline of its setting, the paper's gap."""
    lines = ["| setting | row | role | AP50 (mean ± sd, n) | gap to baselines | paper AP50 "
             "(gap) | APvt / APt (mean) | iterations | collapsed |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mean, sd, n = mean_sd(r["AP50"])
        cell = "—" if mean is None else (f"{mean:.2f}" + (f" ± {sd:.2f}" if sd is not None
                                                          else "") + f" (n={n})")
        gaps, paper = [], "" if r["paper_AP50"] is None else f"{r['paper_AP50']:.1f}"
        for b in rows:
            if b["setting"] != r["setting"] or b["role"] != "baseline" or r["role"] != "method":
                continue
            bm, _, _ = mean_sd(b["AP50"])
            if mean is not None and bm is not None:
                gaps.append(f"{mean - bm:+.2f} vs {b['name']}")
            if b["paper_AP50"] is not None and r["paper_AP50"] is not None:
                paper += f" ({r['paper_AP50'] - b['paper_AP50']:+.1f} vs {b['name']})"
        sizes = " / ".join("—" if mean_sd(r.get(k, []))[0] is None
                           else f"{mean_sd(r.get(k, []))[0]:.2f}" for k in ("APvt", "APt"))
        lines.append(f"| {r['setting']} | {r['id']} {r['name']} | {r['role']} | {cell} | "
                     f"{'; '.join(gaps)} | {paper} | {sizes} | {r['iterations']} | "
                     f"{collapsed(r.get('sub_pixel', []))} |")
    return "\n".join(lines)


def collapsed(shares: Sequence[float | None]) -> str:
    """``k of n`` seeds whose box regression collapsed (over half the boxes under 1 px)."""
    from benchmark.results import is_collapsed

    got = [v for v in shares if v is not None]
    return f"{sum(is_collapsed(v) for v in got)} of {len(got)}" if got else "—"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """AP50 mean ± sd per setting and row (error bars = sd over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = list(dict.fromkeys(r["setting"] for r in rows))
    names = list(dict.fromkeys(r["name"] + ("" if r["role"] == "method" else
                                            f" [{r['model']}]") for r in rows))
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(settings) * max(1, len(names)) / 3, 3.2))
    width = 0.8 / max(1, len(names))
    for j, label in enumerate(names):
        xs, ys, es = [], [], []
        for i, s in enumerate(settings):
            for r in rows:
                key = r["name"] + ("" if r["role"] == "method" else f" [{r['model']}]")
                if r["setting"] == s and key == label:
                    mean, sd, _ = mean_sd(r["AP50"])
                    if mean is not None:
                        xs.append(i + j * width)
                        ys.append(mean)
                        es.append(sd or 0.0)
        ax.bar(xs, ys, width, yerr=es, label=label, capsize=2)
    ax.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(settings))], settings)
    ax.set_ylabel("AP50 (%)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--family", required=True, choices=sorted(FAMILIES))
    p.add_argument("--data", type=Path, help="a built dataset (default: --synth)")
    p.add_argument("--synth", type=Path, help="write/reuse a synthetic build here")
    p.add_argument("--synth-train", type=int, default=400)
    p.add_argument("--synth-test", type=int, default=40)
    p.add_argument("--synth-size", type=int, default=256)
    p.add_argument("--synth-objects", type=int, default=12)
    p.add_argument("--synth-sides", default="4,24", metavar="MIN,MAX",
                   help="object side range in px of the synthetic build")
    p.add_argument("--settings", help="comma list (default: the family's three)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--minutes", type=float, default=2.0, help="cpu budget per run")
    p.add_argument("--only", help="comma list of row ids or method names to run")
    p.add_argument("--extra", default="{}", help="JSON plan/method overrides for every run")
    p.add_argument("--warm-start", type=float, metavar="MINUTES",
                   help="start every row from the same labelled-only model of its detector "
                        "trained MINUTES CPU-minutes (stored under RUNS/burn-in-MINUTES)")
    p.add_argument("--as-method", metavar="METHOD",
                   help="a control: the selected method rows trained by this native method "
                        "instead (e.g. --only 14 --as-method rfla)")
    p.add_argument("--devices", default="cpu",
                   help="comma list as tinyset benchmark --device (cpu,cpu: two runs at once)")
    p.add_argument("--runs", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--bag-ceiling", type=Path, metavar="POINTS_JSON",
                   help="weak family: only print the MIL bags' best-IoU ceiling on this "
                        "points variant's train.json (of --data) and exit")
    p.add_argument("--watershed-tiles", type=int, default=20, metavar="N",
                   help="with --bag-ceiling: also score Point2RBox-v3's watershed box priors "
                        "on the first N training tiles (0: skip; ~1 s per 1024² tile)")
    a = p.parse_args(argv)
    if a.bag_ceiling is not None:
        if a.data is None:
            p.error("--bag-ceiling needs --data")
        md = bag_ceiling(a.bag_ceiling, a.data, a.watershed_tiles)
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "weak_bag_ceiling.md").write_text(md + "\n")
        print(md)
        return 0
    if a.data is None and a.synth is None:
        p.error("give --data or --synth")
    lo, hi = (int(v) for v in a.synth_sides.split(","))
    data = a.data or write_synth_build(a.synth, train=a.synth_train, test=a.synth_test,
                                       size=a.synth_size, objects=a.synth_objects,
                                       min_side=lo, max_side=hi)
    extra = json.loads(a.extra)
    tile = a.synth_size if a.data is None else tile_size(data)
    if tile is not None:
        extra.setdefault("test_size", tile)
    rows = run_family(a.family, data, a.runs, settings=a.settings.split(",") if a.settings
                      else None, seeds=[int(s) for s in a.seeds.split(",")],
                      minutes=a.minutes, extra=extra,
                      only=a.only.split(",") if a.only else None,
                      devices=a.devices.split(","), warm_start=a.warm_start,
                      as_method=a.as_method)
    a.out.mkdir(parents=True, exist_ok=True)
    md = TABLES.get(a.family, table)(rows)
    (a.out / f"{a.family}.md").write_text(md + "\n")
    (a.out / f"{a.family}.json").write_text(json.dumps(
        {"family": a.family, "data": str(data), "minutes": a.minutes, "extra": extra,
         "warm_start": a.warm_start,
         "seeds": a.seeds, "rows": rows}, indent=1))
    plot(rows, a.out / f"{a.family}.png")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
