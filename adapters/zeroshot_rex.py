"""Rex-Omni through ``transformers``: its prompts, its coordinate-token answers, its model.

Rex-Omni (Jiang et al., "Detect Anything via Next Point Prediction", arXiv:2510.12798) is a
Qwen2.5-VL-3B fine-tune that answers in quantized coordinates: every coordinate is one of 1000
tokens ``<0>`` … ``<999>`` (the image's width/height mapped to 0–999), a box is four of them and
the answer groups boxes by phrase::

    <|object_ref_start|>car<|object_ref_end|><|box_start|><12><40><31><77>,<500><9><540><30><|box_end|>,
    <|object_ref_start|>person<|object_ref_end|><|box_start|>None<|box_end|><|im_end|>

The format, the prompts and the generation settings below were read in the authors' code,
IDEA-Research/Rex-Omni at commit 478e44f86e7e63a3c24d7bf145a096e0dd170fcd (``rex_omni/tasks.py``
prompt templates, ``rex_omni/parser.py`` answer format and bin ↔ pixel mapping,
``rex_omni/wrapper.py`` system prompt, pixel bounds and greedy decoding,
``finetuning/dataset/task_fns/grounding_task.py`` for ``None`` = nothing found). The code here
is our own; deviations are listed in docs/adapters.md.

Only :func:`load` and :meth:`RexOmni.answer` import torch / transformers.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinyset_builder.errors import TinysetError

SYSTEM_PROMPT = "You are a helpful assistant"  # the wrapper's default (no final period)
DETECT = "Detect {categories}. Output the bounding box coordinates in [x0, y0, x1, y1] format."
VISUAL = ("Given reference boxes {visual_prompt} indicating one or more objects, find all "
          "similar objects in the image and output their bounding boxes.")
MIN_PIXELS = 16 * 28 * 28    # the wrapper's image bounds: Qwen2.5-VL resizes into this range
MAX_PIXELS = 2560 * 28 * 28
BINS = 1000                  # coordinate tokens <0> … <999>
REPETITION_PENALTY = 1.05    # the wrapper's greedy decoding (temperature 0, top_k 1)
MAX_NEW_TOKENS = 4096

_SEGMENT = re.compile(r"<\|object_ref_start\|>(.*?)<\|object_ref_end\|>\s*<\|box_start\|>"
                      r"(.*?)(<\|box_end\|>|$)", re.S)
_COORD = re.compile(r"<(\d+)>")
_STOP = ("<|im_end|>", "<|endoftext|>")


# ---------------------------------------------------------------------------------------------
# prompts

def to_bin(value: float, size: float) -> int:
    """A pixel coordinate as a coordinate token number: clip to the image, scale to 0–999."""
    return max(0, min(BINS - 1, int(max(0.0, min(1.0, value / size)) * (BINS - 1))))


def box_tokens(xyxy: Sequence[float], width: float, height: float) -> str:
    """``[x0, y0, x1, y1]`` in pixels as Rex-Omni's four coordinate tokens ``<x0><y0><x1><y1>``."""
    x0, y0, x1, y1 = (float(v) for v in xyxy)
    return "".join(f"<{to_bin(v, s)}>" for v, s in ((x0, width), (y0, height), (x1, width),
                                                    (y1, height)))


def detection_prompt(phrases: Sequence[str]) -> str:
    """The text-category prompt (the authors' ``detection`` task): phrases joined by ``", "``."""
    return DETECT.format(categories=", ".join(phrases))


def visual_prompt(xyxy: Sequence[float], width: float, height: float) -> str:
    """The one-box visual prompt (the authors' ``visual_prompting`` task)."""
    boxes = json.dumps({"object_1": [box_tokens(xyxy, width, height)]})
    return VISUAL.format(visual_prompt=boxes)


def messages(prompt: str) -> list[dict[str, Any]]:
    """The chat of one request: system prompt, then the image and the prompt as the user turn."""
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]


# ---------------------------------------------------------------------------------------------
# answers

@dataclass
class RexAnswer:
    """One parsed answer: absolute ``(N, 4)`` xyxy boxes per phrase in output order, and what
    was skipped (``point``, ``polygon``, ``malformed``, ``inverted``, ``out_of_range``,
    ``truncated``, ``unparsed``) with counts."""

    boxes: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)

    def all_boxes(self) -> np.ndarray:
        """Every box of the answer, phrases in output order."""
        parts = list(self.boxes.values())
        return np.concatenate(parts) if parts else np.zeros((0, 4), np.float32)


