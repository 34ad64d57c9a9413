"""``tinyset demo``: the whole flow on synthetic miniature sources, no download needed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def demo(out: Annotated[Path, typer.Option("--out", help="Working folder.")] = Path("demo"),
         seed: Annotated[int, typer.Option(help="Random seed.")] = 0) -> None:
    """Synthesize all 24 raw sources and convert them (later stages extend this)."""
    from tinyset_builder.cli_sources import conversion_table
    from tinyset_builder.progress import console, track
    from tinyset_builder.sources import SOURCES, convert_source, get_source

    raw = out / "raw"
    for i, name in enumerate(track(list(SOURCES), "1/2 synthesizing raw sources")):
        get_source(name).synthesize(raw / name, seed + i)
    conversions = []
    for name in track(list(SOURCES), "2/2 converting sources"):
        conv = convert_source(name, raw)
        conv.dataset.save(out / "converted" / f"{name}.json")
        conversions.append(conv)
    console.print(conversion_table(conversions))


def register(app: typer.Typer) -> None:
    """Add ``tinyset demo``."""
    app.command("demo")(demo)
