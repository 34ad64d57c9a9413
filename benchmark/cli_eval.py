"""``tinyset eval``: the TinySet evaluation protocol on COCO GT and detection files.

The command imports the evaluator inside its body, and the evaluator never imports torch.

Its options are declared once, as the Typer signature of :func:`eval_cmd`. Typer 0.29 coerces
every option through a pydantic ``TypeAdapter``, which costs a small evaluation ~0.2 s of its
~1.2 s (importing pydantic, building the adapters); so ``tinyset eval`` (but not ``tinyset eval
--help``) is parsed by :func:`main_without_typer`, an argparse parser derived from that same
signature (``tinyset_builder/cli.py`` routes it).
"""

from __future__ import annotations

import argparse
import inspect
import typing
from pathlib import Path
from typing import Annotated, Any

import typer


def register(app: typer.Typer) -> None:
    """Add ``eval`` to ``app``."""
    app.command("eval")(eval_cmd)


def eval_cmd(
    gt: Annotated[Path, typer.Option("--gt", help="COCO ground-truth JSON.")],
    dt: Annotated[Path, typer.Option(
        "--dt", help="Detections: COCO results JSON, or columns in .npz / .parquet "
                     "(image_id category_id x y w h score).")],
    json_out: Annotated[Path | None, typer.Option(
        "--json", help="Write the metrics (DESIGN.md keys, params, backend) here.")] = None,
    by: Annotated[list[str] | None, typer.Option(
        "--by", help="Also break down by this image field: source or domain "
                     "(repeatable).")] = None,
    prompts: Annotated[Path | None, typer.Option(
        "--prompts", help="P2SOD prompt file: evaluate only its (image, category) units.")
    ] = None,
    backend: Annotated[str, typer.Option(
        "--backend", help="native (default), pycocotools or faster-coco-eval.")] = "native",
    size_iou: Annotated[str, typer.Option(
        "--size-iou", help="IoU of APvt/APt/APs/APm: 0.5, or 0.5:0.95 (AI-TOD).")] = "0.5",
    max_dets: Annotated[str, typer.Option(
        "--max-dets", help="Detection caps per image; headline numbers use the largest.")
    ] = "100,1500,3000",
    per_category: Annotated[bool, typer.Option(
        "--per-category", help="Average over categories instead of pooling them.")
    ] = False,
    nwd: Annotated[float | None, typer.Option(
        "--nwd", help="Also report AP with NWD matching, with this constant C in px "
                      "(12.8 = AI-TOD's mean object size).")] = None,
    dump_arrays: Annotated[Path | None, typer.Option(
        "--dump-precision", hidden=True, help="Save the precision array (.npy).")] = None,
) -> None:
    """Evaluate detections: AP25 AP50 AP75 APvt APt APs APm AP (paper's column order)."""
    from rich.table import Table

    from benchmark.evaluate.api import evaluate_full
    from benchmark.evaluate.summary import TABLE_KEYS, as_row
    from tinyset_builder.io import write_json

    # No rich status spinner: its refresh thread would keep the evaluator from reading the GT
    # in a forked process beside the detections (it forks only when no other thread runs).
    res, arrays = evaluate_full(gt, dt, prompts=prompts, backend=backend, by=by or None,
                                size_iou=size_iou, max_dets=max_dets,
                                class_agnostic=not per_category, nwd=nwd)
    if dump_arrays is not None:
        import numpy as np

        np.save(dump_arrays, arrays.precision)
    p = res["params"]
    size = "0.50:0.95" if len(p["size_iou"]) > 1 else f"{p['size_iou'][0]:g}"
    table = Table(title=f"{gt.name} · {dt.name} · maxDets {max(p['maxDets'])} · "
                        f"size APs at IoU {size} · {backend}")
    table.add_column("")
    for key in TABLE_KEYS:
        table.add_column(key, justify="right")
    table.add_row("all", *as_row(res))
    if "NWD" in res:
        table.add_row(f"NWD (C={res['NWD']['C']:g})", *as_row(res["NWD"]))
    for field in by or []:
        for name, metrics in res[f"by_{field}"].items():
            table.add_row(f"{field}={name}", *as_row(metrics))
    from rich.console import Console

    Console().print(table)
    if json_out is not None:
        write_json(json_out, res, indent=1)


def _argparse_from_signature(fn: Any, prog: str) -> argparse.ArgumentParser:
    """An argparse parser for a Typer command whose options are ``Annotated[T, typer.Option]``.

    Handles what :func:`eval_cmd` uses: paths, strings, floats, optional values, repeatable
    lists and boolean flags; a parameter without a default is required.
    """
    ap = argparse.ArgumentParser(prog=prog, description=(fn.__doc__ or "").strip())
    hints = typing.get_type_hints(fn, include_extras=True)
    for name, param in inspect.signature(fn).parameters.items():
        base, *meta = typing.get_args(hints[name])
        info = next(m for m in meta if isinstance(m, typer.models.OptionInfo))
        decls = [d for d in (info.default, *info.param_decls)
                 if isinstance(d, str) and d.startswith("-")]
        kw: dict[str, Any] = {"dest": name, "help": argparse.SUPPRESS if info.hidden
                              else info.help}
        args = [a for a in typing.get_args(base) if a is not type(None)] or [base]
        kind = args[0]
        if param.default is inspect.Parameter.empty:
            kw["required"] = True
        else:
            kw["default"] = param.default
        if kind is bool:
            kw["action"] = "store_true"
        elif typing.get_origin(kind) is list:
            kw.update(action="append", type=typing.get_args(kind)[0])
        else:
            kw["type"] = kind
        ap.add_argument(*decls, **kw)
    return ap


def main_without_typer(argv: list[str]) -> None:
    """Run ``tinyset eval`` with ``argv`` (its options) parsed by argparse, not Typer."""
    args = _argparse_from_signature(eval_cmd, "tinyset eval").parse_args(argv)
    eval_cmd(**vars(args))
