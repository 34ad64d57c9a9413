"""One training loop for every detector and method: budget, warm-up, checkpoints, exact resume.

A method supplies a *step*: a function of the iteration index returning its loss terms (it draws
its images, crops and augmentations from :func:`baselines.data.step_rng`, a pure function of seed
and iteration). :func:`fit` does the rest the same way for everyone — optimiser and learning-rate
schedule, gradient clipping, the ``cpu`` schedule's operation count on step 0, checkpoints every
few steps with every module the method trains or tracks (e.g. an EMA teacher), and resumption that
reproduces the uninterrupted run exactly: torch's global generator is re-seeded from
(seed, iteration) before each step, so nothing random depends on where a run was interrupted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baselines.schedules import TrainPlan, lr_factor, warmup_steps
from tinyset_builder.io import atomic_path

#: Gradient-norm clip (mmdet's detectors use 35).
CLIP_NORM = 35.0


@dataclass
class FitResult:
    """What a finished :func:`fit` reports (goes into the results file's notes)."""

    iterations: int
    flops_per_step: float | None
    cpu_seconds: float
    first_loss: float | None
    final_loss: float | None
    resumed_from: int | None = None
    losses: list[float] = field(default_factory=list, repr=False)

    def notes(self) -> dict[str, Any]:
        """Flat notes for the results file."""
        out: dict[str, Any] = {"iterations": self.iterations,
                               "train_cpu_seconds": round(self.cpu_seconds, 1),
                               "first_loss": self.first_loss, "final_loss": self.final_loss}
        if self.flops_per_step is not None:
            out["gflops_per_step"] = round(self.flops_per_step / 1e9, 3)
        if self.resumed_from is not None:
            out["resumed_from_iteration"] = self.resumed_from
        return out


def make_optimizer(params: list[Any], plan: TrainPlan) -> Any:
    """SGD (momentum 0.9, weight decay 1e-4, the paper's) or AdamW (weight decay 1e-4)."""
    import torch

    if plan.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=plan.lr, weight_decay=1e-4)
    return torch.optim.SGD(params, lr=plan.lr, momentum=0.9, weight_decay=1e-4)


def _seed_torch(seed: int, it: int) -> None:
    import torch

    torch.manual_seed((seed * 1_000_003 + it) % (2**63))


def train_mode(model: Any, norm_eval: bool = False) -> None:
    """``model.train()``; with ``norm_eval`` its batch-norm layers stay in eval mode (they
    normalise with, and never update, their running statistics)."""
    from torch.nn.modules.batchnorm import _BatchNorm

    model.train()
    if norm_eval:
        for module in model.modules():
            if isinstance(module, _BatchNorm):
                module.eval()


