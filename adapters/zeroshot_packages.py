"""The optional alternative to transformers: the authors' own ``sam3`` and ``rex_omni`` packages.

``backend = "package"`` (and ``"vllm"`` for Rex-Omni) drives facebookresearch/sam3
(``build_sam3_image_model`` + its ``Sam3Processor``; Python ≥ 3.12, installed from git) or
IDEA-Research/Rex-Omni (``RexOmniWrapper``; git only). The default backend is transformers
(adapters/zeroshot_sam3.py, adapters/zeroshot_rex.py); see docs/adapters.md for why.
Each runner maps ``(image, [(category_id, query)], prompt)`` to ``(xyxy, scores, category_id)``
parts, exactly like the transformers runners.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from adapters.zeroshot_sam3 import sam3_boxes

Part = tuple[np.ndarray, np.ndarray, int]
Runner = Callable[[Any, Sequence[tuple[int, Any]], str], list[Part]]

PACKAGES = {
    "sam3": {"package": "sam3", "min_python": (3, 12),
             "install": "pip install git+https://github.com/facebookresearch/sam3 "
                        "(Python >= 3.12, torch >= 2.7)",
             "weights": "the sam3.pt file of the gated facebook/sam3 Hub repo "
                        "(hf download facebook/sam3 sam3.pt --local-dir DIR)"},
    "rex-omni": {"package": "rex_omni", "min_python": (3, 10),
                 "install": "pip install git+https://github.com/IDEA-Research/Rex-Omni "
                            "(torch 2.7, transformers or vllm)",
                 "weights": "a snapshot of IDEA-Research/Rex-Omni "
                            "(hf download IDEA-Research/Rex-Omni --local-dir DIR)"},
}


def normalized_cxcywh(xywh: Sequence[float], width: float, height: float) -> list[float]:
    """A COCO ``[x, y, w, h]`` box as the sam3 package's geometric prompt: normalised centre and
    size."""
    x, y, w, h = (float(v) for v in xywh)
    return [(x + w / 2) / width, (y + h / 2) / height, w / width, h / height]


def rex_package_boxes(result: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Per phrase, the ``(N, 4)`` xyxy boxes of one ``RexOmniWrapper.inference`` result.

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


def sam3_package(checkpoint: Path, device: str, threshold: float) -> Runner:
    """A runner over the ``sam3`` package (one prompt at a time, as its processor works)."""
    from sam3.model.sam3_image_processor import Sam3Processor
    from sam3.model_builder import build_sam3_image_model

    net = build_sam3_image_model(checkpoint_path=str(checkpoint), load_from_HF=False,
                                 device=device)
    processor = Sam3Processor(net, confidence_threshold=threshold)

    def run(pil: Any, queries: Sequence[tuple[int, Any]], prompt: str) -> list[Part]:
        state = processor.set_image(pil)
        parts = []
        for cid, query in queries:
            processor.reset_all_prompts(state)
            if prompt == "text":
                output = processor.set_text_prompt(state=state, prompt=query)
            else:
                output = processor.add_geometric_prompt(
                    box=normalized_cxcywh(query, pil.width, pil.height), label=True, state=state)
            boxes, scores = sam3_boxes(output)
            parts.append((boxes, scores, cid))
        return parts

    return run


def rex_package(model_path: Path, backend: str, order_scores: Callable[[int], np.ndarray]
                ) -> Runner:
    """A runner over the ``rex_omni`` package (``backend`` = its ``transformers`` or ``vllm``)."""
    from rex_omni import RexOmniWrapper

    wrapper = RexOmniWrapper(model_path=str(model_path), backend=backend)

    def run(pil: Any, queries: Sequence[tuple[int, Any]], prompt: str) -> list[Part]:
        parts: list[Part] = []
        if prompt == "text":
            if not queries:
                return parts
            by_phrase: dict[str, list[int]] = {}
            for cid, text in queries:
                by_phrase.setdefault(text, []).append(cid)
            result = wrapper.inference(images=[pil], task="detection",
                                       categories=list(by_phrase))[0]
            for text, boxes in rex_package_boxes(result).items():
                for cid in by_phrase.get(text, []):
                    parts.append((boxes, order_scores(len(boxes)), cid))
            return parts
        for cid, (x, y, w, h) in queries:
            result = wrapper.inference(images=[pil], task="visual_prompting",
                                       visual_prompt_boxes=[[x, y, x + w, y + h]])[0]
            boxes = np.concatenate(list(rex_package_boxes(result).values()) or
                                   [np.zeros((0, 4), np.float32)])
            parts.append((boxes, order_scores(len(boxes)), cid))
        return parts

    return run
