"""Shared checks of the stand-in mmdet tools: read the parts a real mmdet run would use."""

from __future__ import annotations

import os

from mmengine import Config

MODELS = {"FasterRCNN", "RetinaNet", "FCOS", "SoftTeacher"}


def load(path: str) -> Config:
    cfg = Config.fromfile(path)
    if cfg.get("default_scope") != "mmdet":
        raise SystemExit("default_scope must be mmdet")
    if cfg.model.type not in MODELS:
        raise SystemExit(f"unknown model type {cfg.model.type}")
    net = cfg.model.detector if cfg.model.type == "SoftTeacher" else cfg.model
    head = net.roi_head.bbox_head if "roi_head" in net else net.bbox_head
    classes = cfg.test_dataloader.dataset.metainfo.classes
    if head.num_classes != len(classes):
        raise SystemExit(f"num_classes {head.num_classes} != {len(classes)} classes")
    return cfg


def image_prefix(ds) -> str:
    return os.path.join(ds.data_root, ds.data_prefix.get("img", ""))


def max_per_img(cfg: Config) -> int:
    net = cfg.model.detector if cfg.model.type == "SoftTeacher" else cfg.model
    test_cfg = net.test_cfg
    return test_cfg.rcnn.max_per_img if "rcnn" in test_cfg else test_cfg.max_per_img
