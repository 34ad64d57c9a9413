"""Stand-in for mmdet 3.x tools/train.py: ``train.py CONFIG [--work-dir DIR]``."""

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import image_prefix, load
from fakedet.detector import fit

parser = argparse.ArgumentParser()
parser.add_argument("config")
parser.add_argument("--work-dir")
parser.add_argument("--amp", action="store_true")
parser.add_argument("--resume", nargs="?", const="auto")
parser.add_argument("--cfg-options", nargs="+")
args = parser.parse_args()

cfg = load(args.config)
work = Path(args.work_dir or cfg.work_dir)
ds = cfg.train_dataloader.dataset
if ds.type == "ConcatDataset":  # SoftTeacher: labeled source first, unlabeled second
    labeled, unlabeled = ds.datasets
    if cfg.train_dataloader.sampler.type != "GroupMultiSourceSampler":
        raise SystemExit("semi training needs GroupMultiSourceSampler")
    if not Path(unlabeled.ann_file).is_file():
        raise SystemExit(f"missing unlabeled file {unlabeled.ann_file}")
    ds = labeled
loop = cfg.train_cfg
epochs = loop.max_epochs if loop.type == "EpochBasedTrainLoop" else 1
model = fit(ds.ann_file, image_prefix(ds), epochs)
work.mkdir(parents=True, exist_ok=True)
name = (f"epoch_{loop.max_epochs}.pth" if loop.type == "EpochBasedTrainLoop"
        else f"iter_{loop.max_iters}.pth")
(work / name).write_text(json.dumps(model))
(work / "last_checkpoint").write_text(str((work / name).resolve()))
print(f"{loop.type}: saved {work / name}")
