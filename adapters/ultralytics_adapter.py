"""Ultralytics adapter: RT-DETR (ResNet-50) and YOLOv8-P2 trained and run through ``ultralytics``.

Ultralytics is **AGPL-3.0**; it is an optional extra (``pip install 'tinyset[ultralytics]'``)
and nothing else in the toolkit imports it.

Models come from the YAML files inside the ultralytics wheel (option ``model``:
``rtdetr-resnet50.yaml`` for Table I row 4, ``yolov8n-p2.yaml`` / ``yolov8s-p2.yaml`` for the
P2-level YOLOv8 that detects on strides 4–32). They start from random initialisation; option
``weights`` names a **local** ``.pt`` file to transfer from (ultralytics' ``.load``); nothing is
ever downloaded.

Data: the job's COCO files are exported to YOLO format under ``work_dir/yolo/``
(``images/<split>/<id>.<ext>`` symlinks, ``labels/<split>/<id>.txt`` with normalised
``cls cx cy w h``, and ``data.yaml``). Class-agnostic by default (one class ``object``, as the
paper evaluates); ``class_agnostic = false`` keeps the dataset's categories. **Ignore regions**
(``iscrowd = 1``) have no YOLO equivalent: by default (``ignore_regions = "mask"``) the image is
copied with every ignore region filled with the image's mean colour, so the detector is neither
taught those objects nor punished for finding them; ``"drop"`` leaves the pixels and only drops
the label. Boxes without area (points) are skipped and counted.

Offline: ``YOLO_OFFLINE=1`` and ``YOLO_CONFIG_DIR`` (unless the user set it) are set before
ultralytics is first imported, and its settings are updated to ``sync = False``, no experiment
trackers, and runs/weights/datasets folders inside ``work_dir``; training uses ``plots=False``
(plots need a font download) and ``amp=False`` on CPU.

Schedules: ``paper`` = the manifest's epochs (1× = 3) at ``imgsz`` 1024 (option ``imgsz``),
batch ``batch`` (default 4); ``smoke`` = 1 epoch at ``smoke_imgsz`` (default 256) on at most
``smoke_images`` training images (default 8), batch 2; ``cpu`` = the budget's ``minutes`` spent in
counted operations, as every row of the cpu schedule (:mod:`baselines.schedules`): whole tiles at
``cpu_imgsz`` (default 1024), batch ``cpu_batch`` (2), and as many image passes as the budget buys
at three times the counted forward operations of one image (the usual forward + backward rule),
as whole epochs, or one epoch on ``fraction`` of the images when the budget buys less than one.
Predictions keep up to ``max_det`` = 3000
boxes (YOLO; RT-DETR's decoder is capped by its 300 queries) at ``conf`` 0.001.
Other options: ``lr0``, ``amp`` (GPU only), ``deterministic`` (default: on for ``paper``),
``conf``. Options may also come from ``job.extra`` (extra wins).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adapters.base import Detections, Job, cuda_unavailable
from baselines.data import category_map, image_path
from tinyset_builder.errors import TinysetError
from tinyset_builder.io import read_json, write_json

MAX_DET = 3000
PAPER_IMGSZ = 1024
#: Experiment trackers switched off in ultralytics' settings (each would import/upload).
TRACKERS = ("clearml", "comet", "dvc", "hub", "mlflow", "neptune", "raytune", "tensorboard",
            "wandb")
DONE_FILE = "ultralytics_done.json"


# ---------------------------------------------------------------------------------------------
# offline set-up

def import_ultralytics(work_dir: Path) -> Any:
    """Import ultralytics with downloads and telemetry off and its state kept in ``work_dir``.

    ``YOLO_OFFLINE`` / ``YOLO_CONFIG_DIR`` only take effect before the first import in a
    process; the settings update applies to whichever settings file that import chose.
    """
    os.environ.setdefault("YOLO_OFFLINE", "1")
    if "ultralytics" not in sys.modules:
        os.environ.setdefault("YOLO_CONFIG_DIR", str(work_dir / "ultralytics_config"))
    import ultralytics
    from ultralytics import settings

    _undo_pil_patch()
    wanted = {"sync": False, "runs_dir": str(work_dir / "runs"),
              "weights_dir": str(work_dir / "weights"),
              "datasets_dir": str(work_dir / "yolo")}
    wanted.update({k: False for k in TRACKERS if k in settings})
    if any(settings.get(k) != v for k, v in wanted.items()):
        settings.update(wanted)
    return ultralytics


def _undo_pil_patch() -> None:
    """Give ``PIL.Image.open`` back its original function.

    Importing ultralytics replaces ``PIL.Image.open`` process-wide with a wrapper that, on an
    unidentifiable file, tries to pip-install ``pi-heif`` and raises ``ModuleNotFoundError``
    offline. The toolkit decodes images itself (``tinyset_builder.imageio``) and must report a
    corrupt image as a counted, skippable error whatever ran earlier in the same process.
    """
    from PIL import Image
    from ultralytics.utils import patches

    original = getattr(patches, "_image_open", None)
    if original is not None and Image.open is not original:
        Image.open = original


def device_arg(device: str) -> str:
    """Toolkit device (``cpu``, ``cuda``, ``cuda:1``) -> ultralytics' (``cpu``, ``0``, ``1``)."""
    if device == "cpu":
        return "cpu"
    if device == "cuda":
        return "0"
    if device.startswith("cuda:"):
        return device.split(":", 1)[1]
    return device


