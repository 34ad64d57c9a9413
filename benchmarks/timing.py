"""Timing shared by the speed benchmarks: medians of process CPU time and wall time.

On a shared machine CPU time measures the work and wall time the neighbours, so both are kept.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """Median (CPU seconds, wall seconds) of ``fn`` over ``repeats`` calls after one warm-up."""
    fn()
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(cpu), statistics.median(wall)
