"""DEAL adapter: trains ``deal/`` on the job's training file and answers its P2SOD prompt file.

Options (``manifests/methods.toml`` ``options`` or ``job.extra``, extra wins):

* ``preset``: ``paper`` (Swin-T, the default for the ``paper`` schedule) or ``tiny`` (the
  default for the ``smoke`` schedule);
* ``ablation``: a Table IV(d) row (``none``, ``pe``, ``pe+hfe``, ``pe+hfe+dgqa``, ``no-prompt``);
* ``backbone_weights``: local backbone weights (never downloaded; random init otherwise, noted);
* ``backbone``: a Table IV(c) backbone (``cnn``, ``swin_t``, ``resnet50``, ``pvt_v2``,
  ``dinov3``), in every schedule; ``freeze_backbone``: train without updating it;
* ``paper_switches``: names of ``deal.config.SWITCHES`` to run in the paper's version;
* ``config``: a table of further ``DealConfig`` field overrides;
* ``num_points`` / ``jitter``: predict from the setting's prompt file derived with these
  options (Table IV(b), Fig. 7). The runner scores against the default file of the setting:
  its units (image, prompted category) are the same, which is checked;
* ``steps`` / ``minutes``: training length. Defaults: ``paper`` = the manifest's schedule in
  epochs (1× = 3 epochs) over the training images, ``smoke`` = 30 steps, ``cpu`` = the budget's
  ``minutes`` spent in counted operations, as every row of the cpu schedule
  (:mod:`baselines.schedules`): the operations of one intra-class and one inter-class step are
  counted and the run gets ``budget / mean`` steps (deterministic; DEAL's small layers run at
  about 21 GFLOP/s on one core here, so its real CPU time is about 2.6× the nominal budget).

Predictions: every prompt set of ``job.prompts_json`` is answered from the image's cached
features; detections carry the set's ``category_id``. Images without a prompt set get none.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from adapters.base import Detections, Job
from tinyset_builder.errors import TinysetError

#: Epochs of the paper's schedules (Table II: "1× denotes 3 epochs").
SCHEDULE_EPOCHS = {"1x": 3, "2x": 6}
SMOKE_STEPS = 30


class DealAdapter:
    """The runner's view of DEAL (see the module docstring)."""

    def _options(self, job: Job) -> dict[str, Any]:
        return {**dict(job.options), **dict(job.extra)}

    def _config(self, job: Job):
        from deal.config import get_config

        opts = self._options(job)
        preset = opts.get("preset", "paper" if job.schedule == "paper" else "tiny")
        overrides: dict[str, Any] = dict(opts.get("config", {}))
        for key in ("backbone", "freeze_backbone"):
            if key in opts:
                overrides[key] = opts[key]
        if opts.get("backbone_weights"):
            overrides["backbone_weights"] = str(opts["backbone_weights"])
        return get_config(preset, opts.get("ablation"),
                          paper_switches=list(opts.get("paper_switches", ())), **overrides)

    def _prompt_file(self, job: Job) -> dict[str, Any]:
        """The prompt file to answer: the job's, or one derived with ``num_points``/``jitter``."""
        from tinyset_builder.io import read_json

        assert job.prompts_json is not None
        doc = read_json(job.prompts_json)
        if not isinstance(doc, dict) or "prompts" not in doc:
            raise TinysetError(f"{job.prompts_json}: not a P2SOD prompt file")
        opts = self._options(job)
        extra = {k: opts[k] for k in ("num_points", "jitter") if k in opts}
        if not extra:
            return doc
        from benchmark.protocols import derive_variant

        setting = str(doc.get("setting"))
        folder = Path(derive_variant(Path(job.data_dir), setting, seed=job.seed, **extra))
        mine = read_json(folder / Path(job.prompts_json).name)
        units = lambda d: sorted((e["image_id"], e["category_id"]) for e in d["prompts"])  # noqa: E731
        if units(mine) != units(doc):
            raise TinysetError(f"{folder}: {extra} changes the prompted (image, category) units "
                               f"of {setting}; it cannot be scored with {job.prompts_json}")
        return mine

    def _work(self, job: Job) -> Path:
        return Path(job.work_dir) / "deal"

    def unavailable(self, job: Job) -> str | None:
        """``None`` when torch, torchvision and scipy are importable, else how to get them."""
        missing = [m for m in ("torch", "torchvision", "scipy")
                   if importlib.util.find_spec(m) is None]
        if missing:
            return f"needs {', '.join(missing)}: pip install 'tinyset[torch]'"
        if job.prompts_json is None:
            return "DEAL is point-prompted: the job needs a P2SOD prompt file (tinyset derive)"
        return None

    def _steps(self, job: Job, n_images: int, batch: int) -> tuple[int | None, float | None]:
        opts = self._options(job)
        if job.schedule == "cpu" and "steps" not in opts:
            return self._budget_steps(job, n_images), None
        if "steps" in opts or "minutes" in opts:
            return opts.get("steps"), opts.get("minutes")
        if job.schedule == "smoke":
            return SMOKE_STEPS, None
        epochs = SCHEDULE_EPOCHS.get(str(job.method.get("schedule", "1x")), 3)
        return max(1, math.ceil(epochs * n_images / batch)), None

    def _budget_steps(self, job: Job, n_images: int) -> int:
        """Steps the cpu schedule's budget buys (counted once, kept in ``budget.json``)."""
        from baselines.schedules import resolve_plan
        from tinyset_builder.io import read_json, write_json

        plan = resolve_plan("cpu", self._options(job), n_images=n_images)
        path = self._work(job) / "budget.json"
        if path.is_file():
            flops = float(read_json(path)["flops_per_step"])
        else:
            flops = self._count_step_flops(job)
            write_json(path, {"flops_per_step": flops})
        return plan.steps_for(flops)

    def _count_step_flops(self, job: Job) -> float:
        """Mean counted operations of an intra- and an inter-class step of a fresh model."""
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        from deal.data import TrainImages, load_records
        from deal.model import build_model
        from deal.train import _step

        cfg = self._config(job)
        torch.manual_seed(job.seed)
        model = build_model(cfg).to(job.device)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
        data = TrainImages(load_records(Path(job.train_json), Path(job.data_dir)),
                           cfg.input_scale, cfg.train_crop)
        rng = np.random.default_rng([job.seed, 0])
        counts = []
        for step in (0, 1):  # even steps prompt intra-class sets, odd ones inter-class sets
            with FlopCounterMode(display=False) as counter:
                _step(model, opt, data, cfg, rng, step, job.device)
            counts.append(counter.get_total_flops())
        return float(sum(counts) / len(counts))

    def train(self, job: Job) -> dict[str, Any]:
        """Train (resuming from ``work_dir/deal/last.pt``); return notes for the results file."""
        import torch

        from baselines.schedules import schedule_label
        from deal.train import train
        from tinyset_builder.io import read_json

        cfg = self._config(job)
        torch.manual_seed(job.seed)
        n_images = len(read_json(job.train_json).get("images", []))
        steps, minutes = self._steps(job, n_images, cfg.batch_size)
        res = train(cfg, Path(job.train_json), Path(job.data_dir), self._work(job), steps=steps,
                    minutes=minutes, seed=job.seed, device=job.device)
        weights = (cfg.backbone_weights if cfg.backbone_weights
                   else "random init (tiny CNN)" if cfg.backbone == "cnn"
                   else f"random init (offline {cfg.backbone})")
        return {"preset": cfg.preset, "steps": res.steps, "train_seconds": round(res.seconds, 1),
                "schedule": schedule_label(job.schedule, self._options(job).get("minutes")),
                "checkpoint": str(res.checkpoint), "weights": weights,
                "backbone": cfg.backbone, "paper_switches": list(
                    self._options(job).get("paper_switches", ()))}

    def predict(self, job: Job) -> Sequence[Detections]:
        """Detections for every image of ``job.eval_json`` under ``job.prompts_json``."""
        from deal.data import resolve_image
        from deal.predictor import DealPredictor, predict_prompt_file
        from tinyset_builder.coco import CocoDataset

        if job.prompts_json is None:
            raise TinysetError("DEAL needs a P2SOD prompt file (job.prompts_json)")
        doc = self._prompt_file(job)
        cfg = self._config(job)
        predictor = DealPredictor.from_checkpoint(self._work(job) / "last.pt", cfg, job.device)
        gt = CocoDataset.load(job.eval_json)
        files = {i.id: resolve_image(Path(job.data_dir), i.file_name, i.split)
                 for i in gt.images}
        dets = predict_prompt_file(predictor, files, doc["prompts"])
        by_image: dict[int, list[dict]] = {i.id: [] for i in gt.images}
        for d in dets:
            by_image[d["image_id"]].append(d)
        out = []
        for image_id, ds in by_image.items():
            if not ds:
                out.append(Detections.empty(image_id))
                continue
            xywh = np.array([d["bbox"] for d in ds], dtype=np.float32)
            xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)
            out.append(Detections(image_id, xyxy.astype(np.float32),
                                  np.array([d["score"] for d in ds], dtype=np.float32),
                                  np.array([d["category_id"] for d in ds], dtype=np.int64)))
        return out