# ---------------------------------------------------------------------------------------------
# YOLO-format export

@dataclass(frozen=True, slots=True)
class YoloExport:
    """What :func:`export_yolo` wrote: the dataset yaml, class names, counts per split."""

    data_yaml: Path
    names: tuple[str, ...]
    counts: dict[str, dict[str, int]]


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    try:
        dst.symlink_to(src.resolve())
    except OSError:  # filesystems without symlinks
        import shutil

        shutil.copyfile(src, dst)


def _masked_copy(src: Path, dst: Path, regions: Sequence[Sequence[float]]) -> None:
    from tinyset_builder.imageio import read_image
    from tinyset_builder.synth.canvas import save_image

    pixels = np.array(read_image(src), copy=True)
    fill = pixels.reshape(-1, pixels.shape[-1]).mean(0).round().astype(pixels.dtype)
    h, w = pixels.shape[:2]
    for x, y, bw, bh in regions:
        x0, y0 = max(0, math.floor(x)), max(0, math.floor(y))
        x1, y1 = min(w, math.ceil(x + bw)), min(h, math.ceil(y + bh))
        pixels[y0:y1, x0:x1] = fill
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    save_image(dst.with_suffix(".png"), pixels)


def export_split(coco_json: Path, data_dir: Path, root: Path, split: str, *,
                 class_agnostic: bool = True, ignore_regions: str = "mask",
                 limit: int | None = None) -> dict[str, int]:
    """Write ``root/images/<split>`` and ``root/labels/<split>`` from one COCO file.

    Images are named ``<image_id><ext>`` (``.png`` when ignore regions were masked), labels
    ``<image_id>.txt``; ``limit`` keeps the first images only (smoke runs).
    """
    if ignore_regions not in ("mask", "drop"):
        raise TinysetError(f"ultralytics adapter: ignore_regions must be mask or drop, "
                           f"not {ignore_regions!r}")
    coco = read_json(coco_json)
    cmap = category_map(coco, class_agnostic)  # 1..K
    by_image: dict[int, list[Mapping[str, Any]]] = {}
    for a in coco.get("annotations", []):
        by_image.setdefault(int(a["image_id"]), []).append(a)
    split_hint = coco_json.stem if coco_json.stem in ("train", "val", "test") else None
    counts = {"images": 0, "boxes": 0, "ignore_masked": 0, "ignore_dropped": 0,
              "degenerate_skipped": 0}
    images = coco.get("images", [])[:limit] if limit else coco.get("images", [])
    for img in images:
        iid, w, h = int(img["id"]), float(img["width"]), float(img["height"])
        src = image_path(data_dir, str(img["file_name"]), img.get("split") or split_hint)
        lines, crowd = [], []
        for a in by_image.get(iid, []):
            x, y, bw, bh = (float(v) for v in a["bbox"])
            if a.get("iscrowd", 0):
                crowd.append((x, y, bw, bh))
                continue
            if bw <= 0 or bh <= 0:
                counts["degenerate_skipped"] += 1
                continue
            cid = int(a["category_id"])
            if cid not in cmap:
                raise TinysetError(f"{coco_json}: annotation {a.get('id')} has unknown "
                                   f"category_id {cid}")
            cx, cy = min(max((x + bw / 2) / w, 0.0), 1.0), min(max((y + bh / 2) / h, 0.0), 1.0)
            lines.append(f"{cmap[cid] - 1} {cx:.6f} {cy:.6f} {min(bw / w, 1.0):.6f} "
                         f"{min(bh / h, 1.0):.6f}")
        dst = root / "images" / split / f"{iid}{src.suffix.lower()}"
        for stale in (dst, dst.with_suffix(".png")):
            if stale.is_symlink() or stale.exists():
                stale.unlink()
        if crowd and ignore_regions == "mask":
            dst.parent.mkdir(parents=True, exist_ok=True)
            _masked_copy(src, dst, crowd)
            counts["ignore_masked"] += len(crowd)
        else:
            _link_or_copy(src, dst)
            counts["ignore_dropped"] += len(crowd)
        label = root / "labels" / split / f"{iid}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        counts["images"] += 1
        counts["boxes"] += len(lines)
    return counts


