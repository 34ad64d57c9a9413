"""Zero-shot adapter: SAM3 and Rex-Omni through their own packages and local weights (no training).

Option ``model``: ``sam3`` (facebookresearch/sam3, SAM License) or ``rex-omni``
(IDEA-Research/Rex-Omni, IDEA License 1.0 + Qwen research licence). Option ``prompt``:

* ``text`` (Table I rows 38–39): every image is prompted with the category names of its own
  source (``"visdrone/car"`` -> ``"car"``); detections carry the prompted category id;
* ``box`` (Table II one-box rows, setting ``p2sod-1``): every prompt set of the job's P2SOD
  prompt file is answered with one exemplar box — the box of the prompted instance
  (``ann_ids[0]`` in the evaluated split), which *is* the input of a one-box visual prompt.

Weights are never downloaded: option ``checkpoint`` / env ``TINYSET_SAM3_CHECKPOINT`` (the
``sam3.pt`` file of the gated ``facebook/sam3`` Hub repo) and option ``model_path`` / env
``TINYSET_REX_OMNI_PATH`` (a local snapshot of ``IDEA-Research/Rex-Omni``). ``unavailable``
names what is missing and how to get it. Other options: ``threshold`` (SAM3's confidence
threshold, default 0.05 so AP sees the low-score tail), ``backend`` (Rex-Omni:
``transformers`` or ``vllm``).

Scores: SAM3 returns one per box. Rex-Omni is a language model and returns boxes without
confidences; they get descending scores in output order (1, 1 − 1/n, ...), stated in the notes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from adapters.base import Detections, Job
from adapters.torchvision_adapter import image_path
from tinyset_builder._imports import is_available
from tinyset_builder.errors import TinysetError
from tinyset_builder.io import read_json

MODELS = {
    "sam3": {"package": "sam3", "weights_option": "checkpoint",
             "weights_env": "TINYSET_SAM3_CHECKPOINT",
             "install": "pip install git+https://github.com/facebookresearch/sam3 "
                        "(Python >= 3.12, torch >= 2.7)",
             "weights": "request access to facebook/sam3 on the Hugging Face Hub and download "
                        "sam3.pt (huggingface-cli download facebook/sam3 sam3.pt)",
             "min_python": (3, 12)},
    "rex-omni": {"package": "rex_omni", "weights_option": "model_path",
                 "weights_env": "TINYSET_REX_OMNI_PATH",
                 "install": "pip install git+https://github.com/IDEA-Research/Rex-Omni "
                            "(torch 2.7, transformers or vllm)",
                 "weights": "download IDEA-Research/Rex-Omni from the Hugging Face Hub "
                            "(huggingface-cli download IDEA-Research/Rex-Omni --local-dir DIR)",
                 "min_python": (3, 10)},
}
PROMPTS = ("text", "box")


# ---------------------------------------------------------------------------------------------
# parsing (duck-typed, testable without the packages)

def _to_numpy(x: Any) -> np.ndarray:
    for step in ("detach", "cpu"):
        if hasattr(x, step):
            x = getattr(x, step)()
    if hasattr(x, "float") and hasattr(x, "numpy"):  # bfloat16 tensors have no numpy()
        x = x.float().numpy()
    elif hasattr(x, "numpy"):
        x = x.numpy()
    return np.asarray(x)


def sam3_boxes(output: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(xyxy, scores)`` of a SAM3 processor output (``{"boxes", "scores", "masks"}``).

    SAM3's ``Sam3Processor`` returns absolute ``[x0, y0, x1, y1]`` boxes in the image's pixels.
    """
    if "boxes" not in output or "scores" not in output:
        raise TinysetError(f"SAM3 output without boxes/scores (keys: {sorted(output)})")
    boxes = _to_numpy(output["boxes"]).astype(np.float32).reshape(-1, 4)
    scores = _to_numpy(output["scores"]).astype(np.float32).reshape(-1)
    if len(boxes) != len(scores):
        raise TinysetError(f"SAM3 output: {len(boxes)} boxes but {len(scores)} scores")
    return boxes, scores


