"""The benchmark runner: plan method × setting × seed runs, execute them, store one record each.

Flow of one run (:func:`execute_run`, a top-level function so submitit and process pools can
pickle it):

1. the adapter is imported by name; an ImportError becomes ``unavailable: adapter ... not
   implemented/installed``;
2. an :class:`adapters.base.Job` is built from the run's variant (derived beforehand, once per
   setting and seed, in the planning process so parallel runs never race on it);
3. ``adapter.unavailable(job)`` may decline (stored as ``unavailable: ...``, never faked);
4. ``train`` then ``predict``; predictions are written as COCO results;
5. the evaluator scores them against the split's ground truth (with the prompt file for P2SOD);
6. the record goes to the :class:`~benchmark.results.ResultsStore`.

Any exception inside a run is caught and stored as ``failed: <type>: <message>`` with the
traceback in ``error.log`` beside the record; the other runs go on. Runs stored ``ok`` are skipped
when the benchmark is started again (``force=True`` re-runs them).

Executors: ``local`` runs sequentially on one device, or one run per device at a time over
several devices (``devices=["cuda:0", "cuda:1"]``); ``slurm`` submits a job array through
submitit (``cluster="local"``/``"debug"`` use submitit's local executors, as the tests do).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
import shutil
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import import_module, metadata
from pathlib import Path
from typing import Any

from baselines.schedules import SCHEDULES, schedule_label
from benchmark.manifest import Method
from benchmark.results import PREDICTIONS_FILE, SCHEMA, ResultsStore, RunKey, dataset_key
from tinyset_builder.built import load_build_record
from tinyset_builder.errors import TinysetError
from tinyset_builder.io import write_json

#: ``build.json``'s ``tool`` field of datasets the toolkit built.
#: Settings that need no derived variant.
PLAIN_SETTINGS = ("full", "zero-shot")
#: Packages whose versions go into every record (read from metadata, never imported).
VERSIONED = ("tinyset", "numpy", "torch", "torchvision", "ultralytics", "mmengine", "mmdet",
             "pycocotools", "submitit")


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSpec:
    """One planned run; picklable, so it can cross to a worker process or a Slurm node.

    Attributes:
        method: the manifest entry as a mapping (``Method.to_dict()``).
        setting: the variant the run uses (``full``, ``semi-5``, ``p2sod-1`` ...).
        seed: random seed of the variant and of training.
        data_dir: the built dataset.
        runs_dir: the results store root.
        dataset: the dataset key (:func:`benchmark.results.dataset_key`).
        variant_dir: the derived variant folder, None for plain settings or if derivation failed.
        variant_error: why derivation failed (the run is then stored as failed).
        schedule: ``paper``, ``smoke`` or ``cpu`` (its budget: ``extra["minutes"]``).
        split: the split predicted and evaluated (``test`` as in the paper).
        device: ``cpu``, ``cuda``, ``cuda:1`` ...
        env_python: interpreter of a user-named environment for subprocess adapters.
        command: the command line that planned the run (stored verbatim).
        force: re-run even if stored ``ok``.
    """

    method: Mapping[str, Any]
    setting: str
    seed: int
    data_dir: Path
    runs_dir: Path
    dataset: str
    variant_dir: Path | None = None
    variant_error: str | None = None
    schedule: str = "paper"
    split: str = "test"
    device: str = "cpu"
    env_python: str | None = None
    command: tuple[str, ...] = ()
    force: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> RunKey:
        """The run's key in the store."""
        return RunKey(self.dataset, str(self.method["id"]), self.setting, self.seed)


# ---------------------------------------------------------------------------------------------
# planning

def check_dataset(data_dir: Path, split: str = "test") -> dict[str, Any]:
    """Refuse folders the toolkit did not build; return their ``build.json``.

    Raises:
        TinysetError: one line naming the folder and what is wrong.
    """
    info = load_build_record(data_dir)
    for s in ("train", split):
        if not (data_dir / "annotations" / f"{s}.json").is_file():
            raise TinysetError(f"{data_dir}: annotations/{s}.json missing")
    return info