def export_yolo(job: Job, root: Path, *, class_agnostic: bool = True,
                ignore_regions: str = "mask", limit: int | None = None) -> YoloExport:
    """Export the job's training file (and the dataset's val split when present) to ``root``."""
    coco = read_json(job.train_json)
    if class_agnostic:
        names: tuple[str, ...] = ("object",)
    else:
        names = tuple(str(c["name"]) for c in sorted(coco.get("categories", []),
                                                     key=lambda c: int(c["id"])))
    if not names:
        raise TinysetError(f"{job.train_json}: no categories")
    counts = {"train": export_split(job.train_json, job.data_dir, root, "train",
                                    class_agnostic=class_agnostic,
                                    ignore_regions=ignore_regions, limit=limit)}
    val_json = job.data_dir / "annotations" / "val.json"
    if val_json.is_file():
        counts["val"] = export_split(val_json, job.data_dir, root, "val",
                                     class_agnostic=class_agnostic,
                                     ignore_regions=ignore_regions, limit=limit)
    val = "images/val" if "val" in counts else "images/train"
    data_yaml = root / "data.yaml"
    # JSON is valid YAML; ultralytics reads it with yaml.safe_load.
    data_yaml.write_text(json.dumps({"path": str(root.resolve()), "train": "images/train",
                                     "val": val, "names": dict(enumerate(names))}, indent=1),
                         encoding="utf-8")
    return YoloExport(data_yaml, names, counts)


# ---------------------------------------------------------------------------------------------
# parsing predictions

def _to_numpy(x: Any) -> np.ndarray:
    """A torch tensor (on any device) or array-like -> numpy, without importing torch."""
    for step in ("detach", "cpu", "numpy"):
        if hasattr(x, step):
            x = getattr(x, step)()
    return np.asarray(x)


