"""Reports: the paper's Table I / Table II layouts with the paper's and the measured numbers.

:func:`report_frame` joins the methods manifest (paper numbers) with the results store (measured
numbers, mean over the seeds stored ``ok``, in percent like the paper) into one pandas table, one
row per (dataset, method, setting). Renderers turn it into a rich terminal table, Markdown, LaTeX
(booktabs), CSV, or a self-contained HTML page with embedded matplotlib plots (AP by size bucket;
AP50 relative to the fully supervised Faster R-CNN, row #2, as the paper's Fig. 1 and section IV
do). Cells show ``paper / measured``; a row that did not run says why (``unavailable: ...``).
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmark.manifest import PAPER_METRICS, PARADIGM_TITLES, Manifest, Method, load_methods
from benchmark.results import ResultsStore, is_collapsed, status_kind
from tinyset_builder.errors import TinysetError

FORMATS = ("rich", "md", "latex", "csv", "html")
TABLES = ("I", "II")
#: The paper's reference for "relative to fully supervised" (section IV: Faster R-CNN, #2, AP50).
REFERENCE_ROW, REFERENCE_METRIC = "2", "AP50"
#: Table II's groups in print order.
TABLE2_GROUPS = ("fully-supervised", "point-supervised", "zero-shot (one-box-prompt)",
                 "zero-shot (text-prompt)", "ours")
_STATUS_WIDTH = 70


def _percent(value: Any) -> float:
    """Evaluator fractions (``-1`` = undefined) to the paper's percent."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value < 0:
        return math.nan
    return float(value) * 100.0


