"""``tinyset sources``: list, check, synthesize and convert the 24 raw sources."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer

sources_app = typer.Typer(no_args_is_help=True, help="The 24 raw sources: list, check, synth, "
                                                      "convert.")

RawOpt = Annotated[Path, typer.Argument(help="Folder holding one sub-folder per source.")]
SourcesOpt = Annotated[str | None, typer.Option("--sources", help="Comma-separated source names "
                                                                   "(default: all).")]
OnErrorOpt = Annotated[str, typer.Option("--on-error", help="raise: stop at the first bad record;"
                                                           " skip: count it and go on.")]


@sources_app.command("list")
def list_cmd(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List the sources with their domain, format and licence."""
    from rich.table import Table

    from tinyset_builder.sources import SOURCES
    from tinyset_builder.sources.base import load_info

    infos = [load_info(n) for n in SOURCES]
    if as_json:
        rows = [{"name": i.name, "title": i.title, "domain": i.domain,
                 "native_format": i.native_format, "license": i.license,
                 "categories": list(i.categories), "identity": i.identity} for i in infos]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("name", "title", "domain", "format", "licence", "identity",
                  caption="full licence, citation and identity notes: --json")
    for i in infos:
        table.add_row(i.name, _headline(i.title), i.domain, _headline(i.native_format),
                      _headline(i.license),
                      "confirmed" if i.identity == "confirmed" else "candidate")
    from tinyset_builder.progress import console
    console.print(table)


def _headline(text: str) -> str:
    """The part of a manifest text before its first parenthesis or semicolon."""
    return re.split(r" \(|;", text, maxsplit=1)[0].strip()


@sources_app.command("check")
def check_cmd(raw: RawOpt, sources: SourcesOpt = None) -> None:
    """Show which sources are present, missing or malformed under RAW, with download hints."""
    from rich.table import Table

    from tinyset_builder.errors import TinysetError
    from tinyset_builder.progress import console
    from tinyset_builder.sources import convert_source, parse_source_names
    from tinyset_builder.sources.base import load_info

    table = Table("source", "status", "images", "annotations", "detail")
    problems = 0
    for name in parse_source_names(sources):
        info = load_info(name)
        if not (raw / name).is_dir():
            problems += 1
            table.add_row(name, "[yellow]missing", "", "",
                          f"download: {info.download}\nexpected under {raw / name}:\n"
                          f"{info.layout.strip()}")
            continue
        try:
            conv = convert_source(name, raw, on_error="skip")
        except TinysetError as e:
            problems += 1
            table.add_row(name, "[red]malformed", "", "", str(e))
            continue
        skipped = sum(conv.skipped.values())
        status = "[green]ok" if not skipped else f"[yellow]{skipped} bad records"
        detail = "; ".join(f"{n}× {r} (first: {conv.examples[r]})"
                           for r, n in conv.skipped.items())
        table.add_row(name, status, str(len(conv.dataset.images)),
                      str(len(conv.dataset.annotations)), detail)
        del conv  # not held while the next source converts
    console.print(table)
    if problems:
        raise typer.Exit(1)


@sources_app.command("synth")
def synth_cmd(out: Annotated[Path, typer.Option("--out", help="Where to write RAW/<source>/.")],
              sources: SourcesOpt = None,
              seed: Annotated[int, typer.Option(help="Random seed.")] = 0) -> None:
    """Write a miniature copy of every source in its native layout (no download needed)."""
    from tinyset_builder.progress import console, track
    from tinyset_builder.sources import get_source, parse_source_names

    names = parse_source_names(sources)
    total_images = total_anns = 0
    for i, name in enumerate(track(names, "synthesizing sources")):
        s = get_source(name).synthesize(out / name, seed + i)
        total_images += s.images
        total_anns += s.annotations
    console.print(f"wrote {len(names)} sources ({total_images} images, {total_anns} annotations)"
                  f" to {out}")


@sources_app.command("convert")
def convert_cmd(raw: RawOpt,
                out: Annotated[Path, typer.Option("--out", help="Folder for <source>.json.")],
                sources: SourcesOpt = None, on_error: OnErrorOpt = "raise") -> None:
    """Convert each source to COCO JSON in original pixels and print a per-source summary."""
    from tinyset_builder.progress import console, track
    from tinyset_builder.sources import convert_source, parse_source_names

    names = parse_source_names(sources)
    rows = []
    for name in track(names, "converting sources"):
        conv = convert_source(name, raw, on_error=on_error)  # type: ignore[arg-type]
        conv.dataset.save(out / f"{name}.json")
        rows.append(conversion_row(conv))
        del conv  # written: one source in memory at a time (a crowded one has millions of boxes)
    console.print(conversion_table(rows))


def conversion_row(conv: Any) -> tuple[str, ...]:
    """One source's row of :func:`conversion_table` (a few strings, not the dataset)."""
    ds = conv.dataset
    ignore = sum(a.iscrowd for a in ds.annotations)
    skipped = ", ".join(f"{r}: {n}" for r, n in conv.skipped.items()) or "0"
    return (conv.info.name, conv.info.domain, str(len(ds.images)), str(len(ds.annotations)),
            str(ignore), str(conv.counts.get("clipped_to_image", 0)), skipped)


def conversion_table(rows: list[tuple[str, ...]]) -> object:
    """A rich table: per source, images, annotations, ignore regions, clipped and skipped."""
    from rich.table import Table

    table = Table("source", "domain", "images", "annotations", "ignore", "clipped", "skipped",
                  title="converted sources")
    for row in rows:
        table.add_row(*row)
    return table


def register(app: typer.Typer) -> None:
    """Add ``tinyset sources ...``."""
    app.add_typer(sources_app, name="sources")