def check_env_python(env_python: str | None) -> None:
    """A user-named interpreter must exist and be executable (one-line error otherwise)."""
    if env_python is None:
        return
    path = shutil.which(env_python)
    if path is None:
        raise TinysetError(f"--env-python {env_python}: interpreter not found or not executable")


def plan(methods: Iterable[Method], data_dir: Path, runs_dir: Path, *,
         seeds: Sequence[int] = (0,), schedule: str = "paper", split: str = "test",
         device: str = "cpu", env_python: str | None = None, command: Sequence[str] = (),
         force: bool = False, settings: Sequence[str] | None = None,
         extra: Mapping[str, Any] | None = None) -> list[RunSpec]:
    """Plan (method × setting × seed) runs; ``settings`` overrides each method's own setting.

    The dataset is checked first (:func:`check_dataset`); variants are not derived here
    (:func:`prepare_variants` does it, once per setting and seed).
    """
    check_dataset(data_dir, split)
    check_env_python(env_python)
    if schedule not in SCHEDULES:
        raise TinysetError(f"unknown schedule {schedule!r}; choose {', '.join(SCHEDULES)}")
    key = dataset_key(data_dir)
    specs = []
    for m in methods:
        for setting in (settings or (m.setting,)):
            for seed in seeds:
                specs.append(RunSpec(method=m.to_dict(), setting=setting, seed=seed,
                                     data_dir=data_dir, runs_dir=runs_dir, dataset=key,
                                     schedule=schedule, split=split, device=device,
                                     env_python=env_python, command=tuple(command), force=force,
                                     extra=dict(extra or {})))
    return specs


def pending(specs: Iterable[RunSpec]) -> list[RunSpec]:
    """The specs not yet stored ``ok`` (all of them with ``force``)."""
    return [s for s in specs if s.force or not ResultsStore(s.runs_dir).is_finished(s.key)]


def _derive(data_dir: Path, setting: str, seed: int) -> Path:
    from benchmark.protocols import derive_variant

    return Path(derive_variant(data_dir, setting, seed=seed))


def prepare_variants(specs: Sequence[RunSpec],
                     derive: Callable[[Path, str, int], Path] | None = None) -> list[RunSpec]:
    """Derive each needed (setting, seed) variant once; attach its folder (or error) to specs.

    A derivation failure does not stop the benchmark: the runs needing it are stored as
    ``failed: deriving <setting> ...``.
    """
    from tinyset_builder.progress import track

    derive = derive or _derive
    needed = sorted({(s.data_dir, s.setting, s.seed) for s in specs
                     if s.setting not in PLAIN_SETTINGS}, key=lambda t: (str(t[0]), t[1], t[2]))
    done: dict[tuple[Path, str, int], tuple[Path | None, str | None]] = {}
    for data_dir, setting, seed in track(needed, "deriving variants"):
        try:
            done[(data_dir, setting, seed)] = (derive(data_dir, setting, seed), None)
        except Exception as e:  # stored per run, never fatal for the others
            done[(data_dir, setting, seed)] = (None, f"deriving {setting} (seed {seed}) failed: "
                                               f"{type(e).__name__}: {e}")
    out = []
    for s in specs:
        if s.setting in PLAIN_SETTINGS:
            out.append(s)
        else:
            vdir, err = done[(s.data_dir, s.setting, s.seed)]
            out.append(replace(s, variant_dir=vdir, variant_error=err))
    return out


# ---------------------------------------------------------------------------------------------
# one run

def resolve_adapter(name: str) -> Any:
    """Instantiate an adapter by registry name, or directly from ``module:Class``."""
    if ":" in name:
        module_name, cls_name = name.split(":", 1)
        return getattr(import_module(module_name), cls_name)()
    from adapters import get_adapter

    return get_adapter(name)


