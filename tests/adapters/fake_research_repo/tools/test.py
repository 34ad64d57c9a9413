"""Stand-in for an mmdet 2.x fork's tools/test.py:
``test.py CONFIG CHECKPOINT --format-only --eval-options jsonfile_prefix=P`` writes P.bbox.json.
"""

import argparse
import json
from pathlib import Path

from fakedet.detector import detect, load_coco
from mmengine import Config

parser = argparse.ArgumentParser()
parser.add_argument("config")
parser.add_argument("checkpoint")
parser.add_argument("--format-only", action="store_true")
parser.add_argument("--eval-options", nargs="+", default=[])
args = parser.parse_args()

options = dict(o.split("=", 1) for o in args.eval_options)
if not args.format_only or "jsonfile_prefix" not in options:
    raise SystemExit("this stand-in only supports --format-only --eval-options jsonfile_prefix=P")
cfg = Config.fromfile(args.config)
model = json.loads(Path(args.checkpoint).read_text())
images, _, cat_ids = load_coco(cfg.data.test.ann_file)
max_det = cfg.model.test_cfg.rcnn.max_per_img
results = []
for img in images:
    for bbox, score in detect(Path(cfg.data.test.img_prefix) / img["file_name"], model, max_det):
        results.append({"image_id": img["id"], "bbox": bbox, "score": score,
                        "category_id": cat_ids[0]})
out = Path(options["jsonfile_prefix"] + ".bbox.json")
out.write_text(json.dumps(results))
print(f"wrote {len(results)} detections to {out}")
