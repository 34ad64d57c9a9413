"""Speed and memory of the TinySet build, measured against peers in the same run (issue 3).

Goals checked (each against something measured in this same run, never a fixed number):

1. per core, build throughput >= 80 % of the *floor*: decoding the same inputs, cropping the same
   output tiles and encoding them with the same codec and settings (and writing them);
2. >= 10x the throughput of SAHI's ``slice_image`` on the same images and boxes (SAHI as
   shipped: its shapely box clipping, its thread pool for writing, Pillow's default JPEG quality);
3. 2 workers >= 1.8x one worker;
4. peak memory of a worker < 2 GB for a 16000x16000 input, and not growing with the number of
   images a worker has processed.

Inputs are synthetic (textured scenes with many tiny objects, like the crowded sources) written
to a temporary folder. Usage::

    .venv/bin/python benchmarks/build_speed.py                   # everything (~2-4 min)
    .venv/bin/python benchmarks/build_speed.py --skip-big        # without the 16000² input
    .venv/bin/python benchmarks/build_speed.py --json out.json   # also write the figures
    .venv/bin/python benchmarks/build_speed.py --sweep 100,500,1500,3000 --repeat 2
        # per-core figures only (ours, floor, SAHI) at several boxes-per-image densities

The exit code is 0 when every goal is met, 1 otherwise (goal 3 needs two idle cores).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tinyset_builder.build import BuildOptions, build_from_conversions, plan_source  # noqa: E402
from tinyset_builder.coco import CocoAnnotation, CocoCategory, CocoDataset, CocoImage  # noqa: E402
from tinyset_builder.sources import Conversion  # noqa: E402
from tinyset_builder.sources.base import SourceInfo  # noqa: E402
from tinyset_builder.synth.canvas import draw_objects, textured_background  # noqa: E402

INFO = SourceInfo(name="bench", title="bench", domain="satellite", homepage="", license="",
                  citation="", native_format="bench", layout="", download="",
                  categories=("a", "b", "c"))


def make_inputs(raw: Path, n: int, width: int, height: int, objects: int,
                seed: int = 0) -> Conversion:
    """``n`` JPEG scenes with ``objects`` tiny boxes each, and their Conversion."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    ds = CocoDataset(categories=[CocoCategory(id=i + 1, name=f"bench/{c}")
                                 for i, c in enumerate(INFO.categories)])
    base = textured_background(rng, 1024, 1024)
    for k in range(n):
        reps = (height // 1024 + 1, width // 1024 + 1, 1)
        img = np.ascontiguousarray(np.roll(np.tile(base, reps), k * 97, axis=1)[:height, :width])
        xs = rng.integers(0, width - 32, size=objects)
        ys = rng.integers(0, height - 32, size=objects)
        ws = rng.integers(4, 32, size=objects)
        hs = rng.integers(4, 32, size=objects)
        boxes = [(int(x), int(y), int(w), int(h)) for x, y, w, h in zip(xs, ys, ws, hs,
                                                                      strict=True)]
        labels = [int(v) for v in rng.integers(0, 3, size=objects)]
        draw_objects(img, boxes, labels)
        name = f"scene_{k:03d}.jpg"
        path = raw / "bench" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(path, "JPEG", quality=90)
        ds.images.append(CocoImage(id=k + 1, file_name=name, width=width, height=height,
                                   source="bench", domain="satellite", split="train",
                                   original_file=name, window=(0, 0, width, height), scale=1.0))
        base_id = len(ds.annotations)
        for j, (b, lab) in enumerate(zip(boxes, labels, strict=True)):
            ds.annotations.append(CocoAnnotation(id=base_id + j + 1, image_id=k + 1,
                                                 category_id=lab + 1, bbox=b))
    return Conversion(info=INFO, dataset=ds, skipped={}, examples={}, counts={})


class Clock:
    """Wall time and this process's CPU time (all threads) of a block."""

    @staticmethod
    def _children() -> float:
        import resource

        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        self.children = self._children()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu
        self.children = self._children() - self.children  # pool workers, once they exit

    @property
    def total_cpu(self) -> float:
        """CPU time of this process and of the worker processes it waited for."""
        return self.cpu + self.children


def run_ours(conv: Conversion, raw: Path, out: Path, workers: int) -> Clock:
    shutil.rmtree(out, ignore_errors=True)
    with Clock() as c:
        build_from_conversions([conv], raw, out, workers=workers, stats=False)
    return c


def run_floor(conv: Conversion, raw: Path, built: Path, out: Path) -> Clock:
    """Decode each input, crop the tiles the build wrote, encode them the same way, write."""
    from PIL import Image

    from tinyset_builder.tiling import crop_or_pad

    coco = json.loads((built / "annotations" / "train.json").read_text())
    windows: dict[str, list[tuple[str, list[int]]]] = {}
    for img in coco["images"]:
        windows.setdefault(img["original_file"], []).append((img["file_name"], img["window"]))
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    with Clock() as c:
        for image in conv.dataset.images:
            with Image.open(raw / "bench" / image.original_file) as im:
                im.load()
            for name, win in windows.get(image.original_file, []):
                buf = io.BytesIO()
                crop_or_pad(im, tuple(win)).save(buf, "JPEG", quality=95)
                (out / name).write_bytes(buf.getvalue())
    return c


def run_sahi(conv: Conversion, raw: Path, out: Path) -> Clock:
    from sahi.slicing import slice_image
    from sahi.utils.coco import CocoAnnotation as SahiAnnotation

    by_image = conv.dataset.annotations_by_image()
    shutil.rmtree(out, ignore_errors=True)
    with Clock() as c:
        for image in conv.dataset.images:
            anns = [SahiAnnotation(category_id=a.category_id, bbox=list(a.bbox))
                    for a in by_image[image.id]]
            slice_image(str(raw / "bench" / image.original_file), coco_annotation_list=anns,
                        output_file_name=Path(image.original_file).stem, output_dir=str(out),
                        slice_height=1024, slice_width=1024, overlap_height_ratio=200 / 1024,
                        overlap_width_ratio=200 / 1024, min_area_ratio=0.5, out_ext=".jpg",
                        verbose=False)
    return c


# Peak RSS from /proc/self/status VmHWM: getrusage's ru_maxrss survives exec on Linux, so a
# child started by this (large) parent would report the parent's size.
_CHILD = """
import pickle, resource, sys
from tinyset_builder.pipeline import process

def peak_mb():
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

tasks = pickle.load(open(sys.argv[1], "rb"))
peaks = []
for t in tasks:
    process(t)
    peaks.append(peak_mb())
print(" ".join(f"{p:.0f}" for p in peaks))
"""


def worker_peaks(conv: Conversion, raw: Path, out: Path) -> list[float]:
    """Peak RSS (MB) of one worker process after each task, run in a fresh interpreter."""
    tasks = plan_source(conv, raw, out, BuildOptions())
    pkl = out.parent / f"{out.name}.tasks.pkl"
    pkl.write_bytes(pickle.dumps(tasks))
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(pkl)], capture_output=True,
                          text=True, cwd=ROOT)
    if proc.returncode:
        raise SystemExit(f"worker failed:\n{proc.stderr}")
    return [float(v) for v in proc.stdout.split()]


