"""The zero-shot adapter through transformers: SAM3 (``Sam3Model``) and Rex-Omni (Qwen2.5-VL).

Real transformers classes at tiny random-weight sizes (tests/adapters/zeroshot_tiny.py), saved
with ``save_pretrained`` and run end to end through ``tinyset benchmark --paradigm zero-shot``;
Rex-Omni's prompts and answer parsing against hand-written strings in the authors' format
(IDEA-Research/Rex-Omni @ 478e44f: rex_omni/tasks.py, rex_omni/parser.py); what is reported
when weights are missing; SAM3's prompt batching against one prompt at a time.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmark"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fixture import write_tiny_dataset

from adapters import zeroshot as zs
from adapters import zeroshot_rex as rex
from adapters.base import Job
from adapters.zeroshot_sam3 import sam3_boxes
from tinyset_builder.errors import TinysetError

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
torch.set_num_threads(1)
SIZE = 96


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("zs") / "tiny", size=SIZE,
                              counts={"train": 1, "val": 1, "test": 1}, objects=3)


@pytest.fixture(scope="module")
def sam3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from zeroshot_tiny import save_tiny_sam3

    return save_tiny_sam3(tmp_path_factory.mktemp("sam3") / "tiny-sam3")


def make_job(data: Path, tmp: Path, model: str, prompt: str = "text",
             prompts_json: Path | None = None, **extra) -> Job:
    return Job(method={"id": "39", "adapter": "zeroshot",
                       "options": {"model": model, "prompt": prompt}}, data_dir=data,
               train_json=data / "annotations" / "train.json",
               eval_json=data / "annotations" / "test.json", work_dir=tmp,
               prompts_json=prompts_json, extra=extra)


# ---------------------------------------------------------------------------------------------
# weights: option, environment, cache; unavailable otherwise

def test_unavailable_names_the_download_command(data: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    for env in ("TINYSET_SAM3_PATH", "TINYSET_REX_OMNI_PATH", "TINYSET_SAM3_CHECKPOINT"):
        monkeypatch.delenv(env, raising=False)
    adapter = zs.ZeroShotAdapter()
    empty = str(tmp_path / "empty-cache")
    msg = adapter.unavailable(make_job(data, tmp_path, "sam3", cache_dir=empty))
    assert "`hf download facebook/sam3`" in msg and "TINYSET_SAM3_PATH" in msg
    assert "huggingface.co/facebook/sam3" in msg and "nothing is downloaded" in msg
    msg = adapter.unavailable(make_job(data, tmp_path, "rex-omni", cache_dir=empty))
    assert "`hf download IDEA-Research/Rex-Omni`" in msg and "TINYSET_REX_OMNI_PATH" in msg
    msg = adapter.unavailable(make_job(data, tmp_path, "rex-omni", model_path="/no/weights"))
    assert "weights folder /no/weights not found" in msg
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    monkeypatch.setenv("TINYSET_REX_OMNI_PATH", str(tmp_path / "half"))
    assert "not a save_pretrained folder" in adapter.unavailable(
        make_job(data, tmp_path, "rex-omni"))
    msg = adapter.unavailable(make_job(data, tmp_path, "sam3", "box", cache_dir=empty))
    assert "P2SOD prompt file" in msg
    assert "unknown model 'owl'" in adapter.unavailable(make_job(data, tmp_path, "owl"))
    assert "prompt must be text or box" in adapter.unavailable(
        make_job(data, tmp_path, "sam3", "click"))
    assert "backend must be one of transformers, package" in adapter.unavailable(
        make_job(data, tmp_path, "sam3", backend="vllm"))
    # the optional package path still says what it needs
    msg = adapter.unavailable(make_job(data, tmp_path, "sam3", backend="package"))
    assert ("Python >= 3.12 for package sam3" if sys.version_info < (3, 12)
            else "package sam3") in msg
    assert "TINYSET_SAM3_CHECKPOINT" in msg


def test_weights_from_option_env_and_hf_cache(data: Path, tmp_path: Path, sam3_dir: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TINYSET_SAM3_PATH", raising=False)
    adapter = zs.ZeroShotAdapter()
    # a Hugging Face cache entry (models--org--name/{refs/main, snapshots/<commit>/...})
    cache = tmp_path / "hub"
    entry = cache / "models--facebook--sam3"
    snap = entry / "snapshots" / ("a" * 40)
    shutil.copytree(sam3_dir, snap)
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text("a" * 40)
    job = make_job(data, tmp_path, "sam3", cache_dir=str(cache))
    assert adapter.unavailable(job) is None
    assert adapter.weights(job, "sam3") == (snap, "Hugging Face cache (facebook/sam3)")
    monkeypatch.setenv("TINYSET_SAM3_PATH", str(sam3_dir))
    assert adapter.weights(job, "sam3") == (sam3_dir, "TINYSET_SAM3_PATH")
    job = make_job(data, tmp_path, "sam3", model_path=str(snap))
    assert adapter.weights(job, "sam3") == (snap, "option model_path")


def test_dtype_and_device_rules(data: Path, tmp_path: Path) -> None:
    assert zs.torch_dtype("auto", "cpu") == torch.float32
    assert zs.torch_dtype("auto", "cuda:1") == torch.bfloat16
    assert zs.torch_dtype("float16", "cpu") == torch.float16
    with pytest.raises(TinysetError, match="dtype must be auto"):
        zs.torch_dtype("int8", "cpu")
    job = make_job(data, tmp_path, "sam3")
    assert zs.device_of(job) == "cpu"
    auto = Job(**{**{f: getattr(job, f) for f in job.__dataclass_fields__}, "device": "auto"})
    assert zs.device_of(auto) == ("cuda" if torch.cuda.is_available() else "cpu")


# ---------------------------------------------------------------------------------------------
# Rex-Omni: prompts and answers in the authors' format

def test_rex_prompts_follow_the_authors_templates() -> None:
    assert rex.detection_prompt(["car", "person"]) == (
        "Detect car, person. Output the bounding box coordinates in [x0, y0, x1, y1] format.")
    # bins: int(x / size * 999), clipped: 10/100 -> 99, 20/200 -> 99, 30/100 -> 299, 40/200 -> 199
    assert rex.visual_prompt([10, 20, 30, 40], 100, 200) == (
        'Given reference boxes {"object_1": ["<99><99><299><199>"]} indicating one or more '
        "objects, find all similar objects in the image and output their bounding boxes.")
    assert rex.box_tokens([-5, 0, 150, 200], 100, 200) == "<0><0><999><999>"
    assert rex.messages("p")[0] == {"role": "system", "content": "You are a helpful assistant"}
    assert zs.phrase("visdrone/pedestrian_crossing") == "pedestrian crossing"
    assert zs.phrase("dior/ground track field, large") == "ground track field large"


def test_rex_answers_parse_to_absolute_boxes_and_count_what_is_skipped() -> None:
    # the authors' documented answer (rex_omni/parser.py docstring), image 1000 x 500
    text = ("<|object_ref_start|>person<|object_ref_end|><|box_start|><0><35><980><987>, "
            "<646><0><999><940><|box_end|><|im_end|>")
    a = rex.parse_answer(text, 1000, 500)
    expected = np.array([[0, 35, 980, 987], [646, 0, 999, 940]], np.float64) / 999
    expected *= [1000, 500, 1000, 500]
    np.testing.assert_allclose(a.boxes["person"], expected, rtol=1e-6)
    assert not a.skipped
    # several phrases, "None" (nothing found, the training format), trailing special tokens
    text = ("<|object_ref_start|>car<|object_ref_end|><|box_start|><1><2><3><4><|box_end|>, "
            "<|object_ref_start|>person<|object_ref_end|><|box_start|>None<|box_end|>"
            "<|im_end|><|endoftext|><|endoftext|>")
    a = rex.parse_answer(text, 999, 999)
    assert a.boxes["car"].tolist() == [[1, 2, 3, 4]] and a.boxes["person"].shape == (0, 4)
    assert a.all_boxes().tolist() == [[1, 2, 3, 4]]
    # malformed groups are skipped and counted, good boxes beside them kept
    text = ("<|object_ref_start|>car<|object_ref_end|><|box_start|><5><6>,<1><2><3><4><5><6>,"
            "<1><2><3>,<9><9><3><4>,<1><2><1000><4>,<10><20><30><40><|box_end|>")
    a = rex.parse_answer(text, 999, 999)
    assert a.boxes["car"].tolist() == [[10, 20, 30, 40]]
    assert a.skipped == {"point": 1, "polygon": 1, "malformed": 1, "inverted": 1,
                         "out_of_range": 1}
    # cut off by the token limit: complete boxes kept, the cut counted
    a = rex.parse_answer("<|object_ref_start|>car<|object_ref_end|><|box_start|><1><2><3><4>,"
                         "<5><6>", 999, 999)
    assert a.boxes["car"].tolist() == [[1, 2, 3, 4]]
    assert a.skipped == {"truncated": 1, "point": 1}
    # no segment at all
    a = rex.parse_answer("I cannot see any car.<|im_end|>", 999, 999)
    assert a.boxes == {} and a.skipped == {"unparsed": 1}
    assert rex.parse_answer("<|im_end|>", 999, 999).skipped == {}


def test_rex_parts_keep_the_ordering_rule_and_count_unprompted_phrases() -> None:
    from collections import Counter

    a = rex.parse_answer("<|object_ref_start|>Car<|object_ref_end|><|box_start|><1><2><3><4>,"
                         "<5><6><7><8><|box_end|>, <|object_ref_start|>tree<|object_ref_end|>"
                         "<|box_start|><1><1><2><2><|box_end|>", 999, 999)
    skipped: Counter[str] = Counter()
    parts = zs.ZeroShotAdapter._rex_parts(a, [(1, "car"), (2, "person")], [1, 2], "text",
                                          skipped)
    assert [(p[0].tolist(), p[1].tolist(), p[2]) for p in parts] == [
        ([[1, 2, 3, 4], [5, 6, 7, 8]], [1.0, 0.5], 1)]
    assert skipped == {"unprompted_phrase": 1}
    parts = zs.ZeroShotAdapter._rex_parts(a, [(7, [0, 0, 1, 1])], [7], "box", skipped)
    assert parts[0][0].shape == (3, 4) and parts[0][2] == 7
    assert parts[0][1].tolist() == pytest.approx([1, 2 / 3, 1 / 3])


# ---------------------------------------------------------------------------------------------
# SAM3: post-processed output and batching

def test_sam3_output_parsing() -> None:
    out = {"boxes": torch.tensor([[1.0, 2.0, 5.0, 9.0]], dtype=torch.bfloat16),
           "scores": torch.tensor([0.75])}
    boxes, scores = sam3_boxes(out)
    assert boxes.tolist() == [[1.0, 2.0, 5.0, 9.0]] and scores.tolist() == [0.75]
    assert sam3_boxes({"boxes": torch.zeros(0, 4), "scores": torch.zeros(0)})[0].shape == (0, 4)
    with pytest.raises(TinysetError, match="without boxes/scores"):
        sam3_boxes({"masks": None})
    with pytest.raises(TinysetError, match="2 boxes but 1 scores"):
        sam3_boxes({"boxes": torch.zeros(2, 4), "scores": torch.zeros(1)})
    with pytest.raises(TinysetError, match="expected \\(N, 4\\)"):
        sam3_boxes({"boxes": torch.zeros(2, 3), "scores": torch.zeros(2)})
    d = zs.merge(3, [(boxes, np.asarray([0.2], np.float32), 7),
                     (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 8)])
    assert d.labels.tolist() == [7] and len(zs.merge(3, []).scores) == 0


def test_sam3_batched_prompts_equal_one_at_a_time(sam3_dir: Path) -> None:
    from PIL import Image

    from adapters import zeroshot_sam3

    rng = np.random.default_rng(0)
    image = Image.fromarray((rng.random((70, 90, 3)) * 255).astype(np.uint8))
    batched = zeroshot_sam3.load(sam3_dir, "cpu", threshold=0.0, batch_size=8)
    single = zeroshot_sam3.load(sam3_dir, "cpu", threshold=0.0, batch_size=1)
    for a, b in ((batched.text(image, ["car", "person", "car"]),
                  single.text(image, ["car", "person", "car"])),
                 (batched.exemplars(image, [[5, 5, 20, 30], [40, 10, 80, 60]]),
                  single.exemplars(image, [[5, 5, 20, 30], [40, 10, 80, 60]]))):
        assert len(a) == len(b)
        for (ba, sa), (bb, sb) in zip(a, b, strict=True):
            assert len(sa) == 20  # every query of the tiny model, threshold 0
            np.testing.assert_allclose(ba, bb, atol=1e-4)
            np.testing.assert_allclose(sa, sb, atol=1e-5)
            assert (ba[:, 2] <= 90 + 1e-3).all() and (ba[:, 3] <= 70 + 1e-3).all()
    text = batched.text(image, ["car", "person"])
    assert not np.allclose(text[0][1], text[1][1])  # the prompt changes the answer


# ---------------------------------------------------------------------------------------------
# end to end: tinyset benchmark --paradigm zero-shot

def _rex_requests(data: Path) -> list[tuple[object, str, str]]:
    """The requests the adapter will send on the test split, each with the ground truth as the
    answer in Rex-Omni's format (text rows: per category; box rows: the prompted category)."""
    from PIL import Image

    from benchmark.protocols import derive_variant

    test = json.loads((data / "annotations" / "test.json").read_text())
    img = test["images"][0]
    pil = Image.open(data / "images" / "test" / img["file_name"]).convert("RGB")
    w, h = pil.size
    names = {c["id"]: zs.phrase(c["name"]) for c in test["categories"]}
    anns = {a["id"]: a for a in test["annotations"]}

    def answer(cids: list[int]) -> str:
        segs = []
        for cid in cids:
            boxes = [rex.box_tokens(zs.xywh_to_xyxy(a["bbox"]), w, h)
                     for a in test["annotations"] if a["category_id"] == cid]
            segs.append(f"<|object_ref_start|>{names[cid]}<|object_ref_end|><|box_start|>"
                        f"{','.join(boxes) or 'None'}<|box_end|>")
        return ", ".join(segs)

    requests = [(pil, rex.detection_prompt(list(names.values())), answer(list(names)))]
    prompts = Path(derive_variant(data, "p2sod-1", seed=0)) / "prompts_test.json"
    for p in json.loads(prompts.read_text())["prompts"]:
        box = zs.xywh_to_xyxy(anns[p["ann_ids"][0]]["bbox"])
        requests.append((pil, rex.visual_prompt(box, w, h), answer([p["category_id"]])))
    return requests


