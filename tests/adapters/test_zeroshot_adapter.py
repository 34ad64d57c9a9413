"""The zero-shot adapter: what it reports when SAM3 / Rex-Omni or their weights are missing (they
are here), parsing of their real return shapes, and the prompts it sends (with stand-in
packages that return what the real ones return: SAM3 {"boxes", "scores", "masks"} tensors,
Rex-Omni {"success", "extracted_predictions"} dicts)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmark"))
from bench_fixture import write_tiny_dataset

from adapters import zeroshot as zs
from adapters.base import Job
from tinyset_builder.errors import TinysetError

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("zs") / "tiny", size=96,
                              counts={"train": 1, "val": 1, "test": 2}, objects=3)


@pytest.fixture(scope="module")
def prompts(data: Path) -> Path:
    from benchmark.protocols import derive_variant

    return Path(derive_variant(data, "p2sod-1", seed=0)) / "prompts_test.json"


def make_job(data: Path, tmp: Path, model: str, prompt: str = "text",
             prompts_json: Path | None = None, **extra) -> Job:
    return Job(method={"id": "39", "adapter": "zeroshot",
                       "options": {"model": model, "prompt": prompt}}, data_dir=data,
               train_json=data / "annotations" / "train.json",
               eval_json=data / "annotations" / "test.json", work_dir=tmp,
               prompts_json=prompts_json, extra=extra)


def test_unavailable_names_package_weights_and_how(data: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for env in ("TINYSET_SAM3_CHECKPOINT", "TINYSET_REX_OMNI_PATH"):
        monkeypatch.delenv(env, raising=False)
    adapter = zs.ZeroShotAdapter()
    msg = adapter.unavailable(make_job(data, tmp_path, "sam3"))
    if sys.version_info < (3, 12):
        assert "Python >= 3.12 for package sam3" in msg
    else:
        assert "package sam3" in msg
    assert "facebook/sam3" in msg and "TINYSET_SAM3_CHECKPOINT" in msg
    msg = adapter.unavailable(make_job(data, tmp_path, "rex-omni"))
    assert "package rex_omni (pip install git+https://github.com/IDEA-Research/Rex-Omni" in msg
    assert "IDEA-Research/Rex-Omni" in msg and "TINYSET_REX_OMNI_PATH" in msg
    weights = tmp_path / "rex"
    weights.mkdir()
    monkeypatch.setenv("TINYSET_REX_OMNI_PATH", str(weights))
    msg = adapter.unavailable(make_job(data, tmp_path, "rex-omni"))
    assert "weights" not in msg and "package rex_omni" in msg
    msg = adapter.unavailable(make_job(data, tmp_path, "rex-omni", model_path="/no/weights"))
    assert "weights /no/weights not found" in msg
    assert "P2SOD prompt file" in adapter.unavailable(make_job(data, tmp_path, "sam3", "box"))
    assert "unknown model 'owl'" in adapter.unavailable(make_job(data, tmp_path, "owl"))
    assert "prompt must be text or box" in adapter.unavailable(
        make_job(data, tmp_path, "sam3", "click"))


def test_parsing_of_the_real_return_shapes() -> None:
    out = {"boxes": torch.tensor([[1.0, 2.0, 5.0, 9.0]], dtype=torch.bfloat16),
           "scores": torch.tensor([0.75]), "masks": torch.zeros(1, 1, 96, 96, dtype=torch.bool)}
    boxes, scores = zs.sam3_boxes(out)
    assert boxes.tolist() == [[1.0, 2.0, 5.0, 9.0]] and scores.tolist() == [0.75]
    with pytest.raises(TinysetError, match="without boxes/scores"):
        zs.sam3_boxes({"masks": None})
    result = {"success": True, "extracted_predictions": {
        "car": [{"type": "box", "coords": [1, 2, 3, 4]}, {"type": "box", "coords": [5, 5, 9, 9]}],
        "person": [{"type": "point", "coords": [5, 6]}]}}
    parsed = zs.rex_boxes(result)
    assert parsed["car"].tolist() == [[1, 2, 3, 4], [5, 5, 9, 9]]
    assert parsed["person"].shape == (0, 4)
    assert zs.rex_boxes({"success": False}) == {}
    assert zs.order_scores(4).tolist() == [1.0, 0.75, 0.5, 0.25]
    d = zs.merge(3, [(parsed["car"], np.asarray([0.2, 0.9], np.float32), 7),
                     (parsed["person"], np.zeros(0, np.float32), 8)])
    assert d.scores.tolist() == pytest.approx([0.9, 0.2]) and d.labels.tolist() == [7, 7]
    assert d.xyxy[0].tolist() == [5, 5, 9, 9]
    assert len(zs.merge(3, []).scores) == 0
    assert zs.phrase("visdrone/pedestrian_crossing") == "pedestrian crossing"
    assert zs.normalized_cxcywh([10, 20, 4, 8], 100, 200) == [0.12, 0.12, 0.04, 0.04]


class FakeProcessor:
    """Follows sam3.model.sam3_image_processor.Sam3Processor's calls and return types."""

    calls: ClassVar[list[tuple[str, object]]] = []

    def __init__(self, model: object, confidence_threshold: float = 0.5) -> None:
        self.threshold = confidence_threshold

    def set_image(self, image: object) -> dict:
        return {"size": image.size}

    def reset_all_prompts(self, state: dict) -> None:
        state.pop("prompt", None)

    def _output(self) -> dict:
        return {"boxes": torch.tensor([[4.0, 4.0, 12.0, 10.0], [30.0, 30.0, 40.0, 44.0]]),
                "scores": torch.tensor([0.3, 0.8]), "masks": torch.zeros(2, 1, 96, 96)}

    def set_text_prompt(self, state: dict, prompt: str) -> dict:
        FakeProcessor.calls.append(("text", prompt))
        return self._output()

    def add_geometric_prompt(self, box: list[float], label: bool, state: dict) -> dict:
        FakeProcessor.calls.append(("box", tuple(round(v, 6) for v in box)))
        return self._output()


