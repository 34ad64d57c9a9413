"""MMDetection 3.x adapter: configs generated here, run in the user's mmdet environment.

mmcv 2.x has no wheels on PyPI and does not build against current torch, so the toolkit never
imports mmdet. It **generates** a self-contained MMDetection 3.x config (no ``_base_``, so it
loads with ``mmengine.Config`` here, which is how it is validated) and runs mmdet's own
``tools/train.py CONFIG --work-dir DIR`` and ``tools/test.py CONFIG CHECKPOINT --work-dir DIR``
with the interpreter the user names (``--env-python`` / ``job.env_python``, or option
``python``). The tools are the ones shipped in the mmdet wheel (``mmdet/.mim/tools``) unless
option ``mmdet_tools`` names a source checkout's ``tools/`` folder.

Models (option ``model``): ``retinanet``, ``faster_rcnn``, ``fcos`` (ResNet-50 FPN) and
``soft_teacher`` (mmdet's SoftTeacher around a caffe-style Faster R-CNN, labeled + unlabeled
sources at 1:4, as ``configs/soft_teacher``). Tiny-object adaptations, as in the torchvision
adapter: input 1024² (``size``), FPN from P2 (RetinaNet P2–P7, FCOS P2–P6, Faster R-CNN
P2–P6), anchors from 8 px, RPN keeps 3,000 proposals, up to 3,000 detections per image, low
score threshold (0.01). One class (class-agnostic, the paper's protocol) unless
``class_agnostic = false``. Schedule ``paper`` = the manifest's epochs (1× = 3; SoftTeacher:
the same number of passes over labeled + unlabeled images, as iterations), ``smoke`` = 1 epoch
at ``smoke_size`` (256). Backbone: random init unless option ``backbone_weights`` names a
local ImageNet ResNet-50 checkpoint (mmdet's ``init_cfg`` Pretrained; never downloaded).

Results: the test config's ``CocoMetric`` has ``format_only=True`` and
``outfile_prefix=<work_dir>/results``, so mmdet writes ``results.bbox.json`` (COCO results),
parsed back with :func:`adapters.coco_data.detections_from_coco_results`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from adapters.base import Detections, Job
from adapters.coco_data import detections_from_coco_results, export_coco
from adapters.external import run_logged
from tinyset_builder.errors import TinysetError
from tinyset_builder.io import read_json, write_json

MODELS = ("retinanet", "faster_rcnn", "fcos", "soft_teacher")
PAPER_SIZE = 1024
MAX_DET = 3000
INSTALL = ("pip install -U openmim && mim install mmengine 'mmcv>=2.0.0rc4,<2.2.0' "
           "'mmdet==3.3.0' (mmcv builds from source against torch<=2.1)")

_MEAN_STD = {"pytorch": dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                             bgr_to_rgb=True),
             "caffe": dict(mean=[103.530, 116.280, 123.675], std=[1.0, 1.0, 1.0],
                           bgr_to_rgb=False)}


# ---------------------------------------------------------------------------------------------
# config generation

def _backbone(style: str, weights: str | None) -> dict[str, Any]:
    caffe = style == "caffe"
    return dict(type="ResNet", depth=50, num_stages=4, out_indices=(0, 1, 2, 3), frozen_stages=1,
                norm_cfg=dict(type="BN", requires_grad=not caffe), norm_eval=True, style=style,
                init_cfg=dict(type="Pretrained", checkpoint=weights) if weights else None)


def _preprocessor(style: str) -> dict[str, Any]:
    return dict(type="DetDataPreprocessor", pad_size_divisor=32, **_MEAN_STD[style])


def _nms(iou: float) -> dict[str, Any]:
    return dict(type="nms", iou_threshold=iou)


def faster_rcnn(num_classes: int, weights: str | None, style: str = "pytorch") -> dict[str, Any]:
    """Faster R-CNN R50-FPN (P2–P6, 8 px anchors, 3,000 proposals and detections)."""
    coder = dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0] * 4)
    return dict(
        type="FasterRCNN", data_preprocessor=_preprocessor(style),
        backbone=_backbone(style, weights),
        neck=dict(type="FPN", in_channels=[256, 512, 1024, 2048], out_channels=256, num_outs=5),
        rpn_head=dict(
            type="RPNHead", in_channels=256, feat_channels=256,
            anchor_generator=dict(type="AnchorGenerator", scales=[2], ratios=[0.5, 1.0, 2.0],
                                  strides=[4, 8, 16, 32, 64]),
            bbox_coder=coder,
            loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
            loss_bbox=dict(type="L1Loss", loss_weight=1.0)),
        roi_head=dict(
            type="StandardRoIHead",
            bbox_roi_extractor=dict(type="SingleRoIExtractor",
                                    roi_layer=dict(type="RoIAlign", output_size=7,
                                                   sampling_ratio=0),
                                    out_channels=256, featmap_strides=[4, 8, 16, 32]),
            bbox_head=dict(
                type="Shared2FCBBoxHead", in_channels=256, fc_out_channels=1024, roi_feat_size=7,
                num_classes=num_classes, reg_class_agnostic=False,
                bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4,
                                target_stds=[0.1, 0.1, 0.2, 0.2]),
                loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
                loss_bbox=dict(type="L1Loss", loss_weight=1.0))),
        train_cfg=dict(
            rpn=dict(assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.7, neg_iou_thr=0.3,
                                   min_pos_iou=0.3, match_low_quality=True, ignore_iof_thr=-1),
                     sampler=dict(type="RandomSampler", num=256, pos_fraction=0.5,
                                  neg_pos_ub=-1, add_gt_as_proposals=False),
                     allowed_border=-1, pos_weight=-1, debug=False),
            rpn_proposal=dict(nms_pre=3000, max_per_img=3000, nms=_nms(0.7), min_bbox_size=0),
            rcnn=dict(assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.5,
                                    min_pos_iou=0.5, match_low_quality=False, ignore_iof_thr=-1),
                      sampler=dict(type="RandomSampler", num=512, pos_fraction=0.25,
                                   neg_pos_ub=-1, add_gt_as_proposals=True),
                      pos_weight=-1, debug=False)),
        test_cfg=dict(
            rpn=dict(nms_pre=3000, max_per_img=3000, nms=_nms(0.7), min_bbox_size=0),
            rcnn=dict(score_thr=0.01, nms=_nms(0.5), max_per_img=MAX_DET)))


def retinanet(num_classes: int, weights: str | None) -> dict[str, Any]:
    """RetinaNet R50-FPN with a P2 level (P2–P7, anchors 8–256 px)."""
    return dict(
        type="RetinaNet", data_preprocessor=_preprocessor("pytorch"),
        backbone=_backbone("pytorch", weights),
        neck=dict(type="FPN", in_channels=[256, 512, 1024, 2048], out_channels=256,
                  start_level=0, add_extra_convs="on_input", num_outs=6),
        bbox_head=dict(
            type="RetinaHead", num_classes=num_classes, in_channels=256, stacked_convs=4,
            feat_channels=256,
            anchor_generator=dict(type="AnchorGenerator", octave_base_scale=2,
                                  scales_per_octave=3, ratios=[0.5, 1.0, 2.0],
                                  strides=[4, 8, 16, 32, 64, 128]),
            bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4,
                            target_stds=[1.0] * 4),
            loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25,
                          loss_weight=1.0),
            loss_bbox=dict(type="L1Loss", loss_weight=1.0)),
        train_cfg=dict(assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.4,
                                     min_pos_iou=0, ignore_iof_thr=-1),
                       sampler=dict(type="PseudoSampler"), allowed_border=-1, pos_weight=-1,
                       debug=False),
        test_cfg=dict(nms_pre=MAX_DET, min_bbox_size=0, score_thr=0.01, nms=_nms(0.5),
                      max_per_img=MAX_DET))


def fcos(num_classes: int, weights: str | None) -> dict[str, Any]:
    """FCOS R50-FPN on P2–P6 (strides 4–64), size ranges starting at 16 px."""
    return dict(
        type="FCOS", data_preprocessor=_preprocessor("pytorch"),
        backbone=_backbone("pytorch", weights),
        neck=dict(type="FPN", in_channels=[256, 512, 1024, 2048], out_channels=256,
                  start_level=0, add_extra_convs="on_output", num_outs=5,
                  relu_before_extra_convs=True),
        bbox_head=dict(
            type="FCOSHead", num_classes=num_classes, in_channels=256, stacked_convs=4,
            feat_channels=256, strides=[4, 8, 16, 32, 64],
            regress_ranges=((-1, 16), (16, 32), (32, 64), (64, 128), (128, 1e8)),
            norm_on_bbox=True, centerness_on_reg=True, center_sampling=True, conv_bias=True,
            loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25,
                          loss_weight=1.0),
            loss_bbox=dict(type="GIoULoss", loss_weight=1.0),
            loss_centerness=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0)),
        test_cfg=dict(nms_pre=MAX_DET, min_bbox_size=0, score_thr=0.01, nms=_nms(0.5),
                      max_per_img=MAX_DET))


def _dataset(images_root: str, ann: str, classes: Sequence[str], pipeline: list[Any], *,
             test: bool = False, filter_empty: bool = True) -> dict[str, Any]:
    ds: dict[str, Any] = dict(type="CocoDataset", data_root=images_root, ann_file=ann,
              data_prefix=dict(img=""), metainfo=dict(classes=tuple(classes)),
              pipeline=pipeline, backend_args=None)
    if test:
        ds["test_mode"] = True
    else:
        ds["filter_cfg"] = dict(filter_empty_gt=filter_empty, min_size=1)
    return ds


def _semi_pipelines(size: int) -> tuple[list[Any], list[Any]]:
    """SoftTeacher's labeled and unlabeled pipelines (mmdet's semi_coco_detection, at size²)."""
    scale = (size, size)
    color = [[dict(type=t)] for t in ("ColorTransform", "AutoContrast", "Equalize", "Sharpness",
                                      "Posterize", "Solarize", "Color", "Contrast",
                                      "Brightness")]
    geometric = [[dict(type=t)] for t in ("Rotate", "ShearX", "ShearY", "TranslateX",
                                          "TranslateY")]
    branches = ["sup", "unsup_teacher", "unsup_student"]
    meta = ("img_id", "img_path", "ori_shape", "img_shape", "scale_factor", "flip",
            "flip_direction", "homography_matrix")
    sup = [dict(type="LoadImageFromFile", backend_args=None),
           dict(type="LoadAnnotations", with_bbox=True),
           dict(type="RandomResize", scale=scale, keep_ratio=True),
           dict(type="RandomFlip", prob=0.5),
           dict(type="RandAugment", aug_space=color, aug_num=1),
           dict(type="FilterAnnotations", min_gt_bbox_wh=(1e-2, 1e-2)),
           dict(type="MultiBranch", branch_field=branches, sup=dict(type="PackDetInputs"))]
    weak = [dict(type="RandomResize", scale=scale, keep_ratio=True),
            dict(type="RandomFlip", prob=0.5), dict(type="PackDetInputs", meta_keys=meta)]
    strong = [dict(type="RandomResize", scale=scale, keep_ratio=True),
              dict(type="RandomFlip", prob=0.5),
              dict(type="RandomOrder", transforms=[
                  dict(type="RandAugment", aug_space=color, aug_num=1),
                  dict(type="RandAugment", aug_space=geometric, aug_num=1)]),
              dict(type="RandomErasing", n_patches=(1, 5), ratio=(0, 0.2)),
              dict(type="FilterAnnotations", min_gt_bbox_wh=(1e-2, 1e-2)),
              dict(type="PackDetInputs", meta_keys=meta)]
    unsup = [dict(type="LoadImageFromFile", backend_args=None),
             dict(type="LoadEmptyAnnotations"),
             dict(type="MultiBranch", branch_field=branches, unsup_teacher=weak,
                  unsup_student=strong)]
    return sup, unsup


def build_config(model: str, *, classes: Sequence[str], images_root: str, train_ann: str,
                 eval_ann: str, work_dir: str, epochs: int, size: int, seed: int,
                 batch: int = 2, unlabeled_ann: str | None = None,
                 n_train_images: int = 0, weights: str | None = None) -> dict[str, Any]:
    """A complete MMDetection 3.x config (plain dict) for ``model`` on the exported files.

    Raises:
        TinysetError: unknown model, or ``soft_teacher`` without unlabeled images.
    """
    if model not in MODELS:
        raise TinysetError(f"mmdet adapter: unknown model {model!r} ({', '.join(MODELS)})")
    k = len(classes)
    test_pipeline = [dict(type="LoadImageFromFile", backend_args=None),
                     dict(type="Resize", scale=(size, size), keep_ratio=True),
                     dict(type="LoadAnnotations", with_bbox=True),
                     dict(type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape",
                                                           "img_shape", "scale_factor"))]
    eval_loader = dict(batch_size=1, num_workers=2, persistent_workers=True, drop_last=False,
                       sampler=dict(type="DefaultSampler", shuffle=False),
                       dataset=_dataset(images_root, eval_ann, classes, test_pipeline,
                                        test=True))
    cfg: dict[str, Any] = dict(
        default_scope="mmdet",
        env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend="nccl"),
                     mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0)),
        vis_backends=[dict(type="LocalVisBackend")],
        visualizer=dict(type="DetLocalVisualizer", vis_backends=[dict(type="LocalVisBackend")],
                        name="visualizer"),
        log_level="INFO", load_from=None, resume=False, work_dir=work_dir,
        randomness=dict(seed=seed, deterministic=False),
        backend_args=None,
        val_dataloader=eval_loader, test_dataloader=eval_loader,
        val_evaluator=dict(type="CocoMetric", ann_file=eval_ann, metric="bbox",
                           format_only=False, proposal_nums=(100, 1500, MAX_DET)),
        test_evaluator=dict(type="CocoMetric", ann_file=eval_ann, metric="bbox",
                            format_only=True, outfile_prefix=f"{work_dir}/results"),
        val_cfg=dict(type="ValLoop"), test_cfg=dict(type="TestLoop"),
        auto_scale_lr=dict(enable=False, base_batch_size=16))
    if model == "soft_teacher":
        if unlabeled_ann is None:
            raise TinysetError("soft_teacher needs unlabeled images (a semi setting)")
        detector = faster_rcnn(k, weights, style="caffe")
        sup, unsup = _semi_pipelines(size)
        batch_st = 5  # 1 labeled + 4 unlabeled per batch, as mmdet's SoftTeacher configs
        iters = max(1, math.ceil(epochs * n_train_images / batch_st))
        cfg.update(
            model=dict(type="SoftTeacher", detector=detector,
                       data_preprocessor=dict(type="MultiBranchDataPreprocessor",
                                              data_preprocessor=detector["data_preprocessor"]),
                       semi_train_cfg=dict(freeze_teacher=True, sup_weight=1.0,
                                           unsup_weight=4.0,
                                           pseudo_label_initial_score_thr=0.5,
                                           rpn_pseudo_thr=0.9, cls_pseudo_thr=0.9,
                                           reg_pseudo_thr=0.02, jitter_times=10,
                                           jitter_scale=0.06, min_pseudo_bbox_wh=(1e-2, 1e-2)),
                       semi_test_cfg=dict(predict_on="teacher")),
            train_dataloader=dict(
                batch_size=batch_st, num_workers=2, persistent_workers=True,
                sampler=dict(type="GroupMultiSourceSampler", batch_size=batch_st,
                             source_ratio=[1, 4]),
                dataset=dict(type="ConcatDataset", datasets=[
                    _dataset(images_root, train_ann, classes, sup),
                    _dataset(images_root, unlabeled_ann, classes, unsup,
                             filter_empty=False)])),
            train_cfg=dict(type="IterBasedTrainLoop", max_iters=iters, val_interval=iters),
            val_cfg=dict(type="TeacherStudentValLoop"),
            custom_hooks=[dict(type="MeanTeacherHook")],
            param_scheduler=[
                dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0,
                     end=min(500, iters)),
                dict(type="MultiStepLR", begin=0, end=iters, by_epoch=False,
                     milestones=[max(1, iters * 2 // 3)], gamma=0.1)],
            optim_wrapper=dict(type="OptimWrapper",
                               optimizer=dict(type="SGD", lr=0.01, momentum=0.9,
                                              weight_decay=0.0001)),
            default_hooks=_hooks(by_epoch=False, interval=iters),
            log_processor=dict(type="LogProcessor", window_size=50, by_epoch=False))
        return cfg
    net = {"retinanet": retinanet, "faster_rcnn": faster_rcnn, "fcos": fcos}[model](k, weights)
    lr = {"faster_rcnn": 0.02, "retinanet": 0.01, "fcos": 0.01}[model] * batch / 16
    train_pipeline = [dict(type="LoadImageFromFile", backend_args=None),
                      dict(type="LoadAnnotations", with_bbox=True),
                      dict(type="Resize", scale=(size, size), keep_ratio=True),
                      dict(type="RandomFlip", prob=0.5), dict(type="PackDetInputs")]
    milestones = sorted({max(1, round(epochs * 2 / 3)), max(1, round(epochs * 8 / 9))})
    cfg.update(
        model=net,
        train_dataloader=dict(batch_size=batch, num_workers=2, persistent_workers=True,
                              sampler=dict(type="DefaultSampler", shuffle=True),
                              batch_sampler=dict(type="AspectRatioBatchSampler"),
                              dataset=_dataset(images_root, train_ann, classes,
                                               train_pipeline)),
        train_cfg=dict(type="EpochBasedTrainLoop", max_epochs=epochs, val_interval=epochs),
        param_scheduler=[
            dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=500),
            dict(type="MultiStepLR", begin=0, end=epochs, by_epoch=True, milestones=milestones,
                 gamma=0.1)],
        optim_wrapper=dict(type="OptimWrapper",
                           optimizer=dict(type="SGD", lr=lr, momentum=0.9, weight_decay=0.0001),
                           clip_grad=dict(max_norm=35, norm_type=2)),
        default_hooks=_hooks(by_epoch=True, interval=1),
        log_processor=dict(type="LogProcessor", window_size=50, by_epoch=True))
    return cfg


def _hooks(*, by_epoch: bool, interval: int) -> dict[str, Any]:
    return dict(timer=dict(type="IterTimerHook"), logger=dict(type="LoggerHook", interval=50),
                param_scheduler=dict(type="ParamSchedulerHook"),
                checkpoint=dict(type="CheckpointHook", by_epoch=by_epoch, interval=interval),
                sampler_seed=dict(type="DistSamplerSeedHook"),
                visualization=dict(type="DetVisualizationHook"))


def write_config(cfg: Mapping[str, Any], path: Path) -> Path:
    """Dump ``cfg`` as an mmengine Python config and load it back (the validation).

    Raises:
        TinysetError: mmengine missing, or the written file does not load back equal.
    """
    from tinyset_builder._imports import require

    require("mmengine", extra="mmdet")
    from mmengine import Config

    path.parent.mkdir(parents=True, exist_ok=True)
    Config(dict(cfg)).dump(str(path))
    loaded = Config.fromfile(str(path))
    if loaded.model.type != cfg["model"]["type"] or \
            loaded.train_cfg.type != cfg["train_cfg"]["type"]:
        raise TinysetError(f"{path}: generated config does not load back as written")
    return path


@functools.lru_cache(maxsize=16)
def probe_env(python: str) -> tuple[str | None, str | None, str]:
    """``(mmdet version, mmdet package dir, error)`` of an interpreter (cached per path)."""
    code = "import os, mmdet; print(mmdet.__version__); print(os.path.dirname(mmdet.__file__))"
    try:
        proc = subprocess.run([python, "-c", code], capture_output=True, text=True,
                              timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, None, f"{type(e).__name__}: {e}"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return None, None, last
    lines = proc.stdout.strip().splitlines()
    return lines[0], lines[1], ""


# ---------------------------------------------------------------------------------------------
# the adapter

class MMDetAdapter:
    """MMDetection 3.x by subprocess in the user's environment (see the module docstring)."""

    @staticmethod
    def _opt(job: Job, key: str, default: Any = None) -> Any:
        return job.extra.get(key, job.options.get(key, default))

    def _python(self, job: Job) -> str | None:
        """Option ``python``, else ``--env-python``, else ``TINYSET_MMDET_PYTHON``."""
        return (self._opt(job, "python") or job.env_python
                or os.environ.get("TINYSET_MMDET_PYTHON"))

    def _tools(self, job: Job, mmdet_dir: str) -> Path:
        given = self._opt(job, "mmdet_tools")
        return Path(given) if given else Path(mmdet_dir) / ".mim" / "tools"

    def unavailable(self, job: Job) -> str | None:
        """mmengine here, an interpreter with mmdet 3.x and its tools, a weights file."""
        from tinyset_builder._imports import is_available

        model = self._opt(job, "model")
        if model not in MODELS:
            return f"mmdet adapter has no model {model!r} ({', '.join(MODELS)})"
        if not is_available("mmengine"):
            return "mmengine not installed here (configs are built with it): " \
                   "pip install 'tinyset[mmdet]'"
        python = self._python(job)
        if python is None:
            return ("MMDetection 3.x runs in your own environment: name its interpreter with "
                    f"--env-python or TINYSET_MMDET_PYTHON (mmcv has no PyPI wheels); set it up "
                    f"with {INSTALL}")
        if shutil.which(python) is None:
            return f"--env-python {python}: interpreter not found or not executable"
        version, mmdet_dir, err = probe_env(python)
        if version is None or mmdet_dir is None:
            return f"{python} cannot import mmdet ({err}); install it there: {INSTALL}"
        if not version.startswith("3."):
            return f"{python} has mmdet {version}; this adapter needs mmdet 3.x: {INSTALL}"
        tools = self._tools(job, mmdet_dir)
        if not (tools / "train.py").is_file() or not (tools / "test.py").is_file():
            return (f"mmdet tools not found in {tools}; point option mmdet_tools at a "
                    f"mmdetection checkout's tools/ folder")
        weights = self._opt(job, "backbone_weights")
        if weights and not Path(weights).is_file():
            return f"backbone weights {weights} not found (a local ImageNet ResNet-50 checkpoint)"
        if model == "soft_teacher" and job.unlabeled_json is None:
            return "Soft Teacher needs a semi setting (labeled + unlabeled images)"
        return None

    def _prepare(self, job: Job) -> dict[str, Any]:
        work = job.work_dir.resolve()
        agnostic = bool(self._opt(job, "class_agnostic", True))
        train = export_coco(job.train_json, job.data_dir, work / "data" / "train.json",
                            class_agnostic=agnostic)
        test = export_coco(job.eval_json, job.data_dir, work / "data" / "eval.json",
                           class_agnostic=agnostic)
        unlabeled = None
        if job.unlabeled_json is not None:
            unlabeled = export_coco(job.unlabeled_json, job.data_dir,
                                    work / "data" / "unlabeled.json", class_agnostic=agnostic)
        if job.schedule == "smoke":
            epochs, size = int(self._opt(job, "smoke_epochs", 1)), int(self._opt(job,
                                                                                 "smoke_size", 256))
        else:
            epochs = max(1, math.ceil(float(job.method.get("epochs", 3.0))))
            size = int(self._opt(job, "size", PAPER_SIZE))
        n_images = train.counts["images"] + (unlabeled.counts["images"] if unlabeled else 0)
        cfg = build_config(str(self._opt(job, "model")), classes=train.classes,
                           images_root=str((job.data_dir / "images").resolve()) + "/",
                           train_ann=str(train.path), eval_ann=str(test.path),
                           work_dir=str(work), epochs=epochs, size=size, seed=job.seed,
                           batch=int(self._opt(job, "batch", 2)),
                           unlabeled_ann=str(unlabeled.path) if unlabeled else None,
                           n_train_images=n_images, weights=self._opt(job, "backbone_weights"))
        path = write_config(cfg, work / "tinyset_mmdet_config.py")
        python = self._python(job)
        if python is None:
            raise TinysetError(self.unavailable(job) or "mmdet adapter: no --env-python")
        version, mmdet_dir, err = probe_env(python)
        if mmdet_dir is None:
            raise TinysetError(f"{python} cannot import mmdet ({err})")
        return {"work": work, "config": path, "train": train, "python": python,
                "tools": self._tools(job, mmdet_dir), "mmdet": version, "epochs": epochs,
                "size": size}

    def train(self, job: Job) -> dict[str, Any]:
        """Generate and validate the config, run mmdet's tools/train.py (skipped when done)."""
        prep = self._prepare(job)
        work = prep["work"]
        cmd = [prep["python"], str(prep["tools"] / "train.py"), str(prep["config"]),
               "--work-dir", str(work)]
        digest = hashlib.sha256(json.dumps(
            {"cmd": cmd, "config": prep["config"].read_text(),
             "train": hashlib.sha256(prep["train"].path.read_bytes()).hexdigest()},
            sort_keys=True).encode()).hexdigest()[:16]
        weights = self._opt(job, "backbone_weights")
        notes: dict[str, Any] = {
            "model": self._opt(job, "model"), "mmdet": prep["mmdet"], "config": str(prep["config"]),
            "epochs": prep["epochs"], "input_size": prep["size"], "command": " ".join(cmd),
            "export": prep["train"].counts, "config_digest": digest,
            "weights": (f"ImageNet ResNet-50 from {weights}" if weights
                        else "random init (no local backbone weights given; offline)")}
        done = work / "mmdet_done.json"
        if done.is_file():
            prev = read_json(done)
            if prev.get("config_digest") == digest and Path(prev["checkpoint"]).is_file():
                return {**notes, "reused": prev["checkpoint"]}
        run_logged(cmd, work, work / "train.log")
        last = work / "last_checkpoint"
        if not last.is_file():
            raise TinysetError(f"mmdet training finished without {last}")
        ckpt = last.read_text(encoding="utf-8").strip()
        if not Path(ckpt).is_file():
            raise TinysetError(f"{last} names {ckpt}, which does not exist")
        write_json(done, {"config_digest": digest, "checkpoint": ckpt}, indent=1)
        return {**notes, "checkpoint": ckpt}

    def predict(self, job: Job) -> Sequence[Detections]:
        """Run mmdet's tools/test.py (format-only CocoMetric) and parse results.bbox.json."""
        prep = self._prepare(job)
        work = prep["work"]
        done = work / "mmdet_done.json"
        if not done.is_file():
            raise TinysetError(f"{done}: no trained mmdet model; train first")
        results = work / "results.bbox.json"
        results.unlink(missing_ok=True)
        run_logged([prep["python"], str(prep["tools"] / "test.py"), str(prep["config"]),
                    read_json(done)["checkpoint"], "--work-dir", str(work)], work,
                   work / "test.log")
        if not results.is_file():
            raise TinysetError(f"mmdet test wrote no {results}")
        return detections_from_coco_results(results, job.eval_json, prep["train"].to_dataset)
