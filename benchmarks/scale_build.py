"""The build half of ``benchmarks/scale.py``: build memory and CPU at scale (issue 23).

``scale.py build`` synthesizes SKU110K and JHU-CROWD++ in their native layouts on cheap images
(800×600 JPEGs, one output tile each, distinct pixels so that dedupe keeps them all), runs
``tinyset build`` (2 workers) on designed combinations, each in a fresh process, and reads that
main process's peak RSS (``VmHWM``) and CPU time. The build holds one source at a time, so its
peak comes while the largest source is converted, on top of what the sources merged before it
left behind. The designed points put the larger source last in build order (SKU110K comes
after JHU-CROWD++ in SOURCES) and vary each part on its own, and the fit is

    peak ≈ a + l·annotations(last, largest source)
             + b·annotations(sources before it) + c·images(sources before it)

so ``b`` and ``c`` are what the total costs, and ``l`` what the largest source costs.
The extrapolation to TinySet-9M takes the worst order: its largest source (SKU110K, about
1.7 M boxes) last, after 7.3 M boxes on ``--full-images`` images. ``--big`` also measures the
issue's 2.5 M-annotation two-source build (SKU110K and JHU-CROWD++ at their real sizes and
densities: 6,667 × 150 and 4,372 × 345 boxes). Worker processes are not in the peak: each holds
one image (``benchmarks/build_speed.py`` measures them).

A point is ``source=IMAGESxBOXES[,source=IMAGESxBOXES]``. ``scale.py build-one`` (or this file
run directly) is one measured build, printing JSON; it is the child process of ``build``, so the
measured process imports only the build.

Usage::

    .venv/bin/python benchmarks/scale.py build --json small.json             # designed points
    .venv/bin/python benchmarks/scale.py build --points "" --big --include small.json
    .venv/bin/python benchmarks/scale.py build --code /tmp/old ...   # another source tree

Synthetic raw folders are kept under ``--work`` (default ``/tmp/tinyset_scale``) and reused;
build outputs are deleted after each measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

#: The issue's two-source build: SKU110K and JHU-CROWD++ at their real sizes and densities
#: (6,667 × 150 = 1,000,050 and 4,372 × 345 = 1,508,340 boxes).
BIG = "jhu_crowd=4372x345,sku110k=6667x150"
#: Designed points: the largest source last in build order, each part varied on its own.
POINTS = ("sku110k=1000x150", "sku110k=2000x150", "jhu_crowd=400x345,sku110k=2000x150",
          "jhu_crowd=800x345,sku110k=2000x150", "jhu_crowd=5000x10,sku110k=2000x150")
SOURCE_IDS = {"sku110k": 0, "jhu_crowd": 1}
WIDTH, HEIGHT = 800, 600
#: TinySet-9M for the extrapolation: total boxes and the largest source (SKU110K).
FULL_ANNOTATIONS = 9_000_000
FULL_LARGEST = 1_700_000
FULL_LARGEST_IMAGES = 11_743
GIB = 1 << 30
MIB = 1 << 20


# --------------------------------------------------------------------------------------------
# Synthetic sources


def _pixels(source: int, index: int) -> np.ndarray:
    """A flat gray image with ``(source, index)`` written as 32 black/white 8×8 blocks.

    Cheap to decode and encode, and distinct for every (source, index), so the build's exact
    dedupe keeps every image (blocks on the JPEG grid stay distinct through compression).
    """
    img = np.full((HEIGHT, WIDTH, 3), 128, dtype=np.uint8)
    code = (source << 24) | index
    for bit in range(32):
        img[8:16, 8 * bit + 8:8 * bit + 16] = 255 if code >> bit & 1 else 0
    return img


def _pool(work: Path, name: str, n: int) -> list[Path]:
    """``n`` distinct JPEGs of source ``name`` (made once, then hard-linked into raw folders)."""
    from PIL import Image

    folder = work / "pool" / name
    folder.mkdir(parents=True, exist_ok=True)
    sid = SOURCE_IDS[name]
    paths = []
    for i in range(n):
        path = folder / f"{i:06d}.jpg"
        if not path.is_file():
            tmp = path.with_suffix(".part")
            Image.fromarray(_pixels(sid, i)).save(tmp, "JPEG", quality=90)
            os.replace(tmp, path)
        paths.append(path)
    return paths


def _boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` small integer boxes ``[x, y, w, h]`` (6–24 px) inside the image."""
    wh = rng.integers(6, 25, size=(n, 2))
    x = rng.integers(0, WIDTH - wh[:, 0])
    y = rng.integers(0, HEIGHT - wh[:, 1])
    return np.column_stack([x, y, wh])


