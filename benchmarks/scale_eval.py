"""``benchmarks/scale.py eval``: evaluation memory and time at TinySet-9M scale (issue 23).

Kept in its own module so that ``scale.py`` holds only the dispatch and the build half.

``eval`` writes GT and detection files of given sizes (images x GT per image x detections
  per image: tiny boxes of 3-28 px on 1024² images, 80 % of the detections jittered GT copies,
  coordinates and scores in the full float repr), runs ``tinyset eval`` on each as a child
  process, and records wall and CPU seconds and the peak memory of the child and its helper
  process (the largest sum of their RSS, polled from ``/proc``, and the child's own
  ``ru_maxrss``). Detections are read from COCO results JSON and from the columnar ``.npz``
  form; the metrics of the two must be identical. A least-squares fit of peak memory and CPU
  time against the number of detections (and GT boxes) is printed with its extrapolation to 18 M
  and 54 M detections.

      .venv/bin/python benchmarks/scale.py eval --sizes 1000x300x1000,2000x300x1000 \\
          --formats json,npz --json scale_eval.json

Everything runs on this machine as it is: other jobs' load shows in the wall times (the load
average is recorded with each run); CPU seconds and memory are steadier.
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
from typing import Any

import numpy as np
from eval_speed import tree_rss_kb  # the process-tree peak, measured one way

ROOT = Path(__file__).resolve().parents[1]
GIB = 1 << 30


# ---------------------------------------------------------------------------------------------
# eval


def measure(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``cmd``; wall and CPU seconds, peak MiB.

    ``peak_mib``: the largest sum of RSS over the child and its descendants (the GT reader),
    polled every 50 ms; ``own_peak_mib``: the child's ``ru_maxrss``, which Linux also charges
    with this process's pages at the moment the child was spawned.
    """
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    tree = 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        tree = max(tree, tree_rss_kb(proc.pid))
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{cmd[:4]} failed: {err.strip().splitlines()[-1:]}")
    own = usage.ru_maxrss / 1024
    return {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_mib": round(tree / 1024, 1), "own_peak_mib": round(own, 1),
            "load": round(load, 2)}


def _records(text: bytes) -> bytes:
    """The inside of a JSON array's text (without its brackets)."""
    return text.strip()[1:-1]


def synth_eval(out: Path, n_img: int, gt_per: int, dt_per: int, seed: int = 0,
               formats: tuple[str, ...] = ("json",)) -> dict[str, Path]:
    """Write ``gt.json`` and the detections (``dt.json`` and/or ``dt.npz``) image by image."""
    import msgspec

    rng = np.random.default_rng(seed)
    enc = msgspec.json.Encoder()
    paths = {"gt": out / "gt.json"}
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("image_id", "category_id", "x", "y",
                                                         "w", "h", "score")}
    dt_file = (out / "dt.json").open("wb") if "json" in formats else None
    ann_id = 1
    with (out / "gt.json").open("wb") as gt_file:
        gt_file.write(b'{"info":{},"images":')
        gt_file.write(enc.encode([{"id": i, "file_name": f"{i:07d}.png", "width": 1024,
                                   "height": 1024} for i in range(1, n_img + 1)]))
        gt_file.write(b',"categories":')
        gt_file.write(enc.encode([{"id": c, "name": f"synth/c{c}"} for c in (1, 2, 3)]))
        gt_file.write(b',"annotations":[')
        if dt_file is not None:
            dt_file.write(b"[")
        for img in range(1, n_img + 1):
            wh = rng.uniform(3, 28, (gt_per, 2)).astype(np.float32).astype(np.float64)
            xy = rng.uniform(0, 1024 - wh).astype(np.float32).astype(np.float64)
            cats = rng.integers(1, 4, gt_per)
            box = np.concatenate([xy, wh], axis=1)
            anns = [{"id": ann_id + k, "image_id": img, "category_id": c, "bbox": b,
                     "area": b[2] * b[3], "iscrowd": 0}
                    for k, (b, c) in enumerate(zip(box.tolist(), cats.tolist(), strict=True))]
            ann_id += gt_per
            gt_file.write((b"," if img > 1 else b"") + _records(enc.encode(anns)))
            n_tp = min(dt_per, int(0.8 * gt_per))
            pick = rng.choice(gt_per, n_tp, replace=False)
            tp = box[pick] + rng.normal(0, 1.5, (n_tp, 4))
            fw = rng.uniform(3, 28, (dt_per - n_tp, 2))
            fp = np.concatenate([rng.uniform(0, 1024 - fw), fw], axis=1)
            dbox = np.concatenate([tp, fp])
            dbox[:, 2:] = np.maximum(dbox[:, 2:], 1.0)
            dbox = dbox.astype(np.float32).astype(np.float64)
            score = np.concatenate([rng.uniform(0.3, 1, n_tp), rng.uniform(0, 0.7, dt_per - n_tp)])
            score = score.round(3).astype(np.float32).astype(np.float64)
            dcat = np.concatenate([cats[pick], rng.integers(1, 4, dt_per - n_tp)])
            if dt_file is not None:
                dets = [{"image_id": img, "category_id": c, "bbox": b, "score": s}
                        for b, s, c in zip(dbox.tolist(), score.tolist(), dcat.tolist(),
                                           strict=True)]
                dt_file.write((b"," if img > 1 else b"") + _records(enc.encode(dets)))
            if "npz" in formats:
                cols["image_id"].append(np.full(dt_per, img, np.int64))
                cols["category_id"].append(dcat.astype(np.int64))
                for k, name in enumerate("xywh"):
                    cols[name].append(dbox[:, k].copy())
                cols["score"].append(score)
        gt_file.write(b"]}")
    if dt_file is not None:
        dt_file.write(b"]")
        dt_file.close()
        paths["json"] = out / "dt.json"
    if "npz" in formats:
        from benchmark.evaluate.columnar import write_npz

        write_npz(out / "dt.npz", {k: np.concatenate(v) for k, v in cols.items()})
        paths["npz"] = out / "dt.npz"
    return paths


