"""The benchmark runner: planning, variants, resume, failure isolation, unavailable rows, executors.

Adapters here are the contract-following stand-ins of ``fake_adapters.py`` (an oracle that
predicts the ground truth, one that crashes, one that declines); derivation and evaluation are the
toolkit's real ``benchmark.protocols`` and ``benchmark.evaluate``.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from bench_fixture import write_tiny_dataset

from benchmark.manifest import Method, load_methods
from benchmark.results import ResultsStore, dataset_key
from benchmark.runner import check_dataset, plan, run_benchmark
from tinyset_builder.errors import TinysetError

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def method(mid: str, adapter: str, *, paradigm: str = "full", setting: str = "full") -> Method:
    return Method(id=mid, name=mid.title(), paradigm=paradigm, setting=setting,
                  backbone="none", schedule="1x", adapter=adapter)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("ds") / "tiny", size=64,
                              counts={"train": 20, "val": 2, "test": 3}, objects=4)


def by_method(records: list[dict]) -> dict[str, dict]:
    return {r["key"]["method"]: r for r in records}


def test_runs_store_records_isolate_failures_and_resume(data: Path, tmp_path: Path) -> None:
    methods = [method("oracle", "fake_adapters:OracleAdapter"),
               method("crash", "fake_adapters:FailingAdapter"),
               method("decline", "fake_adapters:DecliningAdapter"),
               method("missing", "adapters.not_written_yet:Adapter")]
    runs = tmp_path / "runs"
    specs = plan(methods, data, runs, command=["tinyset", "benchmark", "--data", str(data)])
    assert len(specs) == 4
    recs = by_method(run_benchmark(specs))

    ok = recs["oracle"]
    assert ok["status"] == "ok"
    assert ok["metrics"]["AP50"] == pytest.approx(1.0) and ok["metrics"]["AP25"] == 1.0
    assert ok["notes"]["train_file"] == "train.json"
    assert ok["command"][:2] == ["tinyset", "benchmark"]
    assert {"python", "numpy"} <= set(ok["versions"])
    assert {"train", "predict", "evaluate", "total"} <= set(ok["durations"])
    store = ResultsStore(runs)
    run_dir = store.run_dir(specs[0].key)
    predictions = json.loads((run_dir / "predictions.json").read_text())
    test_gt = json.loads((data / "annotations" / "test.json").read_text())
    assert len(predictions) == len(test_gt["annotations"])
    sub = sum(1 for a in test_gt["annotations"] if min(a["bbox"][2:]) < 1)
    assert ok["detections"] == {"count": len(predictions),
                                "sub_pixel": round(sub / len(predictions), 4)}

    assert recs["crash"]["status"] == "failed: RuntimeError: CUDA out of memory (simulated)"
    assert "Traceback" in (store.run_dir(specs[1].key) / "error.log").read_text()
    assert recs["decline"]["status"].startswith("unavailable: weights not found at")
    assert recs["missing"]["status"].startswith(
        "unavailable: adapter 'adapters.not_written_yet:Adapter' not implemented/installed")
    assert recs["crash"]["metrics"] is None

    # Every run left exactly one record under <dataset>/<method>/<setting>/seed<N>/.
    paths = sorted(p.relative_to(runs).as_posix() for p in runs.rglob("result.json"))
    key = dataset_key(data)
    assert paths == [f"{key}/{m}/full/seed0/result.json"
                     for m in ("crash", "decline", "missing", "oracle")]

    # Second start: the ok run is skipped (not retrained), the others are tried again.
    again = by_method(run_benchmark(specs))
    assert set(again) == {"crash", "decline", "missing"}
    assert (store.run_dir(specs[0].key) / "work" / "trained.txt").read_text() == "1"
    # force re-runs it.
    forced = plan(methods[:1], data, runs, force=True)
    assert run_benchmark(forced)[0]["status"] == "ok"
    assert (store.run_dir(specs[0].key) / "work" / "trained.txt").read_text() == "2"


def test_detection_shape_flags_a_collapsed_box_regression() -> None:
    from benchmark.evaluate.columnar import results_to_columns
    from benchmark.runner import detection_shape

    dets = [{"image_id": 1, "category_id": 1, "score": 0.9, "bbox": b}
            for b in ([0, 0, 5, 4], [3, 3, 0.5, 6], [1, 1, 2, 0.0], [9, 9, 1, 1])]
    # two of four under 1 px wide or high; 1 px itself is not under
    assert detection_shape(results_to_columns(dets)) == {"count": 4, "sub_pixel": 0.5}
    assert detection_shape(results_to_columns([])) == {"count": 0, "sub_pixel": None}


def test_variants_are_derived_and_wired_into_the_job(data: Path, tmp_path: Path) -> None:
    methods = [method("semi", "fake_adapters:OracleAdapter", paradigm="semi",
                      setting="semi-10"),
               method("shot", "fake_adapters:OracleAdapter", paradigm="sparse",
                      setting="shot-1"),
               method("prompted", "fake_adapters:OracleAdapter", paradigm="p2sod",
                      setting="p2sod-1")]
    recs = by_method(run_benchmark(plan(methods, data, tmp_path / "runs", seeds=[1])))
    semi, shot, prompted = recs["semi"], recs["shot"], recs["prompted"]
    assert semi["status"] == "ok", semi["status"]
    assert (semi["notes"]["train_file"], semi["notes"]["unlabeled"]) == (
        "train_labeled.json", "train_unlabeled.json")
    assert semi["key"]["seed"] == 1 and "variants" in semi["config"]["variant_dir"]
    assert shot["status"] == "ok" and shot["notes"]["train_file"] == "train.json"
    n_train = len(json.loads((data / "annotations" / "train.json").read_text())["annotations"])
    assert shot["notes"]["train_boxes"] < n_train  # one box per image kept
    assert prompted["status"] == "ok" and prompted["notes"]["prompts"] == "prompts_test.json"
    assert prompted["metrics"]["AP50"] == pytest.approx(1.0)


def test_a_failing_derivation_fails_only_its_runs(data: Path, tmp_path: Path) -> None:
    def derive(data_dir: Path, setting: str, seed: int) -> Path:
        raise TinysetError(f"cannot derive {setting}")

    methods = [method("a", "fake_adapters:OracleAdapter"),
               method("b", "fake_adapters:OracleAdapter", paradigm="noise", setting="noise-20")]
    recs = by_method(run_benchmark(plan(methods, data, tmp_path / "runs"), derive=derive))
    assert recs["a"]["status"] == "ok"
    assert recs["b"]["status"] == ("failed: TinysetError: deriving noise-20 (seed 0) failed: "
                                   "TinysetError: cannot derive noise-20")


def test_unwritten_framework_adapters_are_unavailable_not_crashes(data: Path, tmp_path: Path,
                                                                   monkeypatch) -> None:
    import adapters

    monkeypatch.setitem(adapters.ADAPTERS, "mmdet", "adapters.no_such_module:MMDetAdapter")
    row = load_methods().get("16").with_adapter("mmdet")  # Soft Teacher through mmdet
    rec = run_benchmark(plan([row], data, tmp_path / "runs"))[0]
    assert rec["status"].startswith("unavailable: adapter 'mmdet' not implemented/installed "
                                    "(ModuleNotFoundError")
    assert rec["key"]["setting"] == "semi-1"


@pytest.mark.parametrize("cluster", ["local", "debug"])
def test_submitit_executors(data: Path, tmp_path: Path, monkeypatch, cluster: str) -> None:
    # submitit's local executor starts a fresh interpreter: it finds the test adapters the way
    # a user's plug-in adapter would be found, through PYTHONPATH.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), str(ROOT),
                                                      os.environ.get("PYTHONPATH", "")]))
    methods = [method("oracle", "fake_adapters:OracleAdapter"),
               method("crash", "fake_adapters:FailingAdapter")]
    runs = tmp_path / "runs"
    recs = by_method(run_benchmark(plan(methods, data, runs), executor="slurm",
                                   cluster=cluster))
    assert recs["oracle"]["status"] == "ok"
    assert recs["crash"]["status"].startswith("failed: RuntimeError")
    assert len(list(runs.rglob("result.json"))) == 2
    assert run_benchmark(plan(methods[:1], data, runs), executor="slurm", cluster=cluster) == []


def test_local_executor_over_several_devices(data: Path, tmp_path: Path, monkeypatch) -> None:
    """Two devices, two runs side by side: each run trains on its own device (the adapter
    records the one its job names; the first two runs wait for each other, so both devices are
    in use at once), and a device is handed on when its run ends (the third run)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), str(ROOT),
                                                      os.environ.get("PYTHONPATH", "")]))
    rendezvous = tmp_path / "started"
    methods = [replace(method(f"m{i}", "fake_adapters:DeviceRecordingAdapter"),
                       options={"rendezvous": str(rendezvous), "together": 2})
               for i in range(3)]
    # No run touches a GPU (the adapter only records the name), so "cuda:1" needs none.
    recs = run_benchmark(plan(methods, data, tmp_path / "runs"), devices=["cpu", "cuda:1"])
    assert [r["key"]["method"] for r in recs] == ["m0", "m1", "m2"]  # planning order
    assert all(r["status"] == "ok" for r in recs)
    assert all(r["notes"]["device"] == r["config"]["device"] for r in recs)
    # m0 and m1 ran at the same time (each saw the other start), on the two devices
    assert [r["notes"]["started_by_then"] >= 2 for r in recs[:2]] == [True, True]
    assert {r["notes"]["device"] for r in recs[:2]} == {"cpu", "cuda:1"}
    assert recs[2]["notes"]["device"] in {"cpu", "cuda:1"}