def measured(store: ResultsStore) -> Any:
    """Per (dataset, method, setting): mean/std over ``ok`` seeds in percent, and the status.

    The status is ``ok`` when at least one seed is ok, otherwise the latest stored reason.
    """
    import pandas as pd

    runs = store.frame()
    if runs.empty:
        raise TinysetError(f"{store.root}: no run records found")
    rows = []
    for (dataset, method, setting), g in runs.groupby(["dataset", "method", "setting"],
                                                      sort=True):
        ok = g[g["kind"] == "ok"]
        shown = ok if len(ok) else g
        row: dict[str, Any] = {"dataset": dataset, "method": method, "setting": setting,
                               "seeds": len(ok),
                               "collapsed": sum(is_collapsed(v) for v in ok["sub_pixel"]),
                               "status": "ok" if len(ok) else
                               g.sort_values("seed")["status"].iloc[-1],
                               # what ran: the run's schedule (e.g. "cpu 4 min") and adapter
                               "run_schedule": ", ".join(sorted(set(shown["schedule"]))),
                               "run_backbone": ", ".join(sorted(set(shown["backbone"]) - {""})),
                               "impl": ", ".join(sorted(set(shown["adapter"])))}
        for m in (*PAPER_METRICS, "AP"):
            vals = [_percent(v) for v in ok[m]] if m in ok else []
            vals = [v for v in vals if not math.isnan(v)]
            row[f"{m}_measured"] = sum(vals) / len(vals) if vals else math.nan
            row[f"{m}_std"] = (pd.Series(vals).std(ddof=0) if len(vals) > 1 else math.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def _paradigm_order(m: Method) -> int:
    return list(PARADIGM_TITLES).index(m.paradigm)


def report_frame(store: ResultsStore, manifest: Manifest | None = None, *, table: str = "I",
                 paradigms: Sequence[str] | None = None,
                 datasets: Sequence[str] | None = None) -> Any:
    """The joined table: paper vs measured, in the paper's row order.

    Args:
        store: the results store.
        manifest: methods manifest (default: the toolkit's).
        table: ``"I"`` (Table I rows by paradigm, plus measured extra rows) or ``"II"``.
        paradigms: restrict Table I to these paradigms (default: those with stored runs).
        datasets: restrict to these dataset keys (default: every dataset in the store).

    Returns:
        A DataFrame with ``dataset, group, id, method, setting, backbone, schedule, status,
        seeds, collapsed`` (ok seeds whose box regression collapsed) and ``<metric>_paper``,
        ``<metric>_measured``, ``<metric>_std`` per metric.
    """
    import pandas as pd

    if table not in TABLES:
        raise TinysetError(f"unknown table {table!r}; choose I or II")
    manifest = manifest or load_methods()
    meas = measured(store)
    known = sorted(meas["dataset"].unique())
    if datasets:
        unknown = [d for d in datasets if d not in known]
        if unknown:
            raise TinysetError(f"dataset(s) {', '.join(unknown)} not in {store.root} "
                               f"(stored: {', '.join(known)})")
        known = list(datasets)
    by_id = {m.id: m for m in manifest}
    stored_paradigms = {by_id[i].paradigm for i in meas["method"] if i in by_id}
    if paradigms:
        bad = [p for p in paradigms if p not in PARADIGM_TITLES]
        if bad:
            raise TinysetError(f"unknown paradigm(s) {', '.join(bad)}; choose from "
                               f"{', '.join(PARADIGM_TITLES)}")
    wanted = set(paradigms or stored_paradigms)
    rows = []
    for dataset in known:
        mine = meas[meas["dataset"] == dataset]
        for m, group in _layout(manifest, mine, table, wanted):
            settings = sorted(set(mine[mine["method"] == m.id]["setting"]) | {m.setting},
                              key=lambda s: (s != m.setting, s))
            for setting in settings:
                hit = mine[(mine["method"] == m.id) & (mine["setting"] == setting)]
                if hit.empty and setting != m.setting:
                    continue
                row: dict[str, Any] = {
                    "dataset": dataset, "group": group, "id": m.id, "method": m.name,
                    "setting": setting,
                    # the manifest's (paper) backbone and schedule, unless the run used others
                    "backbone": _run_value(hit, "run_backbone", m.backbone),
                    "schedule": _run_value(hit, "run_schedule", m.schedule),
                    "impl": hit["impl"].iloc[0] if len(hit) else m.adapter,
                    "status": hit["status"].iloc[0] if len(hit) else "not run",
                    "seeds": int(hit["seeds"].iloc[0]) if len(hit) else 0,
                    "collapsed": int(hit["collapsed"].iloc[0]) if len(hit) else 0}
                for k in PAPER_METRICS:
                    same = setting == m.setting
                    row[f"{k}_paper"] = m.paper.get(k, math.nan) if same else math.nan
                    row[f"{k}_measured"] = float(hit[f"{k}_measured"].iloc[0]) if len(hit) \
                        else math.nan
                    row[f"{k}_std"] = float(hit[f"{k}_std"].iloc[0]) if len(hit) else math.nan
                rows.append(row)
    return pd.DataFrame(rows)


def _run_value(hit: Any, column: str, paper_value: str) -> str:
    """What a run on another schedule used (``cpu 4 min``, ``resnet18``); the manifest's value
    (``1x``, ``ResNet-50``) for runs on the paper's schedule or where the run does not say."""
    if hit.empty or hit["run_schedule"].iloc[0] in ("", "paper") or not hit[column].iloc[0]:
        return paper_value
    return str(hit[column].iloc[0])


def _layout(manifest: Manifest, meas: Any, table: str,
            paradigms: set[str]) -> list[tuple[Method, str]]:
    """(method, group title) in the table's print order."""
    ran = set(meas["method"])
    if table == "II":
        out = []
        for group in TABLE2_GROUPS:
            out += [(m, group) for m in manifest if m.table2 == group]
        return out
    chosen = [m for m in manifest if m.paradigm in paradigms and (m.row is not None
                                                                  or m.id in ran)]
    chosen.sort(key=lambda m: (_paradigm_order(m), m.row is None))
    return [(m, PARADIGM_TITLES[m.paradigm]) for m in chosen]


# ---------------------------------------------------------------------------------------------
# renderers

def _num(v: float) -> str:
    return "–" if math.isnan(v) else f"{v:.1f}"


def _status(s: str, width: int = _STATUS_WIDTH) -> str:
    s = " ".join(str(s).split())
    return s if len(s) <= width else s[:width - 1] + "…"


def seed_note(row: Any) -> str:
    """The status's suffix: the number of seeds, and how many collapsed (AP alone shows a
    collapsed box regression as just a low number)."""
    note = f" (n={row['seeds']})" if row["seeds"] > 1 else ""
    if row.get("collapsed"):
        note += f", box regression collapsed on {row['collapsed']} of {row['seeds']}"
    return note


def _cells(row: Any) -> list[str]:
    seeds = seed_note(row)
    head = [f"#{row['id']}" if str(row["id"]).isdigit() else str(row["id"]), row["method"],
            row["impl"], row["setting"], row["backbone"], row["schedule"]]
    metrics = [f"{_num(row[f'{k}_paper'])} / {_num(row[f'{k}_measured'])}"
               for k in PAPER_METRICS]
    return [*head, *metrics, _status(row["status"]) + seeds]


HEADERS = ["ID", "Method", "Impl", "Setting", "Backbone", "Schedule",
           *[f"{k} paper / ours" for k in PAPER_METRICS], "Status"]
#: Leading text columns of a row (before the metric pairs).
N_HEAD = 6


def _sections(frame: Any) -> list[tuple[str, Any]]:
    return [(str(d), g) for d, g in frame.groupby("dataset", sort=False)]


def to_markdown(frame: Any, table: str = "I") -> str:
    """Markdown: one table per dataset, a bold row per paradigm group."""
    out = []
    for dataset, g in _sections(frame):
        out.append(f"### Table {table} on `{dataset}` (paper / measured, %)\n")
        out.append("| " + " | ".join(HEADERS) + " |")
        out.append("|" + "|".join("---" if i < N_HEAD or i == len(HEADERS) - 1 else "---:"
                                  for i in range(len(HEADERS))) + "|")
        group = None
        for _, row in g.iterrows():
            if row["group"] != group:
                group = row["group"]
                out.append(f"| **{group}** |" + " |" * (len(HEADERS) - 1))
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in _cells(row)) + " |")
        out.append("")
    return "\n".join(out)


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
        "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}",
        "×": r"$\times$", "–": "--", "…": r"\ldots{}"}