def build_job(spec: RunSpec, work_dir: Path) -> Any:
    """The :class:`adapters.base.Job` of ``spec`` (paths per setting, see docs/benchmark.md)."""
    from adapters.base import Job

    ann = spec.data_dir / "annotations"
    train_json, unlabeled, prompts = ann / "train.json", None, None
    if spec.setting not in PLAIN_SETTINGS:
        vdir = spec.variant_dir
        assert vdir is not None
        if spec.setting.startswith("semi-"):
            train_json, unlabeled = vdir / "train_labeled.json", vdir / "train_unlabeled.json"
        elif spec.setting.startswith("p2sod-"):
            prompts = vdir / f"prompts_{spec.split}.json"
        else:
            train_json = vdir / "train.json"
        for p in (train_json, unlabeled, prompts):
            if p is not None and not p.is_file():
                raise TinysetError(f"{p}: expected in the derived variant but missing")
    return Job(method=spec.method, data_dir=spec.data_dir, train_json=train_json,
               eval_json=ann / f"{spec.split}.json", work_dir=work_dir, unlabeled_json=unlabeled,
               prompts_json=prompts, schedule=spec.schedule,  # type: ignore[arg-type]
               seed=spec.seed, device=spec.device, env_python=spec.env_python,
               extra=dict(spec.extra))


def evaluate_predictions(gt_json: Path, predictions: Path,
                         prompts: Path | None) -> dict[str, Any]:
    """Score a COCO results file with the toolkit's evaluator (DESIGN.md protocol)."""
    from benchmark.evaluate import evaluate

    return dict(evaluate(gt_json, predictions, prompts=prompts))


def versions() -> dict[str, str]:
    """Versions of Python and the relevant packages (from metadata; nothing is imported)."""
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _adapter_missing(name: str, err: BaseException) -> str:
    hint = {"ultralytics": "pip install 'tinyset[ultralytics]'",
            "mmdet": "pip install 'tinyset[mmdet]' and name an mmdet env with --env-python",
            "torchvision": "pip install 'tinyset[torch]'"}.get(name, "see docs/benchmark.md")
    return (f"adapter {name!r} not implemented/installed ({type(err).__name__}: {err}); "
            f"{hint}")


def execute_run(spec: RunSpec) -> dict[str, Any]:
    """Run one spec end to end and store its record; never raises for a failing run."""
    store = ResultsStore(spec.runs_dir)
    if not spec.force:
        old = store.load(spec.key)
        if old is not None and old.get("status") == "ok":
            return old
    run_dir = store.run_dir(spec.key)
    run_dir.mkdir(parents=True, exist_ok=True)
    for part in run_dir.rglob(".*.part"):  # temporary files of writes a kill interrupted
        part.unlink()
    (run_dir / "error.log").unlink(missing_ok=True)
    record: dict[str, Any] = {
        "schema": SCHEMA, "key": spec.key.to_dict(), "method": dict(spec.method),
        "status": "", "metrics": None, "notes": {},
        "schedule": schedule_label(spec.schedule, spec.extra.get("minutes")),
        "split": spec.split, "data_dir": str(spec.data_dir), "predictions": None,
        "command": list(spec.command),
        "config": {"setting": spec.setting, "seed": spec.seed, "device": spec.device,
                   "env_python": spec.env_python,
                   "variant_dir": str(spec.variant_dir) if spec.variant_dir else None},
        "versions": versions(), "host": platform.node(), "started": _now(),
        "finished": None, "durations": {}}
    t_start = time.perf_counter()

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            record["durations"][name] = round(time.perf_counter() - t0, 3)

    name = str(spec.method["adapter"])
    try:
        if spec.variant_error:
            raise TinysetError(spec.variant_error)
        try:
            adapter = resolve_adapter(name)
        except ImportError as e:
            record["status"] = f"unavailable: {_adapter_missing(name, e)}"
            adapter = None
        if adapter is not None:
            job = build_job(spec, run_dir / "work")
            record["config"]["job"] = {
                "train_json": str(job.train_json), "eval_json": str(job.eval_json),
                "unlabeled_json": str(job.unlabeled_json) if job.unlabeled_json else None,
                "prompts_json": str(job.prompts_json) if job.prompts_json else None,
                "work_dir": str(job.work_dir), "options": dict(job.options)}
            missing = adapter.unavailable(job)
            if missing:
                record["status"] = f"unavailable: {missing}"
            else:
                job.work_dir.mkdir(parents=True, exist_ok=True)
                record["notes"] = dict(timed("train", lambda: adapter.train(job)) or {})
                record["backbone"] = record["notes"].get("backbone")  # what actually ran
                dets = timed("predict", lambda: list(adapter.predict(job)))
                results = [entry for d in dets for entry in d.to_coco()]
                pred_path = write_json(run_dir / PREDICTIONS_FILE, results)
                # the same detections as columns (docs/evaluation.md): evaluates identically,
                # read in bounded memory, ~56 B per detection
                from benchmark.evaluate.columnar import results_to_columns, write_npz

                columns = results_to_columns(results)
                write_npz(pred_path.with_suffix(".npz"), columns)
                record["predictions"] = PREDICTIONS_FILE
                record["detections"] = detection_shape(columns)
                record["metrics"] = timed("evaluate", lambda: evaluate_predictions(
                    job.eval_json, pred_path, job.prompts_json))
                record["status"] = "ok"
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # isolate the failure: stored, the next run goes on
        msg = " ".join(str(e).split()) or "(no message)"
        record["status"] = f"failed: {type(e).__name__}: {msg}"[:2000]
        (run_dir / "error.log").write_text(traceback.format_exc(), encoding="utf-8")
    record["durations"]["total"] = round(time.perf_counter() - t_start, 3)
    record["finished"] = _now()
    store.save(spec.key, record)
    return record


