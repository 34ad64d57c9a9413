"""``tinyset browse`` (FiftyOne) and ``tinyset publish`` (Hugging Face Hub).

The commands import FiftyOne, ``datasets`` and ``huggingface_hub`` inside their bodies, so
``tinyset --help`` stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    """Add ``browse`` and ``publish`` to ``app``."""

    @app.command("browse")
    def browse_cmd(
        out: Annotated[Path, typer.Argument(help="A dataset built by `tinyset build`.")],
        split: Annotated[Optional[str], typer.Option(  # noqa: UP045 - typer needs Optional
            "--split", help="Load only this split (train, val or test).")] = None,
        runs: Annotated[Optional[Path], typer.Option(  # noqa: UP045
            "--runs", "--predictions",
            help="Results store (or one run folder): add each finished run's predictions "
                 "with per-object TP/FP from the toolkit's evaluator.")] = None,
        port: Annotated[int, typer.Option("--port", help="App port on 127.0.0.1.")] = 5151,
        launch: Annotated[bool, typer.Option(
            "--launch/--no-launch", help="Start the FiftyOne App (and wait for Ctrl-C).")
        ] = True,
        reload: Annotated[bool, typer.Option(
            "--reload", help="Load again even if this build is already in FiftyOne.")] = False,
    ) -> None:
        """Browse a built TinySet (and benchmark predictions) in the FiftyOne App."""
        from tinyset_builder import browse
        from tinyset_builder.progress import console

        ds, summary = browse.load_dataset(out, split=split, runs=runs, reload=reload)
        state = "already loaded" if summary.reused else "loaded"
        console.print(f"{state} FiftyOne dataset [bold]{summary.name}[/]: "
                      f"{summary.samples:,} images, {summary.objects:,} objects "
                      f"({', '.join(f'{k} {v:,}' for k, v in summary.splits.items())}); "
                      f"saved views: {', '.join(summary.views)}")
        for name, counts in summary.outcomes.items():
            console.print(f"  {name}: " + ", ".join(f"{k} {v:,}" for k, v in
                                                    sorted(counts.items())))
        if launch:
            browse.launch(ds, port=port)
        else:
            console.print(f"open it with: fiftyone app launch {summary.name}")

    @app.command("publish")
    def publish_cmd(
        out: Annotated[Path, typer.Argument(help="A dataset built by `tinyset build`.")],
        repo_id: Annotated[str, typer.Option("--repo-id", help="Hub dataset ORG/NAME.")],
        export_dir: Annotated[Optional[Path], typer.Option(  # noqa: UP045
            "--export-dir", help="Hub-ready folder to write (default: OUT/../<name>-hub).")
        ] = None,
        private: Annotated[bool, typer.Option("--private", help="Create the repo private.")
                           ] = False,
        dry_run: Annotated[Optional[bool], typer.Option(  # noqa: UP045
            "--dry-run/--push",
            help="Stop after the export and list what would be uploaded (default when no "
                 "Hugging Face token is set).")] = None,
        shard_mb: Annotated[int, typer.Option(
            "--shard-mb", help="About how many MB of images go into one Parquet shard.")
        ] = 500,
    ) -> None:
        """Export a built TinySet as Parquet shards + dataset card, then push it to the Hub."""
        from tinyset_builder import hub
        from tinyset_builder.errors import TinysetError
        from tinyset_builder.progress import console

        hub.check_repo_id(repo_id)
        if shard_mb <= 0:
            raise TinysetError(f"--shard-mb must be positive, got {shard_mb}")
        folder = export_dir or out.resolve().parent / f"{out.resolve().name}-hub"
        token = hub.resolve_token()
        if dry_run is None:
            dry_run = token is None
            if dry_run:
                console.print("no Hugging Face token (HF_TOKEN or `hf auth login`): dry run")
        elif not dry_run and token is None:
            raise TinysetError("--push needs a Hugging Face token: set HF_TOKEN or run "
                               "`hf auth login`")
        summary = hub.export(out, folder, max_shard_bytes=shard_mb * 1000**2)
        files = summary.files()
        total = sum(size for _, size in files)
        counts = ", ".join(f"{k} {v['num_examples']:,}" for k, v in summary.splits.items())
        console.print(f"exported {folder}: {len(summary.shards)} shards "
                      f"({summary.written} written, {summary.reused} reused), {counts} images")
        if dry_run:
            typer.echo(f"dry run: would upload {len(files)} files ({total / 1e6:,.1f} MB) to "
                       f"https://huggingface.co/datasets/{repo_id}"
                       f"{' (private)' if private else ''}:")
            for rel, size in files:
                typer.echo(f"  {rel}  {size:,} B")
            return
        assert token is not None
        url = hub.push(folder, repo_id, token=token, private=private)
        typer.echo(f"pushed {len(files)} files to https://huggingface.co/datasets/{repo_id}: "
                   f"{url}")
