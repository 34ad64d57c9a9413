"""Speed and memory of ``tinyset derive --setting all`` against the JSON floor.

Writes a synthetic toolkit-built dataset (1024² images, tiny boxes, ~10 % ignore regions, some
empty images), derives every setting in-process with one parse cache, and compares the CPU time
with the floor every derive must pay: parsing each setting's input file(s) and serialising an
output of the same size with the standard ``json`` module.

    .venv/bin/python benchmarks/derive_speed.py --train 20000 --val 3000 --test 6000
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmark.protocols import SETTINGS, derive_variant
from tinyset_builder.io import write_json


def synth_split(rng: np.random.Generator, split: str, n_images: int, first_id: int) -> dict:
    images, anns = [], []
    for i in range(1, n_images + 1):
        images.append({"id": i, "file_name": f"{split}/{i:07d}.jpg", "width": 1024,
                       "height": 1024, "source": f"src{i % 3}", "domain": "aerial",
                       "split": split})
        for _ in range(0 if rng.random() < 0.15 else int(rng.integers(1, 13))):
            w, h = (float(v) for v in rng.uniform(1, 64, 2))
            x, y = float(rng.uniform(0, 1024 - w)), float(rng.uniform(0, 1024 - h))
            anns.append({"id": first_id + len(anns), "image_id": i,
                         "category_id": int(rng.integers(1, 5)), "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": int(rng.random() < 0.1)})
    cats = [{"id": c, "name": f"src{c % 3}/class{c}", "supercategory": ""} for c in range(1, 5)]
    return {"info": {}, "images": images, "annotations": anns, "categories": cats}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=20000)
    ap.add_argument("--val", type=int, default=3000)
    ap.add_argument("--test", type=int, default=6000)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_derive_"))
    try:
        rng = np.random.default_rng(0)
        write_json(root / "build.json", {"tool": "tinyset-builder"})
        first = 1
        for split in ("train", "val", "test"):
            d = synth_split(rng, split, getattr(args, split), first)
            first += len(d["annotations"])
            write_json(root / "annotations" / f"{split}.json", d)
            print(f"{split}: {len(d['images'])} images, {len(d['annotations'])} annotations")
        cpu = time.process_time()
        cache: dict = {}
        for name in SETTINGS:
            derive_variant(root, name, cache=cache)
        derive_cpu = time.process_time() - cpu
        cpu = time.process_time()
        for spec in SETTINGS.values():
            for split in spec.splits:
                raw = (root / "annotations" / f"{split}.json").read_bytes()
                assert json.dumps(json.loads(raw))
        floor_cpu = time.process_time() - cpu
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"derive all {len(SETTINGS)} settings: {derive_cpu:.1f} s CPU; json floor "
              f"(parse + dump each input per setting): {floor_cpu:.1f} s CPU; ratio "
              f"{derive_cpu / floor_cpu:.1f}x; peak RSS {rss:.0f} MB")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
