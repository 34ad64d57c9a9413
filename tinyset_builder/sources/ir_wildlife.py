"""IR Wildlife: BIRDSAI, aerial thermal-infrared videos of animals and people in African parks.

Provenance: no public dataset named "IR Wildlife" was found; the best-supported candidate is
BIRDSAI (Bondi et al., WACV 2020; LILA BC "Conservation Drones"), chosen in
``manifests/sources/ir_wildlife.toml``. The choice is this module: a different candidate is a
different converter; which BIRDSAI folders are read is :data:`SPLIT_DIRS`.

Layout under ``RAW/ir_wildlife/`` (the LILA zips unpacked side by side)::

    TrainReal/annotations/<video>.csv               # MOT-style rows, see formats/mot_csv.py
    TrainReal/images/<video>/<video>_<frame:010d>.jpg
    TestReal/{annotations,images}/
    TrainSimulation/...                             # AirSim renderings (not read, counted)

Coordinates: MOT ``x, y, w, h`` with ``x, y`` the top-left corner, in pixels of ~640x480 frames.

Quirks:
- categories are the species (human, elephant, lion, ...); a row of unknown species (-1) falls
  back on the coarse class column: ``human`` for class 1, ``unknown-animal`` for class 0;
- every frame of a video is an image, frames without rows being frames without objects;
- rows are matched to frames by the number at the end of the file name; when a video's numbers
  do not cover its CSV frames (some videos carry an offset in their file names), frames are
  matched by position in the sorted listing instead, counted as
  ``videos_matched_by_position``;
- the synthetic (AirSim) folders are left out by design (TinySet is real imagery); their rows
  are counted as ``dropped_simulated_boxes``;
- ``occlusion`` and ``noise`` flags and the track id are kept on each annotation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyset_builder.coco import CocoDataset
from tinyset_builder.errors import ErrorPolicy, where
from tinyset_builder.formats.mot_csv import MotRow, format_mot_row, read_mot_csv
from tinyset_builder.formats.text import read_lines
from tinyset_builder.paths import relative_posix
from tinyset_builder.sources.base import SourceAssembler, SourceInfo, SynthSummary
from tinyset_builder.synth.canvas import save_image, scene

SPLIT_DIRS = {"TrainReal": "train", "TestReal": "test"}
SIMULATED_DIRS = ("TrainSimulation", "TestSimulation")
#: BIRDSAI species ids 0-8, in order.
SPECIES = ("human", "elephant", "lion", "giraffe", "dog", "crocodile", "hippo", "zebra", "rhino")
UNKNOWN_ANIMAL = "unknown-animal"


def category_of(row: MotRow) -> str | None:
    """The category name of a row, or None if its species/class pair is not in the legend."""
    if row.cls not in (0, 1):
        return None
    if 0 <= row.species < len(SPECIES):
        return SPECIES[row.species]
    if row.species == -1:
        return "human" if row.cls == 1 else UNKNOWN_ANIMAL
    return None


def _frame_number(path: Path) -> int | None:
    tail = path.stem.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else None


def convert(root: Path, info: SourceInfo, policy: ErrorPolicy) -> CocoDataset:
    """Read the real-video folders; every frame is an image, every row a box."""
    asm = SourceAssembler(info, root, policy)
    if not any((root / d).is_dir() for d in SPLIT_DIRS):
        policy.fatal(str(root), f"none of {', '.join(SPLIT_DIRS)} found")
    for folder, split in SPLIT_DIRS.items():
        for csv_path in sorted((root / folder / "annotations").glob("*.csv")):
            _convert_video(asm, csv_path, root / folder / "images" / csv_path.stem, split)
    for folder in SIMULATED_DIRS:
        for csv_path in sorted((root / folder / "annotations").glob("*.csv")):
            asm.counts["dropped_simulated_boxes"] += sum(1 for _ in read_lines(csv_path, policy))
    return asm.finish()


def _convert_video(asm: SourceAssembler, csv_path: Path, frames_dir: Path, split: str) -> None:
    frames = sorted(frames_dir.glob("*.jpg"))
    if not frames:
        asm.policy.fail(str(csv_path), f"no frames found in {frames_dir}")
        return
    rows = read_mot_csv(csv_path, asm.policy)
    by_number = {n: p for p in frames if (n := _frame_number(p)) is not None}
    if {r.frame for r in rows} <= by_number.keys():
        lookup = by_number
    else:
        lookup = dict(enumerate(frames))
        asm.counts["videos_matched_by_position"] += 1
    keys = {p: asm.add_image(relative_posix(p, asm.root), split=split, location=str(csv_path))
            for p in frames}
    for row in rows:
        at = where(csv_path, row.line)
        frame = lookup.get(row.frame)
        if frame is None:
            asm.policy.fail(at, f"frame {row.frame} has no image in {frames_dir}")
            continue
        category = category_of(row)
        if category is None:
            asm.policy.fail(at, f"unknown species {row.species} with class {row.cls} (species "
                                f"-1..{len(SPECIES) - 1}, class 0 animal / 1 human)")
            continue
        key = keys[frame]
        if key is not None:
            asm.add_box(key, row.xywh, category, location=at,
                        extra={"track": row.object_id, "occlusion": row.occlusion,
                               "noise": row.noise})


def synthesize(root: Path, seed: int) -> SynthSummary:
    """Two short thermal videos (640x480 grayscale): 3 train frames, 2 test, ~15 animals each."""
    rng = np.random.default_rng(seed)
    plan = [("TrainReal", 3), ("TestReal", 2)]
    images = annotations = 0
    splits: dict[str, int] = {}
    for v, (folder, n_frames) in enumerate(plan):
        video = f"{seed * 10 + v:010d}_0000000000"
        rows = []
        for frame in range(n_frames):
            # Thermal frames are single-channel: keep one channel of the textured scene.
            pixels, boxes, labels = scene(rng, 640, 480, 15 if frame else 0, len(SPECIES),
                                          min_size=3, max_size=14)
            save_image(root / folder / "images" / video / f"{video}_{frame:010d}.jpg",
                       np.ascontiguousarray(pixels[:, :, 0]))
            for track, (box, species) in enumerate(zip(boxes, labels, strict=True)):
                cls = 1 if species == 0 else 0
                # Every fifth animal's species is unknown (-1): the class column decides.
                species_id = -1 if track % 5 == 4 else species
                rows.append(format_mot_row(frame, track, box, cls, species_id,
                                           int(rng.integers(0, 2)), 0))
            images += 1
        # Frame 0 has no rows: an empty frame, kept as an image without objects.
        csv_path = root / folder / "annotations" / f"{video}.csv"
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        csv_path.write_text("".join(f"{r}\n" for r in rows))
        annotations += len(rows)
        splits[SPLIT_DIRS[folder]] = n_frames
    return SynthSummary(images=images, annotations=annotations, splits=splits)
