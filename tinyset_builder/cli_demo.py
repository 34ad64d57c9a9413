"""``tinyset demo``: the whole flow on synthetic miniature sources, no download needed.

Stages (each resumable: run it again and finished work is reused):

1. synthesize all 24 raw sources (or the ``--sources`` named) in their native layouts
   (``OUT/raw``);
2. build TinySet from them (``OUT/tinyset``): crop-or-pad, 40 % filter, dedupe, splits, stats;
3. derive every label-efficient variant and P2SOD prompt set (``OUT/tinyset/variants``);
4. run the benchmark on the budgeted CPU schedule (``--schedule cpu --minutes 3``): Faster R-CNN
   and FCOS (torchvision, ResNet-18-FPN from random initialisation) and DEAL (tiny preset), two
   runs side by side on a CPU-only machine (``OUT/runs``);
5. render Tables I and II, paper beside measured (``OUT/report_table{I,II}.{md,html}``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

#: Rows the demo benchmarks: DEAL, Faster R-CNN (#2) and FCOS (#3) through torchvision. The
#: longest run (DEAL) comes first, so two runs side by side finish at about the same time.
DEMO_METHODS = "deal,2,3"
#: The demo's training budget per run (CPU-minutes of the cpu schedule; see baselines.schedules).
DEMO_MINUTES = 3.0


def demo(out: Annotated[Path, typer.Option("--out", help="Working folder.")] = Path("demo"),
         seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
         workers: Annotated[int, typer.Option(help="Build workers.")] = 2,
         methods: Annotated[str, typer.Option(
             help="Manifest ids to benchmark (empty: skip the benchmark).")] = DEMO_METHODS,
         minutes: Annotated[float, typer.Option(
             help="Training budget per run in CPU-minutes (cpu schedule).")] = DEMO_MINUTES,
         device: Annotated[str, typer.Option(
             help="auto (every GPU, else two CPU runs side by side), cpu or cuda:0.")] = "auto",
         sources: Annotated[str, typer.Option(
             help="Comma-separated sources to synthesize and build (empty: all 24).")] = "",
         ) -> None:
    """Run synthesize → build → derive → benchmark → report on synthetic sources."""
    from benchmark.cli_bench import benchmark
    from benchmark.protocols import SETTINGS, derive_variant
    from benchmark.report import write_report
    from tinyset_builder.build import build
    from tinyset_builder.progress import console, track
    from tinyset_builder.sources import SOURCES, get_source, parse_source_names

    raw, data, runs = out / "raw", out / "tinyset", out / "runs"
    names = parse_source_names(sources)
    console.rule(f"1/5 synthesizing {len(names)} raw source(s)")
    for name in track(names, "synthesizing"):
        if not (raw / name).is_dir():  # resumable: a source already written is kept
            # each source's seed is its place among all 24, whichever subset is asked for
            get_source(name).synthesize(raw / name, seed + list(SOURCES).index(name))
    console.rule("2/5 building TinySet")
    build(raw, data, workers=workers, sources=",".join(names))
    console.rule("3/5 deriving label-efficient variants and prompt sets")
    for setting in track(list(SETTINGS), "deriving"):
        derive_variant(data, setting, seed=seed)
    if methods:
        console.rule(f"4/5 benchmark (cpu schedule, {minutes:g} CPU-minutes per run)")
        benchmark(data=data, paradigm="all", methods=methods, runs=runs, schedule="cpu",
                  minutes=minutes, seeds=str(seed), device=_demo_devices(device))
        console.rule("5/5 report")
        written = []
        for table in ("I", "II"):  # Table I: baselines; Table II: point-prompted (DEAL)
            for fmt in ("md", "html"):
                path = out / f"report_table{table}.{fmt}"
                write_report(runs, fmt, path, table=table)
                written.append(str(path))
        console.print("report: " + ", ".join(written))
    console.print(f"built dataset: {data} (statistics in {data / 'stats'}); "
                  f"browse it with: tinyset browse {data}")


def _demo_devices(device: str) -> str:
    """``auto`` on a machine without a GPU: one run per core, two at most (no oversubscription)."""
    import os

    from tinyset_builder._imports import is_available

    if device != "auto":
        return device
    if is_available("torch"):
        import torch

        if torch.cuda.is_available():
            return "auto"
    return ",".join(["cpu"] * max(1, min(2, os.cpu_count() or 1)))


def register(app: typer.Typer) -> None:
    """Add ``tinyset demo``."""
    app.command("demo")(demo)
