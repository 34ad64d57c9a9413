"""Show that DEAL learns: train configs for a fixed CPU budget, evaluate AP50 under a P2SOD setting.

Each config (a Table IV(d) row, or ``no-prompt`` = the same network without the prompt branch) is
trained with ``deal.train.train`` for ``--minutes`` of training time, then predicts the prompt file
of the setting (``DATA/variants/<setting>/prompts_<split>.json`` when ``tinyset derive`` wrote it,
else generated in memory with the same code) and is scored with ``benchmark.evaluate``, also
against the GT with every box of a prompted image relabelled as the prompted category (the AP
without category confusion). Runs resume: a finished config is not retrained (``--force``
predicts and scores it again).

Example::

    nice -n 10 .venv/bin/python benchmarks/deal_learning.py --data demo/tinyset \\
        --configs full,no-prompt --minutes 10 --runs runs/deal_learning
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def prompts_for(data: Path, setting: str, split: str) -> dict:
    """The setting's prompt file for ``split`` (derived file if present, else generated)."""
    path = data / "variants" / setting / f"prompts_{split}.json"
    if path.is_file():
        return json.loads(path.read_text())
    from benchmark.protocols.prompts import prompt_file
    from tinyset_builder.coco import CocoDataset

    gt_path = data / "annotations" / f"{split}.json"
    ds = CocoDataset.load(gt_path)
    n = int(setting.rsplit("-", 1)[1])
    doc, _ = prompt_file(ds, setting_name=setting, setting=n, split=split, seed=0,
                         dataset_sha256=hashlib.sha256(gt_path.read_bytes()).hexdigest(),
                         num_points=1 if n in (1, 3) else None, jitter=0.0)
    return doc


def overrides(pairs: list[str]) -> dict:
    """``["key=value", ...]`` -> config overrides, values parsed as JSON when they parse."""
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def any_category_gt(gt: dict, doc: dict) -> dict | None:
    """The GT with every box of a prompted image relabelled as that image's prompted category.

    Scoring detections against it gives the AP a detector would have if it never confused
    categories (localisation only); the gap to the real AP is what category confusion costs.
    None when an image has several prompt sets (the relabelling would be ambiguous).
    """
    wanted: dict[int, int] = {}
    for e in doc["prompts"]:
        if wanted.setdefault(int(e["image_id"]), int(e["category_id"])) != int(e["category_id"]):
            return None
    anns = [{**a, "category_id": wanted.get(a["image_id"], a["category_id"])}
            for a in gt["annotations"]]
    return {**gt, "annotations": anns}


def run_config(name: str, args: argparse.Namespace) -> dict:
    """Train (or resume) one config, predict the prompt file, evaluate; returns the metrics."""
    import torch

    from benchmark.evaluate import evaluate
    from deal.config import get_config
    from deal.data import resolve_image
    from deal.predictor import DealPredictor, predict_prompt_file
    from deal.train import load_model, train
    from tinyset_builder.coco import CocoDataset
    from tinyset_builder.io import write_json

    torch.set_num_threads(args.threads)
    ablation = None if name == "full" else name
    cfg = get_config(args.preset, ablation, paper_switches=args.paper, **overrides(args.set))
    work = args.runs / name
    metrics_path = work / "metrics.json"
    if metrics_path.is_file() and not args.force:
        return json.loads(metrics_path.read_text())
    t0 = time.time()
    res = train(cfg, args.data / "annotations" / "train.json", args.data, work,
                minutes=args.minutes, seed=args.seed, wall_minutes=args.wall_minutes)
    gt_path = args.data / "annotations" / f"{args.split}.json"
    gt = CocoDataset.load(gt_path)
    images = {i.id: resolve_image(args.data, i.file_name, i.split) for i in gt.images}
    doc = prompts_for(args.data, args.setting, args.split)
    if args.max_images:
        keep = sorted({e["image_id"] for e in doc["prompts"]})[:args.max_images]
        doc = {**doc, "prompts": [e for e in doc["prompts"] if e["image_id"] in set(keep)]}
    predictor = DealPredictor(load_model(res.checkpoint, cfg))
    t1 = time.time()
    dets = predict_prompt_file(predictor, images, doc["prompts"])
    write_json(work / f"detections_{args.setting}_{args.split}.json", dets)
    m = evaluate(str(gt_path), dets, prompts=doc)
    relabelled = any_category_gt(json.loads(gt_path.read_text()), doc)
    m_any = evaluate(relabelled, dets, prompts=doc) if relabelled is not None else None
    out = {"config": name, "switches": {k: getattr(cfg, k) for k in
                                        ("use_pe", "use_hfe", "use_dgqa", "use_pgcpp")},
           "paper_switches": list(args.paper), "seed": args.seed,
           "setting": args.setting, "split": args.split, "prompt_sets": len(doc["prompts"]),
           "train_steps": res.steps, "train_seconds": round(res.seconds, 1),
           "predict_seconds": round(time.time() - t1, 1), "wall_seconds": round(time.time() - t0),
           "AP50": m["AP50"], "AP25": m["AP25"], "AP": m["AP"],
           "AP50_any_category": m_any["AP50"] if m_any else None, "threads": args.threads}
    write_json(metrics_path, out, indent=2)
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="built dataset folder")
    p.add_argument("--configs", default="full,no-prompt",
                   help="comma list: full, no-prompt, none, pe, pe+hfe, pe+hfe+dgqa")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--minutes", type=float, default=10.0, help="training-time budget per config")
    p.add_argument("--wall-minutes", type=float, default=None,
                   help="also stop training after this wall-clock time (shared machines)")
    p.add_argument("--setting", default="p2sod-3")
    p.add_argument("--split", default="test")
    p.add_argument("--max-images", type=int, default=0, help="evaluate the first N images only")
    p.add_argument("--runs", type=Path, default=Path("runs/deal_learning"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a DealConfig field for every config (repeatable)")
    p.add_argument("--paper", action="append", default=[], metavar="SWITCH",
                   help="use the paper's version of a deal.config.SWITCHES entry (decoder, eq8, "
                        "pgcpp, hfe, unprompted, all; repeatable)")
    p.add_argument("--force", action="store_true", help="re-evaluate finished configs")
    args = p.parse_args(argv)
    rows = [run_config(name, args) for name in args.configs.split(",")]
    print(f"{'config':<14}{'AP50':>8}{'AP25':>8}{'AP':>8}{'AP50 any cat':>14}{'steps':>8}"
          f"{'train s':>9}")
    for r in rows:
        anyc = r.get("AP50_any_category")
        print(f"{r['config']:<14}{100 * r['AP50']:>8.1f}{100 * r['AP25']:>8.1f}"
              f"{100 * r['AP']:>8.1f}{'' if anyc is None else f'{100 * anyc:.1f}':>14}"
              f"{r['train_steps']:>8}{r['train_seconds']:>9.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
