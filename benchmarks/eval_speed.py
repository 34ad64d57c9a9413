"""Evaluator speed and memory: the native backend against its peers, paired, in the same run.

Each evaluator runs as its own process on the same GT/DT JSON files, from JSON loading to the
final arrays, with the TinySet protocol (class-agnostic, IoU thresholds 0.25 + 0.50:0.95, five
area ranges, maxDets 100/1500/3000). We record wall time, CPU time (user + system, all threads
and helper processes), the child's peak RSS (``wait4``) and the peak of the sum of RSS over the
child and its descendants (polled from ``/proc``), the load average before and after each run,
and check that every peer's precision array equals the first peer's bit for bit.

Sizes (issue 14): ``small`` = 20 images x 1,500 GT x 2,000 detections; ``large`` = 200 images x
3,000 GT x 3,000 detections. Coordinates and scores are float32 values written as Python writes
the float64 they become (17 significant digits, as a detector's outputs); ``--rounded`` writes
1-3 decimals instead. ``--repeat N`` runs N rounds of every peer in order (A B A B ...) and prints
the medians and the ratios against the first peer. pycocotools runs only at the small size.

    nice -n 10 .venv/bin/python benchmarks/eval_speed.py --sizes large --only native,ultrafast \
        --repeat 3
    nice -n 10 .venv/bin/python benchmarks/eval_speed.py --sizes small --only native,ultrafast \
        --repeat 5
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

SIZES = {"small": (20, 1500, 2000), "large": (200, 3000, 3000)}
PEERS = ("native", "native-api", "ultrafast", "hotcoco", "faster-coco-eval", "pycocotools")
SLOW_AT_LARGE = {"pycocotools"}
ROOT = Path(__file__).resolve().parents[1]

# Shared by every peer script: the TinySet parameters on a pycocotools-style Params object.
_PARAMS = """
import numpy as np
def tinyset_params(p, hot=False):
    thr = [0.25] + np.linspace(0.5, 0.95, 10).tolist()
    p.iouThrs = thr if hot else np.array(thr)
    p.maxDets = [100, 1500, 3000]
    p.areaRng = [[0, 1e10], [0, 64], [64, 256], [256, 1024], [1024, 1e10]]
    p.areaRngLbl = ['all', 'verytiny', 'tiny', 'small', 'medium']
    p.useCats = 0
    return p
