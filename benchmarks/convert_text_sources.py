"""Conversion cost of the file-name / text sources, against the floor of reading image headers.

A converter needs each image's size, which it reads from the header; everything else (listing,
parsing labels, checks, building records) is overhead. The measured figure is the converter's
time per image next to the time of ``imageio.image_size`` alone over the same files, in the same
run, for CCPD-style input (labels in file names, 720x1160 JPEGs) and SKU110K-style input (one CSV,
150 boxes per image). Usage::

    .venv/bin/python benchmarks/convert_text_sources.py [--images 2000]

Prints a Markdown table; exits 1 if the CCPD converter (one box per image, so nearly all of its
work is the header) takes more than 8x the header floor, a sign that it decodes pixels or re-reads
files. For SKU110K the per-box cost (CSV parsing, checks, records) dominates and is reported as
boxes per second.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tinyset_builder.formats.ccpd_name import format_ccpd_name
from tinyset_builder.formats.sku110k_csv import format_sku110k_row
from tinyset_builder.imageio import image_size
from tinyset_builder.sources import convert_source
from tinyset_builder.synth.canvas import save_image

#: Decoding a 720x1160 JPEG costs over 10x its header; 8x leaves room for noisy machines.
MAX_RATIO = 8.0


def write_ccpd(raw: Path, n: int) -> list[Path]:
    base = raw / "license_plate" / "CCPD2019" / "ccpd_base"
    base.mkdir(parents=True)
    blank = save_image(raw / "blank.jpg", np.full((1160, 720, 3), 90, np.uint8)).read_bytes()
    paths = []
    for i in range(n):
        x = 100 + i % 300
        name = format_ccpd_name(f"{i:04d}", (90, 90), (x, 500, x + 200, 560),
                                [(x + 200, 560), (x, 560), (x, 500), (x + 200, 500)], [0] * 7,
                                50, 50)
        (base / name).write_bytes(blank)
        paths.append(base / name)
    return paths


def write_sku(raw: Path, n: int) -> list[Path]:
    base = raw / "sku110k" / "SKU110K_fixed"
    (base / "images").mkdir(parents=True)
    (base / "annotations").mkdir()
    blank = save_image(raw / "blank_sku.jpg", np.full((2448, 1836, 3), 90, np.uint8)).read_bytes()
    rows, paths = [], []
    for i in range(n):
        name = f"train_{i}.jpg"
        (base / "images" / name).write_bytes(blank)
        paths.append(base / "images" / name)
        rows += [format_sku110k_row(name, (10 * k, 20, 10 * k + 9, 60), 1836, 2448)
                 for k in range(150)]
    (base / "annotations" / "annotations_train.csv").write_text("\n".join(rows) + "\n")
    return paths


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    """Measure and print; non-zero exit if a converter is far above the header floor."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--images", type=int, default=2000)
    args = parser.parse_args()
    print("| input | images | boxes | header floor ms/image | converter ms/image | ratio | "
          "boxes/s |")
    print("|---|---|---|---|---|---|---|")
    ok = True
    for name, writer in (("license_plate", write_ccpd), ("sku110k", write_sku)):
        with tempfile.TemporaryDirectory() as d:
            raw = Path(d)
            paths = writer(raw, args.images)
            floor = timed(lambda paths=paths: [image_size(p) for p in paths])
            start = time.perf_counter()
            boxes = len(convert_source(name, raw).dataset.annotations)
            conv = time.perf_counter() - start
            ratio = conv / floor
            if name == "license_plate":
                ok &= ratio <= MAX_RATIO
            print(f"| {name} | {len(paths)} | {boxes} | {floor / len(paths) * 1e3:.3f} | "
                  f"{conv / len(paths) * 1e3:.3f} | {ratio:.2f} | {boxes / conv:,.0f} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