def detections_from_result(result: Any, image_id: int, to_cat: np.ndarray) -> Detections:
    """One ultralytics ``Results`` (duck-typed: ``.boxes.xyxy/.conf/.cls``) -> Detections.

    Args:
        result: a ``Results`` object, or anything with the same attributes.
        image_id: the COCO image id it answers.
        to_cat: model class index -> dataset category id.
    """
    boxes = getattr(result, "boxes", None)
    if boxes is None or len(_to_numpy(boxes.conf).reshape(-1)) == 0:
        return Detections.empty(image_id)
    xyxy = _to_numpy(boxes.xyxy).astype(np.float32).reshape(-1, 4)
    conf = _to_numpy(boxes.conf).astype(np.float32).reshape(-1)
    cls = _to_numpy(boxes.cls).reshape(-1).astype(np.int64)
    if cls.size and (cls.min() < 0 or cls.max() >= len(to_cat)):
        raise TinysetError(f"image {image_id}: model class {int(cls.max())} outside the "
                           f"{len(to_cat)} trained classes")
    order = np.argsort(-conf, kind="stable")
    return Detections(image_id, xyxy[order], conf[order], to_cat[cls[order]])


# ---------------------------------------------------------------------------------------------
# the adapter

class UltralyticsAdapter:
    """RT-DETR / YOLOv8-P2 through ultralytics (see the module docstring)."""

    @staticmethod
    def _opt(job: Job, key: str, default: Any) -> Any:
        return job.extra.get(key, job.options.get(key, default))

    def _model_name(self, job: Job) -> str:
        return str(self._opt(job, "model", "yolov8n-p2.yaml"))

    def _schedule(self, job: Job) -> dict[str, Any]:
        if job.schedule == "cpu":
            return self._cpu_schedule(job)
        if job.schedule == "smoke":
            return {"epochs": int(self._opt(job, "smoke_epochs", 1)),
                    "imgsz": int(self._opt(job, "smoke_imgsz", 256)),
                    "batch": int(self._opt(job, "smoke_batch", 2)),
                    "limit": int(self._opt(job, "smoke_images", 8))}
        return {"epochs": max(1, math.ceil(float(job.method.get("epochs", 3.0)))),
                "imgsz": int(self._opt(job, "imgsz", PAPER_IMGSZ)),
                "batch": int(self._opt(job, "batch", 4)), "limit": None}

    def _cpu_schedule(self, job: Job) -> dict[str, Any]:
        """Epochs (or a fraction of one) that the cpu budget buys (see the module docstring)."""
        from baselines.schedules import resolve_plan

        n = max(1, len(read_json(job.train_json).get("images", [])))
        imgsz = int(self._opt(job, "cpu_imgsz", PAPER_IMGSZ))
        plan = resolve_plan("cpu", {**dict(job.options), **dict(job.extra)}, n_images=n)
        passes = plan.steps_for(3 * self._forward_flops(job, imgsz))
        return {"epochs": max(1, passes // n), "imgsz": imgsz,
                "batch": int(self._opt(job, "cpu_batch", 2)), "limit": None,
                "fraction": round(min(1.0, passes / n), 4), "budget": plan.label()}

    def _forward_flops(self, job: Job, imgsz: int) -> float:
        """Counted operations of one ``imgsz²`` image through the model (kept in work_dir)."""
        path = job.work_dir / "budget.json"
        if path.is_file() and read_json(path).get("imgsz") == imgsz:
            return float(read_json(path)["forward_flops"])
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        import_ultralytics(job.work_dir.resolve())
        model = self._model_cls(job)(self._model_name(job)).model.eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, imgsz, imgsz))
        flops = float(counter.get_total_flops())
        write_json(path, {"imgsz": imgsz, "forward_flops": flops})
        return flops

    def _is_rtdetr(self, job: Job) -> bool:
        return "rtdetr" in self._model_name(job).lower()

    def _model_cls(self, job: Job) -> Any:
        from ultralytics import RTDETR, YOLO

        return RTDETR if self._is_rtdetr(job) else YOLO

    def unavailable(self, job: Job) -> str | None:
        """Missing ultralytics, a model YAML the wheel lacks, a missing weights file or GPU."""
        from tinyset_builder._imports import is_available

        if not is_available("ultralytics"):
            return ("ultralytics not installed (AGPL-3.0, optional): "
                    "pip install 'tinyset[ultralytics]'")
        name = self._model_name(job)
        if not name.endswith((".yaml", ".yml")):
            return (f"model {name!r}: give a model YAML shipped with ultralytics (e.g. "
                    f"rtdetr-resnet50.yaml, yolov8n-p2.yaml); local weights go in option "
                    f"'weights' (named .pt files would be downloaded)")
        weights = self._opt(job, "weights", None)
        if weights and not Path(weights).is_file():
            return (f"weights {weights} not found (a local ultralytics .pt checkpoint, copied "
                    f"from a machine online)")
        return cuda_unavailable(job.device)

    def _config(self, job: Job) -> dict[str, Any]:
        sched = self._schedule(job)
        return {"model": self._model_name(job), "weights": self._opt(job, "weights", None),
                "class_agnostic": bool(self._opt(job, "class_agnostic", True)),
                "ignore_regions": str(self._opt(job, "ignore_regions", "mask")),
                "seed": job.seed, "lr0": self._opt(job, "lr0", None),
                "train_sha": hashlib.sha256(job.train_json.read_bytes()).hexdigest()[:16],
                **sched}

    def train(self, job: Job) -> dict[str, Any]:
        """Export to YOLO format, train (resume / reuse when possible), return notes."""
        work = job.work_dir.resolve()
        work.mkdir(parents=True, exist_ok=True)
        cfg = self._config(job)
        digest = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]
        notes: dict[str, Any] = {
            "model": cfg["model"], "epochs": cfg["epochs"], "imgsz": cfg["imgsz"],
            "schedule": cfg.get("budget", job.schedule), "fraction": cfg.get("fraction", 1.0),
            "batch": cfg["batch"], "device": job.device, "config_digest": digest,
            "weights": (f"transferred from {cfg['weights']}" if cfg["weights"]
                        else "random init (model YAML; offline, nothing downloaded)"),
            "licence": "ultralytics is AGPL-3.0"}
        if job.unlabeled_json is not None:
            notes["unlabeled"] = "not used (supervised on the labeled part)"
        done = work / DONE_FILE
        if done.is_file():
            prev = read_json(done)
            if prev.get("config_digest") == digest and Path(prev["best"]).is_file():
                return {**notes, **prev.get("stats", {}), "reused": prev["best"]}
        export = export_yolo(job, work / "yolo", class_agnostic=cfg["class_agnostic"],
                             ignore_regions=cfg["ignore_regions"], limit=cfg["limit"])
        notes["export"] = export.counts
        import_ultralytics(work)
        model_cls = self._model_cls(job)
        last = work / "runs" / "train" / "weights" / "last.pt"
        marker = work / "runs" / "train" / "config_digest.txt"
        same = (last.is_file() and marker.is_file()
                and marker.read_text(encoding="utf-8").strip() == digest)
        state = _checkpoint_state(last) if same else "none"
        resume = state == "resumable"
        if resume:
            model = model_cls(str(last))
            notes["resumed_from"] = str(last)
        elif state == "finished":  # trained, but stopped before writing DONE_FILE
            return self._finish(work, done, digest, notes, export,
                                last.with_name("best.pt") if last.with_name("best.pt").is_file()
                                else last, None)
        else:
            model = model_cls(cfg["model"])
            if cfg["weights"]:
                model.load(cfg["weights"])
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(digest, encoding="utf-8")
        args: dict[str, Any] = {
            "data": str(export.data_yaml), "epochs": cfg["epochs"], "imgsz": cfg["imgsz"],
            "batch": cfg["batch"], "device": device_arg(job.device), "workers": 0,
            "project": str(work / "runs"), "name": "train", "exist_ok": True, "plots": False,
            "seed": job.seed, "verbose": False, "val": False,
            # deterministic kernels cost a torch.compile import (~5 s) per process: on for the
            # paper schedule, off for smoke runs unless asked
            "deterministic": bool(self._opt(job, "deterministic", job.schedule == "paper")),
            "amp": job.device != "cpu" and bool(self._opt(job, "amp", True)),
            "max_det": MAX_DET, "pretrained": False}
        if cfg.get("fraction", 1.0) < 1.0:  # a cpu budget below one epoch
            args["fraction"] = cfg["fraction"]
        if cfg["lr0"] is not None:  # ultralytics ignores lr0 under optimizer=auto
            args.update(lr0=float(cfg["lr0"]), optimizer=str(self._opt(job, "optimizer", "SGD")))
        if resume:
            model.train(resume=True, **{k: args[k] for k in ("device", "workers")})
        else:
            model.train(**args)
        trainer = model.trainer
        best = Path(trainer.best) if Path(trainer.best).is_file() else Path(trainer.last)
        return self._finish(work, done, digest, notes, export, best, _final_loss(trainer))

    @staticmethod
    def _finish(work: Path, done: Path, digest: str, notes: dict[str, Any], export: YoloExport,
                best: Path, final_loss: float | None) -> dict[str, Any]:
        stats = {"train_images": export.counts["train"]["images"],
                 "train_boxes": export.counts["train"]["boxes"], "final_loss": final_loss}
        write_json(done, {"config_digest": digest, "best": str(best), "stats": stats}, indent=1)
        return {**notes, **stats, "checkpoint": str(best)}

    def predict(self, job: Job) -> Sequence[Detections]:
        """Detections for every image of ``job.eval_json`` with the trained checkpoint."""
        work = job.work_dir.resolve()
        done = work / DONE_FILE
        if not done.is_file():
            raise TinysetError(f"{done}: no trained ultralytics model; train first")
        info = read_json(done)
        import_ultralytics(work)
        model = self._model_cls(job)(info["best"])
        coco = read_json(job.eval_json)
        cat_ids = sorted(int(c["id"]) for c in coco.get("categories", []))
        if not cat_ids:
            raise TinysetError(f"{job.eval_json}: no categories")
        if bool(self._opt(job, "class_agnostic", True)):
            to_cat = np.asarray([cat_ids[0]], np.int64)
        else:
            train_cats = read_json(job.train_json).get("categories", [])
            to_cat = np.asarray(sorted(int(c["id"]) for c in train_cats), np.int64)
        split_hint = job.eval_json.stem if job.eval_json.stem in ("train", "val", "test") else None
        sched = self._schedule(job)
        from tinyset_builder.progress import track

        out = []
        for img in track(coco.get("images", []), f"predicting {len(coco.get('images', []))} "
                                                 f"images"):
            path = image_path(job.data_dir, str(img["file_name"]), img.get("split") or split_hint)
            res = model.predict(source=str(path), imgsz=sched["imgsz"],
                                conf=float(self._opt(job, "conf", 0.001)), iou=0.7,
                                max_det=MAX_DET, device=device_arg(job.device), verbose=False)
            out.append(detections_from_result(res[0], int(img["id"]), to_cat))
        return out


def _checkpoint_state(path: Path) -> str:
    """``resumable`` (optimizer state kept, mid-training), ``finished`` (stripped) or ``none``."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # a torn write: start over
        return "none"
    if not isinstance(ckpt, Mapping):
        return "none"
    if ckpt.get("optimizer") is not None and int(ckpt.get("epoch", -1)) >= 0:
        return "resumable"
    return "finished"


def _final_loss(trainer: Any) -> float | None:
    """The trainer's last mean training loss (sum of its components), if it kept one."""
    tloss = getattr(trainer, "tloss", None)
    if tloss is None:
        return None
    parts = tloss.values() if isinstance(tloss, Mapping) else [tloss]  # dict since 8.4
    value = float(sum(float(_to_numpy(v).sum()) for v in parts))
    return round(value, 5) if math.isfinite(value) else value
