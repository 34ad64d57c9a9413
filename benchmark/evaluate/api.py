"""Public entry points: :func:`evaluate`, :func:`evaluate_arrays` and :func:`match_detections`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmark.evaluate.inputs import (
    Detections,
    GroundTruth,
    Prompts,
    image_groups,
    load_inputs,
    load_prompts,
    make_units,
)
from benchmark.evaluate.native import EvalArrays, ImageMatches, match_native, run_native
from benchmark.evaluate.params import MAX_DETS, EvalParams
from benchmark.evaluate.summary import summarize
from tinyset_builder.errors import TinysetError

BACKENDS = ("native", "pycocotools", "faster-coco-eval")


def _arrays(gt: GroundTruth, dt: Detections, prompts: Prompts | None, params: EvalParams,
            backend: str, image_mask: np.ndarray | None = None) -> EvalArrays:
    if backend == "native":  # no reference kept here: run_native frees the units early
        return run_native(gt, dt, make_units(gt, dt, prompts, image_mask), params)
    from benchmark.evaluate.cocoapi import run_cocoapi

    return run_cocoapi(gt, dt, make_units(gt, dt, prompts, image_mask), params, backend)


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise TinysetError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def evaluate_arrays(gt: Any, dt: Any, *, prompts: Any = None, backend: str = "native",
                    params: EvalParams | None = None) -> EvalArrays:
    """COCOeval's ``precision``/``recall``/``scores`` arrays under the TinySet protocol.

    Args:
        gt: COCO GT (path, dict or ``CocoDataset``).
        dt: COCO results (path or list of dicts).
        prompts: P2SOD prompt file (path or dict), or None.
        backend: ``native``, ``pycocotools`` or ``faster-coco-eval``.
        params: the protocol (default: DESIGN.md's).

    Returns:
        The arrays, shaped ``(T, R, K, A, M)`` / ``(T, K, A, M)`` as pycocotools shapes them.
    """
    _check_backend(backend)
    g, d = load_inputs(gt, dt, native=backend == "native")
    p = load_prompts(prompts, g) if prompts is not None else None
    return _arrays(g, d, p, params or EvalParams(), backend)


def evaluate(gt: Any, dt: Any, *, prompts: Any = None, backend: str = "native",
             by: str | Sequence[str] | None = None, size_iou: str | float = "0.5",
             max_dets: Sequence[int] | int | str = MAX_DETS, class_agnostic: bool = True,
             nwd: float | None = None) -> dict[str, Any]:
    """Evaluate detections with the TinySet protocol (DESIGN.md, "Evaluation protocol").

    Args:
        gt: COCO GT: a JSON path, a dict or a :class:`tinyset_builder.coco.CocoDataset`.
        dt: COCO results: a JSON path or a list of ``{image_id, category_id, bbox, score}``.
        prompts: a P2SOD prompt file (path or dict, docs/prompts.md): evaluate only the
            ``(image_id, category_id)`` units it lists.
        backend: ``native`` (default), ``pycocotools`` or ``faster-coco-eval``; same numbers.
        by: ``"source"`` and/or ``"domain"``: add ``by_source`` / ``by_domain`` breakdowns,
            grouping images by that image field.
        size_iou: IoU threshold(s) of ``APvt``-``APm``: ``"0.5"`` or ``"0.5:0.95"`` (AI-TOD).
        max_dets: detection caps per unit; headline numbers use the largest.
        class_agnostic: pool categories (default) or average over categories.
        nwd: if given, the NWD constant C (px): also report a ``NWD`` block with AP figures
            computed with NWD in place of IoU (native core), beside the IoU ones.

    Returns:
        ``AP25 AP50 AP75 AP APvt APt APs APm``, ``AR`` figures, ``params``, ``backend`` and the
        asked breakdowns. Values are fractions in [0, 1], or -1 where undefined.

    Raises:
        TinysetError: malformed input (one line naming the file and record).
    """
    return evaluate_full(gt, dt, prompts=prompts, backend=backend, by=by, size_iou=size_iou,
                         max_dets=max_dets, class_agnostic=class_agnostic, nwd=nwd)[0]


def evaluate_full(gt: Any, dt: Any, *, prompts: Any = None, backend: str = "native",
                  by: str | Sequence[str] | None = None, size_iou: str | float = "0.5",
                  max_dets: Sequence[int] | int | str = MAX_DETS, class_agnostic: bool = True,
                  nwd: float | None = None) -> tuple[dict[str, Any], EvalArrays]:
    """:func:`evaluate`, also returning the whole-set COCOeval arrays."""
    _check_backend(backend)
    params = EvalParams.make(size_iou=size_iou, max_dets=max_dets,
                             class_agnostic=class_agnostic)
    g, d = load_inputs(gt, dt, native=backend == "native" or nwd is not None)
    p = load_prompts(prompts, g) if prompts is not None else None
    arrays = _arrays(g, d, p, params, backend)
    out: dict[str, Any] = summarize(arrays.precision, arrays.recall, params)
    info: dict[str, Any] = params.to_dict()
    info.update({"gt": g.label, "dt": d.label, "images": len(g.image_ids),
                 "gt_boxes": len(g), "detections": len(d)})
    if p is not None:
        info["prompts"] = {"file": p.label, "sha256": p.digest, "setting": p.setting,
                           "units": len(p.img)}
    if nwd is not None:
        if not nwd > 0:
            raise TinysetError(f"the NWD constant must be > 0, got {nwd}")
        nwd_arr = run_native(g, d, make_units(g, d, p), params, criterion="nwd", nwd_c=nwd)
        out["NWD"] = {"C": float(nwd), **summarize(nwd_arr.precision, nwd_arr.recall, params)}
    out["params"] = info
    out["backend"] = backend
    fields = [by] if isinstance(by, str) else list(by or [])
    for field in fields:
        groups = image_groups(g, field)
        out[f"by_{field}"] = {
            name: summarize(*_pr(_arrays(g, d, p, params, backend, mask)), params)
            for name, mask in groups.items()}
    return out, arrays


def _pr(a: EvalArrays) -> tuple[np.ndarray, np.ndarray]:
    return a.precision, a.recall


def match_detections(gt: Any, dt: Any, *, iou: float = 0.5, class_agnostic: bool = True,
                     prompts: Any = None, max_det: int | None = None
                     ) -> dict[int, ImageMatches]:
    """Per-image TP/FP of each detection and matched flag of each GT, at one IoU threshold.

    The same greedy rule as :func:`evaluate` (area range ``all``): a detection is ``"tp"``,
    ``"fp"``, ``"ignored"`` (it matched a crowd region) or ``"unevaluated"`` (beyond
    ``max_det`` in its image; None = no cap).

    Returns:
        ``{image_id: ImageMatches}`` for every GT image (see
        :class:`benchmark.evaluate.native.ImageMatches` for the fields).
    """
    g, d = load_inputs(gt, dt, native=True)
    p = load_prompts(prompts, g) if prompts is not None else None
    if not 0 < iou <= 1:
        raise TinysetError(f"iou must be in (0, 1], got {iou}")
    return match_native(g, d, make_units(g, d, p), iou=float(iou),
                        class_agnostic=class_agnostic, max_det=max_det)


__all__ = ["BACKENDS", "evaluate", "evaluate_arrays", "evaluate_full", "match_detections"]