def detection_shape(columns: Mapping[str, Any]) -> dict[str, Any]:
    """How many detections a run made and the share under one pixel wide or high, from the
    detections' columns (``benchmark.evaluate.columnar.results_to_columns``).

    A share near 1 means the detector's box regression collapsed (a failure a one-stage detector
    trained from random initialisation on tiny objects can fall into: every distance ReLU'd to 0),
    which AP alone reports only as a low number.
    """
    n = len(columns["w"])
    sub = int(((columns["w"] < 1) | (columns["h"] < 1)).sum())
    return {"count": n, "sub_pixel": round(sub / n, 4) if n else None}


# ---------------------------------------------------------------------------------------------
# executors

def _run_on_free_device(spec: RunSpec, free: Any, cpu_threads: int) -> dict[str, Any]:
    device = free.get()
    if device == "cpu":
        _limit_cpu_threads(cpu_threads)
    try:
        return execute_run(replace(spec, device=device))
    finally:
        free.put(device)


def _limit_cpu_threads(threads: int) -> None:
    """Share the cores between runs that train on the CPU side by side (no oversubscription)."""
    from tinyset_builder._imports import is_available

    if is_available("torch"):
        import torch

        torch.set_num_threads(threads)


def run_local(specs: Sequence[RunSpec], devices: Sequence[str] = ("cpu",),
              on_done: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Run sequentially on one device, or one run per device at a time over several."""
    from tinyset_builder.progress import make_progress

    records: list[dict[str, Any]] = []
    with make_progress() as progress:
        task = progress.add_task("benchmark runs", total=len(specs))
        if len(devices) <= 1:
            for spec in specs:
                progress.update(task, description=f"run {spec.key.method} {spec.setting} "
                                                  f"seed {spec.seed}")
                dev = devices[0] if devices else spec.device
                records.append(execute_run(replace(spec, device=dev)))
                if on_done:
                    on_done(records[-1])
                progress.advance(task)
            return records
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        ctx = mp.get_context("spawn")  # CUDA cannot be forked
        with ctx.Manager() as manager:
            free = manager.Queue()
            for d in devices:
                free.put(d)
            cpu_threads = max(1, (os.cpu_count() or 1) // max(1, list(devices).count("cpu")))
            with ProcessPoolExecutor(len(devices), mp_context=ctx) as pool:
                futures = [pool.submit(_run_on_free_device, s, free, cpu_threads)
                           for s in specs]
                for fut in as_completed(futures):
                    records.append(fut.result())
                    if on_done:
                        on_done(records[-1])
                    progress.advance(task)
    order = {s.key: i for i, s in enumerate(specs)}
    return sorted(records, key=lambda r: order[RunKey(**r["key"])])


def run_submitit(specs: Sequence[RunSpec], folder: Path, *, cluster: str = "slurm",
                 parameters: Mapping[str, Any] | None = None,
                 on_done: Callable[[dict[str, Any]], None] | None = None
                 ) -> list[dict[str, Any]]:
    """Submit the runs as one submitit job array and wait for them.

    Args:
        specs: runs to execute.
        folder: submitit's log folder.
        cluster: ``slurm`` on a cluster; ``local`` / ``debug`` run on this machine (tests).
        parameters: ``executor.update_parameters`` keywords (``timeout_min``,
            ``slurm_partition``, ``gpus_per_node`` ...).
        on_done: called with each record as it arrives.
    """
    from tinyset_builder._imports import require

    require("submitit", extra="slurm")
    if cluster == "slurm" and shutil.which("sbatch") is None:
        raise TinysetError("--executor slurm: sbatch not found on PATH (run on a Slurm login "
                           "node, or use --executor local)")
    import submitit

    from tinyset_builder.progress import make_progress

    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    params = {"timeout_min": 24 * 60, "name": "tinyset-bench"}
    if cluster == "slurm":
        params["gpus_per_node"] = 1
    params.update(parameters or {})
    executor.update_parameters(**params)
    jobs = executor.map_array(execute_run, list(specs))
    records = []
    with make_progress() as progress:
        task = progress.add_task(f"benchmark runs ({cluster} via submitit)", total=len(jobs))
        for spec, job in zip(specs, jobs, strict=True):
            try:
                rec = job.result()
            except Exception as e:  # the job itself died (node lost, timeout): store it
                rec = _store_crash(spec, f"submitit job {job.job_id} died: "
                                         f"{type(e).__name__}: {str(e).splitlines()[-1:]}")
            records.append(rec)
            if on_done:
                on_done(rec)
            progress.advance(task)
    return records


def _store_crash(spec: RunSpec, why: str) -> dict[str, Any]:
    store = ResultsStore(spec.runs_dir)
    record = {"schema": SCHEMA, "key": spec.key.to_dict(), "method": dict(spec.method),
              "status": f"failed: {why}", "metrics": None, "notes": {},
              "schedule": spec.schedule, "split": spec.split, "data_dir": str(spec.data_dir),
              "predictions": None, "command": list(spec.command), "config": {},
              "versions": versions(), "host": platform.node(), "started": None,
              "finished": _now(), "durations": {}}
    store.save(spec.key, record)
    return record


def run_benchmark(specs: Sequence[RunSpec], *, executor: str = "local",
                  devices: Sequence[str] = ("cpu",), cluster: str | None = None,
                  slurm_parameters: Mapping[str, Any] | None = None,
                  derive: Callable[[Path, str, int], Path] | None = None,
                  on_done: Callable[[dict[str, Any]], None] | None = None
                  ) -> list[dict[str, Any]]:
    """Derive the variants the pending runs need, then execute them; return their records.

    Runs already stored ``ok`` are skipped (unless their spec has ``force``).
    """
    if executor not in ("local", "slurm"):
        raise TinysetError(f"unknown executor {executor!r}; choose local or slurm")
    todo = prepare_variants(pending(specs), derive)
    if not todo:
        return []
    if executor == "local":
        return run_local(todo, devices, on_done)
    folder = todo[0].runs_dir / "submitit"
    return run_submitit(todo, folder, cluster=cluster or "slurm",
                        parameters=slurm_parameters, on_done=on_done)


def summary_line(record: Mapping[str, Any]) -> str:
    """One human line per finished run (for the CLI)."""
    key = record["key"]
    m = record.get("metrics") or {}
    head = f"{key['method']:>10} {key['setting']:<13} seed {key['seed']}: "
    if record["status"] == "ok":
        return head + "ok  " + "  ".join(f"{k} {m[k]:.3f}" for k in ("AP50", "AP") if k in m)
    return head + record["status"]