def _tex(s: str) -> str:
    return "".join(_TEX.get(c, c) for c in s)


def to_latex(frame: Any, table: str = "I") -> str:
    """LaTeX (booktabs): paper and measured values side by side per metric."""
    out = []
    for dataset, g in _sections(frame):
        cols = "l" * N_HEAD + "rr" * len(PAPER_METRICS) + "l"
        out += [f"% Table {table} on {dataset}: paper / measured (%)",
                r"\begin{tabular}{" + cols + "}", r"\toprule",
                " & ".join(HEADERS[:N_HEAD]) + " & " + " & ".join(
                    rf"\multicolumn{{2}}{{c}}{{{_tex(k)}}}" for k in PAPER_METRICS)
                + r" & Status \\",
                " & " * N_HEAD + " & ".join(["paper & ours"] * len(PAPER_METRICS)) + r" & \\",
                r"\midrule"]
        group = None
        ncols = N_HEAD + 2 * len(PAPER_METRICS) + 1
        for _, row in g.iterrows():
            if row["group"] != group:
                group = row["group"]
                out.append(rf"\multicolumn{{{ncols}}}{{l}}{{\textit{{{_tex(group)}}}}} \\")
            head = _cells(row)[:N_HEAD]
            vals = []
            for k in PAPER_METRICS:
                vals += [_num(row[f"{k}_paper"]), _num(row[f"{k}_measured"])]
            out.append(" & ".join(_tex(c) for c in [*head, *vals, _status(row["status"], 40)])
                       + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(out)


def to_csv(frame: Any) -> str:
    """CSV: every column of :func:`report_frame` (separate paper/measured/std columns)."""
    return str(frame.to_csv(index=False, float_format="%.2f", lineterminator="\n"))


def to_rich(frame: Any, table: str = "I") -> list[Any]:
    """rich Tables (one per dataset) for the terminal: compact, one line per row."""
    from rich.markup import escape
    from rich.table import Table

    tables = []
    for dataset, g in _sections(frame):
        t = Table(title=f"Table {table} on {dataset} — paper / measured (%)",
                  caption="status: ok (n seeds) | unavailable | failed | not run")
        t.add_column("Row", no_wrap=True)
        t.add_column("Setting", no_wrap=True)
        for k in PAPER_METRICS:
            t.add_column(k, justify="right", no_wrap=True)
        t.add_column("Status", overflow="ellipsis", no_wrap=True, max_width=48)
        group = None
        for _, row in g.iterrows():
            if row["group"] != group:
                group = row["group"]
                t.add_section()
                t.add_row(f"[bold]{group}[/bold]")
            cells = _cells(row)
            kind = status_kind(str(row["status"]))
            style = {"ok": "green", "failed": "red", "unavailable": "yellow"}.get(kind, "dim")
            label = (f"{cells[0]} {cells[1]}" if str(row["id"]).isdigit()
                     else f"{cells[1]} [{row['id']}]")
            t.add_row(escape(label), escape(cells[3]), *cells[N_HEAD:-1],
                      f"[{style}]{escape(_status(cells[-1], 48))}[/{style}]")
        tables.append(t)
    return tables


def rich_console(file: Any = None) -> Any:
    """A stdout console that stays wide enough for the table when output is not a terminal."""
    from rich.console import Console

    console = Console(file=file)
    if not console.is_terminal:
        console = Console(file=file, width=200)
    return console


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plot_size_buckets(frame: Any) -> str | None:
    """Grouped bars of APvt/APt/APs/APm per measured row (paper values as outlined bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = frame[~frame["APt_measured"].isna()]
    if rows.empty:
        return None
    sizes = ("APvt", "APt", "APs", "APm")
    labels = [f"{r['method']} ({r['setting']})" for _, r in rows.iterrows()]
    x = np.arange(len(rows))
    width = 0.2
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(rows) + 2), 4))
    colours = ("#4c72b0", "#55a868", "#c44e52", "#8172b2")
    for i, (k, c) in enumerate(zip(sizes, colours, strict=True)):
        ax.bar(x + (i - 1.5) * width, rows[f"{k}_measured"], width, color=c, label=f"{k} ours")
        ax.bar(x + (i - 1.5) * width, rows[f"{k}_paper"].fillna(0), width, fill=False,
               edgecolor=c, linestyle="--", linewidth=1)
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("AP (%) at IoU 0.5")
    ax.set_title("AP by object size (filled: measured, dashed outline: paper)")
    ax.legend(fontsize=8, ncols=4)
    return _png(fig)


def plot_relative(frame: Any) -> str | None:
    """AP50 relative to the fully supervised Faster R-CNN (#2), paper and measured (Fig. 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ref = frame[(frame["id"] == REFERENCE_ROW)]
    ref_paper = (load_methods().get(REFERENCE_ROW).paper[REFERENCE_METRIC] if ref.empty
                 else float(ref[f"{REFERENCE_METRIC}_paper"].iloc[0]))
    ref_meas = math.nan if ref.empty else float(ref[f"{REFERENCE_METRIC}_measured"].iloc[0])
    rows = frame[~frame[f"{REFERENCE_METRIC}_paper"].isna()
                 | ~frame[f"{REFERENCE_METRIC}_measured"].isna()]
    if rows.empty:
        return None
    paper = 100 * rows[f"{REFERENCE_METRIC}_paper"] / ref_paper
    ours = (100 * rows[f"{REFERENCE_METRIC}_measured"] / ref_meas
            if ref_meas and not math.isnan(ref_meas) else rows[f"{REFERENCE_METRIC}_measured"] * 0
            + math.nan)
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(rows) + 2), 4))
    ax.bar(x - 0.2, paper.fillna(0), 0.4, color="#999999", label="paper")
    ax.bar(x + 0.2, ours.fillna(0), 0.4, color="#4c72b0", label="measured")
    ax.axhline(100, color="black", linewidth=0.8)
    names = [f"#{r['id']}" if str(r["id"]).isdigit() else str(r["id"])
             for _, r in rows.iterrows()]
    ax.set_xticks(x, names, rotation=90, fontsize=7)
    ax.set_ylabel(f"{REFERENCE_METRIC} / {REFERENCE_METRIC} of #2 (%)")
    ax.set_title("Relative to fully supervised Faster R-CNN (#2)")
    ax.legend(fontsize=8)
    return _png(fig)