"""

_COCOEVAL_SCRIPT = _PARAMS + """
import sys
from {module} import COCO, COCOeval
gt = COCO(sys.argv[1])
dt = gt.loadRes(sys.argv[2])
ev = COCOeval(gt, dt, 'bbox')
tinyset_params(ev.params)
ev.evaluate(); ev.accumulate()
np.save(sys.argv[3], np.asarray(ev.eval['precision']))
"""

_FASTER_SCRIPT = _PARAMS + """
import sys
from faster_coco_eval import COCO, COCOeval_faster
gt = COCO(sys.argv[1])
dt = gt.loadRes(sys.argv[2])
ev = COCOeval_faster(gt, dt, 'bbox', print_function=lambda *a, **k: None)
tinyset_params(ev.params)
ev.evaluate(); ev.accumulate()
np.save(sys.argv[3], np.asarray(ev.eval['precision']))
"""

# The native backend called the way the peers are: as a library, from a bare script.
_NATIVE_API_SCRIPT = """
import sys
import numpy as np
from benchmark.evaluate import evaluate_arrays
np.save(sys.argv[3], evaluate_arrays(sys.argv[1], sys.argv[2]).precision)
"""

_HOTCOCO_SCRIPT = _PARAMS + """
import sys
from hotcoco import COCO, COCOeval
gt = COCO(sys.argv[1])
dt = gt.loadRes(sys.argv[2])
ev = COCOeval(gt, dt, 'bbox')
p = ev.params
tinyset_params(p, hot=True)
ev.params = p
ev.evaluate(); ev.accumulate()
np.save(sys.argv[3], np.asarray(ev.eval['precision']))
"""


def make_case(out: Path, n_images: int, n_gt: int, n_dt: int, seed: int = 0,
              full_repr: bool = True) -> tuple[Path, Path]:
    """Write a dense tiny-object GT/DT pair: jittered GT copies plus random false positives.

    With ``full_repr`` (the default, issue 14) coordinates and scores are float32 values written
    as Python writes the float64 they become (``float(np.float32(v))``: 17 significant digits, as
    a detector's outputs are); otherwise they are rounded to 1-3 decimals.
    """
    rng = np.random.default_rng(seed)

    def num(a: np.ndarray, decimals: int) -> np.ndarray:
        return a.astype(np.float32).astype(np.float64) if full_repr else a.round(decimals)

    images, anns, dets = [], [], []
    ann_id = 1
    for img in range(1, n_images + 1):
        images.append({"id": img, "file_name": f"{img:06d}.png", "width": 1024, "height": 1024})
        wh = num(rng.uniform(3, 28, size=(n_gt, 2)), 1)
        xy = num(rng.uniform(0, 1024 - wh), 1)
        cats = rng.integers(1, 4, size=n_gt)
        for (x, y), (w, h), c in zip(xy.tolist(), wh.tolist(), cats.tolist(), strict=True):
            anns.append({"id": ann_id, "image_id": img, "category_id": c, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": 0})
            ann_id += 1
        n_tp = min(n_dt, int(0.8 * n_gt))
        pick = rng.choice(n_gt, size=n_tp, replace=False)
        jit = rng.normal(0, 1.5, size=(n_tp, 4))
        tp = np.concatenate([xy[pick], wh[pick]], axis=1) + jit
        fw = rng.uniform(3, 28, size=(n_dt - n_tp, 2))
        fp = np.concatenate([rng.uniform(0, 1024 - fw), fw], axis=1)
        boxes = np.concatenate([tp, fp])
        boxes[:, 2:] = np.maximum(boxes[:, 2:], 1.0)
        boxes = num(boxes, 2)
        scores = np.concatenate([rng.uniform(0.3, 1, n_tp), rng.uniform(0, 0.7, n_dt - n_tp)])
        # ties, as real detectors produce (float32 scores tie often too)
        scores = num(scores.round(3), 3)
        dcats = np.concatenate([cats[pick], rng.integers(1, 4, n_dt - n_tp)])
        for b, s, c in zip(boxes.tolist(), scores.tolist(), dcats.tolist(), strict=True):
            dets.append({"image_id": img, "category_id": c, "bbox": b, "score": s})
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": c, "name": f"synth/c{c}"} for c in (1, 2, 3)]}
    gt_path, dt_path = out / "gt.json", out / "dt.json"
    gt_path.write_text(json.dumps(gt))
    dt_path.write_text(json.dumps(dets))
    return gt_path, dt_path


def _command(peer: str, gt: Path, dt: Path, out: Path) -> list[str]:
    py = sys.executable
    if peer == "native":
        return [py, "-m", "tinyset_builder.cli", "eval", "--gt", str(gt), "--dt", str(dt),
                "--json", str(out.with_suffix(".json")), "--dump-precision", str(out)]
    script = {"ultrafast": _COCOEVAL_SCRIPT.format(module="ultrafast_pycocotools"),
              "pycocotools": _COCOEVAL_SCRIPT.format(module="pycocotools.coco")
              .replace("from pycocotools.coco import COCO, COCOeval",
                       "from pycocotools.coco import COCO\n"
                       "from pycocotools.cocoeval import COCOeval"),
              "native-api": _NATIVE_API_SCRIPT, "hotcoco": _HOTCOCO_SCRIPT,
              "faster-coco-eval": _FASTER_SCRIPT}[peer]
    return [py, "-c", script, str(gt), str(dt), str(out)]


def tree_rss_kb(pid: int) -> int:
    """Resident KiB of ``pid`` and all its descendants now (0 once it is gone)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def run_peer(peer: str, gt: Path, dt: Path, work: Path, timeout: float | None = None) -> dict:
    """Run one evaluator as a child process: wall and CPU seconds, peak memory, its array.

    ``peak_mb`` is the child's own peak RSS (``wait4``; Linux counts in it the pages of this
    process at the moment the child was spawned, so keep this process small); ``tree_peak_mb``
    the largest sum of the RSS of the child and its descendants seen by polling ``/proc`` every
    20 ms (a helper process counts), which is the figure to compare.
    """
    out = work / f"{peer}.npy"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    err_path = work / f"{peer}.stderr"
    tree_kb = 0
    with err_path.open("wb") as err_file:
        proc = subprocess.Popen(_command(peer, gt, dt, out), cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=err_file)
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        tree_kb = max(tree_kb, tree_rss_kb(proc.pid))
        if timeout is not None and time.perf_counter() - t0 > timeout:
            proc.kill()
            os.wait4(proc.pid, 0)
            return {"peer": peer, "error": f"timeout after {timeout:.0f} s"}
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    err = err_path.read_text(errors="replace")
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        return {"peer": peer, "error": err.strip().splitlines()[-1:] or ["failed"],
                "returncode": proc.returncode, "tree_peak_mb": round(tree_kb / 1024)}
    peak = round(usage.ru_maxrss / 1024)
    return {"peer": peer, "seconds": round(wall, 2),
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_mb": peak, "tree_peak_mb": round(tree_kb / 1024),
            "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2),
            "precision": np.load(out)}


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else float("nan")


def summarize_pairs(results: list[dict], size: str, peers: list[str]) -> list[dict]:
    """Per peer: medians of wall, CPU and tree peak over its runs; ratios against the first."""
    rows = []
    for peer in peers:
        runs = [r for r in results if r["peer"] == peer and r["size"] == size and "seconds" in r]
        if not runs:
            continue
        rows.append({"summary": peer, "size": size, "runs": len(runs),
                     "median_seconds": _median([r["seconds"] for r in runs]),
                     "median_cpu_seconds": _median([r["cpu_seconds"] for r in runs]),
                     "median_tree_peak_mb": _median([r["tree_peak_mb"] for r in runs]),
                     "load": [r["load_before"] for r in runs]})
    for row in rows[1:]:
        row["wall_ratio_vs_first"] = round(row["median_seconds"] / rows[0]["median_seconds"], 2)
        row["cpu_ratio_vs_first"] = round(row["median_cpu_seconds"]
                                          / rows[0]["median_cpu_seconds"], 2)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Generate the cases, run the chosen peers paired (A B A B ...), print runs and medians."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="small,large", help="comma list of: small, large")
    ap.add_argument("--only", default=",".join(PEERS), help=f"comma list of: {', '.join(PEERS)}")
    ap.add_argument("--repeat", type=int, default=1,
                    help="rounds; each round runs every peer once, in order (A B A B ...)")
    ap.add_argument("--rounded", action="store_true",
                    help="round coordinates to 1-2 decimals instead of the full float repr")
    ap.add_argument("--pycocotools-large", action="store_true",
                    help="also run pycocotools at the large size (hours)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--timeout", type=float, default=None,
                    help="give up on a peer after this many seconds (recorded as a timeout)")
    args = ap.parse_args(argv)
    peers = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(peers) - set(PEERS)
    if unknown:
        ap.error(f"unknown peers: {sorted(unknown)}")
    results: list[dict] = []
    summaries: list[dict] = []
    for size in [s.strip() for s in args.sizes.split(",") if s.strip()]:
        n_img, n_gt, n_dt = SIZES[size]
        label = f"{n_img}x{n_gt}x{n_dt}"
        with tempfile.TemporaryDirectory(prefix="tinyset-evalspeed-") as tmp:
            work = Path(tmp)
            # In a child process: the files' Python objects must not swell this process, whose
            # pages a child started by vfork counts in its own ru_maxrss.
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as ex:
                gt, dt = ex.submit(make_case, work, n_img, n_gt, n_dt, 0,
                                   not args.rounded).result()
            ref = None
            for _ in range(args.repeat):
                for peer in peers:
                    if size == "large" and peer in SLOW_AT_LARGE and not args.pycocotools_large:
                        continue
                    r = run_peer(peer, gt, dt, work, args.timeout)
                    if "precision" in r:
                        arr = r.pop("precision")
                        if ref is None:
                            ref = arr
                        r["identical_to_first"] = bool(np.array_equal(arr, ref))
                        if arr.shape == ref.shape:
                            r["max_abs_diff"] = float(np.abs(arr - ref).max())
                    r["size"] = label
                    results.append(r)
                    print(json.dumps(r), flush=True)
        for row in summarize_pairs(results, label, peers):
            summaries.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results + summaries, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