def _split(i: int) -> str:
    return "test" if i % 10 >= 8 else "val" if i % 10 == 7 else "train"


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not dst.exists():
        os.link(src, dst)


def synth_sku110k(work: Path, raw: Path, n: int, per_image: int) -> None:
    """SKU110K layout: flat ``<split>_<i>.jpg`` and one CSV of corner boxes per split."""
    from tinyset_builder.formats.sku110k_csv import format_sku110k_row

    base = raw / "sku110k" / "SKU110K_fixed"
    pool = _pool(work, "sku110k", n)
    rng = np.random.default_rng(110)
    rows: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for i in range(n):
        name = f"{_split(i)}_{i}.jpg"
        _link(pool[i], base / "images" / name)
        for x, y, w, h in _boxes(rng, per_image).tolist():
            rows[_split(i)].append(format_sku110k_row(name, (x, y, x + w, y + h), WIDTH,
                                                      HEIGHT))
    (base / "annotations").mkdir(parents=True, exist_ok=True)
    for split, lines in rows.items():
        (base / "annotations" / f"annotations_{split}.csv").write_text("\n".join(lines) + "\n")


def synth_jhu_crowd(work: Path, raw: Path, n: int, per_image: int) -> None:
    """JHU-CROWD++ layout: per split ``images/``, ``gt/<name>.txt`` and ``image_labels.txt``."""
    from tinyset_builder.formats.jhu_txt import format_image_label, format_jhu_head

    base = raw / "jhu_crowd" / "jhu_crowd_v2.0"
    pool = _pool(work, "jhu_crowd", n)
    rng = np.random.default_rng(345)
    labels: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for i in range(n):
        split, name = _split(i), f"{i + 1:06d}"
        _link(pool[i], base / split / "images" / f"{name}.jpg")
        occ = rng.integers(1, 4, size=per_image).tolist()
        blur = rng.integers(0, 2, size=per_image).tolist()
        lines = [format_jhu_head(tuple(b), o, bl)
                 for b, o, bl in zip(_boxes(rng, per_image).tolist(), occ, blur, strict=True)]
        gt = base / split / "gt" / f"{name}.txt"
        gt.parent.mkdir(parents=True, exist_ok=True)
        gt.write_text("\n".join(lines) + "\n")
        labels[split].append(format_image_label(name, len(lines), "street"))
    for split, rows in labels.items():
        (base / split / "image_labels.txt").write_text("\n".join(rows) + "\n")


def parse_point(point: str) -> list[tuple[str, int, int]]:
    """``"a=10x5,b=3x7"`` → ``[("a", 10, 5), ("b", 3, 7)]`` (source, images, boxes per image)."""
    parts = []
    for item in point.split(","):
        name, _, size = item.partition("=")
        images, _, per_image = size.partition("x")
        if name not in SOURCE_IDS or not images.isdigit() or not per_image.isdigit():
            raise SystemExit(f"bad point {point!r}: expected source=IMAGESxBOXES[,...] with "
                             f"sources among {', '.join(SOURCE_IDS)}")
        parts.append((name, int(images), int(per_image)))
    return parts