def fit(model: Any, step: Callable[[int], Mapping[str, Any]], plan: TrainPlan, work_dir: Path,
        *, seed: int, config: Mapping[str, Any], tracked: Mapping[str, Any] | None = None,
        after_step: Callable[[int, int], None] | None = None,
        checkpoint_name: str = "checkpoint.pt") -> FitResult:
    """Train ``model`` with ``step`` under ``plan``; resume from ``work_dir/checkpoint_name``.

    Args:
        model: the trained module (its ``requires_grad`` parameters are optimised).
        step: ``step(it)`` runs the forward passes of iteration ``it`` and returns loss terms
            (summed for the backward pass).
        plan: the schedule (fixed ``iterations`` or a ``budget_minutes`` compute budget).
        work_dir: where the checkpoint lives.
        seed: the run's seed (torch is re-seeded from it before every step).
        config: everything that determines the result; a checkpoint is resumed only when its
            config equals this one.
        tracked: other modules whose state belongs to the run (e.g. ``{"teacher": ema}``): saved
            and restored with the model, never optimised here.
        after_step: called with ``(it, total)`` after each optimiser step (e.g. the EMA
            update; ``total`` is the run's length, known from step 0 on).
        checkpoint_name: file name of the checkpoint (two-phase methods use one per phase).
    """
    import torch

    tracked = dict(tracked or {})
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, plan)
    start, losses, total, flops, cpu_before = 0, [], plan.iterations, None, 0.0
    resumed_from = None
    ckpt = work_dir / checkpoint_name
    if ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        if state.get("config") == dict(config):
            model.load_state_dict(state["model"])
            for name, module in tracked.items():
                module.load_state_dict(state["tracked"][name])
            opt.load_state_dict(state["optimizer"])
            start, losses = int(state["iteration"]), list(state["losses"])
            total, flops = state["total"], state["flops_per_step"]
            cpu_before = float(state["cpu_seconds"])
            resumed_from = start
    work_dir.mkdir(parents=True, exist_ok=True)
    train_mode(model, plan.norm_eval)
    cpu0 = time.process_time()
    it = start
    while total is None or it < total:
        lr = plan.lr * lr_factor(it, total or 1, warmup_steps(total) if total else 1)
        for g in opt.param_groups:
            g["lr"] = lr
        _seed_torch(seed, it)
        if total is None:  # cpu budget: count this step's operations, then fix the length
            from torch.utils.flop_counter import FlopCounterMode

            with FlopCounterMode(display=False) as counter:
                loss = _backward(step(it), it, opt)
            flops = float(counter.get_total_flops())
            total = plan.steps_for(flops)
        else:
            loss = _backward(step(it), it, opt)
        torch.nn.utils.clip_grad_norm_(params, CLIP_NORM)
        opt.step()
        if after_step is not None:
            after_step(it, total)
        losses.append(round(loss, 5))
        it += 1
        every = max(1, min(200, total // 4))
        if it % every == 0 and it < total:
            _save(ckpt, model, tracked, opt, config, it, losses, total, flops,
                  cpu_before + time.process_time() - cpu0)
    ckpt.unlink(missing_ok=True)
    return FitResult(iterations=total, flops_per_step=flops,
                     cpu_seconds=cpu_before + time.process_time() - cpu0,
                     first_loss=losses[0] if losses else None,
                     final_loss=losses[-1] if losses else None, resumed_from=resumed_from,
                     losses=losses)


def fit_stage(done: Path, model: Any, step: Callable[[int], Mapping[str, Any]], plan: TrainPlan,
              work_dir: Path, *, seed: int, config: Mapping[str, Any],
              tracked: Mapping[str, Any] | None = None,
              after_step: Callable[[int, int], None] | None = None,
              checkpoint_name: str = "checkpoint.pt") -> FitResult:
    """:func:`fit` for the first stage of a two-stage method, kept once it has finished.

    The end state (model, tracked modules, result) is written to ``done``; when ``done`` already
    holds a finished stage with this ``config`` it is restored instead of trained again, so a
    run killed in the second stage resumes after the first. The caller removes ``done`` when the
    whole run has finished.
    """
    import torch

    tracked = dict(tracked or {})
    saved = torch.load(done, map_location="cpu", weights_only=False) if done.is_file() else None
    if saved is not None and saved["config"] == dict(config):
        model.load_state_dict(saved["model"])
        for k, m in tracked.items():
            m.load_state_dict(saved["tracked"][k])
        return saved["result"]
    result = fit(model, step, plan, work_dir, seed=seed, config=config, tracked=tracked,
                 after_step=after_step, checkpoint_name=checkpoint_name)
    with atomic_path(done, fsync=False) as tmp:
        torch.save({"config": dict(config), "model": model.state_dict(), "result": result,
                    "tracked": {k: m.state_dict() for k, m in tracked.items()}}, tmp)
    return result


def _backward(terms: Mapping[str, Any], it: int, opt: Any) -> float:
    import torch

    loss = sum(terms.values())
    if not torch.isfinite(loss):
        parts = {k: round(float(v), 4) for k, v in terms.items()}
        raise FloatingPointError(f"loss became {float(loss)} at iteration {it} ({parts})")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    return float(loss.detach())


def _save(path: Path, model: Any, tracked: Mapping[str, Any], opt: Any,
          config: Mapping[str, Any], it: int, losses: list[float], total: int,
          flops: float | None, cpu_seconds: float) -> None:
    import torch

    with atomic_path(path, fsync=False) as tmp:
        torch.save({"config": dict(config), "model": model.state_dict(),
                    "tracked": {k: m.state_dict() for k, m in tracked.items()},
                    "optimizer": opt.state_dict(), "iteration": it, "losses": losses,
                    "total": total, "flops_per_step": flops, "cpu_seconds": cpu_seconds}, tmp)
