"""Training (checkpoints, resume, preset checks), the CLI and the benchmark adapter."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from adapters import get_adapter
from adapters.base import Job
from deal.config import DealConfig, get_config
from deal.train import load_model, read_checkpoint, train
from tinyset_builder.cli import main
from tinyset_builder.errors import TinysetError


@pytest.fixture(scope="module")
def trained(scene_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two steps of the tiny preset, then one more from the checkpoint (resume)."""
    torch.set_num_threads(1)
    work = tmp_path_factory.mktemp("deal_work")
    cfg = get_config("tiny", input_scale=1.0, train_crop=64, batch_size=2, max_queries=30,
                     min_queries=5, pgcpp_cycles=1)
    first = train(cfg, scene_data / "annotations" / "train.json", scene_data, work, steps=2)
    assert first.steps == 2 and first.resumed_from == 0
    again = train(cfg, scene_data / "annotations" / "train.json", scene_data, work, steps=3)
    assert again.resumed_from == 2 and again.steps == 3
    return work, work / "last.pt"


def test_training_writes_checkpoint_log_and_summary(trained: tuple[Path, Path]) -> None:
    work, ckpt = trained
    state = read_checkpoint(ckpt)
    assert state["step"] == 3 and state["config"]["preset"] == "tiny"
    assert state["optimizer"] is not None
    logged = [json.loads(line) for line in (work / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [1, 2, 3]  # first step and each run's last step
    assert all(np.isfinite(r["total"]) for r in logged)
    assert json.loads((work / "train.json").read_text())["steps"] == 3


def test_resumed_training_gives_the_weights_of_uninterrupted_training(
        trained: tuple[Path, Path], scene_data: Path, tmp_path: Path) -> None:
    """``trained`` ran 2 steps, stopped, and resumed to 3: its weights must be exactly those of
    3 steps in one go (the checkpoint carries the random state), and differ from the initial
    weights in every parameter (training moved them all)."""
    _, resumed = trained
    cfg = get_config("tiny", input_scale=1.0, train_crop=64, batch_size=2, max_queries=30,
                     min_queries=5, pgcpp_cycles=1)
    train_json = scene_data / "annotations" / "train.json"
    straight = train(cfg, train_json, scene_data, tmp_path / "straight", steps=3)
    initial = train(cfg, train_json, scene_data, tmp_path / "initial", steps=0)
    assert initial.steps == 0
    a = read_checkpoint(resumed)["model"]
    b = read_checkpoint(straight.checkpoint)["model"]
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    start = read_checkpoint(initial.checkpoint)["model"]
    names = [n for n, _ in load_model(resumed).named_parameters()]
    assert names and [n for n in names if torch.equal(start[n], a[n])] == []


def test_checkpoint_from_another_preset_is_a_clear_error(trained: tuple[Path, Path],
                                                          tmp_path: Path) -> None:
    _, ckpt = trained
    state = torch.load(ckpt, weights_only=False)
    state["config"] = get_config("paper").to_dict()
    other = tmp_path / "paper.pt"
    torch.save(state, other)
    with pytest.raises(TinysetError, match=r"preset 'paper'.*preset 'tiny'"):
        load_model(other, get_config("tiny"))
    with pytest.raises(TinysetError, match="differs from this config in use_dgqa"):
        load_model(ckpt, get_config("tiny", "pe+hfe"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(TinysetError, match="not a DEAL checkpoint"):
        load_model(tmp_path / "junk.pt")


def test_resume_refuses_a_checkpoint_of_another_preset(trained: tuple[Path, Path],
                                                        scene_data: Path) -> None:
    work, _ = trained
    with pytest.raises(TinysetError, match="preset 'tiny'"):
        train(get_config("paper"), scene_data / "annotations" / "train.json", scene_data, work,
              steps=4)


def test_cli_predict_writes_detections_and_overlay(trained: tuple[Path, Path],
                                                   scene_data: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    _, ckpt = trained
    image = scene_data / "images" / "test" / "img_00000.png"
    rc = main(["deal", "predict", "--checkpoint", str(ckpt), "--image", str(image),
               "--points", "20,30;40.5,50", "--category-id", "7", "--out", str(tmp_path / "o"),
               "--threads", "1"])
    assert rc == 0
    dets = json.loads((tmp_path / "o" / "detections.json").read_text())
    assert dets and {d["category_id"] for d in dets} == {7}
    assert all(set(d) == {"image_id", "category_id", "bbox", "score"} for d in dets)
    from PIL import Image

    with Image.open(tmp_path / "o" / "overlay.png") as im:
        assert im.size == (96, 96)


@pytest.mark.parametrize(("points", "message"), [
    ("200,5", "outside the 96x96 image"),
    ("", "empty prompt list"),
    ("1,2;3", "is not 'x,y'"),
])
def test_cli_predict_bad_points_are_one_line_errors(trained: tuple[Path, Path], scene_data: Path,
                                                    tmp_path: Path, points: str, message: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    _, ckpt = trained
    image = scene_data / "images" / "test" / "img_00000.png"
    rc = main(["deal", "predict", "--checkpoint", str(ckpt), "--image", str(image),
               "--points", points, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_cli_predict_checks_the_preset(trained: tuple[Path, Path], scene_data: Path,
                                       tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, ckpt = trained
    rc = main(["deal", "predict", "--checkpoint", str(ckpt), "--preset", "paper", "--image",
               str(scene_data / "images" / "test" / "img_00000.png"), "--points", "5,5",
               "--out", str(tmp_path / "o")])
    assert rc == 2 and "preset 'tiny'" in capsys.readouterr().err


def test_cli_train_runs_and_resumes(scene_data: Path, tmp_path: Path) -> None:
    args = ["deal", "train", "--data", str(scene_data), "--out", str(tmp_path / "w"),
            "--steps", "1", "--ablation", "no-prompt", "--threads", "1"]
    assert main(args) == 0
    assert read_checkpoint(tmp_path / "w" / "last.pt")["step"] == 1
    assert main(["deal", "train", "--out", str(tmp_path / "x"), "--steps", "1"]) == 2


def _prompt_file(scene_data: Path, path: Path) -> dict:
    """A p2sod-3-style file by hand: per image, one point on one instance of one category."""
    gt = json.loads((scene_data / "annotations" / "test.json").read_text())
    prompts = []
    for img in gt["images"][:2]:
        a = next(a for a in gt["annotations"] if a["image_id"] == img["id"])
        x, y, w, h = a["bbox"]
        prompts.append({"image_id": img["id"], "category_id": a["category_id"],
                        "points": [[x + w / 2, y + h / 2]], "ann_ids": [a["id"]]})
    doc = {"schema": "tinyset-prompts/1", "setting": "p2sod-3", "split": "test", "seed": 0,
           "dataset": "", "num_points": 1, "jitter": 0.0, "prompts": prompts}
    path.write_text(json.dumps(doc))
    return doc


def test_adapter_trains_and_answers_a_prompt_file(scene_data: Path, tmp_path: Path) -> None:
    doc = _prompt_file(scene_data, tmp_path / "prompts_test.json")
    job = Job(method={"id": "deal", "adapter": "deal", "schedule": "1x",
                      "options": {"preset": "tiny", "steps": 1}},
              data_dir=scene_data, train_json=scene_data / "annotations" / "train.json",
              eval_json=scene_data / "annotations" / "test.json", work_dir=tmp_path / "job",
              prompts_json=tmp_path / "prompts_test.json", schedule="smoke")
    adapter = get_adapter("deal")
    assert adapter.unavailable(job) is None
    notes = adapter.train(job)
    assert notes["steps"] == 1 and notes["preset"] == "tiny"
    dets = adapter.predict(job)
    assert [d.image_id for d in dets] == [1, 2, 3]
    wanted = {e["image_id"]: e["category_id"] for e in doc["prompts"]}
    for d in dets:
        if d.image_id in wanted:
            assert len(d.scores) > 0 and set(d.labels.tolist()) == {wanted[d.image_id]}
        else:
            assert len(d.scores) == 0  # no prompt set, no detections
    no_prompts = Job(method=job.method, data_dir=scene_data, train_json=job.train_json,
                     eval_json=job.eval_json, work_dir=job.work_dir, schedule="smoke")
    assert "prompt file" in (adapter.unavailable(no_prompts) or "")


def test_cli_predict_prompt_file_mode(trained: tuple[Path, Path], scene_data: Path,
                                      tmp_path: Path) -> None:
    _, ckpt = trained
    doc = _prompt_file(scene_data, tmp_path / "p.json")
    rc = main(["deal", "predict", "--checkpoint", str(ckpt), "--prompts", str(tmp_path / "p.json"),
               "--gt", str(scene_data / "annotations" / "test.json"), "--images",
               str(scene_data), "--out", str(tmp_path / "o"), "--threads", "1"])
    assert rc == 0
    dets = json.loads((tmp_path / "o" / "detections.json").read_text())
    assert {d["image_id"] for d in dets} == {e["image_id"] for e in doc["prompts"]}


def test_config_round_trips_through_dict() -> None:
    cfg = get_config("paper", "pe+hfe")
    assert DealConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(TinysetError, match="unknown keys"):
        DealConfig.from_dict({"hidden": 3})
