"""The paper's tables beyond Table I, laid out by ``manifests/studies.toml``: II, IV(a)–(d), V.

A table is data: its entry in the studies file says which manifest rows fill it and where the
paper's numbers are (``results/paper/*.csv``). Three kinds exist:

* ``metrics`` (Tables IV(a)–(d)): a label column, then per metric ``paper / measured`` cells;
* ``table2``: Table II in its own layout — its groups, methods and schedules as printed (1× for
  the point-supervised rows), settings in the paper's words, and measured rows the paper does
  not have (e.g. YOLOv8-P2) in a block of their own;
* ``efficiency`` (Table V): each quantity as a ratio to the reference method, the paper's beside
  the one ``benchmarks/deal_table5.py`` measured on this machine; absolute measured values are
  shown only when they were measured on a GPU (the paper's unit of comparison).

Every table renders to the report formats (rich, md, latex, csv, html) through one cell grid.
Measured cells are the mean over the seeds stored ``ok`` (``benchmark.report.measured``).
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinyset_builder.errors import TinysetError

REPO = Path(__file__).resolve().parents[1]
#: The layouts shipped with the toolkit, and where the paper's numbers are.
STUDIES = REPO / "manifests" / "studies.toml"
PAPER_DIR = REPO / "results" / "paper"
#: How the paper words each setting (Table I's "Setting" column, Fig. 6's settings).
SETTING_WORDS = {
    "full": "100% labeled", "noise-20": "20% box noise", "noise-40": "40% box noise",
    "semi-1": "1% labeled", "semi-5": "5% labeled", "semi-10": "10% labeled",
    "shot-1": "1-shot", "shot-3": "3-shot", "shot-5": "5-shot", "points-center": "Center Point",
    "zero-shot": "0-shot", "p2sod-1": "setting (1)", "p2sod-2": "setting (2)",
    "p2sod-3": "setting (3)", "p2sod-4": "setting (4)"}
#: Table II's column headers for the metric keys.
METRIC_HEADERS = {"AP25": "AP0.25", "AP50": "AP0.5", "AP75": "AP0.75"}
NOT_IN_PAPER = "not in the paper"


@dataclass(frozen=True)
class Cell:
    """A ``paper / measured`` pair (NaN = none); renders as one or two columns."""

    paper: float = math.nan
    measured: float = math.nan
    digits: int = 1

    def text(self) -> str:
        """``"53.5 / 12.3"`` with ``–`` for a missing side."""
        return f"{_fmt(self.paper, self.digits)} / {_fmt(self.measured, self.digits)}"


@dataclass
class Grid:
    """One rendered table: headers, rows of cells (``str`` or :class:`Cell`), group rows."""

    title: str
    headers: list[str]
    rows: list[list[Any] | str] = field(default_factory=list)  # a str is a group title
    notes: list[str] = field(default_factory=list)


def _fmt(v: float, digits: int = 1) -> str:
    return "–" if v is None or math.isnan(v) else f"{v:.{digits}f}"


# ---------------------------------------------------------------------------------------------
# the studies file

def load_studies(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """Table key (and alias) -> its layout entry; one-line errors for a broken file."""
    path = path or STUDIES
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise TinysetError(f"{path}: cannot read the table layouts ({e})") from None
    out: dict[str, dict[str, Any]] = {}
    for i, t in enumerate(data.get("tables", [])):
        missing = [k for k in ("key", "kind", "title", "paper") if k not in t]
        if missing or t["kind"] not in RENDERERS:
            raise TinysetError(f"{path}: tables[{i}] needs key, kind ({', '.join(RENDERERS)}), "
                               f"title and paper")
        for name in (t["key"], *t.get("aliases", ())):
            out[str(name)] = t
    return out


def table_keys(path: Path | None = None) -> list[str]:
    """The keys ``tinyset report --table`` accepts from the studies file."""
    return list(load_studies(path))


def paper_rows(name: str) -> list[dict[str, str]]:
    """The rows of ``results/paper/<name>`` as dicts of strings."""
    path = PAPER_DIR / name
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _float(v: str | None) -> float:
    try:
        return float(v) if v not in (None, "") else math.nan
    except ValueError:
        return math.nan


# ---------------------------------------------------------------------------------------------
# measured numbers

def _measured(runs: Path, datasets: Sequence[str] | None) -> dict[str, dict[tuple[str, str], Any]]:
    """dataset -> (method id, setting) -> the row of ``benchmark.report.measured``."""
    from benchmark.report import measured
    from benchmark.results import ResultsStore

    try:
        frame = measured(ResultsStore(runs))
    except TinysetError:  # an empty store: paper numbers only
        return {}
    out: dict[str, dict[tuple[str, str], Any]] = {}
    for _, r in frame.iterrows():
        out.setdefault(str(r["dataset"]), {})[(str(r["method"]), str(r["setting"]))] = r
    if datasets:
        unknown = [d for d in datasets if d not in out]
        if unknown:
            raise TinysetError(f"dataset(s) {', '.join(unknown)} not in {runs} "
                               f"(stored: {', '.join(out) or 'none'})")
        out = {d: out[d] for d in datasets}
    return out


def _status(hit: Any) -> str:
    from benchmark.report import seed_note

    if hit is None:
        return "not run"
    s = " ".join(str(hit["status"]).split())
    s = s if len(s) <= 60 else s[:59] + "…"
    return s + seed_note(hit)


# ---------------------------------------------------------------------------------------------
# the three kinds

def metrics_grids(spec: Mapping[str, Any], runs: Path,
                  datasets: Sequence[str] | None = None) -> list[Grid]:
    """A ``metrics`` table (Tables IV(a)–(d)): one grid per dataset in the store."""
    from benchmark.manifest import load_methods

    manifest = load_methods()
    metrics = list(spec["metrics"])
    keys = list(spec.get("paper_key", ()))
    paper = {tuple(r[k] for k in keys): r for r in paper_rows(spec["paper"])}
    meas = _measured(runs, datasets) or {"(no runs stored)": {}}
    grids = []
    for dataset, found in meas.items():
        g = Grid(f"{spec['title']} on {dataset} (paper / measured, %)",
                 [spec.get("label", "Row"), "Method id", "Setting",
                  *[METRIC_HEADERS.get(m, m) for m in metrics], "Status"])
        for row in spec["rows"]:
            method = manifest.get(row["method"])
            setting = row.get("setting", method.setting)
            ref = paper.get(tuple(row["paper_row"])) if "paper_row" in row else None
            if "paper_row" in row and ref is None:
                raise TinysetError(f"{spec['paper']}: no row {row['paper_row']} for table "
                                   f"{spec['key']}")
            hit = found.get((method.id, setting))
            cells = [Cell(_float(ref[m]) if ref else math.nan,
                          float(hit[f"{m}_measured"]) if hit is not None else math.nan)
                     for m in metrics]
            g.rows.append([row["label"], method.id, SETTING_WORDS.get(setting, setting), *cells,
                           _status(hit)])
        grids.append(g)
    return grids


def table2_grids(spec: Mapping[str, Any], runs: Path,
                 datasets: Sequence[str] | None = None) -> list[Grid]:
    """Table II in its own layout (see the module docstring)."""
    from benchmark.manifest import load_methods

    manifest = load_methods()
    metrics = list(spec["metrics"])
    norm = lambda s: s.lower().replace(" ", "")  # noqa: E731
    by_group = {(m.table2, norm(m.name)): m for m in manifest if m.table2}
    meas = _measured(runs, datasets) or {"(no runs stored)": {}}
    grids = []
    for dataset, found in meas.items():
        g = Grid(f"{spec['title']} on {dataset} (paper / measured, %)",
                 ["Method", "Backbone", "Schedule", "Setting",
                  *[METRIC_HEADERS.get(m, m) for m in metrics], "Status"])
        group = None
        for r in paper_rows(spec["paper"]):
            if r["group"] != group:
                group = r["group"]
                g.rows.append(f"{group}:")
            m = by_group.get((group, norm(r["method"])))
            hit = found.get((m.id, m.setting)) if m is not None else None
            cells = [Cell(_float(r[k]), float(hit[f"{k}_measured"]) if hit is not None
                          else math.nan) for k in metrics]
            setting = SETTING_WORDS.get(m.setting, m.setting) if m is not None else ""
            g.rows.append([r["method"], r["backbone"], r["schedule"], setting, *cells,
                           _status(hit) if m is not None else "no manifest row"])
        # Rows outside the paper's tables (no paper numbers, not a study row), e.g. YOLOv8-P2.
        extra = [m for m in manifest if not m.paper and m.table2 is None
                 and m.paradigm in ("full",)]
        if extra:
            g.rows.append(f"{NOT_IN_PAPER}:")
            for m in extra:
                hit = found.get((m.id, m.setting))
                cells = [Cell(math.nan, float(hit[f"{k}_measured"]) if hit is not None
                              else math.nan) for k in metrics]
                g.rows.append([m.name, m.backbone, m.schedule.replace("x", "×"),
                               SETTING_WORDS.get(m.setting, m.setting), *cells, _status(hit)])
        g.notes.append("Schedules as Table II prints them (1× = 3 epochs); measured runs used "
                       "the schedule named in their record.")
        grids.append(g)
    return grids


def efficiency_grids(spec: Mapping[str, Any], runs: Path,
                     datasets: Sequence[str] | None = None) -> list[Grid]:
    """Table V: ratios to the reference method, paper beside measured."""
    metrics = list(spec["metrics"])
    ref_name = spec["reference"]
    paper = {r["method"]: r for r in paper_rows(spec["paper"])}
    path = Path(runs) / spec["measured"]
    doc: dict[str, Any] = {}
    if path.is_file():
        doc = json.loads(path.read_text(encoding="utf-8"))
    rows = doc.get("rows", {})
    on_gpu = str(doc.get("device", "cpu")).startswith("cuda")
    heads = {"train_time_ms": "Training time", "train_memory_mb": "Training memory",
             "infer_time_ms": "Inference time", "infer_memory_mb": "Inference memory"}
    g = Grid(f"{spec['title']} — ratio to {ref_name} (paper / measured)",
             ["Method", *[heads.get(m, m) for m in metrics], "Status"])
    ref_p, ref_m = paper.get(ref_name, {}), rows.get(ref_name, {})
    for name in paper:
        p, m = paper[name], rows.get(name, {})
        cells = [Cell(_float(p.get(k)) / _float(ref_p.get(k)),
                      _ratio(m.get(k), ref_m.get(k)), digits=2) for k in metrics]
        g.rows.append([name, *cells, m.get("status", "not measured")])
    g.notes.append("Paper: " + "; ".join(
        f"{name} " + ", ".join(f"{heads.get(k, k)} {p.get(k) or '–'}" for k in metrics)
        for name, p in paper.items()) + " (ms, MB; RTX 4090, FP32, 1024² inputs).")
    if doc:
        g.notes.append(f"Measured: {doc.get('command', '')} on {doc.get('device')} "
                       f"({doc.get('input')}); {doc.get('how', '')}")
        if on_gpu:
            g.notes.append("Measured absolute values (GPU): " + "; ".join(
                f"{name} " + ", ".join(f"{heads.get(k, k)} {_fmt(m.get(k, math.nan))}"
                                       for k in metrics) for name, m in rows.items()))
    else:
        g.notes.append(f"Not measured yet: run benchmarks/deal_table5.py --out {path}")
    return [g]


def _ratio(a: Any, b: Any) -> float:
    try:
        x, y = float(a), float(b)
    except (TypeError, ValueError):
        return math.nan
    return x / y if y else math.nan


def _transfer_grids(spec: Mapping[str, Any], runs: Path,
                    datasets: Sequence[str] | None = None) -> list[Grid]:
    """Tables III and VI (``kind = "transfer"``): :mod:`benchmark.report_transfer`."""
    from benchmark.report_transfer import transfer_grids

    return transfer_grids(spec, runs, datasets)


RENDERERS = {"metrics": metrics_grids, "table2": table2_grids, "efficiency": efficiency_grids,
             "transfer": _transfer_grids}


# ---------------------------------------------------------------------------------------------
# formats

def to_markdown(grids: Sequence[Grid]) -> str:
    """Markdown tables, group rows in bold, notes below."""
    out = []
    for g in grids:
        out += [f"### {g.title}\n", "| " + " | ".join(g.headers) + " |",
                "|" + "|".join("---:" if _numeric(g, i) else "---"
                               for i in range(len(g.headers))) + "|"]
        for row in g.rows:
            if isinstance(row, str):
                out.append(f"| **{row}** |" + " |" * (len(g.headers) - 1))
            else:
                out.append("| " + " | ".join(_text(c).replace("|", "\\|") for c in row) + " |")
        out += ["", *[f"{n}\n" for n in g.notes]]
    return "\n".join(out)


def to_csv(grids: Sequence[Grid]) -> str:
    """CSV: one line per row, a paper and a measured column per metric, the table in front."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for g in grids:
        cols = []
        sample = next((r for r in g.rows if not isinstance(r, str)), [])
        for h, c in zip(g.headers, sample or [""] * len(g.headers), strict=False):
            cols += [f"{h} paper", f"{h} measured"] if isinstance(c, Cell) else [h]
        w.writerow(["table", "group", *cols])
        group = ""
        for row in g.rows:
            if isinstance(row, str):
                group = row.rstrip(":")
                continue
            vals: list[str] = []
            for c in row:
                vals += ([_fmt(c.paper, c.digits + 1), _fmt(c.measured, c.digits + 1)]
                         if isinstance(c, Cell) else [str(c)])
            w.writerow([g.title, group, *[v.replace("–", "") for v in vals]])
    return buf.getvalue()


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
        "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}",
        "×": r"$\times$", "–": "--", "…": r"\ldots{}", "∞": r"$\infty$", "✓": r"\checkmark{}"}


