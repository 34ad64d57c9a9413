"""Tables III and VI: methods evaluated on transfer targets, paper beside measured.

A ``kind = "transfer"`` entry of ``manifests/studies.toml`` lays out one table: its ``columns``
each name a ``metric`` of the evaluator, the ``paper`` column of ``results/paper/<paper>``, and
optionally a ``target`` (a source name: ``dior``, ``dota_v2``, ``coco``, ``tinyperson``) and a
``mode`` (a key of the row naming the manifest id to read, e.g. ``zero_shot`` or ``finetuned``);
its ``rows`` each give a ``label``, the ``paper_row`` values of the ``paper_key`` columns, and the
manifest ids (``method``, or one per mode) and ``target`` the column does not fix. A row without
ids shows the paper's numbers only (methods the toolkit does not run, such as MTP or xView).

Which target a stored run belongs to is read from the run itself: the transfer adapter notes the
target build's sources, and any other run (e.g. the zero-shot rows 38/39 run on a DIOR build)
is matched through its build's ``build.json``. A build made from one source is that target.
Measured cells are the mean over the seeds stored ``ok``, in percent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from benchmark.report_tables import Cell, Grid, paper_rows
from tinyset_builder.errors import TinysetError


@cache
def _build_sources(data_dir: str) -> tuple[str, ...]:
    from tinyset_builder.built import load_build_record

    try:
        return tuple(sorted(load_build_record(Path(data_dir))["sources"]))
    except (TinysetError, KeyError, OSError):
        return ()


def run_target(record: Mapping[str, Any]) -> str | None:
    """The target a run was evaluated on: its build's only source, else None (TinySet)."""
    sources = tuple((record.get("notes") or {}).get("target") or ()) or _build_sources(
        str(record.get("data_dir", "")))
    return sources[0] if len(sources) == 1 else None


def collect(runs: Path, datasets: Sequence[str] | None = None,
            ) -> dict[tuple[str, str], list[Mapping[str, Any]]]:
    """(target, method id) -> the stored records of that pair (every status)."""
    from benchmark.results import ResultsStore

    out: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    try:
        records = list(ResultsStore(runs).records())
    except TinysetError:  # no store yet: paper numbers only
        return out
    for r in records:
        if datasets and r["key"]["dataset"] not in datasets:
            continue
        target = run_target(r)
        if target is not None:
            out.setdefault((target, str(r["key"]["method"])), []).append(r)
    return out


def _mean(records: Sequence[Mapping[str, Any]], metric: str) -> float:
    from benchmark.report import _percent

    vals = [_percent((r.get("metrics") or {}).get(metric)) for r in records
            if r.get("status") == "ok"]
    vals = [v for v in vals if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else math.nan


def _status(found: Mapping[tuple[str, str], Sequence[Mapping[str, Any]]],
            wanted: Sequence[tuple[str, str]]) -> str:
    """``ok`` when every (target, method) the row shows has an ok run, else what is missing."""
    if not wanted:
        return "paper only"
    parts = []
    for target, method in wanted:
        recs = found.get((target, method), [])
        if any(r.get("status") == "ok" for r in recs):
            continue
        why = " ".join(str(recs[-1]["status"]).split()) if recs else "not run"
        parts.append(f"{target}/{method}: {why[:50]}")
    return "; ".join(parts) if parts else "ok"


def transfer_grids(spec: Mapping[str, Any], runs: Path,
                   datasets: Sequence[str] | None = None) -> list[Grid]:
    """One grid: the spec's rows × columns, ``paper / measured`` per cell (module docstring)."""
    keys = list(spec["paper_key"])
    paper = {tuple(r[k] for k in keys): r for r in paper_rows(spec["paper"])}
    found = collect(runs, datasets)
    columns = list(spec["columns"])
    g = Grid(f"{spec['title']} (paper / measured, %)",
             [spec.get("label", "Method"), *[c["header"] for c in columns], "Status"])
    schedules: set[str] = set()
    weights: set[str] = set()
    for row in spec["rows"]:
        if "group" in row:
            g.rows.append(str(row["group"]))
            continue
        ref = paper.get(tuple(row["paper_row"])) if "paper_row" in row else None
        if "paper_row" in row and ref is None:
            raise TinysetError(f"{spec['paper']}: no row {row['paper_row']} for table "
                               f"{spec['key']}")
        cells, wanted = [], []
        for c in columns:
            method = row.get(c.get("mode", "method"))
            target = c.get("target", row.get("target"))
            measured = math.nan
            if method and target:
                recs = found.get((target, str(method)), [])
                measured = _mean(recs, c["metric"])
                if (target, str(method)) not in wanted:
                    wanted.append((target, str(method)))
                for r in recs:
                    if r.get("status") == "ok":
                        schedules.add(str(r.get("schedule", "")))
                        w = (r.get("notes") or {}).get("weights")
                        if w:
                            weights.add(f"{method}: {w}")
            p = ref.get(c["paper"], "") if ref else ""
            cells.append(Cell(float(p) if p not in ("", None) else math.nan, measured))
        g.rows.append([row["label"], *cells, _status(found, wanted)])
    g.notes += [str(n) for n in spec.get("notes", ())]
    if schedules:
        g.notes.append("Measured with the schedule(s): " + ", ".join(sorted(schedules)) + ".")
    for w in sorted(weights):
        g.notes.append(f"Start of {w}.")
    return [g]
