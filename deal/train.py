"""DEAL training loop with PG-CPP, checkpoints, resume and progress.

One step: sample ``batch_size`` crops, draw initial prompts (intra-class on even steps: one set
per category of each crop, up to ``intra_sets``; inter-class on odd steps), encode once, grow
the prompts with PG-CPP cycles on the cached features, then compute
``L = Lcls + Lreg + λ·Ldensity`` on the final prompt sets and update.
``work_dir/last.pt`` is written atomically every ``checkpoint_every`` steps and at the end; a
rerun with the same ``work_dir`` resumes from it (same preset and architecture, else an error).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deal.config import DealConfig
from deal.data import TrainImages, initial_prompts, intra_class_sets, load_records
from deal.losses import deal_loss
from deal.model import DEAL, build_model
from deal.pgcpp import batch_prompts, cycle_prompts, targets_of
from tinyset_builder.errors import TinysetError
from tinyset_builder.io import atomic_path
from tinyset_builder.progress import make_progress

CHECKPOINT_SCHEMA = "tinyset-deal-checkpoint/1"


@dataclass
class TrainResult:
    """What a training run did (written to ``work_dir/train.json``)."""

    checkpoint: Path
    steps: int
    seconds: float
    resumed_from: int
    last_losses: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return {"checkpoint": str(self.checkpoint), "steps": self.steps,
                "seconds": round(self.seconds, 1), "resumed_from": self.resumed_from,
                "last_losses": self.last_losses}


def save_checkpoint(path: Path, model: DEAL, optimizer: torch.optim.Optimizer | None,
                    step: int, seconds: float, *, rng: np.random.Generator | None = None,
                    ) -> Path:
    """Atomically write model, optimizer, config and progress to ``path``.

    With ``rng`` (training's sampler), the random state is saved too (the numpy generator's and
    torch's CPU generator's), so a resumed run draws what the uninterrupted run would have.
    """
    state = None if rng is None else {"numpy": rng.bit_generator.state,
                                      "torch": torch.get_rng_state()}
    with atomic_path(path) as tmp:
        torch.save({"schema": CHECKPOINT_SCHEMA, "config": model.cfg.to_dict(),
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict() if optimizer is not None else None,
                    "step": step, "seconds": seconds, "rng": state}, tmp)
    return path


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint dict, with a one-line error for anything that is not one."""
    if not Path(path).is_file():
        raise TinysetError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise TinysetError(f"{path}: not a DEAL checkpoint ({e.__class__.__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("schema") != CHECKPOINT_SCHEMA:
        raise TinysetError(f"{path}: not a DEAL checkpoint (schema {CHECKPOINT_SCHEMA} expected)")
    return ckpt


def check_compatible(path: Path, ckpt_cfg: DealConfig, cfg: DealConfig) -> None:
    """Raise a clear error when a checkpoint was trained with another preset or architecture."""
    if ckpt_cfg.preset != cfg.preset:
        raise TinysetError(f"{path}: checkpoint is from preset {ckpt_cfg.preset!r}, this run uses "
                           f"preset {cfg.preset!r}; pick the matching --preset or another "
                           f"checkpoint")
    a, b = ckpt_cfg.architecture_key(), cfg.architecture_key()
    diff = [k for k in a if a[k] != b[k]]
    switches = [k for k in ("use_pe", "use_hfe", "use_dgqa")
                if getattr(ckpt_cfg, k) != getattr(cfg, k)]
    if diff or switches:
        raise TinysetError(f"{path}: checkpoint differs from this config in "
                           f"{', '.join(diff + switches)}")


def load_model(path: Path, cfg: DealConfig | None = None) -> DEAL:
    """A model from checkpoint ``path`` (checked against ``cfg`` when given), in eval mode."""
    ckpt = read_checkpoint(path)
    ckpt_cfg = DealConfig.from_dict(ckpt["config"])
    if cfg is not None:
        check_compatible(path, ckpt_cfg, cfg)
    # Never reload backbone weights from a path recorded on another machine.
    model = build_model(ckpt_cfg.replace(backbone_weights=None))
    model.load_state_dict(ckpt["model"])
    return model.eval()


def train(cfg: DealConfig, train_json: Path, image_root: Path, work_dir: Path, *,
          steps: int | None = None, minutes: float | None = None, seed: int = 0,
          resume: bool = True, checkpoint_every: int = 200, device: str = "cpu",
          wall_minutes: float | None = None) -> TrainResult:
    """Train DEAL on a COCO file; stop at ``steps`` or after ``minutes`` of training time.

    Args:
        cfg: configuration (preset + ablation switches).
        train_json: COCO annotations to train on.
        image_root: folder the COCO ``file_name`` s are relative to (or the built dataset).
        work_dir: checkpoints (``last.pt``), ``log.jsonl`` and ``train.json``.
        steps: total optimisation steps (including resumed ones).
        minutes: total training budget in minutes of *process CPU time* (including resumed
            time). On a machine shared with other jobs, wall time would measure the neighbours;
            CPU time is what an unshared core would spend (equal to wall time with 1 thread).
        seed: random seed (sampling, crops, init).
        resume: continue from ``work_dir/last.pt`` when it exists.
        checkpoint_every: steps between checkpoints.
        device: torch device.
        wall_minutes: also stop after this much wall-clock time in this call (a deadline on a
            shared machine; the result records the steps actually done).

    Returns:
        A :class:`TrainResult`.
    """
    if steps is None and minutes is None:
        raise TinysetError("DEAL training: give --steps or --minutes")
    torch.manual_seed(seed)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = work_dir / "last.pt"
    ckpt = None
    if resume and ckpt_path.is_file():
        ckpt = read_checkpoint(ckpt_path)
        check_compatible(ckpt_path, DealConfig.from_dict(ckpt["config"]), cfg)
    model = build_model(cfg).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                  foreach=True)
    data = TrainImages(load_records(Path(train_json), Path(image_root)), cfg.input_scale,
                       cfg.train_crop)
    step, seconds = 0, 0.0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        if ckpt.get("optimizer") is not None:
            optimizer.load_state_dict(ckpt["optimizer"])
        step, seconds = int(ckpt["step"]), float(ckpt["seconds"])
    resumed_from = step
    rng = np.random.default_rng([seed, step])
    if ckpt is not None and ckpt.get("rng") is not None:
        # Continue both random streams exactly where the checkpointed run stopped, so resuming
        # gives the weights of an uninterrupted run (tests/deal/test_train_cli.py).
        rng.bit_generator.state = ckpt["rng"]["numpy"]
        torch.set_rng_state(ckpt["rng"]["torch"])
    budget = minutes * 60 if minutes is not None else float("inf")
    wall_end = time.monotonic() + wall_minutes * 60 if wall_minutes is not None else float("inf")
    total_steps = steps if steps is not None else None
    model.train()
    last: dict[str, float] = {}
    logged = False
    log = (work_dir / "log.jsonl").open("a", encoding="utf-8")
    try:
        with make_progress() as progress:
            task = progress.add_task("DEAL train", total=total_steps, completed=step)
            while ((total_steps is None or step < total_steps) and seconds < budget
                   and time.monotonic() < wall_end):
                t0 = time.process_time()
                last = _step(model, optimizer, data, cfg, rng, step, device)
                step += 1
                seconds += time.process_time() - t0
                progress.update(task, completed=step,
                                description=f"DEAL train loss {last['total']:.3f}")
                logged = step % 20 == 0 or step == 1
                if logged:
                    _log(log, step, seconds, last)
                if step % checkpoint_every == 0:
                    save_checkpoint(ckpt_path, model, optimizer, step, seconds, rng=rng)
            if last and not logged:
                _log(log, step, seconds, last)  # the run's final step is always logged
    finally:
        log.close()
    save_checkpoint(ckpt_path, model, optimizer, step, seconds, rng=rng)
    result = TrainResult(ckpt_path, step, seconds, resumed_from, last)
    from tinyset_builder.io import write_json

    write_json(work_dir / "train.json", {"config": cfg.to_dict(), **result.to_dict()})
    return result


