"""``tinyset eval`` and malformed input: one-line errors, JSON output, no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from eval_oracle import random_case

from benchmark.evaluate import EvalParams, evaluate
from tinyset_builder.errors import TinysetError
from tinyset_builder.io import write_json

ROOT = Path(__file__).resolve().parents[2]


def _gt() -> dict[str, Any]:
    return {"images": [{"id": 1, "file_name": "a", "width": 9, "height": 9},
                       {"id": 2, "file_name": "b", "width": 9, "height": 9}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5],
                             "area": 25, "iscrowd": 0}],
            "categories": [{"id": 1, "name": "a/1"}]}


def _dt(**kw: Any) -> list[dict[str, Any]]:
    return [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": .5},
            {"image_id": 2, "category_id": 1, "bbox": [1, 1, 5, 5], "score": .4, **kw}]


BAD_DT = {
    "missing score": ([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5]}],
                      "lacks key 'score'"),
    "missing bbox": ([{"image_id": 1, "category_id": 1, "score": .3}], "lacks key 'bbox'"),
    "nan score": (_dt(score=float("nan")), "detection #1: score is nan"),
    "inf box": (_dt(bbox=[0, 0, float("inf"), 5]), "detection #1: bbox"),
    "negative width": (_dt(bbox=[0, 0, -1, 5]), "negative width"),
    "short box": (_dt(bbox=[0, 0, 5]), "detection #1: bbox must be"),
    "unknown image": (_dt(image_id=77), "detection #1: image_id 77 is not in the ground truth"),
    "unknown category": (_dt(category_id=5), "category_id 5 is not in the ground truth"),
    "string score": (_dt(score="high"), "detection #1: score must be a number"),
    "not a list": ({"x": 1}, "must be a JSON list"),
    "duplicate ids": ([{**d, "id": 3} for d in _dt()], "duplicate detection id 3"),
}


@pytest.mark.parametrize("case", sorted(BAD_DT))
def test_malformed_detections_give_one_line_errors(case: str) -> None:
    dt, expected = BAD_DT[case]
    with pytest.raises(TinysetError) as e:
        evaluate(_gt(), dt)
    assert expected in str(e.value) and "\n" not in str(e.value)


def _mutate_gt(fn) -> dict[str, Any]:
    gt = _gt()
    fn(gt)
    return gt


BAD_GT = {
    "duplicate image id": (lambda g: g["images"].append(dict(g["images"][0])),
                           "duplicate image id 1"),
    "duplicate annotation id": (lambda g: g["annotations"].append(dict(g["annotations"][0])),
                                "duplicate annotation id 1"),
    "duplicate category id": (lambda g: g["categories"].append({"id": 1, "name": "x"}),
                              "duplicate category id 1"),
    "missing bbox": (lambda g: g["annotations"][0].pop("bbox"),
                     "annotation #0 (id 1) lacks key 'bbox'"),
    "nan area": (lambda g: g["annotations"][0].update(area=float("nan")), "area is nan"),
    "negative height": (lambda g: g["annotations"][0].update(bbox=[0, 0, 5, -2]), "negative"),
    "unknown image": (lambda g: g["annotations"][0].update(image_id=9), "image_id 9 is not"),
    "no images list": (lambda g: g.pop("images"), "lacks the 'images' list"),
}


@pytest.mark.parametrize("case", sorted(BAD_GT))
def test_malformed_ground_truth_gives_one_line_errors(case: str) -> None:
    fn, expected = BAD_GT[case]
    with pytest.raises(TinysetError) as e:
        evaluate(_mutate_gt(fn), _dt())
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_bad_options_and_prompts_are_user_errors() -> None:
    with pytest.raises(TinysetError, match="unknown backend"):
        evaluate(_gt(), _dt(), backend="fast")
    with pytest.raises(TinysetError, match="not in the threshold grid"):
        evaluate(_gt(), _dt(), size_iou="0.3")
    with pytest.raises(TinysetError, match="--by must be one of"):
        evaluate(_gt(), _dt(), by="split")
    dup = {"schema": "tinyset-prompts/1", "prompts": [{"image_id": 1, "category_id": 1}] * 2}
    with pytest.raises(TinysetError, match="appears twice"):
        evaluate(_gt(), _dt(), prompts=dup)
    with pytest.raises(TinysetError, match="schema"):
        evaluate(_gt(), _dt(), prompts={"schema": "other/2", "prompts": []})


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    code = ("import sys\nfrom tinyset_builder.cli import main\nrc = main(sys.argv[1:])\n"
            "heavy = [m for m in ('torch', 'ultralytics', 'fiftyone') if m in sys.modules]\n"
            "print('HEAVY', heavy, file=sys.stderr)\nsys.exit(rc)")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def test_cli_writes_design_json_and_never_imports_torch(tmp_path: Path) -> None:
    gt, dt = random_case(1)
    write_json(tmp_path / "gt.json", gt)
    write_json(tmp_path / "dt.json", dt)
    out = tmp_path / "m.json"
    proc = _run_cli("eval", "--gt", str(tmp_path / "gt.json"), "--dt", str(tmp_path / "dt.json"),
                    "--json", str(out), "--by", "source", "--by", "domain")
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stderr
    header = next(line for line in proc.stdout.splitlines() if "AP25" in line)
    cols = [c for c in header.split() if c.startswith("AP")]
    assert cols == ["AP25", "AP50", "AP75", "APvt", "APt", "APs", "APm", "AP"]
    res = json.loads(out.read_text())
    for key in ("AP25", "AP50", "AP75", "AP", "APvt", "APt", "APs", "APm", "AR", "AR100",
                "AR1500", "AR3000", "params", "backend", "by_source", "by_domain"):
        assert key in res
    assert res == json.loads(json.dumps(evaluate(tmp_path / "gt.json", tmp_path / "dt.json",
                                                 by=["source", "domain"])))


def test_cli_user_error_is_one_red_line(tmp_path: Path) -> None:
    write_json(tmp_path / "gt.json", _gt())
    write_json(tmp_path / "dt.json", _dt(score=None))
    proc = _run_cli("eval", "--gt", str(tmp_path / "gt.json"), "--dt", str(tmp_path / "dt.json"))
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("HEAVY")]
    assert len(lines) == 1 and "dt.json: detection #1: score must be a number" in lines[0]
    assert "Traceback" not in proc.stderr


def test_cli_options_prompts_nwd_size_iou_and_backend(tmp_path: Path) -> None:
    from tinyset_builder.cli import main

    gt, dt = random_case(3)
    write_json(tmp_path / "gt.json", gt)
    write_json(tmp_path / "dt.json", dt)
    pairs = sorted({(a["image_id"], a["category_id"]) for a in gt["annotations"]})[::2]
    prompts = {"schema": "tinyset-prompts/1", "setting": "p2sod-1",
               "prompts": [{"image_id": i, "category_id": c, "points": [[1.0, 1.0]]}
                           for i, c in pairs]}
    write_json(tmp_path / "p.json", prompts)
    base = ["eval", "--gt", str(tmp_path / "gt.json"), "--dt", str(tmp_path / "dt.json")]
    runs = {
        "prompts_nwd": (["--prompts", str(tmp_path / "p.json"), "--nwd", "12.8",
                         "--size-iou", "0.5:0.95"],
                        {"prompts": tmp_path / "p.json", "nwd": 12.8, "size_iou": "0.5:0.95"}),
        "pycocotools": (["--backend", "pycocotools", "--size-iou", "0.75"],
                        {"backend": "pycocotools", "size_iou": "0.75"}),
    }
    for name, (args, kwargs) in runs.items():
        out = tmp_path / f"{name}.json"
        assert main([*base, *args, "--json", str(out)]) == 0
        got = json.loads(out.read_text())
        want = json.loads(json.dumps(evaluate(tmp_path / "gt.json", tmp_path / "dt.json",
                                              **kwargs)))
        assert got == want, name
    got = json.loads((tmp_path / "prompts_nwd.json").read_text())
    assert got["NWD"]["C"] == 12.8 and got["params"]["prompts"]["units"] == len(pairs)
    assert got["params"]["size_iou"] == json.loads(json.dumps(
        list(EvalParams.make(size_iou="0.5:0.95").size_iou)))
    assert json.loads((tmp_path / "pycocotools.json").read_text())["backend"] == "pycocotools"
    # the native backend gives the same figures as pycocotools through the CLI too
    assert main([*base, "--size-iou", "0.75", "--json", str(tmp_path / "n.json")]) == 0
    native_res = json.loads((tmp_path / "n.json").read_text())
    py_res = json.loads((tmp_path / "pycocotools.json").read_text())
    assert {k: v for k, v in native_res.items() if k != "backend"} == \
        {k: v for k, v in py_res.items() if k != "backend"}


def test_cli_eval_options_parse_without_typer_and_pydantic(tmp_path: Path) -> None:
    # `tinyset eval` is parsed by argparse derived from the Typer signature (start-up cost);
    # every option must exist in both, with the same destinations and defaults.
    import inspect

    from benchmark.cli_eval import _argparse_from_signature, eval_cmd

    ap = _argparse_from_signature(eval_cmd, "tinyset eval")
    got = vars(ap.parse_args(["--gt", "g.json", "--dt", "d.npz"]))
    sig = inspect.signature(eval_cmd).parameters
    assert set(got) == set(sig)
    assert {k: v for k, v in got.items() if k not in ("gt", "dt")} == \
        {k: p.default for k, p in sig.items() if k not in ("gt", "dt")}
    full = vars(ap.parse_args(["--gt", "g", "--dt", "d", "--by", "source", "--by", "domain",
                               "--per-category", "--nwd", "12.8", "--json", "o.json"]))
    assert full["by"] == ["source", "domain"] and full["per_category"] and full["nwd"] == 12.8
    gt, dt = random_case(2)
    write_json(tmp_path / "gt.json", gt)
    write_json(tmp_path / "dt.json", dt)
    code = ("import sys\nfrom tinyset_builder.cli import main\nrc = main(sys.argv[1:])\n"
            "print('PYDANTIC', 'pydantic' in sys.modules, file=sys.stderr)\nsys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, "eval", "--gt", str(tmp_path / "gt.json"),
                           "--dt", str(tmp_path / "dt.json")], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 0 and "PYDANTIC False" in proc.stderr, proc.stderr
    bad = subprocess.run([sys.executable, "-m", "tinyset_builder.cli", "eval", "--gt", "x"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert bad.returncode == 2 and "--dt" in bad.stderr