def parse_answer(text: str, width: float, height: float) -> RexAnswer:
    """Parse a decoded Rex-Omni answer (special tokens kept) into absolute boxes.

    Each ``<|box_start|>…<|box_end|>`` body is ``None`` (nothing found) or comma-separated
    groups of coordinate tokens. A group of four is a box ``x = bin / 999 · width`` (the authors'
    mapping); anything else is skipped and counted: two tokens (a point), an even number > 4 (a
    polygon), other counts (``malformed``), ``x1 <= x0`` or ``y1 <= y0`` (``inverted``, as the
    authors' evaluation drops them), a number above 999 (``out_of_range``). A last segment cut
    off before ``<|box_end|>`` (token limit) keeps its complete boxes and counts ``truncated``;
    text with no segment at all counts ``unparsed``.
    """
    answer = RexAnswer()
    for stop in _STOP:
        text = text.split(stop, 1)[0]
    found = False
    for m in _SEGMENT.finditer(text):
        found = True
        phrase, body, end = m.group(1).strip(), m.group(2), m.group(3)
        if not end:
            answer.skipped["truncated"] += 1
        boxes = answer.boxes.setdefault(phrase, np.zeros((0, 4), np.float32))
        if body.strip() == "None":
            continue
        kept = []
        for group in body.split(","):
            nums = [int(n) for n in _COORD.findall(group)]
            if not nums and not group.strip():
                continue
            if len(nums) != 4:
                kind = ("point" if len(nums) == 2 else
                        "polygon" if len(nums) > 4 and len(nums) % 2 == 0 else "malformed")
                answer.skipped[kind] += 1
                continue
            if max(nums) >= BINS:
                answer.skipped["out_of_range"] += 1
                continue
            x0, y0, x1, y1 = nums
            if x1 <= x0 or y1 <= y0:
                answer.skipped["inverted"] += 1
                continue
            kept.append([x0 / (BINS - 1) * width, y0 / (BINS - 1) * height,
                         x1 / (BINS - 1) * width, y1 / (BINS - 1) * height])
        if kept:
            answer.boxes[phrase] = np.concatenate([boxes, np.asarray(kept, np.float32)])
    if not found and text.strip():
        answer.skipped["unparsed"] += 1
    return answer


# ---------------------------------------------------------------------------------------------
# the model

@dataclass
class RexOmni:
    """A loaded Qwen2.5-VL (Rex-Omni weights) and its processor on one device."""

    model: Any
    processor: Any
    device: str
    max_new_tokens: int = MAX_NEW_TOKENS

    def answer(self, images: Sequence[Any], prompts: Sequence[str]) -> list[str]:
        """Greedy answers (special tokens kept) of one batch of ``(image, prompt)`` requests."""
        import torch

        texts = [self.processor.apply_chat_template(messages(p), tokenize=False,
                                                    add_generation_prompt=True) for p in prompts]
        inputs = self.processor(text=texts, images=list(images), padding=True,
                                return_tensors="pt",
                                size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS})
        inputs = inputs.to(self.device)
        tok = self.processor.tokenizer
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens,
                                      do_sample=False, repetition_penalty=REPETITION_PENALTY,
                                      pad_token_id=tok.pad_token_id if tok.pad_token_id
                                      is not None else tok.eos_token_id)
        new = out[:, inputs["input_ids"].shape[1]:]
        return list(tok.batch_decode(new, skip_special_tokens=False,
                                     clean_up_tokenization_spaces=False))


def load(folder: Path, device: str, dtype: Any = None,
         max_new_tokens: int = MAX_NEW_TOKENS) -> RexOmni:
    """Load a local Rex-Omni folder (``save_pretrained`` layout); never touches the network.

    ``dtype``: a torch dtype (float32 when None).
    """
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    try:
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            str(folder), dtype=dtype or torch.float32, local_files_only=True).to(device).eval()
        processor = AutoProcessor.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as e:
        raise TinysetError(f"Rex-Omni weights in {folder} could not be loaded: "
                           f"{' '.join(str(e).split())[:300]}") from e
    processor.tokenizer.padding_side = "left"  # batched generation continues every row at the end
    return RexOmni(model, processor, device, max_new_tokens)