def fit(rows: list[dict[str, Any]], key: str, terms: tuple[str, ...]) -> dict[str, float]:
    """Least squares ``key ≈ c0 + sum(c_t * t)`` over ``rows`` (non-negative terms not forced)."""
    a = np.array([[1.0, *[r[t] for t in terms]] for r in rows])
    y = np.array([r[key] for r in rows])
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    return {"const": float(coef[0]), **{t: float(c) for t, c in zip(terms, coef[1:],
                                                                      strict=True)}}


def cmd_eval(args: argparse.Namespace) -> int:
    """``scale.py eval``: measure ``tinyset eval`` at the given sizes, fit and extrapolate."""
    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    rows: list[dict[str, Any]] = []
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    base = Path(args.work) if args.work else None
    for size in [s for s in args.sizes.split(",") if s]:
        n_img, gt_per, dt_per = (int(v) for v in size.split("x"))
        with tempfile.TemporaryDirectory(prefix="tinyset-scale-", dir=base) as tmp:
            work = Path(tmp)
            t0 = time.perf_counter()
            # In a child process, so that this one stays small: a child started by vfork counts
            # this process's pages in its own ru_maxrss.
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as ex:
                paths = ex.submit(synth_eval, work, n_img, gt_per, dt_per, 0, formats).result()
            made = time.perf_counter() - t0
            metrics = {}
            for fmt in formats:
                out = work / f"metrics_{fmt}.json"
                cmd = [sys.executable, "-m", "tinyset_builder.cli", "eval", "--gt",
                       str(paths["gt"]), "--dt", str(paths[fmt]), "--json", str(out)]
                row = {"size": size, "format": fmt, "images": n_img, "gt": n_img * gt_per,
                       "detections": n_img * dt_per, "input_mib": round(
                           (paths[fmt].stat().st_size + paths["gt"].stat().st_size) / 2**20, 1),
                       "synth_s": round(made, 1), **measure(cmd, env)}
                res = json.loads(out.read_text())
                res.pop("params", None)
                metrics[fmt] = res
                row["AP50"] = res["AP50"]
                rows.append(row)
                print(json.dumps(row), flush=True)
            if len(metrics) > 1:
                first = next(iter(metrics.values()))
                same = all(m == first for m in metrics.values())
                print(json.dumps({"size": size, "metrics_identical_across_formats": same}),
                      flush=True)
                if not same:
                    return 1
    for fmt in formats:
        sub = [r | {"detections_m": r["detections"] / 1e6, "gt_m": r["gt"] / 1e6}
               for r in rows if r["format"] == fmt]
        if len(sub) < 2:
            continue
        terms = ("detections_m",) if len({r["gt"] / r["detections"] for r in sub}) == 1 \
            else ("detections_m", "gt_m")
        mem = fit(sub, "peak_mib", terms)
        cpu = fit(sub, "cpu_s", terms)
        wall = fit(sub, "wall_s", terms)
        summary: dict[str, Any] = {"format": fmt, "fit_peak_mib": mem, "fit_cpu_s": cpu,
                                   "fit_wall_s": wall}
        # TinySet-9M's test split: ~1.8 M GT boxes; 18 M / 54 M detections = 10 / 30 per GT box
        for n_det in (18e6, 54e6):
            x = {"detections_m": n_det / 1e6, "gt_m": 1.8}
            summary[f"at_{int(n_det / 1e6)}M_detections"] = {
                "peak_gib": round(sum(mem.get(t, 0) * x.get(t, 1.0) for t in ("const", *terms))
                                  / 1024, 2),
                "cpu_s": round(sum(cpu.get(t, 0) * x.get(t, 1.0) for t in ("const", *terms)), 1),
                "wall_s": round(sum(wall.get(t, 0) * x.get(t, 1.0) for t in ("const", *terms)),
                                1)}
        summary["wall_s_per_million_detections"] = round(wall["detections_m"], 2)
        rows.append(summary)
        print(json.dumps(summary), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


def add_eval_parser(sub: Any) -> None:
    """Register the ``eval`` sub-command."""
    p = sub.add_parser("eval", help="evaluation memory and time against detections")
    p.add_argument("--sizes", default="500x300x1000,1000x300x1000,2000x300x1000",
                   help="comma list of IMAGESxGT_PER_IMAGExDETECTIONS_PER_IMAGE")
    p.add_argument("--formats", default="json,npz", help="detection formats: json, npz")
    p.add_argument("--work", help="folder for the synthesized files (default: system temp)")
    p.add_argument("--json", help="write every row and the fit here")
    p.set_defaults(func=cmd_eval)


def main(argv: list[str] | None = None) -> int:
    """``python benchmarks/scale_eval.py ...`` = ``python benchmarks/scale.py eval ...``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    add_eval_parser(sub)
    args = ap.parse_args(["eval", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
