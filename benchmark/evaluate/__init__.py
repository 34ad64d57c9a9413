"""The TinySet evaluator: pycocotools-exact AP25/50/75, AP, APvt/t/s/m and AR, fast.

    >>> from benchmark.evaluate import evaluate
    >>> evaluate("annotations/test.json", "detections.json")["AP50"]  # doctest: +SKIP

numba (the native core) is imported only when the native backend runs.
"""

from __future__ import annotations

from benchmark.evaluate.api import BACKENDS, evaluate, evaluate_arrays, match_detections
from benchmark.evaluate.native import EvalArrays, ImageMatches
from benchmark.evaluate.params import EvalParams

__all__ = ["BACKENDS", "EvalArrays", "EvalParams", "ImageMatches", "evaluate",
           "evaluate_arrays", "match_detections"]
