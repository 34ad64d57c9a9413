"""DEAL speed and memory against its own base detector, measured in one run.

Three comparisons (issue 6, "Speed and memory"):

1. full forward of DEAL (1 prompt point) vs the same network without the prompt branch
   (``use_pe = use_dgqa = False``: backbone + HFE + query selection + decoder): latency ratio and
   peak-memory ratio (goal ≤ 1.2× each; the paper reports 40.8 vs 28.1 ms, 1.45×);
2. a new prompt set on an already-encoded image (``decode`` only) vs a full forward (goal ≤ 15 %);
3. full forward with 10 prompt points vs 1 point (goal ≤ 1.1×).

Latency is the median over ``--repeats`` runs of *process CPU time* with one torch thread (on a
machine shared with other jobs, CPU time measures the work, wall time measures the neighbours);
wall-clock medians are printed beside it. Peak memory is measured in a fresh subprocess per
variant: the growth of the resident set size (sampled every 0.2 ms by a thread) over the
resident size just before the first forward, after ``malloc_trim``, i.e. the activations and
workspace of one inference (weights and the torch runtime are loaded before and excluded; the
total peak is printed too).

Example::

    nice -n 10 .venv/bin/python benchmarks/deal_speed.py --preset tiny --size 512
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from timing import timed  # noqa: E402


def _models(preset: str):
    from deal.config import get_config
    from deal.model import build_model

    deal = build_model(get_config(preset)).eval()
    base = build_model(get_config(preset, "no-prompt")).eval()
    return deal, base


def _points(n: int, size: int):
    import torch

    g = torch.Generator().manual_seed(n)
    coords = torch.rand(1, n, 2, generator=g) * (size - 1)
    return coords, torch.ones(1, n, dtype=torch.long)


def latency(preset: str, size: int, repeats: int) -> dict:
    """CPU-time and wall-time medians of every variant, in one process."""
    import torch

    torch.manual_seed(0)
    deal, base = _models(preset)
    image = torch.rand(1, 3, size, size)
    one, ten = _points(1, size), _points(10, size)
    res: dict[str, dict[str, float]] = {}
    with torch.no_grad():
        feats = deal.encode(image)
        variants = {
            "base_forward": lambda: base(image),
            "deal_forward_1pt": lambda: deal(image, *one),
            "deal_forward_10pt": lambda: deal(image, *ten),
            "deal_new_prompt_on_cached": lambda: deal.decode(feats, *one),
        }
        for name, fn in variants.items():
            cpu, wall = timed(fn, repeats)
            res[name] = {"cpu_ms": round(cpu * 1000, 2), "wall_ms": round(wall * 1000, 2)}
        res["queries"] = {"deal_1pt": int(deal(image, *one).num_queries[0]),
                          "base": int(base(image).num_queries[0])}
    return res


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024


@contextlib.contextmanager
def peak_rss() -> Iterator[dict[str, int]]:
    """Sample this process's RSS every 0.2 ms while the block runs.

    Freed heap pages are returned to the OS first (``malloc_trim``), so that the block cannot
    reuse memory the process already holds; yields a dict whose ``before`` and ``peak`` (kB) are
    filled in (``peak`` when the block ends).
    """
    import ctypes
    import threading

    ctypes.CDLL("libc.so.6").malloc_trim(0)
    out = {"before": _rss_kb()}
    peak = [out["before"]]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_kb())
            time.sleep(0.0002)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        yield out
    finally:
        done.set()
        t.join()
        out["peak"] = max(peak[0], _rss_kb())


def memory_child(preset: str, size: int, variant: str) -> dict:
    """Runs in a subprocess: peak RSS growth during one forward of ``variant``.

    Freed heap pages are returned to the OS first (``malloc_trim``) so that the forward cannot
    hide in memory freed by model construction (:func:`peak_rss`).
    """
    import torch

    torch.manual_seed(0)
    deal, base = _models(preset)
    model = base if variant == "base" else deal
    del deal, base
    image = torch.rand(1, 3, size, size)
    pts = _points(1, size)
    with peak_rss() as rss, torch.no_grad():
        if variant == "base":
            model(image)
        else:
            model(image, *pts)
    return {"peak_growth_mb": round((rss["peak"] - rss["before"]) / 1024, 1),
            "peak_total_mb": round(rss["peak"] / 1024, 1)}


def memory(preset: str, size: int) -> dict:
    """Peak-memory figures of the base detector and DEAL, each in a fresh interpreter."""
    out = {}
    for variant in ("base", "deal"):
        proc = subprocess.run([sys.executable, __file__, "--child", variant, "--preset", preset,
                               "--size", str(size)], capture_output=True, text=True, check=True)
        out[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; prints a table and optionally writes JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--size", type=int, default=512, help="square network input in pixels")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    if args.child:
        print(json.dumps(memory_child(args.preset, args.size, args.child)))
        return 0
    lat = latency(args.preset, args.size, args.repeats)
    mem = memory(args.preset, args.size)
    full = lat["deal_forward_1pt"]["cpu_ms"]
    ratios = {
        "latency_deal_vs_base": round(full / lat["base_forward"]["cpu_ms"], 3),
        "memory_deal_vs_base": round(mem["deal"]["peak_growth_mb"]
                                     / max(mem["base"]["peak_growth_mb"], 1e-6), 3),
        "new_prompt_vs_full_forward": round(lat["deal_new_prompt_on_cached"]["cpu_ms"] / full, 3),
        "points_10_vs_1": round(lat["deal_forward_10pt"]["cpu_ms"] / full, 3),
    }
    goals = {"latency_deal_vs_base": 1.2, "memory_deal_vs_base": 1.2,
             "new_prompt_vs_full_forward": 0.15, "points_10_vs_1": 1.1}
    result = {"preset": args.preset, "size": args.size, "threads": 1, "repeats": args.repeats,
              "latency": lat, "memory": mem, "ratios": ratios, "goals": goals,
              "torch": torch.__version__}
    print(f"DEAL speed/memory, preset {args.preset}, input {args.size}², 1 thread, "
          f"median of {args.repeats}")
    for name, v in lat.items():
        if "cpu_ms" in v:
            print(f"  {name:<28} {v['cpu_ms']:>9.1f} ms CPU {v['wall_ms']:>9.1f} ms wall")
    print(f"  queries: {lat['queries']}")
    for variant, v in mem.items():
        print(f"  memory {variant:<6} peak growth {v['peak_growth_mb']:>8.1f} MB "
              f"(process peak {v['peak_total_mb']:.1f} MB)")
    for name, r in ratios.items():
        ok = "ok" if r <= goals[name] else "MISSED"
        print(f"  {name:<28} {r:>7.3f}  (goal <= {goals[name]})  {ok}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
