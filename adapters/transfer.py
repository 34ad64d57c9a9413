"""Transfer adapter: pre-train on a TinySet build, then fine-tune on (or just predict) a target.

The rows of Tables III and VI (``paradigm = "transfer"`` in ``manifests/methods.toml``) run on a
*target* build (DIOR, DOTA-v2.0, COCO, TinyPerson: ``tinyset build --sources dior ...``) and
wrap an inner adapter (``torchvision`` or ``deal``). Options (manifest ``options``; ``job.extra``
wins, as everywhere):

* ``inner``: the adapter that trains and predicts (``torchvision`` or ``deal``); every option
  not listed here goes to it unchanged;
* ``init``: what the fine-tuning starts from —

  - ``imagenet``: the inner adapter's own start, i.e. the local ImageNet ``state_dict`` given
    with ``--backbone-weights`` (never downloaded), or random initialisation when none is given
    (the result's ``weights`` note says which);
  - ``tinyset``: the model of the ``pretrain`` row trained on the TinySet build named by
    ``--pretrain-data``. That pre-training is an ordinary run of the ``pretrain`` row, stored in
    the same results store under the TinySet build's key (so its TinySet metrics are reported
    too), executed first when it is not stored ``ok``, with the same schedule and budget;

* ``pretrain``: the manifest id of the pre-training row (e.g. ``"3"`` = FCOS, ``"deal"``);
* ``init_parts``: ``all`` (default: every tensor whose name and shape match) or ``backbone``
  (the feature extractor only, ``backbone.body.*`` — Table VI transfers "the trained feature
  extractors"); torchvision rows only (a DEAL checkpoint is always taken whole);
* ``zero_shot``: no training on the target: the pre-trained model predicts the target's test
  split directly (Table III "w/o fine-tuning"; DEAL answers the target's P2SOD prompts).

Fine-tuning follows the row's schedule on the target's train split (``cpu``: the same budget of
CPU-minutes as the pre-training). A torchvision fine-tune records the checkpoint's SHA-256 in its
configuration, so a changed pre-training is never mistaken for a finished fine-tune; DEAL starts
from a step-0 copy of the pre-trained checkpoint (DEAL's own checkpoint format, no optimizer
state), so an interrupted fine-tune resumes as any DEAL run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from adapters.base import Detections, Job
from tinyset_builder.errors import TinysetError

#: The options this adapter reads (the rest go to the inner adapter).
OWN_OPTIONS = ("inner", "init", "pretrain", "init_parts", "zero_shot", "pretrain_data")
INNER = ("torchvision", "deal")
INITS = ("imagenet", "tinyset")


def _settings(job: Job) -> dict[str, Any]:
    return {**dict(job.options), **dict(job.extra)}


def store_root(work_dir: Path) -> Path:
    """The results store a run's ``work`` folder lives in (``<root>/<dataset>/<method>/
    <setting>/seed<N>/work``, :class:`benchmark.results.RunKey`)."""
    work_dir = Path(work_dir)
    if work_dir.name != "work":
        raise TinysetError(f"{work_dir}: not a run's work folder (expected .../seed<N>/work)")
    return work_dir.parents[4]


class TransferAdapter:
    """Pre-train → fine-tune (or zero-shot) → predict, around an inner adapter."""

    # ------------------------------------------------------------------ options and inner jobs

    def _check(self, job: Job) -> dict[str, Any]:
        s = _settings(job)
        if s.get("inner") not in INNER:
            raise TinysetError(f"transfer row {job.method.get('id')}: options.inner must be one "
                               f"of {', '.join(INNER)}, got {s.get('inner')!r}")
        if s.get("init") not in INITS:
            raise TinysetError(f"transfer row {job.method.get('id')}: options.init must be one "
                               f"of {', '.join(INITS)}, got {s.get('init')!r}")
        if s.get("init_parts", "all") not in ("all", "backbone"):
            raise TinysetError(f"options.init_parts must be all or backbone, got "
                               f"{s.get('init_parts')!r}")
        if (s["init"] == "tinyset" or s.get("zero_shot")) and not s.get("pretrain"):
            raise TinysetError(f"transfer row {job.method.get('id')}: init tinyset and zero_shot "
                               f"need options.pretrain (a manifest id)")
        return s

    def _inner(self, job: Job) -> Any:
        from benchmark.runner import resolve_adapter

        return resolve_adapter(str(self._check(job)["inner"]))

    def _pretrain_method(self, job: Job) -> Any:
        from benchmark.manifest import load_methods

        return load_methods().get(str(self._check(job)["pretrain"]))

    def _inner_job(self, job: Job, *, work_dir: Path | None = None,
                   extra: Mapping[str, Any] | None = None) -> Job:
        """The job the inner adapter sees: the row's options without this adapter's own
        (for a pre-trained model: the pre-training row's options underneath, so the model is
        rebuilt as it was trained)."""
        s = self._check(job)
        base: dict[str, Any] = {}
        if s["init"] == "tinyset" or s.get("zero_shot"):
            base = dict(self._pretrain_method(job).options)
        options = {**base, **{k: v for k, v in job.options.items() if k not in OWN_OPTIONS}}
        inner_extra = {k: v for k, v in job.extra.items() if k not in OWN_OPTIONS}
        inner_extra.update(extra or {})
        if s["init"] == "tinyset":
            inner_extra.pop("backbone_weights", None)  # the weights come from the checkpoint
        method = {**dict(job.method), "options": options, "adapter": s["inner"]}
        return replace(job, method=method, extra=inner_extra,
                       work_dir=work_dir if work_dir is not None else job.work_dir)

    # ------------------------------------------------------------------ pre-training

    def _pretrain_spec(self, job: Job) -> Any:
        """The runner spec of the pre-training run (the ``pretrain`` row on ``--pretrain-data``)."""
        from benchmark.results import dataset_key
        from benchmark.runner import RunSpec, check_dataset

        s = self._check(job)
        data = Path(str(s["pretrain_data"]))
        check_dataset(data)
        method = self._pretrain_method(job)
        extra = {k: v for k, v in job.extra.items() if k not in OWN_OPTIONS}
        return RunSpec(method=method.to_dict(), setting=method.setting, seed=job.seed,
                       data_dir=data, runs_dir=store_root(job.work_dir),
                       dataset=dataset_key(data), schedule=job.schedule, device=job.device,
                       env_python=job.env_python,
                       command=("tinyset benchmark (pre-training for transfer row "
                                f"{job.method.get('id')})",), extra=extra)

    def _pretrained(self, job: Job) -> tuple[dict[str, Any], Path]:
        """Run (or reuse) the pre-training; returns its record and its ``work`` folder."""
        from benchmark.results import ResultsStore
        from benchmark.runner import execute_run, prepare_variants

        spec = prepare_variants([self._pretrain_spec(job)])[0]
        record = execute_run(spec)  # returns the stored record at once when it is ok
        if record.get("status") != "ok":
            raise TinysetError(f"pre-training {spec.method['id']} on {spec.data_dir} did not "
                               f"finish: {record.get('status')}")
        return record, ResultsStore(spec.runs_dir).run_dir(spec.key) / "work"

    # ------------------------------------------------------------------ the adapter protocol

    def unavailable(self, job: Job) -> str | None:
        """A missing ``--pretrain-data``, or whatever the inner adapter lacks."""
        s = self._check(job)
        if s["init"] == "tinyset" or s.get("zero_shot"):
            data = s.get("pretrain_data")
            if not data:
                return ("needs the TinySet build to pre-train on: tinyset benchmark "
                        "--pretrain-data DIR (a folder made by tinyset build)")
            if not (Path(str(data)) / "build.json").is_file():
                return f"--pretrain-data {data}: not a finished tinyset build (no build.json)"
        return self._inner(job).unavailable(self._inner_job(job))

    def train(self, job: Job) -> dict[str, Any]:
        """Pre-train (or reuse), then fine-tune unless ``zero_shot``; notes for the record."""
        s = self._check(job)
        notes: dict[str, Any] = {"init": s["init"], "inner": s["inner"],
                                 "target": _target_sources(job.data_dir),
                                 "zero_shot": bool(s.get("zero_shot"))}
        checkpoint = None
        if s["init"] == "tinyset" or s.get("zero_shot"):
            record, work = self._pretrained(job)
            checkpoint = work / ("deal/last.pt" if s["inner"] == "deal" else "model.pt")
            notes["pretrain"] = {"method": record["key"]["method"],
                                 "dataset": record["key"]["dataset"],
                                 "data_dir": record["data_dir"],
                                 "schedule": record.get("schedule"),
                                 "checkpoint": str(checkpoint),
                                 "AP50_on_tinyset": (record.get("metrics") or {}).get("AP50"),
                                 "weights": (record.get("notes") or {}).get("weights")}
        if s.get("zero_shot"):
            notes["weights"] = f"pre-trained on {notes['pretrain']['dataset']}, not fine-tuned"
            return notes
        inner = self._inner(job)
        if checkpoint is None:  # ImageNet (or random) start: the inner adapter as it is
            return {**notes, **dict(inner.train(self._inner_job(job)) or {})}
        if s["inner"] == "deal":
            _seed_deal(self._inner_job(job), inner, checkpoint)
            out = dict(inner.train(self._inner_job(job)) or {})
        else:
            out = dict(inner.train(self._inner_job(job, extra={
                "init_checkpoint": str(checkpoint),
                "init_parts": s.get("init_parts", "all")})) or {})
        out["weights"] = (f"{s.get('init_parts', 'all')} from {checkpoint} (pre-trained on "
                          f"{notes['pretrain']['dataset']}), then fine-tuned")
        return {**notes, **out}

    def predict(self, job: Job) -> Sequence[Detections]:
        """The target's detections: from the fine-tuned model, or the pre-trained one."""
        s = self._check(job)
        inner = self._inner(job)
        if s.get("zero_shot"):
            _, work = self._pretrained(job)  # stored ok by train(): no work, only the folder
            return inner.predict(self._inner_job(job, work_dir=work))
        return inner.predict(self._inner_job(job))


def _target_sources(data_dir: Path) -> list[str]:
    """The sources a build was made from (its ``build.json``), naming the transfer target."""
    from tinyset_builder.built import load_build_record

    try:
        return sorted(load_build_record(Path(data_dir))["sources"])
    except (TinysetError, KeyError):
        return []


def _seed_deal(job: Job, inner: Any, checkpoint: Path) -> None:
    """Start a DEAL fine-tune from ``checkpoint``: a step-0 copy without optimizer state.

    Written only when the fine-tune has no checkpoint of its own yet (an interrupted fine-tune
    resumes from its own). The pre-trained model is checked against the fine-tune's config.
    """
    from deal.train import load_model, save_checkpoint

    target = Path(job.work_dir) / "deal" / "last.pt"
    if target.is_file():
        return
    model = load_model(checkpoint, inner._config(job))
    target.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(target, model.train(), None, 0, 0.0)
