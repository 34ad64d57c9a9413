"""Stand-in for mmdet 3.x tools/test.py: ``test.py CONFIG CHECKPOINT [--work-dir DIR]``;
with ``CocoMetric(format_only=True, outfile_prefix=P)`` it writes ``P.bbox.json``."""

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import image_prefix, load, max_per_img
from fakedet.detector import detect, load_coco

parser = argparse.ArgumentParser()
parser.add_argument("config")
parser.add_argument("checkpoint")
parser.add_argument("--work-dir")
parser.add_argument("--out")
parser.add_argument("--cfg-options", nargs="+")
args = parser.parse_args()

cfg = load(args.config)
metric = cfg.test_evaluator
if metric.type != "CocoMetric" or not metric.get("format_only") or not metric.get("outfile_prefix"):
    raise SystemExit("this stand-in writes results only for "
                     "CocoMetric(format_only=True, outfile_prefix=...)")
model = json.loads(Path(args.checkpoint).read_text())
ds = cfg.test_dataloader.dataset
images, _, cat_ids = load_coco(ds.ann_file)
results = []
for img in images:
    for bbox, score in detect(Path(image_prefix(ds)) / img["file_name"], model, max_per_img(cfg)):
        results.append({"image_id": img["id"], "bbox": bbox, "score": score,
                        "category_id": cat_ids[0]})
out = Path(metric.outfile_prefix + ".bbox.json")
out.write_text(json.dumps(results))
print(f"results are saved in {out}")
