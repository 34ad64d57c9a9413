"""The results store: one JSON file per (method, setting, dataset, seed) run (DESIGN.md).

Layout under the store's root (``runs/`` by default)::

    <dataset>/<method>/<setting>/seed<N>/result.json      the run record (below)
    <dataset>/<method>/<setting>/seed<N>/predictions.json COCO results of the evaluated split
    <dataset>/<method>/<setting>/seed<N>/work/            the adapter's checkpoints, exports, logs

``<dataset>`` is the built dataset's folder name plus the first 8 hex digits of the SHA-256 of
its ``build.json``, so two different builds never share results. A record holds ``status``
(``ok`` | ``failed: why`` | ``unavailable: what is missing and how to get it``), ``metrics``
(the evaluator's keys), the exact ``command`` and ``config``, package ``versions``,
``durations`` in seconds, and the adapter's ``notes`` (e.g. which weights it started from).
Records are written atomically, so an interrupted run never leaves half a file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinyset_builder.errors import TinysetError
from tinyset_builder.io import read_json, write_json

SCHEMA = "tinyset-run/1"
RESULT_FILE = "result.json"
PREDICTIONS_FILE = "predictions.json"


@dataclass(frozen=True, slots=True, order=True)
class RunKey:
    """Identifies one run in the store."""

    dataset: str
    method: str
    setting: str
    seed: int

    @property
    def relpath(self) -> Path:
        """The run's folder relative to the store root."""
        return Path(self.dataset) / self.method / self.setting / f"seed{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping for the record."""
        return {"dataset": self.dataset, "method": self.method, "setting": self.setting,
                "seed": self.seed}


def dataset_key(data_dir: Path) -> str:
    """``<folder name>-<sha256(build.json)[:8]>``: stable for one build, distinct across builds."""
    digest = hashlib.sha256((data_dir / "build.json").read_bytes()).hexdigest()[:8]
    return f"{data_dir.resolve().name}-{digest}"


#: A run whose share of sub-pixel boxes (``detections.sub_pixel``) exceeds this lost its box
#: regression: reports count such seeds as ``collapsed``.
COLLAPSED_SHARE = 0.5


def is_collapsed(sub_pixel: float | None) -> bool:
    """Whether a run's detections show a collapsed box regression (missing share: no)."""
    return sub_pixel is not None and sub_pixel > COLLAPSED_SHARE


def status_kind(status: str) -> str:
    """``ok``, ``failed`` or ``unavailable`` from a status string."""
    return status.split(":", 1)[0].strip()


class ResultsStore:
    """Read and write run records under ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def run_dir(self, key: RunKey) -> Path:
        """Folder of one run (created on save)."""
        return self.root / key.relpath

    def result_path(self, key: RunKey) -> Path:
        """Path of the run's record."""
        return self.run_dir(key) / RESULT_FILE

    def load(self, key: RunKey) -> dict[str, Any] | None:
        """The stored record, or None when the run never finished writing one."""
        path = self.result_path(key)
        return read_json(path) if path.is_file() else None

    def is_finished(self, key: RunKey) -> bool:
        """True when the run is stored with status ``ok`` (failed/unavailable runs are retried)."""
        record = self.load(key)
        return record is not None and record.get("status") == "ok"

    def save(self, key: RunKey, record: Mapping[str, Any]) -> Path:
        """Write ``record`` atomically as the run's ``result.json``."""
        if record.get("schema") != SCHEMA:
            raise ValueError(f"record for {key} lacks schema {SCHEMA!r}")
        return write_json(self.result_path(key), dict(record), indent=2)

    def records(self) -> Iterator[dict[str, Any]]:
        """Every record of the store, in path order (deterministic)."""
        if not self.root.is_dir():
            raise TinysetError(f"{self.root}: results store not found (run `tinyset benchmark` "
                               f"with --runs {self.root} first)")
        for path in sorted(self.root.rglob(RESULT_FILE)):
            record = read_json(path)
            if isinstance(record, dict) and record.get("schema") == SCHEMA:
                yield record

    def frame(self) -> Any:
        """All records as a pandas DataFrame, one row per run.

        Columns: ``dataset, method, name, paradigm, setting, seed, adapter, schedule, status,
        kind`` (ok/failed/unavailable), one column per metric the evaluator returned (as stored),
        ``train_s``, ``predict_s``, ``total_s``, and ``sub_pixel`` (share of detections under
        1 px, None when not recorded).
        """
        import pandas as pd

        rows = []
        for r in self.records():
            method = r.get("method", {})
            durations = r.get("durations", {})
            row: dict[str, Any] = {
                "dataset": r["key"]["dataset"], "method": r["key"]["method"],
                "name": method.get("name", r["key"]["method"]),
                "paradigm": method.get("paradigm", ""), "setting": r["key"]["setting"],
                "seed": r["key"]["seed"], "adapter": method.get("adapter", ""),
                "schedule": r.get("schedule", ""), "backbone": r.get("backbone") or "",
                "status": r["status"],
                "kind": status_kind(r["status"]),
                "train_s": durations.get("train"), "predict_s": durations.get("predict"),
                "total_s": durations.get("total"),
                "sub_pixel": (r.get("detections") or {}).get("sub_pixel")}
            for k, v in (r.get("metrics") or {}).items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    row[k] = float(v)
            rows.append(row)
        return pd.DataFrame(rows)
