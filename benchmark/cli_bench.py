"""``tinyset benchmark`` and ``tinyset report``; the stage is imported inside the commands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer


def _split_list(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _devices(device: str) -> list[str]:
    """``auto`` -> every visible GPU (one run per GPU at a time), else ``cpu``."""
    if device != "auto":
        return _split_list(device) or ["cpu"]
    from tinyset_builder._imports import is_available

    if is_available("torch"):
        import torch

        if torch.cuda.is_available():
            return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu"]


def benchmark(
    data: Annotated[Path, typer.Option("--data", help="A dataset built by `tinyset build`.")],
    paradigm: Annotated[str, typer.Option(
        "--paradigm", help="full, noise, semi, sparse, weak, zero-shot, p2sod or all (or a study: "
                           "deal-studies, transfer).")],
    methods: Annotated[str | None, typer.Option(
        "--methods", help="Comma-separated manifest ids (e.g. 15,16,deal).")] = None,
    runs: Annotated[Path, typer.Option("--runs", help="Results store.")] = Path("runs"),
    schedule: Annotated[str, typer.Option(
        "--schedule", help="paper (1x = 3 epochs at 1024²), smoke (plumbing only) or cpu "
                           "(a budget of --minutes CPU-minutes per run).")] = "paper",
    minutes: Annotated[float | None, typer.Option(
        "--minutes", help="cpu schedule: training budget per run in CPU-minutes (default 4).")
    ] = None,
    executor: Annotated[str, typer.Option("--executor", help="local or slurm.")] = "local",
    seeds: Annotated[str, typer.Option("--seeds", help="Comma-separated seeds.")] = "0",
    device: Annotated[str, typer.Option(
        "--device", help="auto, cpu, cuda:0 or a comma list (one run per device at a time)."
    )] = "auto",
    env_python: Annotated[str | None, typer.Option(
        "--env-python", help="Interpreter of the environment for mmdet/external adapters.")
    ] = None,
    adapter: Annotated[str | None, typer.Option(
        "--adapter", help="Use this alternative adapter where a row lists it (e.g. mmdet).")
    ] = None,
    settings: Annotated[str | None, typer.Option(
        "--settings", help="Override the rows' settings (comma list, e.g. p2sod-1,p2sod-2).")
    ] = None,
    split: Annotated[str, typer.Option("--split", help="Split to evaluate.")] = "test",
    backbone_weights: Annotated[Path | None, typer.Option(
        "--backbone-weights", help="Local ImageNet ResNet-50 state_dict (torchvision rows).")
    ] = None,
    pretrain_data: Annotated[Path | None, typer.Option(
        "--pretrain-data", help="transfer rows: the TinySet build to pre-train on (the target "
                                "is --data).")] = None,
    slurm_partition: Annotated[str | None, typer.Option("--slurm-partition")] = None,
    timeout_min: Annotated[int, typer.Option("--timeout-min", help="Slurm time limit.")] = 1440,
    force: Annotated[bool, typer.Option("--force", help="Re-run runs stored ok.")] = False,
    manifest: Annotated[Path | None, typer.Option("--manifest", help="Methods manifest.")
                        ] = None,
) -> None:
    """Run one paradigm's rows of Table I on a built dataset, then print the table."""
    from baselines.schedules import schedule_label
    from benchmark.manifest import load_methods
    from benchmark.report import report_frame, to_rich
    from benchmark.results import ResultsStore
    from benchmark.runner import plan, run_benchmark, summary_line
    from tinyset_builder.errors import TinysetError
    from tinyset_builder.progress import console

    # The command as parsed (main() may be called with an argv that is not sys.argv).
    command = ["tinyset", "benchmark"]
    for flag, value in (("--data", data), ("--paradigm", paradigm), ("--methods", methods),
                        ("--runs", runs), ("--schedule", schedule), ("--minutes", minutes),
                        ("--executor", executor),
                        ("--seeds", seeds), ("--device", device), ("--env-python", env_python),
                        ("--adapter", adapter), ("--settings", settings), ("--split", split),
                        ("--backbone-weights", backbone_weights),
                        ("--pretrain-data", pretrain_data),
                        ("--slurm-partition", slurm_partition), ("--manifest", manifest)):
        if value is not None:
            command += [flag, str(value)]
    if force:
        command.append("--force")
    methods_manifest = load_methods(manifest)
    chosen = methods_manifest.select(paradigm=paradigm, ids=_split_list(methods))
    if adapter:
        chosen = [m.with_adapter(adapter) if adapter in m.alternatives else m for m in chosen]
    try:
        seed_list = [int(s) for s in _split_list(seeds) or ["0"]]
    except ValueError:
        raise TinysetError(f"--seeds {seeds!r}: expected comma-separated integers") from None
    extra: dict[str, object] = ({"backbone_weights": str(backbone_weights)}
                                if backbone_weights else {})
    if minutes is not None:
        if schedule != "cpu":
            raise TinysetError("--minutes is the cpu schedule's budget: add --schedule cpu")
        if minutes <= 0:
            raise TinysetError(f"--minutes {minutes}: the budget must be positive")
        extra["minutes"] = minutes
    if backbone_weights and not backbone_weights.is_file():
        raise TinysetError(f"--backbone-weights {backbone_weights}: file not found")
    if pretrain_data is not None:
        if not (pretrain_data / "build.json").is_file():
            raise TinysetError(f"--pretrain-data {pretrain_data}: not a finished tinyset build")
        extra["pretrain_data"] = str(pretrain_data.resolve())
    devices = _devices(device)
    specs = plan(chosen, data, runs, seeds=seed_list, schedule=schedule, split=split,
                 device=devices[0], env_python=env_python, command=command,
                 force=force, settings=_split_list(settings), extra=extra)
    slurm = {"slurm_partition": slurm_partition} if slurm_partition else {}
    slurm["timeout_min"] = timeout_min
    console.print(f"{len(specs)} run(s) planned for paradigm {paradigm} on {data} "
                  f"({schedule_label(schedule, minutes)} schedule, {executor} executor, "
                  f"devices {', '.join(devices)})")
    records = run_benchmark(specs, executor=executor, devices=devices,
                            slurm_parameters=slurm,
                            on_done=lambda r: console.print(summary_line(r)))
    skipped = len(specs) - len(records)
    if skipped:
        console.print(f"{skipped} run(s) already stored ok in {runs}: skipped (--force re-runs)")
    frame = report_frame(ResultsStore(runs), methods_manifest,
                         paradigms=None if paradigm == "all" else [paradigm],
                         datasets=[specs[0].dataset] if specs else None)
    from benchmark.report import rich_console

    out = rich_console()
    for t in to_rich(frame):
        out.print(t)


