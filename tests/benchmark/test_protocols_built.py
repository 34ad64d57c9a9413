"""``tinyset derive`` on a dataset that ``tinyset build`` really built (synthetic VisDrone)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.protocols import SETTINGS
from tinyset_builder.cli import main
from tinyset_builder.coco import CocoDataset


@pytest.mark.slow
@pytest.mark.integration
def test_derive_every_setting_on_a_real_build(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    raw, out = tmp_path / "raw", tmp_path / "built"
    assert main(["sources", "synth", "--out", str(raw), "--sources", "visdrone"]) == 0
    assert main(["build", "--raw", str(raw), "--out", str(out), "--sources", "visdrone"]) == 0
    capsys.readouterr()
    assert main(["derive", str(out), "--setting", "all"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out / "variants" / name) for name in SETTINGS]
    train = CocoDataset.load(out / "annotations" / "train.json")
    for name in SETTINGS:
        meta = json.loads((out / "variants" / name / "meta.json").read_text())
        assert meta["setting"] == name and meta["files"]
    noisy = CocoDataset.load(out / "variants" / "noise-40" / "train.json")
    assert [a.extra["clean_bbox"] for a in noisy.annotations] == \
        [list(a.bbox) for a in train.annotations]
    shot = CocoDataset.load(out / "variants" / "shot-1" / "train.json")
    assert len(shot.images) == len(train.images)
    assert sum(not a.iscrowd for a in shot.annotations) == \
        len({a.image_id for a in train.annotations if not a.iscrowd})
    prompts = json.loads((out / "variants" / "p2sod-2" / "prompts_test.json").read_text())
    test = CocoDataset.load(out / "annotations" / "test.json")
    assert sum(len(p["points"]) for p in prompts["prompts"]) == \
        sum(not a.iscrowd for a in test.annotations)
    # Run again: every variant is reused, the printed folders are the same.
    assert main(["derive", str(out), "--setting", "all"]) == 0
    assert capsys.readouterr().out.split() == printed
    # Another process with another hash seed rewrites the very same bytes.
    before = {p.name: p.read_bytes() for p in (out / "variants" / "p2sod-2").iterdir()}
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    proc = subprocess.run([sys.executable, "-m", "tinyset_builder.cli", "derive", str(out),
                           "--setting", "p2sod-2", "--force"], capture_output=True, text=True,
                          env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert {p.name: p.read_bytes() for p in (out / "variants" / "p2sod-2").iterdir()} == before
