"""Measure each paper-vs-ours switch of DEAL (``deal.config.SWITCHES``) at an equal budget.

For every switch and seed, the full model is trained with the paper's value of that switch (all
other fields ours) for ``--minutes`` of CPU time, and scored under a P2SOD setting exactly as
``benchmarks/deal_learning.py`` does; ``ours`` is the unchanged full model. Runs resume (a
finished one is read back). The table gives the mean and the population standard deviation of
AP50 over the seeds and the difference to ``ours``.

Example (setting 3, tiny preset, 3 seeds, 3 CPU-minutes per run)::

    nice -n 10 .venv/bin/python benchmarks/deal_switches.py --data demo/tinyset \\
        --switches ours,decoder,eq8,pgcpp,hfe --seeds 0,1,2 --minutes 3 --runs runs/deal_switches
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def run(switch: str, seed: int, args: argparse.Namespace) -> dict:
    """Train and score one (switch, seed) with ``deal_learning.run_config``."""
    from deal_learning import run_config

    ns = argparse.Namespace(
        data=args.data, preset=args.preset, minutes=args.minutes, wall_minutes=args.wall_minutes,
        setting=args.setting, split=args.split, max_images=args.max_images,
        runs=args.runs / switch / f"seed{seed}", threads=args.threads, seed=seed, set=[],
        paper=[] if switch == "ours" else [switch], force=False)
    return run_config(args.config, ns)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="built dataset folder")
    p.add_argument("--switches", default="ours,decoder,eq8,pgcpp,hfe",
                   help="comma list: ours and names of deal.config.SWITCHES")
    p.add_argument("--config", default="full", help="Table IV(d) row every run starts from")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--minutes", type=float, default=3.0, help="CPU-minutes of training per run")
    p.add_argument("--wall-minutes", type=float, default=None)
    p.add_argument("--setting", default="p2sod-3")
    p.add_argument("--split", default="test")
    p.add_argument("--max-images", type=int, default=0)
    p.add_argument("--runs", type=Path, default=Path("runs/deal_switches"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--report-only", action="store_true",
                   help="print the table of the finished runs without training")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    switches = args.switches.split(",")
    table: dict[str, list[dict]] = {s: [] for s in switches}
    for seed in seeds:  # seed-major: an interrupted sweep still has every switch at seed 0
        for switch in switches:
            done = args.runs / switch / f"seed{seed}" / args.config / "metrics.json"
            if args.report_only and not done.is_file():
                continue
            table[switch].append(run(switch, seed, args))
    table = {s: rows for s, rows in table.items() if rows}
    base = [100 * r["AP50"] for r in table.get("ours", [])]
    print(f"{'switch (paper value)':<22}{'seeds':>6}{'AP50 mean':>11}{'std':>7}{'vs ours':>9}"
          f"{'steps':>8}")
    for switch, rows in table.items():
        ap = [100 * r["AP50"] for r in rows]
        std = statistics.pstdev(ap) if len(ap) > 1 else float("nan")
        diff = statistics.mean(ap) - statistics.mean(base) if base and switch != "ours" else 0.0
        steps = statistics.mean(r["train_steps"] for r in rows)
        print(f"{switch:<22}{len(ap):>6}{statistics.mean(ap):>11.1f}{std:>7.1f}{diff:>+9.1f}"
              f"{steps:>8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
