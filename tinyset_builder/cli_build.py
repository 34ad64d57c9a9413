"""``tinyset build`` and ``tinyset stats``; they import their stage inside the command body."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def build_cmd(
    out: Annotated[Path, typer.Option("--out", help="Output folder (an interrupted build "
                                                    "there is resumed).")],
    raw: Annotated[Path | None, typer.Option(
        "--raw", help="Folder of raw sources (RAW/<source>/); required unless --verify.")
    ] = None,
    sources: Annotated[str | None, typer.Option(
        "--sources", help="Comma-separated source names (default: every source present).")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", help="Parallel workers.")] = 1,
    executor: Annotated[str, typer.Option("--executor", help="local (process pool) or ray.")
                        ] = "local",
    on_error: Annotated[str, typer.Option(
        "--on-error", help="Bad annotation records: skip (count and go on) or raise.")
    ] = "skip",
    tile: Annotated[int, typer.Option(help="Output side in pixels.")] = 1024,
    overlap: Annotated[int, typer.Option(help="Overlap of neighbouring windows (px).")] = 200,
    min_visible: Annotated[float, typer.Option(
        help="A cut box keeping less than this share of its area becomes ignore.")] = 0.5,
    keep_empty: Annotated[bool, typer.Option(help="Keep outputs without any label.")] = False,
    large_area: Annotated[float, typer.Option(help="Objects above this area (px²) are large.")
                          ] = 96.0 ** 2,
    max_large_fraction: Annotated[float, typer.Option(
        help="Drop an output whose large objects cover more than this share.")] = 0.4,
    large_filter_scope: Annotated[str, typer.Option(
        help="Apply the large-object filter per output tile (default) or per original image "
             "(the paper's wording; docs/build.md).")] = "tile",
    letterbox: Annotated[bool, typer.Option(
        help="Resize images smaller than the tile so the longer side fills it, then pad "
             "(default: pad without resizing; docs/build.md).")] = False,
    test_disjoint: Annotated[bool, typer.Option(
        help="Cut test images into non-overlapping windows (default: the train grid with "
             "its overlap; docs/build.md).")] = False,
    max_pixels: Annotated[int | None, typer.Option(
        help="Skip images with more pixels than this.")] = None,
    stats: Annotated[bool, typer.Option(help="Write OUT/stats/ (Fig. 2) after building.")
                     ] = True,
    verify: Annotated[bool, typer.Option(
        "--verify", help="Only re-check the accounting and files of an existing build in OUT.")
    ] = False,
) -> None:
    """Build TinySet: crop-or-pad to 1024², 40 % large-object filter, dedupe, splits, stats."""
    from tinyset_builder.build import BuildOptions, build, verify_build
    from tinyset_builder.errors import TinysetError
    from tinyset_builder.filters import LargeObjectFilter
    from tinyset_builder.imageio import MAX_PIXELS
    from tinyset_builder.progress import console
    from tinyset_builder.tiling import TilingOptions

    if verify:
        record = verify_build(out)
        t = record["totals"]
        console.print(f"[green]{out}: build verifies[/] ({t['images_out']:,} images, "
                      f"{t['annotation_records_out']:,} annotations; every input annotation "
                      f"accounted for)")
        return
    if raw is None:
        raise TinysetError("--raw is required to build (only --verify works without it)")
    if on_error not in ("raise", "skip"):
        raise TinysetError(f"--on-error must be raise or skip, got {on_error!r}")
    if large_filter_scope not in ("tile", "image"):
        raise TinysetError(f"--large-filter-scope must be tile or image, got "
                           f"{large_filter_scope!r}")
    options = BuildOptions(
        tiling=TilingOptions(tile=tile, overlap=overlap, min_visible=min_visible,
                             keep_empty=keep_empty, letterbox=letterbox,
                             test_disjoint=test_disjoint),
        large_filter=LargeObjectFilter(large_area=large_area, max_fraction=max_large_fraction,
                                       scope=large_filter_scope),  # type: ignore[arg-type]
        max_pixels=max_pixels or MAX_PIXELS, on_error=on_error)  # type: ignore[arg-type]
    report = build(raw, out, sources=sources, workers=workers, executor=executor,
                   options=options, stats=stats)
    t = report.record["totals"]
    if report.reused_tasks:
        console.print(f"resumed: {report.reused_tasks} finished image(s) reused, "
                      f"{report.ran_tasks} processed")
    for name, s in report.record["sources"].items():
        for f in s["failed_images"]:
            console.print(f"[yellow]skipped {name}/{f['file']}: {f['reason']}")
        skipped = s["converter"]["skipped"]
        if skipped:
            console.print(f"[yellow]{name}: converter skipped "
                          + ", ".join(f"{r}: {n}" for r, n in skipped.items()))
    if report.failed_images:
        console.print(f"[yellow]{report.failed_images} image(s) could not be read and were "
                      f"skipped (reasons in {out}/build.json)")
    console.print(f"[green]built {out}[/]: {t['images_out']:,} images, "
                  f"{t['annotation_records_out']:,} annotations")


def stats_cmd(
    out: Annotated[Path, typer.Argument(help="A built dataset folder.")],
    compare: Annotated[list[str] | None, typer.Option(
        "--compare", help="NAME=COCO.json: add a dataset to the comparison table (repeatable).")
    ] = None,
) -> None:
    """Write the statistics of Fig. 2 (tables, PNG plots, summary.md) to OUT/stats/."""
    from tinyset_builder.errors import TinysetError
    from tinyset_builder.progress import console
    from tinyset_builder.stats import write_stats

    pairs = {}
    for item in compare or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise TinysetError(f"--compare expects NAME=COCO.json, got {item!r}")
        if not Path(path).is_file():
            raise TinysetError(f"{path}: file not found")
        pairs[name] = Path(path)
    folder = write_stats(out, pairs)
    console.print(f"[green]statistics written to {folder}")


def register(app: typer.Typer) -> None:
    """Add ``tinyset build`` and ``tinyset stats``."""
    app.command("build")(build_cmd)
    app.command("stats")(stats_cmd)