def test_tinyset_benchmark_zero_shot_runs_all_four_rows(data: Path, sam3_dir: Path,
                                                        tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture) -> None:
    from zeroshot_tiny import save_tiny_rex

    from benchmark.results import ResultsStore
    from tinyset_builder.cli import main

    rex_dir = save_tiny_rex(tmp_path / "tiny-rex", _rex_requests(data), steps=300)
    monkeypatch.setenv("TINYSET_SAM3_PATH", str(sam3_dir))
    monkeypatch.setenv("TINYSET_REX_OMNI_PATH", str(rex_dir))
    runs = tmp_path / "runs"
    assert main(["benchmark", "--data", str(data), "--paradigm", "zero-shot", "--runs",
                 str(runs), "--device", "cpu"]) == 0
    capsys.readouterr()
    records = {r["method"]["id"]: r for r in ResultsStore(runs).records()}
    assert sorted(records) == ["38", "39", "rex-omni-box", "sam3-box"]
    test = json.loads((data / "annotations" / "test.json").read_text())
    for rid, r in records.items():
        assert r["status"] == "ok", (rid, r["status"])
        assert r["notes"]["backend"] == "transformers"
        assert r["metrics"] and "AP50" in r["metrics"]
        assert _predictions(runs, r) is not None
    # SAM3 (random weights): boxes with scores inside the image, for the prompted categories
    sam = _predictions(runs, records["39"])
    assert sam and {p["category_id"] for p in sam} == {1, 2}
    assert all(0 <= p["score"] <= 1 for p in sam)
    # Rex-Omni (fitted to answer with the ground truth): the boxes come back through prompt,
    # generation, coordinate tokens and parsing, to within one bin (96 px / 999)
    got = sorted((p["category_id"], *np.round(p["bbox"], 1)) for p in
                 _predictions(runs, records["38"]))
    want = sorted((a["category_id"], *np.round(a["bbox"], 1)) for a in test["annotations"])
    assert len(got) == len(want)
    for g, t in zip(got, want, strict=True):
        assert g[0] == t[0] and np.allclose(g[1:], t[1:], atol=2 * SIZE / 999)
    assert records["38"]["metrics"]["AP50"] == pytest.approx(1.0)  # the evaluator's fractions
    assert records["rex-omni-box"]["metrics"]["AP50"] == records["38"]["metrics"]["AP50"]
    assert records["38"]["notes"]["scores"].startswith("Rex-Omni gives no confidences")