def report(
    runs: Annotated[Path, typer.Option("--runs", help="Results store.")] = Path("runs"),
    fmt: Annotated[str, typer.Option("--format", help="rich, md, latex, csv or html.")
                   ] = "rich",
    out: Annotated[Path | None, typer.Option("--out", help="Write here instead of stdout.")
                   ] = None,
    table: Annotated[str, typer.Option(
        "--table", help="I, II, 3, 4a, 4b, 4c, 4d, 5 or 6 (the paper's layouts; "
                        "manifests/studies.toml).")] = "I",
    paradigm: Annotated[str | None, typer.Option(
        "--paradigm", help="Comma list (default: the paradigms with stored runs).")] = None,
    dataset: Annotated[str | None, typer.Option(
        "--dataset", help="Dataset key(s) in the store (default: all).")] = None,
) -> None:
    """Render the paper's Table I / II with the paper's and the measured numbers."""
    from benchmark.report import report_frame, to_rich, write_report
    from benchmark.results import ResultsStore
    from tinyset_builder.progress import console

    if fmt == "rich" and out is None and table == "I":
        from benchmark.report import rich_console

        frame = report_frame(ResultsStore(runs), table=table, paradigms=_split_list(paradigm),
                             datasets=_split_list(dataset))
        stdout = rich_console()
        for t in to_rich(frame, table):
            stdout.print(t)
        return
    text = write_report(runs, fmt, out, table=table, paradigms=_split_list(paradigm),
                        datasets=_split_list(dataset))
    if out is None:
        sys.stdout.write(text)
    else:
        console.print(f"wrote {out}")


def register(app: typer.Typer) -> None:
    """Add ``benchmark`` and ``report``."""
    app.command("benchmark")(benchmark)
    app.command("report")(report)
