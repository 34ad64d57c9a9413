"""The same guarantees seen from the command line: a hostile record stops ``tinyset build
--on-error raise`` with one line naming file and line (exit 2, no traceback); with the default
``--on-error skip`` it is counted in ``build.json`` and the build verifies; ``tinyset eval`` on
hostile files answers with one line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from _hostile import ROOT, TINYSET, cli_env, run_cli

pytestmark = pytest.mark.slow

STEM = "0000001_00000_d_0000001"


def _raw(tmp_path: Path) -> tuple[Path, Path]:
    from PIL import Image

    raw = tmp_path / "raw"
    split = raw / "visdrone" / "VisDrone2019-DET-val"
    (split / "images").mkdir(parents=True)
    (split / "annotations").mkdir()
    Image.new("RGB", (300, 200), (90, 120, 60)).save(split / "images" / f"{STEM}.jpg")
    ann = split / "annotations" / f"{STEM}.txt"
    ann.write_text("10,10,8,8,1,4,0,0\nnan,10,8,8,1,4,0,0\n20,20,6,6,1,1,0,0\n"
                   "30,30,5,5,1,99,0,0\n40,40,9,9,1,4,0,0\n")
    return raw, ann


def test_build_raise_and_skip_from_the_cli(tmp_path: Path) -> None:
    raw, ann = _raw(tmp_path)
    p = subprocess.run([TINYSET, "build", "--raw", str(raw), "--out", str(tmp_path / "a"),
                        "--on-error", "raise", "--no-stats"], env=cli_env(),
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert f"{ann}:2" in p.stderr and "non-finite" in p.stderr, p.stderr

    out = tmp_path / "b"
    run_cli([TINYSET, "build", "--raw", str(raw), "--out", str(out), "--no-stats",
             "--keep-empty"])
    s = json.loads((out / "build.json").read_text())["sources"]["visdrone"]
    assert sum(s["converter"]["skipped"].values()) == 2  # the NaN line and category 99
    assert s["annotations"]["in"] == 3
    assert s["annotations"]["records_out"] >= 3
    run_cli([TINYSET, "build", "--out", str(out), "--verify"])


@pytest.mark.parametrize("payload", [b"\xff\xfe garbage", b'[{"image_id": 1, "bbox": [NaN]}]'])
def test_eval_cli_hostile_detections(tmp_path: Path, payload: bytes) -> None:
    gt = {"images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 64}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4],
                           "area": 12, "iscrowd": 0}],
          "categories": [{"id": 1, "name": "a"}]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    dt = tmp_path / "dt.json"
    dt.write_bytes(payload)
    p = subprocess.run([TINYSET, "eval", "--gt", str(tmp_path / "gt.json"), "--dt", str(dt),
                        "--json", str(tmp_path / "m.json")], env=cli_env(),
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and str(dt) in p.stderr, p.stderr
    assert not (tmp_path / "m.json").exists()
