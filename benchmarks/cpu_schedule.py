"""Learning curves of the cpu schedule: AP50 and AP25 of each row at several CPU budgets.

Every row runs through the benchmark runner (``--schedule cpu --minutes M``) on a built dataset
(the demo build by default), once per budget and seed, with two runs side by side on the 2 cores;
the table (AP50 / AP25 per budget) is printed as Markdown and plotted to ``--plot``.
``--calibrate`` instead measures the floating-point rate of one training step of each torchvision
detector of the cpu schedule (counted FLOPs / process CPU seconds, 1 thread), the figure behind
``baselines.schedules.REFERENCE_FLOPS_PER_CPU_SECOND``.

Examples::

    python benchmarks/cpu_schedule.py --data demo/tinyset --rows 2,3,deal --budgets 2,4,8,16
    python benchmarks/cpu_schedule.py --data demo/tinyset --calibrate
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def calibrate(data: Path, models: list[str], steps: int) -> list[dict]:
    """GFLOP per step, CPU s per step and GFLOP/s of each detector on the cpu plan (1 thread)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from baselines.data import load_samples, training_batch
    from baselines.detectors import build_detector
    from baselines.schedules import resolve_plan
    from baselines.supervised import detector_spec
    from baselines.train import make_optimizer

    torch.set_num_threads(1)
    samples, _ = load_samples(data / "annotations" / "train.json", data)
    plan = resolve_plan("cpu", {}, n_images=len(samples))
    out = []
    for name in models:
        torch.manual_seed(0)
        model = build_detector(detector_spec(plan, name, 1)).train()
        opt = make_optimizer([p for p in model.parameters() if p.requires_grad], plan)

        def step(it: int, model=model, opt=opt) -> None:
            images, targets = training_batch(samples, it, batch_size=plan.batch_size,
                                             crop=plan.crop, seed=0)
            loss = sum(model(images, targets).values())
            opt.zero_grad()
            loss.backward()
            opt.step()

        with FlopCounterMode(display=False) as counter:
            step(0)
        flops = counter.get_total_flops()
        t0 = time.process_time()
        for it in range(1, steps + 1):
            step(it)
        seconds = (time.process_time() - t0) / steps
        out.append({"model": name, "gflop_per_step": round(flops / 1e9, 2),
                    "cpu_s_per_step": round(seconds, 3),
                    "gflop_per_s": round(flops / seconds / 1e9, 1)})
        print(json.dumps(out[-1]), flush=True)
    return out


def curves(data: Path, rows: list[str], budgets: list[float], seeds: list[int], runs: Path,
           devices: list[str]) -> list[dict]:
    """Run every row at every budget (resumable runs store) and collect AP50/AP25 per run."""
    from benchmark.manifest import load_methods
    from benchmark.runner import plan, run_benchmark
    from tinyset_builder.io import read_json

    methods = load_methods().select(paradigm="all", ids=rows)
    out = []
    for minutes in budgets:
        store = runs / f"cpu-{minutes:g}min"
        specs = plan(methods, data, store, seeds=seeds, schedule="cpu",
                     extra={"minutes": minutes})
        run_benchmark(specs, devices=devices)
        for rec_path in sorted(store.rglob("result.json")):
            rec = read_json(rec_path)
            m = rec.get("metrics") or {}
            out.append({"row": rec["key"]["method"], "name": rec["method"]["name"],
                        "setting": rec["key"]["setting"], "seed": rec["key"]["seed"],
                        "minutes": minutes, "status": rec["status"],
                        "AP50": 100 * m["AP50"] if "AP50" in m else None,
                        "AP25": 100 * m["AP25"] if "AP25" in m else None,
                        "train_cpu_s": rec["notes"].get("train_cpu_seconds",
                                                        rec["notes"].get("train_seconds")),
                        "train_wall_s": rec["durations"].get("train")})
    return out


def table(points: list[dict], budgets: list[float]) -> str:
    """Markdown: one line per row, AP50 / AP25 (mean over seeds) per budget."""
    import pandas as pd

    frame = pd.DataFrame(points)
    lines = ["| row | " + " | ".join(f"{b:g} min AP50 / AP25" for b in budgets) + " |",
             "|---|" + "---:|" * len(budgets)]
    for (row, name), g in frame.groupby(["row", "name"], sort=False):
        cells = []
        for b in budgets:
            hit = g[(g["minutes"] == b) & g["AP50"].notna()]
            cells.append("–" if hit.empty else
                         f"{hit['AP50'].mean():.1f} / {hit['AP25'].mean():.1f}")
        lines.append(f"| {name} ({row}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(points: list[dict], path: Path) -> None:
    """AP50 against the budget, one line per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    frame = pd.DataFrame(points).dropna(subset=["AP50"])
    fig, ax = plt.subplots(figsize=(6, 4))
    for (row, name), g in frame.groupby(["row", "name"], sort=False):
        mean = g.groupby("minutes")["AP50"].mean()
        ax.plot(mean.index, mean.values, marker="o", label=f"{name} ({row})")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training budget (CPU-minutes, cpu schedule)")
    ax.set_ylabel("AP50 (%) on the test split")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("demo/tinyset"))
    ap.add_argument("--rows", default="2,3,deal", help="manifest ids")
    ap.add_argument("--budgets", default="2,4,8,16", help="CPU-minutes, comma list")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--runs", type=Path, default=Path("runs/cpu_schedule"))
    ap.add_argument("--devices", default="cpu,cpu", help="one run per device at a time")
    ap.add_argument("--plot", type=Path, default=Path("runs/cpu_schedule/curves.png"))
    ap.add_argument("--calibrate", action="store_true")
    ap.add_argument("--steps", type=int, default=5, help="calibration: timed steps per model")
    args = ap.parse_args()
    if args.calibrate:
        calibrate(args.data, ["faster_rcnn", "fcos", "retinanet"], args.steps)
        return
    budgets = [float(b) for b in args.budgets.split(",")]
    points = curves(args.data, args.rows.split(","), budgets,
                    [int(s) for s in args.seeds.split(",")], args.runs, args.devices.split(","))
    args.runs.mkdir(parents=True, exist_ok=True)
    (args.runs / "curves.json").write_text(json.dumps(points, indent=1))
    print(table(points, budgets))
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    plot(points, args.plot)
    print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