def measure(conv: Conversion, raw: Path, work: Path, repeat: int, *, two_workers: bool = True,
            ) -> dict[str, float]:
    """CPU (and wall) seconds of ours, the floor and SAHI on ``conv``; best of ``repeat`` runs.

    The page cache and imports are warmed first, then the runs alternate and each keeps its
    best: on a shared machine the minimum is the least disturbed measurement. Per-core
    comparisons use CPU time (all threads of this process: SAHI writes tiles from a thread
    pool); the worker-scaling comparison needs wall time.
    """
    run_ours(conv, raw, work / "ours1", 1)
    ours, floor, sahi, ours2 = [], [], [], []
    for rep in range(repeat):
        ours.append(run_ours(conv, raw, work / "ours1", 1))
        floor.append(run_floor(conv, raw, work / "ours1", work / "floor"))
        if rep < max(1, repeat - 1):  # SAHI is slow; its best of fewer runs is enough
            sahi.append(run_sahi(conv, raw, work / "sahi"))
        if two_workers:
            ours2.append(run_ours(conv, raw, work / "ours2", 2))
    n_out = len(json.loads((work / "ours1" / "annotations" / "train.json").read_text())["images"])
    res = {"output_tiles": n_out, "repeats": repeat,
           "ours_cpu_s": min(c.cpu for c in ours), "floor_cpu_s": min(c.cpu for c in floor),
           "sahi_cpu_s": min(c.cpu for c in sahi),
           "ours_1_worker_wall_s": min(c.wall for c in ours)}
    res.update({"ours_vs_floor": res["floor_cpu_s"] / res["ours_cpu_s"],
                "ours_vs_sahi": res["sahi_cpu_s"] / res["ours_cpu_s"],
                "sahi_vs_floor": res["sahi_cpu_s"] / res["floor_cpu_s"]})
    if two_workers:
        w2 = min(c.wall for c in ours2)
        cpu2 = min(c.total_cpu for c in ours2)
        res.update({"ours_2_workers_wall_s": w2, "scaling_2_vs_1": res["ours_1_worker_wall_s"] / w2,
                    "ours_2_workers_total_cpu_s": cpu2,
                    "scaling_bound_2_vs_1": 2 * res["ours_cpu_s"] / cpu2})
    return res


