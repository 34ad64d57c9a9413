"""The build half of ``benchmarks/scale.py``: build memory and CPU at scale (issue 23).

``scale.py build`` synthesizes SKU110K and JHU-CROWD++ in their native layouts with the real
datasets' box densities (150 and 345 boxes per image; 6,667 and 4,372 images at ``--fractions
1``, i.e. 1.0 M and 1.5 M boxes) on cheap images (800×600 JPEGs, one output tile each, with
distinct pixels so that dedupe keeps them all), runs ``tinyset build`` (2 workers) on each
source alone and on both, each in a fresh process, and reads that main process's peak RSS
(``VmHWM``) and CPU time. It fits

    peak ≈ a + b·annotations (total) + l·annotations (largest source) + c·images

and prints the extrapolation to TinySet-9M (9 M annotations, largest source SKU110K at about
1.7 M, ``--full-images`` original images). Worker processes are not in the peak: each holds one
image (``benchmarks/build_speed.py`` measures them).

``scale.py build-one`` (or this file run directly) is one measured build, printing JSON; it is
the child process of ``build``, so the measured process imports only the build.

Usage::

    .venv/bin/python benchmarks/scale.py build --fractions 0.15,0.3 --json small.json
    .venv/bin/python benchmarks/scale.py build --fractions 1 --sources sku110k,jhu_crowd \\
        --include small.json --json all.json    # one big point, fitted with the earlier ones
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

#: Per source: images at fraction 1 and boxes per image (the real datasets' densities, as in
#: issue 23's table: 6,667 × 150 = 1,000,050 and 4,372 × 345 = 1,508,340 boxes).
LAYOUTS = {"sku110k": (6667, 150), "jhu_crowd": (4372, 345)}
WIDTH, HEIGHT = 800, 600
#: TinySet-9M for the extrapolation: total boxes and the largest source (SKU110K).
FULL_ANNOTATIONS = 9_000_000
FULL_LARGEST = 1_700_000
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
    sid = list(LAYOUTS).index(name)
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


def make_raw(work: Path, fraction: float) -> Path:
    """The raw folder holding both sources at ``fraction`` of their full size (made once)."""
    raw = work / f"raw_{fraction:g}"
    done = raw / ".complete"
    if done.is_file():
        return raw
    shutil.rmtree(raw, ignore_errors=True)
    for name, (images, per_image) in LAYOUTS.items():
        n = max(1, round(images * fraction))
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
    per_source = {n: s["annotations"]["in"] for n, s in record["sources"].items()}
    print(json.dumps({
        "sources": args.sources, "annotations": record["totals"]["annotations_in"],
        "largest": max(per_source.values()), "images": record["totals"]["images_in"],
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
    """Least squares: peak ≈ a + b·annotations + l·largest source + c·images (bytes)."""
    x = np.array([[1.0, r["annotations"], r["largest"], r["images"]] for r in rows])
    y = np.array([float(r["peak_bytes"]) for r in rows])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ coef
    return {"a": float(coef[0]), "per_annotation": float(coef[1]),
            "per_largest_annotation": float(coef[2]), "per_image": float(coef[3]),
            "max_abs_residual": float(np.abs(resid).max())}


def predict(f: dict[str, float], annotations: float, largest: float, images: float) -> float:
    """The fitted peak for a build of this size (bytes)."""
    return (f["a"] + f["per_annotation"] * annotations + f["per_largest_annotation"] * largest
            + f["per_image"] * images)


def run(args: argparse.Namespace) -> int:
    """``scale.py build``."""
    sys.path.insert(0, str(ROOT))
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in args.include or []:  # builds measured by earlier runs
        rows += json.loads(Path(path).read_text())["rows"]
    for fraction in [float(f) for f in args.fractions.split(",") if f]:
        raw = make_raw(work, fraction)
        for sources in args.sources.split(";"):
            r = measure(raw, work / "out", sources, args.workers, args.code)
            r["fraction"] = fraction
            rows.append(r)
            print(f"fraction {fraction:g} {sources:<18} {r['annotations']:>10,} annotations "
                  f"{r['images']:>6,} images: peak {r['peak_bytes'] / MIB:8.1f} MiB, "
                  f"CPU main {r['cpu_main_s']:6.1f} s + workers {r['cpu_workers_s']:6.1f} s, "
                  f"wall {r['wall_s']:6.1f} s", flush=True)
    print()
    print("| fraction | sources | annotations | largest source | images (= tiles) | CPU main s "
          "| CPU workers s | main CPU µs/annotation | main peak MiB |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['fraction']:g} | {r['sources']} | {r['annotations']:,} | {r['largest']:,} "
              f"| {r['images']:,} | {r['cpu_main_s']:.1f} | {r['cpu_workers_s']:.1f} "
              f"| {1e6 * r['cpu_main_s'] / r['annotations']:.1f} "
              f"| {r['peak_bytes'] / MIB:,.0f} |")
    result: dict[str, Any] = {"rows": rows}
    # Below ~100k annotations the peak is the fixed start-up cost (allocator arenas freed by
    # earlier steps absorb the source): such points say nothing about the slopes.
    fitted = [r for r in rows if r["annotations"] >= args.fit_min_annotations]
    if len(fitted) >= 4:
        f = fit(fitted)
        result["fit"] = f
        print(f"\nfit over {len(fitted)} builds of >= {args.fit_min_annotations:,} annotations: "
              f"peak ≈ {f['a'] / MIB:.0f} MiB + {f['per_annotation']:.0f} B × annotations "
              f"(total) + {f['per_largest_annotation']:.0f} B × annotations (largest source) "
              f"+ {f['per_image']:.0f} B × images (max |residual| "
              f"{f['max_abs_residual'] / MIB:.0f} MiB)")
        for images in (args.full_images, 2 * args.full_images):
            p = predict(f, FULL_ANNOTATIONS, FULL_LARGEST, images)
            print(f"TinySet-9M extrapolated ({FULL_ANNOTATIONS / 1e6:g} M annotations, largest "
                  f"source {FULL_LARGEST / 1e6:g} M, {images:,} images): main peak "
                  f"{p / GIB:.2f} GiB")
            result.setdefault("extrapolation", []).append(
                {"annotations": FULL_ANNOTATIONS, "largest": FULL_LARGEST, "images": images,
                 "peak_bytes": p})
    else:
        print(f"\n(the fit needs at least four builds of >= {args.fit_min_annotations:,} "
              f"annotations)")
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
    p.add_argument("--fractions", default="0.15,0.3",
                   help="sizes as fractions of SKU110K's and JHU-CROWD++'s real counts "
                        "(1 = 1.0 M + 1.5 M boxes)")
    p.add_argument("--sources", default="sku110k;jhu_crowd;sku110k,jhu_crowd",
                   help="';'-separated builds per size, each a --sources value")
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
    p.add_argument("--fit-min-annotations", type=int, default=100_000,
                   help="leave smaller builds out of the fit")
    p.set_defaults(func=run)
    one = sub.add_parser("build-one", help="one measured build (JSON on stdout)")
    _one_arguments(one)
    one.set_defaults(func=build_one)


if __name__ == "__main__":  # the measured child: one build, nothing else imported
    ap = argparse.ArgumentParser(description="One measured build (JSON on stdout).")
    _one_arguments(ap)
    sys.exit(build_one(ap.parse_args()))
