"""Zero-shot cost: CPU seconds per 1024² image for SAM3 and Rex-Omni, measured on tiny builds,
and the expected cost of the real weights from their parameter counts.

Measured here (process CPU time, one torch thread, median over ``--repeats``; wall time beside
it — on a shared machine CPU time measures the work, wall time the neighbours):

1. **SAM3** through ``adapters.zeroshot_sam3`` on a tiny ``Sam3Model`` at the real input size
   (1008², 72×72 patches; widths of 32): one 1024² image with ``--prompts`` text prompts, and
   with as many one-box exemplar prompts;
2. **Rex-Omni** through ``adapters.zeroshot_rex`` on a tiny Qwen2.5-VL: the prefill of one
   1024² image with its prompt (1369 visual tokens after Qwen2.5-VL's resize to 1036²), and the
   cost per generated token (random weights never stop, so ``max_new_tokens`` is fixed);
3. this machine's fp32 matmul rate (GFLOP/s of one thread), to turn FLOPs into seconds.

Estimated for the real weights: the parameter counts of ``Sam3Config()`` (facebook/sam3) and of
Qwen2.5-VL-3B (Rex-Omni's base, config below), counted on the ``meta`` device (no memory, no
download). FLOPs ≈ 2 · parameters · tokens per component (attention score terms and SAM3's mask
upsampling are left out, so these are lower bounds). CPU seconds = FLOPs / the measured matmul
rate; GPU seconds assume an A100 in bf16 (the adapter's ``dtype = auto`` on CUDA): 40 % of
312 TFLOP/s for encoders and prefill, and for each generated token the bf16 weights read once
at 60 % of 2.0 TB/s. Rex-Omni's answer length
is 4 coordinate tokens per box plus ~8 tokens per phrase: ``--boxes`` per image is an assumption
(TinySet images often hold more than 200 objects; 4096 new tokens cap an answer at ~1000 boxes).
``--full-sam3`` also times the real-size SAM3 architecture (840 M random weights, 3.4 GB) on one
image — the measured CPU cost of the real model, weights aside.

Example::

    nice -n 10 .venv/bin/python benchmarks/zeroshot_speed.py --prompts 2 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from timing import timed  # noqa: E402

sys.path.insert(0, str(REPO / "tests" / "adapters"))  # zeroshot_tiny: the tests' tiny builds

A100_FLOPS = 312e12 * 0.40
A100_BYTES = 2.0e12 * 0.60
# Qwen2.5-VL-3B-Instruct (Rex-Omni's base model): its published config.json
QWEN25_VL_3B = {
    "text_config": {"vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 11008,
                    "num_hidden_layers": 36, "num_attention_heads": 16, "num_key_value_heads": 2,
                    "tie_word_embeddings": True,
                    "rope_parameters": {"rope_type": "default", "rope_theta": 1e6,
                                        "mrope_section": [16, 24, 24]}},
    "vision_config": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420,
                      "num_heads": 16, "out_hidden_size": 2048,
                      "fullatt_block_indexes": [7, 15, 23, 31]},
    "tie_word_embeddings": True}


def matmul_rate(repeats: int) -> float:
    """fp32 GFLOP/s of one thread on 1024×1024 matmuls (CPU time)."""
    import torch

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    cpu, _ = timed(lambda: [a @ b for _ in range(8)], repeats)
    return 8 * 2 * 1024**3 / cpu / 1e9


def image_1024() -> Any:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    return Image.fromarray((rng.random((1024, 1024, 3)) * 255).astype(np.uint8))


def sam3_counts() -> dict[str, int]:
    import torch
    from transformers import Sam3Config, Sam3Model

    with torch.device("meta"):
        model = Sam3Model(Sam3Config())
    return {name: sum(p.numel() for p in mod.parameters())
            for name, mod in model.named_children()}


def rex_counts() -> dict[str, int]:
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**QWEN25_VL_3B))
    vision = sum(p.numel() for p in model.model.visual.parameters())
    embed = model.model.language_model.embed_tokens.weight.numel()
    total = sum(p.numel() for p in model.parameters())  # tied head counted once
    return {"vision": vision, "embedding/head": embed, "llm": total - vision - embed,
            "total": total}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=2, help="category prompts per image")
    ap.add_argument("--boxes", type=int, default=100, help="assumed boxes per Rex-Omni answer")
    ap.add_argument("--new-tokens", type=int, default=32, help="tokens generated when timing")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--full-sam3", action="store_true",
                    help="also time the real-size SAM3 architecture (random weights, 3.4 GB)")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from zeroshot_tiny import save_tiny_rex, save_tiny_sam3

    from adapters import zeroshot_rex, zeroshot_sam3

    image, k = image_1024(), args.prompts
    phrases = [f"object {i}" for i in range(k)]
    exemplars = [[100.0 + 50 * i, 100.0, 120.0 + 50 * i, 118.0] for i in range(k)]
    gflops = matmul_rate(args.repeats)
    print(f"machine: fp32 matmul {gflops:.1f} GFLOP/s on one thread (CPU time); "
          f"load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        sam_dir = save_tiny_sam3(Path(tmp) / "sam3", image_size=1008)
        sam = zeroshot_sam3.load(sam_dir, "cpu", threshold=0.05, batch_size=8)
        params = sum(p.numel() for p in sam.model.parameters())
        for label, fn in ((f"{k} text prompts", lambda: sam.text(image, phrases)),
                          (f"{k} one-box prompts", lambda: sam.exemplars(image, exemplars))):
            sam._text_cache.clear()
            cpu, wall = timed(fn, args.repeats)
            print(f"tiny SAM3 ({params / 1e6:.2f} M params, 1008² input), {label}: "
                  f"{cpu:.2f} CPU s / 1024² image (wall {wall:.2f} s)")
        rex_dir = save_tiny_rex(Path(tmp) / "rex")
        net = zeroshot_rex.load(rex_dir, "cpu", max_new_tokens=1)
        params = sum(p.numel() for p in net.model.parameters())
        prompt = zeroshot_rex.detection_prompt(phrases)
        pre, pre_wall = timed(lambda: net.answer([image], [prompt]), args.repeats)
        net.max_new_tokens = 1 + args.new_tokens
        full, _ = timed(lambda: net.answer([image], [prompt]), args.repeats)
        per_token = (full - pre) / args.new_tokens
        print(f"tiny Rex-Omni ({params / 1e6:.2f} M params): prefill {pre:.2f} CPU s / 1024² "
              f"image (wall {pre_wall:.2f} s), {per_token * 1e3:.1f} CPU ms per new token")

    # -- expected cost of the real weights -----------------------------------------------------
    s = sam3_counts()
    vit_tokens, queries, text_tokens = (1008 // 14) ** 2, 200, 32
    sam_image = 2 * s["vision_encoder"] * vit_tokens
    sam_prompt = 2 * (s["detr_encoder"] * vit_tokens + s["detr_decoder"] * queries
                      + s["text_encoder"] * text_tokens + s["geometry_encoder"] * 1
                      + s["mask_decoder"] * queries)
    sam_flops = sam_image + k * sam_prompt
    print(f"\nSAM3 (facebook/sam3): {sum(s.values()) / 1e6:.0f} M parameters "
          f"({', '.join(f'{n} {v / 1e6:.1f} M' for n, v in s.items())})")
    print(f"  per 1024² image with {k} prompts: >= {sam_flops / 1e12:.2f} TFLOP "
          f"(image {sam_image / 1e12:.2f} + {k} x {sam_prompt / 1e12:.3f}) -> "
          f">= {sam_flops / gflops / 1e9:.0f} CPU s on this machine (one thread), "
          f">= {sam_flops / A100_FLOPS * 1e3:.0f} ms on an A100 (bf16, dtype auto "
          f"on CUDA; 1.7 GB of weights)")
    r = rex_counts()
    patches = (1036 // 14) ** 2
    llm_prefill_tokens = patches // 4 + 60 + 10 * k
    answer = 4 * args.boxes + 8 * k + 1
    head = r["embedding/head"]
    rex_vision = 2 * r["vision"] * patches
    rex_prefill = 2 * r["llm"] * llm_prefill_tokens + 2 * head
    rex_token = 2 * (r["llm"] + head)
    rex_flops = rex_vision + rex_prefill + answer * rex_token
    weights_bytes = 2 * r["total"]  # bf16
    gpu = (rex_vision + rex_prefill) / A100_FLOPS + answer * weights_bytes / A100_BYTES
    print(f"Rex-Omni (IDEA-Research/Rex-Omni, Qwen2.5-VL-3B): {r['total'] / 1e9:.2f} B parameters "
          f"(vision {r['vision'] / 1e6:.0f} M, language {r['llm'] / 1e6:.0f} M, "
          f"embedding/head {head / 1e6:.0f} M)")
    print(f"  per 1024² image, {args.boxes} boxes ({answer} answer tokens): "
          f">= {rex_flops / 1e12:.2f} TFLOP (vision {rex_vision / 1e12:.2f}, prefill "
          f"{rex_prefill / 1e12:.2f}, {rex_token / 1e9:.1f} GFLOP per token) -> "
          f">= {rex_flops / gflops / 1e9:.0f} CPU s on this machine (one thread, fp32 15 GB), "
          f"~{gpu:.1f} s on an A100 (bf16 7.5 GB; decoding bound by weight reads)")
    if args.full_sam3:
        from transformers import Sam3Config, Sam3Model
        from zeroshot_tiny import sam3_parts

        torch.manual_seed(0)
        model = Sam3Model(Sam3Config()).eval()  # the real architecture, random weights
        _, processor = sam3_parts(1008)  # 1008² resize; a small tokenizer (ids < 49408)
        sam = zeroshot_sam3.Sam3(model, processor, "cpu", threshold=0.05, batch_size=8)
        cpu, wall = timed(lambda: (sam._text_cache.clear(), sam.text(image, phrases)), 1)
        print(f"real-size SAM3 architecture (random weights), {k} text prompts: {cpu:.1f} CPU s "
              f"/ 1024² image (wall {wall:.1f} s)")

if __name__ == "__main__":
    main()
