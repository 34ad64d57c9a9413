"""``tinyset derive``: label-efficient variants and P2SOD prompt sets of a built dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def derive(data: Annotated[Path, typer.Argument(help="Dataset folder written by `tinyset build`.",
                                                show_default=False)],
           setting: Annotated[str, typer.Option(
               "--setting", "-s", show_default=False,
               help="noise-20 noise-40 semi-1 semi-5 semi-10 shot-1 shot-3 shot-5 points-center "
                    "points-jitter p2sod-1 p2sod-2 p2sod-3 p2sod-4, or 'all' (every setting "
                    "with its defaults).")],
           seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
           fold: Annotated[int, typer.Option(help="Fold of a semi setting.")] = 0,
           num_points: Annotated[int | None, typer.Option(
               "--num-points", help="Points per prompt set (p2sod-1, p2sod-3; Table IV(b)).",
               show_default=False)] = None,
           jitter: Annotated[float | None, typer.Option(
               help="Point jitter, a fraction of the half box size in [0, 1] (points-jitter: "
                    "default 1, p2sod-*: default 0; Fig. 7).", show_default=False)] = None,
           force: Annotated[bool, typer.Option("--force", help="Rewrite even if complete.")]
           = False) -> None:
    """Write DATA/variants/<setting>/ (COCO or prompt files and meta.json); print its path."""
    from benchmark.protocols import SETTINGS, derive_variant
    from tinyset_builder.errors import TinysetError
    from tinyset_builder.io import read_json
    from tinyset_builder.progress import console

    if setting == "all":
        if num_points is not None or jitter is not None:
            raise TinysetError("--setting all derives every setting with its defaults; "
                               "--num-points and --jitter need a single setting")
        names = list(SETTINGS)
    else:
        names = [setting]
    cache: dict = {}  # each annotation file is parsed once for all settings
    for name in names:
        fold_here = fold if setting != "all" or SETTINGS[name].kind == "semi" else 0
        folder = derive_variant(data, name, seed=seed, fold=fold_here, force=force,
                                cache=cache, num_points=num_points, jitter=jitter)
        counts = read_json(folder / "meta.json")["counts"]
        console.print(f"[green]{name}[/green]: {_summary(counts)}")
        typer.echo(str(folder))


def _summary(counts: dict[str, object]) -> str:
    """``key=value`` pairs of a (possibly per-split) counts dict on one line."""
    parts = []
    for key, value in counts.items():
        if isinstance(value, dict):
            parts.append(f"{key}: " + ", ".join(f"{k}={v}" for k, v in value.items()))
        else:
            parts.append(f"{key}={value}")
    return "; ".join(parts)


def register(app: typer.Typer) -> None:
    """Add ``tinyset derive``."""
    app.command("derive")(derive)
