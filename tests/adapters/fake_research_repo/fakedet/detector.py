"""A trivial but honest detector: local-contrast blobs, threshold fitted on training boxes.

``fit`` measures, on the training images, the local contrast inside ground-truth boxes and in
the background and puts the threshold between them; ``detect`` thresholds the contrast map of a
new image, labels connected blobs and returns one box per blob scored by its mean contrast.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage


def contrast(path: Path, window: int) -> np.ndarray:
    gray = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
    return np.abs(gray - ndimage.uniform_filter(gray, size=window))


def load_coco(ann_file: str) -> tuple[list[dict], dict[int, list[list[float]]], list[int]]:
    coco = json.loads(Path(ann_file).read_text())
    boxes: dict[int, list[list[float]]] = {}
    for a in coco["annotations"]:
        if not a.get("iscrowd", 0):
            boxes.setdefault(a["image_id"], []).append(a["bbox"])
    return coco["images"], boxes, sorted(c["id"] for c in coco["categories"])


def fit(ann_file: str, img_prefix: str, epochs: int) -> dict:
    images, boxes, _ = load_coco(ann_file)
    sizes = [max(b[2], b[3]) for bs in boxes.values() for b in bs]
    if not sizes:
        raise SystemExit(f"{ann_file}: no training boxes")
    window = int(max(5, 3 * np.median(sizes)) // 2 * 2 + 1)
    inside, outside = [], []
    for _ in range(epochs):  # every epoch refines the same statistics (deterministic)
        for img in images:
            c = contrast(Path(img_prefix) / img["file_name"], window)
            mask = np.zeros(c.shape, bool)
            for x, y, w, h in boxes.get(img["id"], []):
                mask[int(y):int(np.ceil(y + h)), int(x):int(np.ceil(x + w))] = True
            inside.append(float(c[mask].mean()) if mask.any() else 0.0)
            outside.append(float(np.percentile(c[~mask], 90)))
    return {"window": window, "threshold": (np.mean(inside) + np.mean(outside)) / 2,
            "min_area": max(2.0, 0.25 * float(np.min(sizes)) ** 2), "epochs": epochs}


def detect(path: Path, model: dict, max_det: int) -> list[tuple[list[float], float]]:
    c = contrast(path, model["window"])
    labels, _ = ndimage.label(c > model["threshold"])
    out = []
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        ys, xs = sl
        area = (ys.stop - ys.start) * (xs.stop - xs.start)
        if area < model["min_area"]:
            continue
        score = float(c[sl][labels[sl] == i].mean())
        out.append(([float(xs.start), float(ys.start), float(xs.stop - xs.start),
                     float(ys.stop - ys.start)], score))
    out.sort(key=lambda d: -d[1])
    top = out[0][1] if out else 1.0
    return [(b, s / top) for b, s in out[:max_det]]