def _log(log: Any, step: int, seconds: float, losses: dict[str, float]) -> None:
    log.write(json.dumps({"step": step, "seconds": round(seconds, 1), **losses}) + "\n")
    log.flush()


def _lr_at(cfg: DealConfig, step: int) -> float:
    return cfg.lr * min(1.0, (step + 1) / max(cfg.warmup_steps, 1))


def _step(model: DEAL, optimizer: torch.optim.Optimizer, data: TrainImages, cfg: DealConfig,
          rng: np.random.Generator, step: int, device: str) -> dict[str, float]:
    """One optimisation step (see the module docstring)."""
    for group in optimizer.param_groups:
        group["lr"] = _lr_at(cfg, step)
    idx = rng.integers(0, len(data), size=cfg.batch_size)
    samples = [data.sample(int(i), rng) for i in idx]
    images = torch.from_numpy(np.stack([s.image for s in samples])).to(device)
    images = images.permute(0, 3, 1, 2).float() / 255.0            # (B, 3, H, W)
    mode = "none" if not cfg.use_pe else ("intra" if step % 2 == 0 else "inter")
    feats = model.encode(images)
    paper = cfg.pgcpp_variant == "paper"
    spread = 1.0 if paper else 0.5  # paper: "sampled from the interior of a GT box"
    if mode == "intra":
        # One prompt set per category of each image, all decoded from the same encoding.
        per_image = [intra_class_sets(s, rng, cfg.intra_sets, spread) for s in samples]
        index = [i for i, image_sets in enumerate(per_image) for _ in image_sets]
        sets = [ps for image_sets in per_image for ps in image_sets]
        samples = [samples[i] for i in index]
        feats = feats.select(index)
    else:
        sets = [initial_prompts(s, mode, rng, spread) for s in samples]
    if cfg.use_pe and cfg.pgcpp_cycles > 0:
        # Ours: draw this step's number of cycles in 0..K so the loss also sees sparse prompt
        # sets; the paper runs K cycles every time.
        k = cfg.pgcpp_cycles if paper else int(rng.integers(0, cfg.pgcpp_cycles + 1))
        sets = cycle_prompts(model, feats, samples, sets, k, cfg, rng, guided=cfg.use_pgcpp)
    targets = targets_of(samples, sets, feats.input_size)
    coords, labels = batch_prompts(sets, images.device)
    n_gt = torch.tensor([len(t.boxes) + cfg.min_queries for t in targets], device=images.device)
    out = model.decode(feats, coords if cfg.use_pe else None, labels if cfg.use_pe else None,
                       min_queries=n_gt, dn_targets=[t.boxes for t in targets])
    losses = deal_loss(out, targets, cfg)
    optimizer.zero_grad(set_to_none=True)
    losses["total"].backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    return {k: round(float(v.detach()), 5) for k, v in losses.items()}
