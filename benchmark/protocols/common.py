"""Small helpers shared by the protocols: per-image grouping and rebuilding a dataset."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from tinyset_builder.coco import CocoAnnotation, CocoDataset, CocoImage


def grouped(ds: CocoDataset) -> dict[int, list[CocoAnnotation]]:
    """Annotations per image id, each list sorted by annotation id.

    Sorting makes every draw independent of the order annotations are stored in the file.
    """
    groups = ds.annotations_by_image()
    for anns in groups.values():
        anns.sort(key=lambda a: a.id)
    return groups


def boxes_array(anns: Iterable[CocoAnnotation]) -> npt.NDArray[np.float64]:
    """``(N, 4)`` float64 array of the ``[x, y, w, h]`` boxes."""
    return np.array([a.bbox for a in anns], dtype=np.float64).reshape(-1, 4)


def derived(ds: CocoDataset, *, annotations: list[CocoAnnotation],
            images: list[CocoImage] | None = None,
            variant: Mapping[str, Any]) -> CocoDataset:
    """A copy of ``ds`` with new annotations (and optionally images), tagged in ``info``.

    ``info["variant"]`` records how the file was derived, so a COCO file that travels without its
    ``meta.json`` still says what it is.
    """
    info = dict(ds.info)
    info["variant"] = dict(variant)
    return CocoDataset(images=list(ds.images) if images is None else images,
                       annotations=annotations, categories=list(ds.categories), info=info)


def in_file_order(ds: CocoDataset, keep: Mapping[int, CocoAnnotation]) -> list[CocoAnnotation]:
    """The annotations of ``keep`` (by id), in the order the source file lists them."""
    return [keep[a.id] for a in ds.annotations if a.id in keep]
