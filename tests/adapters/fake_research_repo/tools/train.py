"""Stand-in for an mmdet 2.x fork's tools/train.py: ``train.py CONFIG --work-dir DIR``."""

import argparse
import json
import os
from pathlib import Path

from fakedet.detector import fit
from mmengine import Config

parser = argparse.ArgumentParser()
parser.add_argument("config")
parser.add_argument("--work-dir", required=True)
parser.add_argument("--seed", type=int, default=None)
parser.add_argument("--gpu-ids", type=int, nargs="+")
args = parser.parse_args()

cfg = Config.fromfile(args.config)
classes = cfg.get("classes")
n = cfg.model.roi_head.bbox_head.num_classes
if classes is None or len(classes) != n:
    raise SystemExit(f"num_classes {n} does not match classes {classes}")
if cfg.data.train.type != "CocoDataset":
    raise SystemExit(f"train dataset {cfg.data.train.type}: expected CocoDataset")
size = cfg.train_pipeline[2]["img_scale"]
model = fit(cfg.data.train.ann_file, cfg.data.train.img_prefix, cfg.runner.max_epochs)
model.update(img_scale=list(size), seed=args.seed, classes=list(classes))
work = Path(args.work_dir)
work.mkdir(parents=True, exist_ok=True)
ckpt = work / f"epoch_{cfg.runner.max_epochs}.pth"
ckpt.write_text(json.dumps(model))
latest = work / "latest.pth"
if latest.is_symlink() or latest.exists():
    latest.unlink()
os.symlink(ckpt.name, latest)
print(f"trained {cfg.runner.max_epochs} epochs -> {ckpt}")