def make_raw(work: Path, point: str) -> Path:
    """The raw folder of ``point`` (made once, images hard-linked from the pools)."""
    raw = work / ("raw_" + point.replace(",", "_").replace("=", "-"))
    done = raw / ".complete"
    if done.is_file():
        return raw
    shutil.rmtree(raw, ignore_errors=True)
    for name, n, per_image in parse_point(point):
        print(f"  synthesizing {name}: {n} images × {per_image} boxes", file=sys.stderr)
        {"sku110k": synth_sku110k, "jhu_crowd": synth_jhu_crowd}[name](work, raw, n, per_image)
    done.write_text("")
    return raw


# --------------------------------------------------------------------------------------------
# Measuring


def _vm_hwm() -> int:
    """This process's peak resident set size in bytes (``VmHWM``; ``ru_maxrss`` survives
    ``exec`` and could report a parent's size)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def build_one(args: argparse.Namespace) -> int:
    """One build in this process; print its peak RSS, CPU and counts as JSON."""
    sys.path.insert(0, os.environ.get("SCALE_CODE") or str(ROOT))
    from tinyset_builder.build import build

    t0 = time.perf_counter()
    report = build(Path(args.raw), Path(args.out), sources=args.sources, workers=args.workers)
    wall = time.perf_counter() - t0
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    record = report.record
    # record["sources"] is in build order: the last source is the one merged last
    per_source = [(s["annotations"]["in"], s["images"]["in"]) for s in
                  record["sources"].values()]
    print(json.dumps({
        "sources": args.sources, "annotations": record["totals"]["annotations_in"],
        "largest": max(a for a, _ in per_source), "last": per_source[-1][0],
        "before": sum(a for a, _ in per_source[:-1]),
        "images_before": sum(i for _, i in per_source[:-1]),
        "images": record["totals"]["images_in"],
        "tiles": record["totals"]["images_out"],
        "records_out": record["totals"]["annotation_records_out"],
        "peak_bytes": _vm_hwm(), "cpu_main_s": me.ru_utime + me.ru_stime,
        "cpu_workers_s": kids.ru_utime + kids.ru_stime, "wall_s": wall,
        "code": os.environ.get("SCALE_CODE") or str(ROOT)}))
    return 0


def measure(raw: Path, out: Path, sources: str, workers: int, code: str | None,
            ) -> dict[str, Any]:
    """Run :func:`build_one` in a fresh process (this file, nothing else imported)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TINYSET_THREADS": "1"}
    if code:
        env["SCALE_CODE"] = code
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--raw", str(raw), "--out", str(out),
           "--sources", sources, "--workers", str(workers)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    shutil.rmtree(out, ignore_errors=True)
    if proc.returncode:
        raise SystemExit(f"build failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fit(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Least squares: peak ≈ a + l·last + b·before + c·images before (bytes)."""
    x = np.array([[1.0, r["last"], r["before"], r["images_before"]] for r in rows])
    y = np.array([float(r["peak_bytes"]) for r in rows])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ coef
    return {"a": float(coef[0]), "per_largest_annotation": float(coef[1]),
            "per_annotation": float(coef[2]), "per_image": float(coef[3]),
            "max_abs_residual": float(np.abs(resid).max())}


def predict(f: dict[str, float], largest: float, before: float, images_before: float,
            ) -> float:
    """The fitted peak (bytes) with the largest source last."""
    return (f["a"] + f["per_largest_annotation"] * largest + f["per_annotation"] * before
            + f["per_image"] * images_before)


def run(args: argparse.Namespace) -> int:
    """``scale.py build``."""
    sys.path.insert(0, str(ROOT))
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in args.include or []:  # builds measured by earlier runs
        rows += json.loads(Path(path).read_text())["rows"]
    points = [p for p in args.points.split(";") if p] + ([BIG] if args.big else [])
    for point in points:
        raw = make_raw(work, point)
        sources = ",".join(name for name, _, _ in parse_point(point))
        r = measure(raw, work / "out", sources, args.workers, args.code)
        r["point"] = point
        rows.append(r)
        print(f"{point:<38} {r['annotations']:>10,} annotations {r['images']:>6,} images: "
              f"peak {r['peak_bytes'] / MIB:7.1f} MiB, CPU main {r['cpu_main_s']:6.1f} s + "
              f"workers {r['cpu_workers_s']:6.1f} s, wall {r['wall_s']:6.1f} s", flush=True)
    print()
    print("| point (source=images×boxes, in build order) | annotations | images (= tiles) "
          "| CPU main s | CPU workers s | main CPU µs/annotation | main peak MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['point']} | {r['annotations']:,} | {r['images']:,} "
              f"| {r['cpu_main_s']:.1f} | {r['cpu_workers_s']:.1f} "
              f"| {1e6 * r['cpu_main_s'] / r['annotations']:.1f} "
              f"| {r['peak_bytes'] / MIB:,.0f} |")
    result: dict[str, Any] = {"rows": rows}
    # Only points whose last source is the largest fit the model (the peak is then its).
    fitted = [r for r in rows if r["last"] == r["largest"] and r["point"] != BIG]
    if len(fitted) >= 4:
        f = fit(fitted)
        result["fit"] = f
        print(f"\nfit over {len(fitted)} builds: peak ≈ {f['a'] / MIB:.0f} MiB "
              f"+ {f['per_largest_annotation']:.0f} B × annotations of the largest source "
              f"+ {f['per_annotation']:.1f} B × annotations before it "
              f"+ {f['per_image']:.0f} B × images before it "
              f"(max |residual| {f['max_abs_residual'] / MIB:.1f} MiB)")
        for images in (args.full_images, 2 * args.full_images):
            p = predict(f, FULL_LARGEST, FULL_ANNOTATIONS - FULL_LARGEST,
                        images - FULL_LARGEST_IMAGES)
            print(f"TinySet-9M extrapolated ({FULL_ANNOTATIONS / 1e6:g} M annotations on "
                  f"{images:,} images, the largest source, {FULL_LARGEST / 1e6:g} M, last): "
                  f"main peak {p / GIB:.2f} GiB")
            result.setdefault("extrapolation", []).append(
                {"annotations": FULL_ANNOTATIONS, "largest": FULL_LARGEST, "images": images,
                 "peak_bytes": p})
    else:
        print("\n(the fit needs at least four builds whose last source is the largest)")
    for r in rows:
        if r["point"] == BIG:
            print(f"the 2.5 M-annotation two-source build ({BIG}): main peak "
                  f"{r['peak_bytes'] / GIB:.2f} GiB (goal <= 1.2 GiB; before this work "
                  f"2.58 GiB)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


def _one_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--raw", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--sources", required=True)
    p.add_argument("--workers", type=int, default=2)


def add_build_parser(sub: Any) -> None:
    """Register ``build`` and ``build-one`` with ``scale.py``."""
    p = sub.add_parser("build", help="build memory and CPU at growing sizes; fit; extrapolate")
    p.add_argument("--points", default=";".join(POINTS),
                   help="';'-separated builds, each source=IMAGESxBOXES[,...] "
                        "(default: the designed points of the fit)")
    p.add_argument("--big", action="store_true",
                   help=f"also the issue's 2.5 M-annotation build ({BIG})")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--work", default="/tmp/tinyset_scale", help="synthetic raw folders (kept)")
    p.add_argument("--code", default=None,
                   help="measure the tinyset_builder of another source tree (e.g. an older "
                        "commit unpacked with git archive)")
    p.add_argument("--full-images", type=int, default=400_000,
                   help="original images of TinySet-9M for the extrapolation (the manifests' "
                        "expected counts add up to about 390,000)")
    p.add_argument("--json", default=None, help="also write the figures to this file")
    p.add_argument("--include", action="append",
                   help="a --json file of an earlier run: its builds join the table and the "
                        "fit (repeatable: small points first, one big point later)")
    p.set_defaults(func=run)
    one = sub.add_parser("build-one", help="one measured build (JSON on stdout)")
    _one_arguments(one)
    one.set_defaults(func=build_one)


if __name__ == "__main__":  # the measured child: one build, nothing else imported
    ap = argparse.ArgumentParser(description="One measured build (JSON on stdout).")
    _one_arguments(ap)
    sys.exit(build_one(ap.parse_args()))