def _tex(s: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in s)


def to_latex(grids: Sequence[Grid]) -> str:
    """LaTeX (booktabs), ``paper / measured`` per cell."""
    out = []
    for g in grids:
        n = len(g.headers)
        out += [f"% {g.title}", r"\begin{tabular}{" + "".join(
            "r" if _numeric(g, i) else "l" for i in range(n)) + "}", r"\toprule",
                " & ".join(_tex(h) for h in g.headers) + r" \\", r"\midrule"]
        for row in g.rows:
            if isinstance(row, str):
                out.append(rf"\multicolumn{{{n}}}{{l}}{{\textit{{{_tex(row)}}}}} \\")
            else:
                out.append(" & ".join(_tex(_text(c)) for c in row) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", *[f"% {_tex(x)}" for x in g.notes], ""]
    return "\n".join(out)


def to_html(grids: Sequence[Grid], title: str = "TinySet report") -> str:
    """A self-contained page with every grid."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             "</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:"
             "collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}"
             "td.n{text-align:right}tr.g td{background:#eee;font-weight:bold}</style></head>"
             f"<body><h1>{html.escape(title)}</h1>"]
    for g in grids:
        parts.append(f"<h2>{html.escape(g.title)}</h2><table><tr>"
                     + "".join(f"<th>{html.escape(h)}</th>" for h in g.headers) + "</tr>")
        for row in g.rows:
            if isinstance(row, str):
                parts.append(f"<tr class='g'><td colspan='{len(g.headers)}'>"
                             f"{html.escape(row)}</td></tr>")
            else:
                parts.append("<tr>" + "".join(
                    f"<td class='n'>{html.escape(c.text())}</td>" if isinstance(c, Cell)
                    else f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>")
        parts.append("</table>" + "".join(f"<p>{html.escape(x)}</p>" for x in g.notes))
    parts.append("</body></html>\n")
    return "".join(parts)


def to_rich_text(grids: Sequence[Grid]) -> str:
    """rich tables exported as plain text (the terminal view)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(record=True, width=200, file=io.StringIO())
    for g in grids:
        t = Table(title=g.title, caption="\n".join(g.notes) or None)
        for i, h in enumerate(g.headers):
            t.add_column(h, justify="right" if _numeric(g, i) else "left", no_wrap=True)
        for row in g.rows:
            if isinstance(row, str):
                t.add_section()
                t.add_row(f"[bold]{escape(row)}[/bold]")
            else:
                t.add_row(*[escape(_text(c)) for c in row])
        console.print(t)
    return console.export_text()


def _text(c: Any) -> str:
    return c.text() if isinstance(c, Cell) else str(c)


def _numeric(g: Grid, i: int) -> bool:
    sample = next((r for r in g.rows if not isinstance(r, str)), None)
    return sample is not None and i < len(sample) and isinstance(sample[i], Cell)


FORMATTERS = {"md": to_markdown, "csv": to_csv, "latex": to_latex, "html": to_html,
              "rich": to_rich_text}


def render_table(table: str, runs: Path, fmt: str = "md",
                 datasets: Sequence[str] | None = None, studies: Path | None = None) -> str:
    """Render the studies-file table ``table`` (``2``/``II``, ``4a``…``4d``, ``5``/``V``)."""
    specs = load_studies(studies)
    if table not in specs:
        raise TinysetError(f"unknown table {table!r}; choose I or one of {', '.join(specs)}")
    if fmt not in FORMATTERS:
        raise TinysetError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATTERS)}")
    spec = specs[table]
    return FORMATTERS[fmt](RENDERERS[spec["kind"]](spec, Path(runs), datasets))