def rex_boxes(result: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Per phrase, the ``(N, 4)`` xyxy boxes of one Rex-Omni result, in output order.

    A result is ``{"success": bool, "extracted_predictions": {phrase: [{"type": "box",
    "coords": [x0, y0, x1, y1]}, ...]}}``; points and other types are skipped.
    """
    if not result.get("success", True):
        return {}
    out = {}
    for phrase, items in (result.get("extracted_predictions") or {}).items():
        boxes = [[float(v) for v in it["coords"]] for it in items
                 if it.get("type") == "box" and len(it.get("coords", ())) == 4]
        out[str(phrase)] = np.asarray(boxes, np.float32).reshape(-1, 4)
    return out


def order_scores(n: int) -> np.ndarray:
    """Descending pseudo-confidences for ``n`` boxes given without scores: 1, 1 − 1/n, ..."""
    return (1.0 - np.arange(n, dtype=np.float32) / max(n, 1)).astype(np.float32)


def merge(image_id: int, parts: Sequence[tuple[np.ndarray, np.ndarray, int]]) -> Detections:
    """One :class:`Detections` from ``(xyxy, scores, category_id)`` parts, sorted by score."""
    parts = [p for p in parts if len(p[1])]
    if not parts:
        return Detections.empty(image_id)
    xyxy = np.concatenate([p[0] for p in parts]).astype(np.float32)
    scores = np.concatenate([p[1] for p in parts]).astype(np.float32)
    labels = np.concatenate([np.full(len(p[1]), p[2], np.int64) for p in parts])
    order = np.argsort(-scores, kind="stable")
    return Detections(image_id, xyxy[order], scores[order], labels[order])


def phrase(category_name: str) -> str:
    """The text prompt of a TinySet category: ``"visdrone/car"`` -> ``"car"``."""
    return category_name.rsplit("/", 1)[-1].replace("_", " ").strip()


def normalized_cxcywh(xywh: Sequence[float], width: float, height: float) -> list[float]:
    """A COCO ``[x, y, w, h]`` box as SAM3's geometric prompt: normalised centre and size."""
    x, y, w, h = (float(v) for v in xywh)
    return [(x + w / 2) / width, (y + h / 2) / height, w / width, h / height]


# ---------------------------------------------------------------------------------------------
# the adapter

class ZeroShotAdapter:
    """SAM3 / Rex-Omni, predict only (see the module docstring)."""

    @staticmethod
    def _opt(job: Job, key: str, default: Any = None) -> Any:
        return job.extra.get(key, job.options.get(key, default))

    def _spec(self, job: Job) -> tuple[str, dict[str, Any]]:
        model = str(self._opt(job, "model", ""))
        if model not in MODELS:
            raise TinysetError(f"zeroshot adapter: unknown model {model!r} "
                               f"({', '.join(MODELS)})")
        return model, MODELS[model]

    def _weights(self, job: Job, spec: Mapping[str, Any]) -> Path | None:
        w = self._opt(job, spec["weights_option"]) or os.environ.get(spec["weights_env"])
        return Path(w).expanduser() if w else None

    def unavailable(self, job: Job) -> str | None:
        """The package, the local weights, the Python version or the prompt file missing."""
        try:
            model, spec = self._spec(job)
        except TinysetError as e:
            return str(e)
        prompt = self._opt(job, "prompt", "text")
        if prompt not in PROMPTS:
            return f"{model}: prompt must be text or box, not {prompt!r}"
        missing = []
        if sys.version_info < spec["min_python"]:
            need = ".".join(map(str, spec["min_python"]))
            missing.append(f"Python >= {need} for package {spec['package']} (this is "
                           f"{sys.version_info.major}.{sys.version_info.minor}: run the toolkit "
                           f"from a Python {need} environment with {spec['install']})")
        elif not is_available(spec["package"]):
            missing.append(f"package {spec['package']} ({spec['install']})")
        weights = self._weights(job, spec)
        if weights is None:
            missing.append(f"weights: {spec['weights']}, then pass option "
                           f"{spec['weights_option']} or set {spec['weights_env']}")
        elif not weights.exists():
            missing.append(f"weights {weights} not found ({spec['weights']})")
        if prompt == "box" and job.prompts_json is None:
            missing.append("a P2SOD prompt file (box prompts run on the p2sod-1 setting)")
        if missing:
            return f"{model} needs " + "; ".join(missing)
        return None

    def train(self, job: Job) -> dict[str, Any]:
        """Nothing to train: return what will be used."""
        model, spec = self._spec(job)
        notes = {"training": "none (zero-shot)", "model": model,
                 "prompt": self._opt(job, "prompt", "text"),
                 "weights": str(self._weights(job, spec))}
        if model == "rex-omni":
            notes["scores"] = "Rex-Omni gives no confidences: descending by output order"
        return notes

    def predict(self, job: Job) -> Sequence[Detections]:
        """Prompt every image (text) or every prompt set (box) and collect the boxes."""
        from PIL import Image

        from tinyset_builder.progress import track

        model, spec = self._spec(job)
        prompt = self._opt(job, "prompt", "text")
        coco = read_json(job.eval_json)
        cats = {int(c["id"]): str(c["name"]) for c in coco.get("categories", [])}
        images = coco.get("images", [])
        split_hint = job.eval_json.stem if job.eval_json.stem in ("train", "val", "test") else None
        queries: dict[int, list[tuple[int, Any]]] = {int(i["id"]): [] for i in images}
        if prompt == "text":
            for img in images:
                source = str(img.get("source", ""))
                own = [cid for cid, name in cats.items() if name.startswith(f"{source}/")]
                for cid in own or list(cats):
                    queries[int(img["id"])].append((cid, phrase(cats[cid])))
        else:
            if job.prompts_json is None:
                raise TinysetError("box prompts need the job's P2SOD prompt file")
            anns = {int(a["id"]): a for a in coco.get("annotations", [])}
            for p in read_json(job.prompts_json).get("prompts", []):
                if not p.get("ann_ids"):
                    raise TinysetError(f"{job.prompts_json}: prompt set of image "
                                       f"{p.get('image_id')} has no ann_ids (one-box prompts "
                                       f"need the prompted instance)")
                ann = anns.get(int(p["ann_ids"][0]))
                if ann is None:
                    raise TinysetError(f"{job.prompts_json}: annotation {p['ann_ids'][0]} not in "
                                       f"{job.eval_json}")
                queries.setdefault(int(p["image_id"]), []).append((int(p["category_id"]),
                                                                   ann["bbox"]))
        runner = self._sam3(job, spec) if model == "sam3" else self._rex(job, spec)
        out = []
        for img in track(images, f"{model} ({prompt} prompts) on {len(images)} images"):
            path = image_path(job.data_dir, str(img["file_name"]), img.get("split") or split_hint)
            pil = Image.open(path).convert("RGB")
            parts = runner(pil, queries[int(img["id"])], prompt)
            out.append(merge(int(img["id"]), parts))
        return out

    # -- the two models --------------------------------------------------------------------
    def _sam3(self, job: Job, spec: Mapping[str, Any]) -> Any:
        from sam3.model.sam3_image_processor import Sam3Processor
        from sam3.model_builder import build_sam3_image_model

        net = build_sam3_image_model(checkpoint_path=str(self._weights(job, spec)),
                                     load_from_HF=False, device=job.device)
        processor = Sam3Processor(net, confidence_threshold=float(self._opt(job, "threshold",
                                                                            0.05)))

        def run(pil: Any, queries: Sequence[tuple[int, Any]], prompt: str) -> list[Any]:
            state = processor.set_image(pil)
            parts = []
            for cid, query in queries:
                processor.reset_all_prompts(state)
                if prompt == "text":
                    output = processor.set_text_prompt(state=state, prompt=query)
                else:
                    output = processor.add_geometric_prompt(
                        box=normalized_cxcywh(query, pil.width, pil.height), label=True,
                        state=state)
                boxes, scores = sam3_boxes(output)
                parts.append((boxes, scores, cid))
            return parts

        return run

    def _rex(self, job: Job, spec: Mapping[str, Any]) -> Any:
        from rex_omni import RexOmniWrapper

        wrapper = RexOmniWrapper(model_path=str(self._weights(job, spec)),
                                 backend=str(self._opt(job, "backend", "transformers")))

        def run(pil: Any, queries: Sequence[tuple[int, Any]], prompt: str) -> list[Any]:
            parts: list[tuple[np.ndarray, np.ndarray, int]] = []
            if prompt == "text":
                if not queries:
                    return parts
                by_phrase: dict[str, list[int]] = {}
                for cid, text in queries:
                    by_phrase.setdefault(text, []).append(cid)
                result = wrapper.inference(images=[pil], task="detection",
                                           categories=list(by_phrase))[0]
                for text, boxes in rex_boxes(result).items():
                    for cid in by_phrase.get(text, []):
                        parts.append((boxes, order_scores(len(boxes)), cid))
                return parts
            for cid, (x, y, w, h) in queries:
                result = wrapper.inference(images=[pil], task="visual_prompting",
                                           visual_prompt_boxes=[[x, y, x + w, y + h]])[0]
                boxes = np.concatenate(list(rex_boxes(result).values()) or
                                       [np.zeros((0, 4), np.float32)])
                parts.append((boxes, order_scores(len(boxes)), cid))
            return parts

        return run