@pytest.fixture
def fake_sam3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    built: dict = {}
    pkg = types.ModuleType("sam3")
    builder = types.ModuleType("sam3.model_builder")
    builder.build_sam3_image_model = lambda **kw: built.update(kw) or object()
    model_pkg = types.ModuleType("sam3.model")
    proc = types.ModuleType("sam3.model.sam3_image_processor")
    proc.Sam3Processor = FakeProcessor
    for name, mod in (("sam3", pkg), ("sam3.model_builder", builder), ("sam3.model", model_pkg),
                      ("sam3.model.sam3_image_processor", proc)):
        monkeypatch.setitem(sys.modules, name, mod)
    FakeProcessor.calls = []
    ckpt = tmp_path / "sam3.pt"
    ckpt.write_bytes(b"weights")
    return ckpt


def test_text_prompts_use_each_sources_category_names(data: Path, tmp_path: Path,
                                                      fake_sam3: Path) -> None:
    adapter = zs.ZeroShotAdapter()
    job = make_job(data, tmp_path, "sam3", checkpoint=str(fake_sam3))
    assert adapter.train(job)["training"] == "none (zero-shot)"
    dets = adapter.predict(job)
    test = json.loads((data / "annotations" / "test.json").read_text())
    assert [d.image_id for d in dets] == [i["id"] for i in test["images"]]
    assert FakeProcessor.calls == [("text", "car"), ("text", "person")] * 2
    assert sorted(set(dets[0].labels.tolist())) == [1, 2]  # one part per prompted category
    assert dets[0].scores.tolist() == pytest.approx([0.8, 0.8, 0.3, 0.3])


def test_box_prompts_send_the_prompted_instance_box(data: Path, tmp_path: Path,
                                                    fake_sam3: Path, prompts: Path) -> None:
    adapter = zs.ZeroShotAdapter()
    job = make_job(data, tmp_path, "sam3", "box", prompts, checkpoint=str(fake_sam3))
    # weights and prompt file are there; only the package/Python requirement may remain
    msg = adapter.unavailable(job) or ""
    assert "weights" not in msg and "prompt file" not in msg
    dets = adapter.predict(job)
    doc = json.loads(prompts.read_text())
    test = json.loads((data / "annotations" / "test.json").read_text())
    anns = {a["id"]: a for a in test["annotations"]}
    expected = [("box", tuple(round(v, 6) for v in zs.normalized_cxcywh(
        anns[p["ann_ids"][0]]["bbox"], 96, 96))) for p in doc["prompts"]]
    assert FakeProcessor.calls == expected
    by_image: dict[int, set[int]] = {}
    for p in doc["prompts"]:
        by_image.setdefault(p["image_id"], set()).add(p["category_id"])
    for d in dets:
        assert set(d.labels.tolist()) == by_image.get(d.image_id, set())