def to_html(frame: Any, table: str = "I", title: str = "TinySet benchmark report") -> str:
    """A self-contained page: tables, then the plots as embedded PNG (no external resources)."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             "</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:"
             "collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}"
             "td.n{text-align:right}tr.g td{background:#eee;font-weight:bold}"
             ".ok{color:#176f2c}.failed{color:#b00}.unavailable{color:#8a6d00}</style></head>"
             f"<body><h1>{html.escape(title)}</h1>"]
    for dataset, g in _sections(frame):
        parts.append(f"<h2>Table {table} on {html.escape(dataset)} (paper / measured, %)</h2>"
                     "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in HEADERS)
                     + "</tr>")
        group = None
        for _, row in g.iterrows():
            if row["group"] != group:
                group = row["group"]
                parts.append(f"<tr class='g'><td colspan='{len(HEADERS)}'>"
                             f"{html.escape(group)}</td></tr>")
            cells = _cells(row)
            cells[-1] = str(row["status"]) + seed_note(row)  # the full reason in HTML
            kind = status_kind(str(row["status"]))
            tds = [f"<td>{html.escape(c)}</td>" for c in cells[:N_HEAD]]
            tds += [f"<td class='n'>{html.escape(c)}</td>" for c in cells[N_HEAD:-1]]
            tds.append(f"<td class='{html.escape(kind)}'>{html.escape(cells[-1])}</td>")
            parts.append("<tr>" + "".join(tds) + "</tr>")
        parts.append("</table>")
        for caption, png in (("AP by object size", plot_size_buckets(g)),
                             ("Relative to fully supervised (Fig. 1)", plot_relative(g))):
            if png:
                parts.append(f"<h3>{caption}</h3><img alt='{caption}' "
                             f"src='data:image/png;base64,{png}'>")
    parts.append("</body></html>\n")
    return "".join(parts)


def render(frame: Any, fmt: str, table: str = "I") -> str:
    """Render ``frame`` in one of :data:`FORMATS` (``rich`` renders to plain text)."""
    if fmt not in FORMATS:
        raise TinysetError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "md":
        return to_markdown(frame, table)
    if fmt == "latex":
        return to_latex(frame, table)
    if fmt == "csv":
        return to_csv(frame)
    if fmt == "html":
        return to_html(frame, table)
    from rich.console import Console

    console = Console(record=True, width=200, file=io.StringIO())
    for t in to_rich(frame, table):
        console.print(t)
    return console.export_text()


def write_report(runs: Path, fmt: str, out: Path | None = None, *, table: str = "I",
                 paradigms: Sequence[str] | None = None,
                 datasets: Sequence[str] | None = None) -> str:
    """Load the store at ``runs``, render, write to ``out`` (atomically) if given; return text."""
    from tinyset_builder.io import atomic_write_bytes

    if table != "I":  # Table II's own layout, IV(a)-(d), V: manifests/studies.toml
        from benchmark.report_tables import render_table

        text = render_table(table, runs, fmt, datasets)
    else:
        frame = report_frame(ResultsStore(runs), table=table, paradigms=paradigms,
                             datasets=datasets)
        text = render(frame, fmt, table)
    if out is not None:
        atomic_write_bytes(out, text.encode("utf-8"))
    return text