def _predictions(runs: Path, record: dict) -> list[dict]:
    from benchmark.results import ResultsStore, RunKey

    folder = ResultsStore(runs).run_dir(RunKey(**record["key"]))
    return json.loads((folder / record["predictions"]).read_text())


# ---------------------------------------------------------------------------------------------
# the optional package backend (the sam3 package needs Python >= 3.12 and git: a stand-in
# package that follows its calls and return types, sam3.model.sam3_image_processor)

def test_package_backend_sends_the_prompted_instance_box(data: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    from benchmark.protocols import derive_variant

    calls: list[tuple[str, object]] = []

    class Processor:
        def __init__(self, model: object, confidence_threshold: float = 0.5) -> None:
            self.threshold = confidence_threshold

        def set_image(self, image: object) -> dict:
            return {}

        def reset_all_prompts(self, state: dict) -> None:
            state.clear()

        def add_geometric_prompt(self, box: list[float], label: bool, state: dict) -> dict:
            calls.append(("box", tuple(round(v, 6) for v in box)))
            return {"boxes": torch.tensor([[4.0, 4.0, 12.0, 10.0]]),
                    "scores": torch.tensor([0.3]), "masks": torch.zeros(1, 1, 8, 8)}

    modules = {"sam3": types.ModuleType("sam3"), "sam3.model": types.ModuleType("sam3.model"),
               "sam3.model_builder": types.ModuleType("sam3.model_builder"),
               "sam3.model.sam3_image_processor": types.ModuleType("p")}
    modules["sam3.model_builder"].build_sam3_image_model = lambda **kw: object()
    modules["sam3.model.sam3_image_processor"].Sam3Processor = Processor
    for name, mod in modules.items():
        monkeypatch.setitem(sys.modules, name, mod)
    ckpt = tmp_path / "sam3.pt"
    ckpt.write_bytes(b"weights")
    prompts = Path(derive_variant(data, "p2sod-1", seed=0)) / "prompts_test.json"
    job = make_job(data, tmp_path, "sam3", "box", prompts, backend="package",
                   checkpoint=str(ckpt))
    dets = zs.ZeroShotAdapter().predict(job)
    test = json.loads((data / "annotations" / "test.json").read_text())
    anns = {a["id"]: a for a in test["annotations"]}
    doc = json.loads(prompts.read_text())
    from adapters.zeroshot_packages import normalized_cxcywh

    assert calls == [("box", tuple(round(v, 6) for v in normalized_cxcywh(
        anns[p["ann_ids"][0]]["bbox"], SIZE, SIZE))) for p in doc["prompts"]]
    assert sorted(dets[0].labels.tolist()) == sorted(p["category_id"] for p in doc["prompts"])
    assert normalized_cxcywh([10, 20, 4, 8], 100, 200) == [0.12, 0.12, 0.04, 0.04]
