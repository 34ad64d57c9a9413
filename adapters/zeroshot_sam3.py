"""SAM3 through ``transformers`` (``Sam3Model`` + ``Sam3Processor``): text and one-box prompts.

SAM3 (Carion et al., "SAM 3: Segment Anything with Concepts", arXiv:2511.16719) answers a
concept prompt — a noun phrase, exemplar boxes, or both — with every matching instance. The
transformers port (``transformers.models.sam3``, v5.25) gives the model, the processor (image
resize to 1008², CLIP tokenizer, boxes normalised to ``(cx, cy, w, h)``) and
``post_process_object_detection`` (score = sigmoid(logit) · sigmoid(presence), boxes scaled to
the original image, kept above a threshold).

Batching: one image is encoded once (``get_vision_features``); its prompts then run as one batch
of up to ``batch_size`` with the image features broadcast to the batch, and each phrase's text
features are computed once per run and reused across images. Only :func:`load` and the
:class:`Sam3` methods import torch / transformers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinyset_builder.errors import TinysetError

VISUAL_TEXT = "visual"  # the processor's text for box-only prompts (Sam3Processor default)


@dataclass
class Sam3:
    """A loaded ``Sam3Model`` and ``Sam3Processor`` on one device."""

    model: Any
    processor: Any
    device: str
    threshold: float = 0.05
    batch_size: int = 8
    _text_cache: dict[str, Any] = field(default_factory=dict)

    def _encode_image(self, image: Any) -> tuple[Any, list[int]]:
        import torch

        inputs = self.processor(images=image, return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.device, self.model.dtype)
        with torch.inference_mode():
            vision = self.model.get_vision_features(pixel_values=pixels)
        return vision, [int(v) for v in inputs["original_sizes"][0].tolist()]

    def _text_features(self, phrases: Sequence[str]) -> Any:
        """Projected text features of ``phrases`` (cached per phrase), stacked on the batch."""
        import torch

        todo = [p for p in dict.fromkeys(phrases) if p not in self._text_cache]
        if todo:
            tok = self.processor(text=todo, return_tensors="pt")
            with torch.inference_mode():
                out = self.model.get_text_features(
                    input_ids=tok["input_ids"].to(self.device),
                    attention_mask=tok["attention_mask"].to(self.device))
            for i, p in enumerate(todo):
                self._text_cache[p] = (out.pooler_output[i:i + 1],
                                       tok["attention_mask"][i:i + 1].to(self.device))
        feats = torch.cat([self._text_cache[p][0] for p in phrases])
        mask = torch.cat([self._text_cache[p][1] for p in phrases])
        return feats, mask

    def _run(self, vision: Any, size: list[int], text: Sequence[str],
             boxes: Sequence[Sequence[float]] | None) -> list[tuple[np.ndarray, np.ndarray]]:
        """One batch of prompts on one encoded image -> ``(xyxy, scores)`` per prompt."""
        import torch
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        n = len(text)
        batch_vision = type(vision)(**{
            k: (tuple(t.expand(n, *t.shape[1:]) for t in v) if isinstance(v, tuple)
                else v.expand(n, *v.shape[1:]) if isinstance(v, torch.Tensor) else v)
            for k, v in vision.items()})
        feats, mask = self._text_features(text)
        kwargs: dict[str, Any] = {}
        if boxes is not None:
            geo = self.processor(input_boxes=[[list(map(float, b))] for b in boxes],
                                 original_sizes=[size] * n, return_tensors="pt")
            kwargs = {"input_boxes": geo["input_boxes"].to(self.device, self.model.dtype),
                      "input_boxes_labels": geo["input_boxes_labels"].to(self.device)}
        with torch.inference_mode():
            out = self.model(vision_embeds=batch_vision,
                             text_embeds=BaseModelOutputWithPooling(pooler_output=feats),
                             attention_mask=mask, **kwargs)
        results = self.processor.post_process_object_detection(
            out, threshold=self.threshold, target_sizes=[size] * n)
        return [sam3_boxes(r) for r in results]

    def text(self, image: Any, phrases: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Detections of each phrase on ``image`` (one ``(xyxy, scores)`` per phrase)."""
        return self._prompts(image, list(phrases), None)

    def exemplars(self, image: Any, boxes: Sequence[Sequence[float]]
                  ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Detections of each one-box exemplar prompt (absolute ``xyxy``) on ``image``."""
        return self._prompts(image, [VISUAL_TEXT] * len(boxes), list(boxes))

    def _prompts(self, image: Any, text: list[str], boxes: list[Sequence[float]] | None
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
        if not text:
            return []
        vision, size = self._encode_image(image)
        out = []
        for s in range(0, len(text), self.batch_size):
            chunk = None if boxes is None else boxes[s:s + self.batch_size]
            out += self._run(vision, size, text[s:s + self.batch_size], chunk)
        return out


def sam3_boxes(output: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(xyxy, scores)`` float32 arrays of one post-processed SAM3 result.

    Both ``Sam3Processor.post_process_object_detection`` (transformers) and the authors'
    ``sam3`` package return a mapping with absolute ``boxes`` ``[x0, y0, x1, y1]`` and ``scores``.
    """
    if "boxes" not in output or "scores" not in output:
        raise TinysetError(f"SAM3 output without boxes/scores (keys: {sorted(output)})")
    boxes = _to_numpy(output["boxes"]).astype(np.float32)
    scores = _to_numpy(output["scores"]).astype(np.float32).reshape(-1)
    if boxes.size and boxes.shape[-1] != 4:
        raise TinysetError(f"SAM3 output boxes of shape {boxes.shape}, expected (N, 4)")
    boxes = boxes.reshape(-1, 4)
    if len(boxes) != len(scores):
        raise TinysetError(f"SAM3 output: {len(boxes)} boxes but {len(scores)} scores")
    return boxes, scores


def _to_numpy(x: Any) -> np.ndarray:
    for step in ("detach", "cpu"):
        if hasattr(x, step):
            x = getattr(x, step)()
    if hasattr(x, "float") and hasattr(x, "numpy"):  # bfloat16 tensors have no numpy()
        x = x.float().numpy()
    elif hasattr(x, "numpy"):
        x = x.numpy()
    return np.asarray(x)


def load(folder: Path, device: str, threshold: float = 0.05, batch_size: int = 8,
         dtype: Any = None) -> Sam3:
    """Load a local SAM3 folder (``save_pretrained`` layout); never touches the network.

    ``dtype``: a torch dtype (float32 when None).
    """
    import torch
    from transformers import Sam3Model, Sam3Processor

    try:
        model = Sam3Model.from_pretrained(str(folder), dtype=dtype or torch.float32,
                                          local_files_only=True).to(device).eval()
        processor = Sam3Processor.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as e:
        raise TinysetError(f"SAM3 weights in {folder} could not be loaded: "
                           f"{' '.join(str(e).split())[:300]}") from e
    return Sam3(model, processor, device, threshold=threshold, batch_size=max(1, batch_size))
