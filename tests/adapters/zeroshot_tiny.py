"""Tiny random-weight builds of the real transformers classes behind the zero-shot rows.

* :func:`save_tiny_sam3` — ``Sam3Config`` / ``Sam3Model`` (≈0.26 M parameters, 56² input) with a
  ``Sam3Processor`` whose CLIP tokenizer is built here from a byte-level vocabulary;
* :func:`save_tiny_rex` — ``Qwen2_5_VLForConditionalGeneration`` (≈0.3 M parameters) with a
  ``Qwen2_5_VLProcessor``: a byte-level ``Qwen2Tokenizer`` built here with Qwen's special tokens
  and Rex-Omni's 1000 coordinate tokens ``<0>`` … ``<999>``, and a Qwen-style chat template.
  Optionally fitted for a few hundred steps to give fixed answers to given (image, prompt)
  requests, so an end-to-end run yields boxes that can be checked.

Both are written with ``save_pretrained``, the layout the adapter loads. Nothing is downloaded.
Used by tests/adapters/test_zeroshot_adapter.py and benchmarks/zeroshot_speed.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>",
                "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|vision_start|>",
                "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
# Qwen2-VL's chat layout (system turn, user turn with the image placeholder, assistant cue)
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif c['type'] == 'text' %}{{ c['text'] }}"
    "{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _byte_chars() -> list[str]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return list(bytes_to_unicode().values())


def sam3_parts(image_size: int = 56) -> tuple[Any, Any]:
    """``(Sam3Model, Sam3Processor)`` of a tiny random configuration (seeded)."""
    import torch
    from transformers import CLIPTokenizer, Sam3Config, Sam3Model, Sam3Processor
    from transformers.models.sam3.image_processing_sam3 import Sam3ImageProcessor

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in _byte_chars():
        vocab.setdefault(c, len(vocab))
    for c in _byte_chars():
        vocab.setdefault(c + "</w>", len(vocab))
    tok = CLIPTokenizer(vocab=vocab, merges=[])
    p = image_size // 14
    small = {"num_attention_heads": 2, "intermediate_size": 64}
    cfg = Sam3Config(
        vision_config={"backbone_config": {
            "model_type": "sam3_vit_model", "hidden_size": 32, "num_hidden_layers": 2,
            "image_size": image_size, "patch_size": 14, "window_size": 24 if p >= 24 else 2,
            "global_attn_indexes": [1], "pretrain_image_size": image_size, **small},
            "fpn_hidden_size": 32, "backbone_feature_sizes": [[4 * p] * 2, [2 * p] * 2, [p] * 2]},
        text_config={"model_type": "clip_text_model", "vocab_size": len(vocab),
                     "hidden_size": 32, "projection_dim": 32, "num_hidden_layers": 1,
                     "max_position_embeddings": 32, "bos_token_id": 0, "eos_token_id": 1,
                     "pad_token_id": 1, **small},
        geometry_encoder_config={"hidden_size": 32, "num_layers": 1, **small},
        detr_encoder_config={"hidden_size": 32, "num_layers": 1, **small},
        detr_decoder_config={"hidden_size": 32, "num_layers": 1, "num_queries": 20, **small},
        mask_decoder_config={"hidden_size": 32, "num_attention_heads": 2})
    torch.manual_seed(0)
    model = Sam3Model(cfg).eval()
    processor = Sam3Processor(image_processor=Sam3ImageProcessor(
        size={"height": image_size, "width": image_size}), tokenizer=tok)
    return model, processor


def save_tiny_sam3(folder: Path, image_size: int = 56) -> Path:
    """Write a tiny SAM3 (model + processor) with ``save_pretrained``; return ``folder``."""
    model, processor = sam3_parts(image_size)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def rex_parts() -> tuple[Any, Any]:
    """``(Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor)``, tiny and seeded."""
    import torch
    from tokenizers import AddedToken
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2Tokenizer,
    )
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    vocab = {c: i for i, c in enumerate(_byte_chars())}
    tok = Qwen2Tokenizer(vocab=vocab, merges=[], eos_token="<|im_end|>",
                         pad_token="<|endoftext|>")
    tok.add_special_tokens({"additional_special_tokens": QWEN_SPECIAL})
    tok.add_tokens([AddedToken(f"<{i}>", special=False, normalized=False) for i in range(1000)])
    processor = Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(), tokenizer=tok,
                                    video_processor=Qwen2VLVideoProcessor(),
                                    chat_template=CHAT_TEMPLATE)
    ids = tok.convert_tokens_to_ids
    cfg = Qwen2_5_VLConfig(
        text_config={"vocab_size": len(tok), "hidden_size": 64, "intermediate_size": 128,
                     "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
                     "max_position_embeddings": 4096,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                         "mrope_section": [4, 6, 6]},
                     "bos_token_id": ids("<|endoftext|>"), "eos_token_id": ids("<|im_end|>"),
                     "pad_token_id": ids("<|endoftext|>")},
        vision_config={"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                       "out_hidden_size": 64, "fullatt_block_indexes": [0]},
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"))
    torch.manual_seed(0)
    return Qwen2_5_VLForConditionalGeneration(cfg), processor


def fit_answers(model: Any, processor: Any, requests: Sequence[tuple[Any, str, str]],
                steps: int = 300, lr: float = 3e-3) -> None:
    """Teach ``model`` to answer each ``(image, prompt)`` with its text (teacher forcing).

    The requests are laid out exactly as the adapter sends them (adapters.zeroshot_rex).
    """
    import torch

    from adapters import zeroshot_rex as rex

    batches = []
    for image, prompt, answer in requests:
        text = processor.apply_chat_template(rex.messages(prompt), tokenize=False,
                                             add_generation_prompt=True)
        inp = processor(text=[text], images=[image], return_tensors="pt",
                        size={"shortest_edge": rex.MIN_PIXELS, "longest_edge": rex.MAX_PIXELS})
        ans = processor.tokenizer(answer + "<|im_end|>", add_special_tokens=False,
                                  return_tensors="pt")["input_ids"]
        ids = torch.cat([inp["input_ids"], ans], 1)
        labels = ids.clone()
        labels[:, :inp["input_ids"].shape[1]] = -100
        batches.append({"input_ids": ids, "attention_mask": torch.ones_like(ids),
                        "mm_token_type_ids": torch.cat([inp["mm_token_type_ids"],
                                                        torch.zeros_like(ans)], 1),
                        "pixel_values": inp["pixel_values"],
                        "image_grid_thw": inp["image_grid_thw"], "labels": labels})
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for step in range(steps):
        loss = model(**batches[step % len(batches)]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def save_tiny_rex(folder: Path, requests: Sequence[tuple[Any, str, str]] = (),
                  steps: int = 300) -> Path:
    """Write a tiny Rex-Omni-shaped Qwen2.5-VL (fitted to ``requests`` if any); return it."""
    model, processor = rex_parts()
    if requests:
        fit_answers(model, processor, requests, steps=steps)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
