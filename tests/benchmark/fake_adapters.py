"""Adapters that follow the real contract (adapters.base) without a framework, for runner tests.

They are loaded by ``module:Class`` name, so submitit's local executor (a separate process) finds
them through PYTHONPATH like any user plug-in adapter.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from adapters.base import Detections, Job


class OracleAdapter:
    """'Trains' by counting its training boxes; predicts the eval split's GT boxes (AP = 1)."""

    def unavailable(self, job: Job) -> str | None:
        return None

    def train(self, job: Job) -> dict[str, Any]:
        coco = json.loads(job.train_json.read_text())
        marker = job.work_dir / "trained.txt"
        marker.write_text(str(int(marker.read_text()) + 1) if marker.exists() else "1")
        return {"train_boxes": len(coco["annotations"]), "train_file": job.train_json.name,
                "unlabeled": job.unlabeled_json.name if job.unlabeled_json else None,
                "prompts": job.prompts_json.name if job.prompts_json else None}

    def predict(self, job: Job) -> Sequence[Detections]:
        coco = json.loads(job.eval_json.read_text())
        out = []
        for img in coco["images"]:
            anns = [a for a in coco["annotations"] if a["image_id"] == img["id"]]
            xyxy = np.asarray([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)],
                              np.float32).reshape(-1, 4)
            out.append(Detections(img["id"], xyxy, np.ones(len(anns), np.float32),
                                  np.asarray([a["category_id"] for a in anns], np.int64)))
        return out


class FailingAdapter(OracleAdapter):
    """Fails while training, like a crashing framework."""

    def train(self, job: Job) -> dict[str, Any]:
        raise RuntimeError("CUDA out of memory (simulated)")


class DecliningAdapter(OracleAdapter):
    """Cannot run here: says what is missing."""

    def unavailable(self, job: Job) -> str | None:
        return f"weights not found at {Path('/nonexistent/weights.pt')}; download them first"


class DeviceRecordingAdapter(OracleAdapter):
    """Records the device its run was given, and waits (up to a minute) until ``together`` runs
    have started, so that runs on several devices are seen side by side.

    Options: ``rendezvous`` (a folder shared by the runs), ``together`` (how many to wait for).
    """

    def train(self, job: Job) -> dict[str, Any]:
        import time

        notes = super().train(job)
        folder = Path(job.options["rendezvous"])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / str(job.method["id"])).write_text(job.device)
        deadline = time.monotonic() + 60
        while (len(list(folder.iterdir())) < int(job.options["together"])
               and time.monotonic() < deadline):
            time.sleep(0.05)
        return {**notes, "device": job.device, "started_by_then": len(list(folder.iterdir()))}
