"""The native adapter: Table I's label-efficient methods as our own code (:mod:`baselines`).

A thin translation: the job becomes a :class:`baselines.methods.MethodContext` (the schedule's plan,
the manifest's options with the job's extra on top) and the manifest's ``options.method`` names the
module that trains and predicts (:data:`baselines.methods.METHODS`). Rows keep the authors' code
(``external``, ``mmdet``) as alternatives, chosen with ``tinyset benchmark --adapter``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adapters.base import Detections, Job, cuda_unavailable


def method_context(job: Job) -> Any:
    """The :class:`~baselines.methods.MethodContext` of ``job``."""
    from adapters.torchvision_adapter import job_plan, job_settings
    from baselines.methods import MethodContext
    from tinyset_builder.io import read_json

    n_images = len(read_json(job.train_json).get("images", []))
    return MethodContext(train_json=job.train_json, unlabeled_json=job.unlabeled_json,
                         eval_json=job.eval_json, data_dir=job.data_dir, work_dir=job.work_dir,
                         plan=job_plan(job, n_images), settings=job_settings(job),
                         seed=job.seed, device=job.device)


class NativeAdapter:
    """Runs ``options.method`` of :mod:`baselines.methods` (see the module docstring)."""

    def unavailable(self, job: Job) -> str | None:
        """Missing torch/torchvision, an unknown method or an absent GPU."""
        from baselines.methods import METHODS
        from tinyset_builder._imports import is_available

        if not (is_available("torch") and is_available("torchvision")):
            return "torch/torchvision not installed; pip install 'tinyset[torch]'"
        name = job.options.get("method")
        if name not in METHODS:
            return f"no native method {name!r} (known: {', '.join(sorted(METHODS))})"
        return cuda_unavailable(job.device)

    def train(self, job: Job) -> dict[str, Any]:
        """Train the method; its notes name the implementation and the schedule that ran."""
        from baselines.methods import get_method

        ctx = method_context(job)
        notes = get_method(str(job.options["method"])).train(ctx)
        return {"implementation": f"native:{job.options['method']}",
                "schedule": ctx.plan.label(),
                "backbone": f"{ctx.plan.backbone}-fpn{ctx.plan.fpn_channels}", **dict(notes)}

    def predict(self, job: Job) -> Sequence[Detections]:
        """Detections of every image of ``job.eval_json``."""
        from baselines.methods import get_method

        preds = get_method(str(job.options["method"])).predict(method_context(job))
        return [Detections(i, xyxy, scores, labels) for i, xyxy, scores, labels in preds]