def sweep(args: argparse.Namespace, width: int, height: int, work: Path) -> int:
    """Ours, the floor and SAHI at several box densities (per-core figures only)."""
    densities = [int(v) for v in args.sweep.split(",")]
    print(f"sweep: {args.images} JPEG scenes {width}x{height} per density, best of "
          f"{args.repeat} (scratch: {work})", flush=True)
    print(f"{'boxes/image':>11} {'ours CPU-s':>10} {'floor':>7} {'ours/floor':>10} "
          f"{'ours vs SAHI':>12} {'SAHI/floor':>10}")
    rows = []
    for objects in densities:
        sub = work / f"sweep-{objects}"
        conv = make_inputs(sub / "raw", args.images, width, height, objects)
        r = measure(conv, sub / "raw", sub, args.repeat, two_workers=False)
        rows.append({"objects": objects, **r})
        print(f"{objects:>11} {r['ours_cpu_s']:>10.2f} {r['floor_cpu_s']:>7.2f} "
              f"{100 * r['ours_vs_floor']:>9.1f}% {r['ours_vs_sahi']:>11.1f}x "
              f"{r['sahi_vs_floor']:>9.1f}x", flush=True)
        shutil.rmtree(sub, ignore_errors=True)
    print("SAHI/floor bounds ours vs SAHI: a build that decodes and re-encodes with the same "
          "codec cannot beat SAHI by more than that here.")
    if args.json:
        args.json.write_text(json.dumps({"sweep": rows, "load_after": os.getloadavg()[0]},
                                        indent=1) + "\n")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--size", default="4000x3000", help="WxH of the ordinary inputs")
    ap.add_argument("--objects", type=int, default=1500, help="boxes per ordinary input")
    ap.add_argument("--sweep", metavar="N,N,...",
                    help="instead of the goal checks: per-core figures (ours, floor, SAHI) at "
                         "each of these boxes-per-image densities, e.g. 100,500,1500,3000")
    ap.add_argument("--big", type=int, default=16000, help="side of the memory-test input")
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement (best kept)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    work = args.work or Path(tempfile.mkdtemp(prefix="tinyset-bench-"))
    if args.sweep:
        try:
            return sweep(args, width, height, work)
        finally:
            if not args.work:
                shutil.rmtree(work, ignore_errors=True)
    raw = work / "raw"
    print(f"inputs: {args.images} JPEG scenes {width}x{height}, {args.objects} boxes each "
          f"(scratch: {work})", flush=True)
    conv = make_inputs(raw, args.images, width, height, args.objects)
    mpix = args.images * width * height / 1e6
    res: dict[str, float | list[float] | str] = {"cpu_count": os.cpu_count() or 0,
                                                "load_before": os.getloadavg()[0]}
    m = measure(conv, raw, work, args.repeat)
    res.update({"input_megapixels": mpix, **m})
    c1, cf, cs = m["ours_cpu_s"], m["floor_cpu_s"], m["sahi_cpu_s"]
    w1, w2, cpu2 = m["ours_1_worker_wall_s"], m["ours_2_workers_wall_s"], \
        m["ours_2_workers_total_cpu_s"]
    n_out = m["output_tiles"]
    print(f"ours, 1 worker  : {c1:6.2f} CPU-s ({mpix / c1:6.1f} Mpx per CPU-s, "
          f"{n_out / c1:5.1f} tiles per CPU-s)")
    print(f"floor           : {cf:6.2f} CPU-s -> ours at {100 * cf / c1:5.1f} % of the floor "
          f"(goal >= 80 %)")
    print(f"SAHI slice_image: {cs:6.2f} CPU-s -> ours {cs / c1:5.1f}x faster (goal >= 10x)")
    print(f"SAHI vs floor: SAHI takes {cs / cf:4.1f}x the floor's CPU time -> no build that "
          f"decodes and re-encodes can beat SAHI by more than {cs / cf:4.1f}x here")
    print(f"wall, 1 vs 2 workers: {w1:6.2f} s vs {w2:6.2f} s -> {w1 / w2:4.2f}x "
          f"(goal >= 1.8x; needs two idle cores)")
    print(f"CPU work, 2 workers: {cpu2:6.2f} CPU-s ({100 * cpu2 / c1:5.1f} % of one worker's) "
          f"-> at most {2 * c1 / cpu2:4.2f}x on two idle cores")
    ok = cf / c1 >= 0.8 and cs / c1 >= 10 and w1 / w2 >= 1.8
    peaks_small = worker_peaks(conv, raw, work / "mem-small")
    res["worker_peak_mb_by_task"] = peaks_small
    print(f"worker peak RSS after each of {len(peaks_small)} tasks (MB): "
          f"{', '.join(f'{p:.0f}' for p in peaks_small)}")
    grows = peaks_small[-1] > peaks_small[0] * 1.10 + 20
    ok &= not grows
    if not args.skip_big:
        side = args.big
        print(f"writing a {side}x{side} input ...", flush=True)
        big = make_inputs(work / "rawbig", 1, side, side, max(200, side * side // 500_000))
        t = time.perf_counter()
        peak = worker_peaks(big, work / "rawbig", work / "mem-big")[0]
        res.update({"big_side": side, "big_worker_peak_mb": peak,
                    "big_task_s": time.perf_counter() - t})
        print(f"{side}x{side} input: worker peak RSS {peak:.0f} MB (goal < 2048 MB)")
        ok &= peak < 2048
    res["load_after"] = os.getloadavg()[0]
    print(f"load average before/after: {res['load_before']:.1f} / {res['load_after']:.1f} on "
          f"{res['cpu_count']} cores")
    res["all_goals_met"] = "yes" if ok else "no"
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
