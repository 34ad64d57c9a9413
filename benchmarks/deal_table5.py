"""Table V on the machine at hand: training and inference time and memory, batch size 1.

Methods: RT-DETR (ultralytics ``rtdetr-resnet50.yaml``, one class, random init — the paper's
baseline detector), DEAL (``deal`` preset ``paper``: Swin-T, random init) and, where their
packages are installed, SAM3 and Rex-Omni (otherwise reported as not measured, with why).

* training time: one optimisation step (forward, loss, backward, AdamW step) on one image with
  its boxes; DEAL's step is ``deal.train._step``, i.e. with its PG-CPP cycles (intra- and
  inter-class steps alternate, both are timed). Median over ``--repeats`` after one warm-up.
* inference time: one forward of one image (DEAL: encode + one prompt set of one point).
* memory: on a GPU, ``torch.cuda.max_memory_allocated``; on the CPU, the peak resident set size
  of a fresh process building the model and running that phase twice, minus the process's size
  after its imports (weights, activations, gradients and optimizer state count, the Python and
  torch runtime do not).
* time on the CPU is process CPU time with one torch thread (the machine is shared; wall time
  would measure the neighbours), on a GPU wall time after ``cuda.synchronize``.

The report (``tinyset report --table 5``) shows each value as a ratio to RT-DETR beside the
paper's ratios; absolute values are shown only when measured on a GPU.

Example::

    nice -n 10 .venv/bin/python benchmarks/deal_table5.py --size 512 --out runs/deal_table5.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
PHASES = ("train", "infer")
METHODS = ("RT-DETR", "DEAL")
#: Packages the zero-shot rows would need (adapters/zeroshot*.py); measured only if importable.
ZERO_SHOT = {"SAM3": "sam3", "Rex-Omni": "rex_omni"}


def _scene(size: int):
    """One synthetic ``size``² image with ~30 small objects of 3 categories (fixed seed)."""
    import numpy as np

    from tinyset_builder.synth.canvas import scene

    img, boxes, labels = scene(np.random.default_rng(0), size, size, 30, 3, min_size=6,
                               max_size=24)
    xyxy = np.array([[x, y, x + w, y + h] for x, y, w, h in boxes], dtype=np.float32)
    return img, xyxy, np.asarray(labels, dtype=np.int64) + 1


class RTDETR:
    """ultralytics RT-DETR-R50 with one class, random init."""

    def __init__(self, size: int, device: str) -> None:
        import torch
        from ultralytics.nn.tasks import RTDETRDetectionModel

        self.model = RTDETRDetectionModel("rtdetr-resnet50.yaml", nc=1, verbose=False).to(device)
        self.model.nc = 1  # the loss reads it
        img, boxes, _ = _scene(size)
        self.x = torch.from_numpy(img).permute(2, 0, 1)[None].float().div(255).to(device)
        cxcywh = [[(b[0] + b[2]) / 2 / size, (b[1] + b[3]) / 2 / size, (b[2] - b[0]) / size,
                   (b[3] - b[1]) / size] for b in boxes]
        n = len(cxcywh)
        self.batch = {"img": self.x, "batch_idx": torch.zeros(n, device=device),
                      "cls": torch.zeros(n, 1, device=device),
                      "bboxes": torch.tensor(cxcywh, device=device)}
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4)

    def train_step(self, step: int) -> None:
        self.model.train()
        loss, _ = self.model.loss(self.batch)
        self.opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        self.opt.step()

    def infer(self) -> None:
        import torch

        self.model.eval()
        with torch.no_grad():
            self.model(self.x)


class DEAL:
    """DEAL, preset ``paper`` (Swin-T, random init), trained by ``deal.train._step``."""

    def __init__(self, size: int, device: str) -> None:
        import numpy as np
        import torch

        from deal.config import get_config
        from deal.data import Sample
        from deal.model import build_model

        self.cfg = get_config("paper", batch_size=1)
        self.model = build_model(self.cfg).to(device)
        self.device = device
        img, boxes, cats = _scene(size)
        sample = Sample(img, boxes, cats)

        class OneImage:  # the data interface _step samples from
            def __len__(self) -> int:
                return 1

            def sample(self, i: int, rng: np.random.Generator) -> Sample:
                return sample

        self.data = OneImage()
        self.rng = np.random.default_rng(0)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=self.cfg.lr)
        self.x = torch.from_numpy(img).permute(2, 0, 1)[None].float().div(255).to(device)
        cx, cy = (boxes[0, 0] + boxes[0, 2]) / 2, (boxes[0, 1] + boxes[0, 3]) / 2
        self.points = torch.tensor([[[cx, cy]]], device=device)
        self.labels = torch.ones(1, 1, dtype=torch.long, device=device)

    def train_step(self, step: int) -> None:
        from deal.train import _step

        self.model.train()
        _step(self.model, self.opt, self.data, self.cfg, self.rng, step, self.device)

    def infer(self) -> None:
        import torch

        self.model.eval()
        with torch.no_grad():
            self.model(self.x, self.points, self.labels)


def _build(method: str, size: int, device: str):
    return {"RT-DETR": RTDETR, "DEAL": DEAL}[method](size, device)


def _clock(device: str):
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        return time.perf_counter()
    return time.process_time()


def timing(method: str, size: int, device: str, repeats: int) -> dict[str, float]:
    """Median milliseconds of a training step and an inference."""
    m = _build(method, size, device)
    out = {}
    for phase in PHASES:
        # Warm up with two steps (DEAL alternates intra- and inter-class steps).
        fn = (lambda s, m=m: m.train_step(s)) if phase == "train" else (lambda s, m=m: m.infer())
        fn(0)
        fn(1)
        times = []
        for s in range(repeats):
            t0 = _clock(device)
            fn(s)
            times.append((_clock(device) - t0) * 1000)
        out[f"{phase}_time_ms"] = statistics.median(times)
    return out


def memory_child(method: str, phase: str, size: int, device: str) -> dict[str, float]:
    """Run ``phase`` of ``method`` twice in this (fresh) process; the memory it took.

    On the CPU: the peak RSS (sampled every 0.2 ms by a thread, ``deal_speed._rss_kb``) while
    building the model and running the phase, over the RSS after the imports and
    ``malloc_trim`` (freed import-time pages returned to the OS first).
    """

    import torch
    import ultralytics.nn.tasks  # noqa: F401
    from deal_speed import peak_rss

    import deal.train  # noqa: F401  (imports are part of the baseline)

    if device.startswith("cuda"):
        m = _build(method, size, device)
        torch.cuda.reset_peak_memory_stats()
        for s in range(2):
            m.train_step(s) if phase == "train" else m.infer()
        return {f"{phase}_memory_mb": torch.cuda.max_memory_allocated() / 2 ** 20}
    with peak_rss() as rss:
        m = _build(method, size, device)
        for s in range(2):
            m.train_step(s) if phase == "train" else m.infer()
    return {f"{phase}_memory_mb": (rss["peak"] - rss["before"]) / 1024}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=512, help="square input side (paper: 1024)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=Path("runs/deal_table5.json"))
    p.add_argument("--child", nargs=2, metavar=("METHOD", "PHASE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    if args.child:
        print(json.dumps(memory_child(*args.child, args.size, args.device)))
        return 0
    rows: dict[str, dict] = {}
    for method in METHODS:
        row = timing(method, args.size, args.device, args.repeats)
        for phase in PHASES:
            res = subprocess.run([sys.executable, __file__, "--size", str(args.size), "--device",
                                  args.device, "--child", method, phase],
                                 capture_output=True, text=True, check=True)
            row.update(json.loads(res.stdout.strip().splitlines()[-1]))
        rows[method] = {k: round(v, 1) for k, v in row.items()} | {"status": "ok"}
        print(method, rows[method], flush=True)
    for name, module in ZERO_SHOT.items():
        if importlib.util.find_spec(module) is None:
            rows[name] = {"status": f"not measured: package {module!r} not installed "
                                    f"(adapters/zeroshot.py)"}
        else:
            rows[name] = {"status": "not measured: zero-shot timing not implemented here"}
    how = ("time = median process CPU time, 1 torch thread" if args.device == "cpu"
           else "time = median wall time after cuda.synchronize")
    how += ("; memory = peak RSS of a fresh process over its size after imports"
            if args.device == "cpu" else "; memory = torch.cuda.max_memory_allocated")
    doc = {"device": args.device, "input": f"{args.size}x{args.size}, batch 1, FP32",
           "how": how, "command": "benchmarks/deal_table5.py " + " ".join(
               argv if argv is not None else sys.argv[1:]), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