def test_bad_input_is_one_line(data: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    (other / "annotations").mkdir(parents=True)
    (other / "build.json").write_text('{"tool": "somebody-else"}')
    with pytest.raises(TinysetError, match="not written by tinyset-builder") as e:
        check_dataset(other)
    assert "\n" not in str(e.value)
    with pytest.raises(TinysetError, match=r"no build.json"):
        check_dataset(tmp_path)
    with pytest.raises(TinysetError, match="dataset folder not found"):
        check_dataset(tmp_path / "nope")
    with pytest.raises(TinysetError, match="--env-python /no/python: interpreter not found"):
        plan([method("a", "torchvision")], data, tmp_path / "runs", env_python="/no/python")
    with pytest.raises(TinysetError, match="unknown executor"):
        run_benchmark([], executor="kubernetes")
    with pytest.raises(TinysetError, match="sbatch not found"):
        run_benchmark(plan([method("a", "fake_adapters:OracleAdapter")], data,
                           tmp_path / "runs"), executor="slurm")
    assert sys.executable  # the current interpreter is a valid --env-python
    plan([method("a", "torchvision")], data, tmp_path / "runs", env_python=sys.executable)


def test_benchmark_command_runs_resumes_and_prints_the_table(data: Path, tmp_path: Path,
                                                             capsys) -> None:
    from tinyset_builder.cli import main

    manifest = tmp_path / "methods.toml"
    manifest.write_text('[[methods]]\nid = "2"\nname = "Oracle"\nparadigm = "full"\n'
                        'setting = "full"\nbackbone = "none"\nschedule = "1x"\n'
                        'adapter = "fake_adapters:OracleAdapter"\n'
                        'paper = {AP25 = 1, AP50 = 2, AP75 = 3, APvt = 4, APt = 5, APs = 6, '
                        'APm = 7}\n', encoding="utf-8")
    args = ["benchmark", "--data", str(data), "--paradigm", "full", "--runs",
            str(tmp_path / "runs"), "--manifest", str(manifest), "--device", "cpu",
            "--seeds", "0,1"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "2.0 / 100.0" in captured.out  # paper AP50 / measured AP50 of the oracle
    assert captured.err.count(": ok") == 2
    assert main(args) == 0
    assert "2 run(s) already stored ok" in capsys.readouterr().err
    records = sorted((tmp_path / "runs").rglob("result.json"))
    assert len(records) == 2
    rec = json.loads(records[0].read_text())
    assert rec["command"][:6] == ["tinyset", "benchmark", "--data", str(data), "--paradigm",
                                  "full"]
    assert rec["command"][-2:] == ["--manifest", str(manifest)]
