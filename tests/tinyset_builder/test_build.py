"""The build end to end on tiny in-test sources: outputs, accounting, dedupe, splits, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _build_fixtures import make_info, make_source, pixels, save

from tinyset_builder.build import BuildOptions, build, build_from_conversions, verify_build
from tinyset_builder.coco import CocoDataset, CocoImage
from tinyset_builder.errors import TinysetError
from tinyset_builder.imageio import read_image
from tinyset_builder.io import dumps_json
from tinyset_builder.splits import find_leaks, hash_split


def _load(out: Path, split: str) -> dict:
    return json.loads((out / "annotations" / f"{split}.json").read_text())


def _all_images(out: Path) -> list[dict]:
    return [i for s in ("train", "val", "test") if (out / "annotations" / f"{s}.json").exists()
            for i in _load(out, s)["images"]]


@pytest.fixture(scope="module")
def designed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One source whose boxes hit every outcome, built once for several tests."""
    tmp = tmp_path_factory.mktemp("designed")
    raw, out = tmp / "raw", tmp / "out"
    images = [
        # 3000×1200: windows x0 in {0, 824, 1648, 1976}, y0 in {0, 176}.
        ("wide.png", 3000, 1200, "train", [
            ("car", (100, 100, 20, 10), 0),       # whole in a window -> kept
            ("car", (700, 500, 600, 20), 0),      # never whole, >= 50 % in one -> clipped
            ("person", (0, 600, 2500, 10), 0),    # never more than 41 % visible -> ignore
            ("person", (50, 50, 30, 30), 1),      # the source's own ignore region -> kept
        ]),
        # 800×800 padded; a 600×600 object covers 56 % of it -> the image is dropped.
        ("big.png", 800, 800, "val", [("car", (100, 100, 600, 600), 0),
                                       ("car", (10, 10, 8, 8), 0)]),
        # Only an ignore region: no label -> empty, dropped.
        ("empty.png", 500, 400, "test", [("car", (10, 10, 50, 50), 1)]),
        # A small image, kept, padded.
        ("small.jpg", 640, 480, "test", [("person", (600, 400, 40, 80), 0)]),
    ]
    conv = make_source(raw, "srca", images)
    report = build_from_conversions([conv], raw, out, stats=False)
    return out, report.record


def test_accounting_adds_up_with_every_outcome(designed: tuple[Path, dict]) -> None:
    out, record = designed
    s = record["sources"]["srca"]
    a = s["annotations"]
    assert a["in"] == 8
    assert (a["kept"], a["clipped"], a["ignore"]) == (3, 1, 1)
    assert a["dropped"] == {"large_objects": 2, "empty_image": 1, "degenerate": 0,
                            "duplicate_image": 0, "image_error": 0}
    assert a["kept"] + a["clipped"] + a["ignore"] + sum(a["dropped"].values()) == a["in"]
    im = s["images"]
    assert im["in"] == 4 and im["dropped_large_objects"] == 1 and im["dropped_empty"] == 5
    assert im["out"] == sum(im["out_by_split"].values()) == len(_all_images(out))
    # The "ignore" box really is an iscrowd=1 record, clipped to each window it touches.
    train = _load(out, "train")
    long_box = [x for x in train["annotations"] if x["note"] == "a3"]
    assert long_box and all(x["iscrowd"] == 1 for x in long_box)
    assert all(x["bbox"][0] + x["bbox"][2] <= 1024 for x in long_box)
    verify_build(out)


def test_output_contract(designed: tuple[Path, dict]) -> None:
    out, record = designed
    assert record["tool"] == "tinyset-builder" and record["version"]
    assert set(record["annotation_files"]) == {"train", "test"}  # val's only image was dropped
    assert record["sources"]["srca"]["manifest_sha256"]
    from PIL import Image

    for split, f in record["annotation_files"].items():
        raw_bytes = (out / f["file"]).read_bytes()
        # The streamed file is exactly what the toolkit's JSON writer gives for its content.
        assert raw_bytes == dumps_json(json.loads(raw_bytes))
        coco = CocoDataset.load(out / f["file"])      # validates ids and references
        assert [c.name for c in coco.categories][:2] != []
        cats = {c.id: c.name for c in coco.categories}
        for img in coco.images:
            assert (img.width, img.height) == (1024, 1024)
            assert img.source == "srca" and img.domain == "uav" and img.split == split
            assert img.window is not None and img.scale == 1.0
            with Image.open(out / "images" / split / img.file_name) as im:
                assert im.size == (1024, 1024)
        for ann in coco.annotations:
            assert ann.area == ann.bbox[2] * ann.bbox[3]
            # Scalar source attributes travel along; geometry in original pixels does not.
            assert ann.extra["name"] == 'Fußgänger "x"' and "segmentation" not in ann.extra
            assert cats[ann.category_id].startswith("srca/")
    # pycocotools reads the files as they are.
    from pycocotools.coco import COCO

    assert len(COCO(str(out / "annotations" / "train.json")).getImgIds()) == 4


def test_window_maps_outputs_back_to_the_original(designed: tuple[Path, dict], tmp_path: Path,
                                                  ) -> None:
    out, _ = designed
    raw_wide = read_image(out.parent / "raw" / "srca" / "wide.png")
    train = _load(out, "train")
    for img in train["images"]:
        x0, y0, x1, y1 = img["window"]
        tile = read_image(out / "images" / "train" / img["file_name"])
        np.testing.assert_array_equal(tile[:y1 - y0, :x1 - x0], raw_wide[y0:y1, x0:x1])
        assert (tile[y1 - y0:] == 0).all()           # padding below (1200 - 176 = 1024: none)
        for a in train["annotations"]:
            if a["image_id"] == img["id"] and a["note"] == "a1":
                assert [a["bbox"][0] + x0, a["bbox"][1] + y0] == [100, 100]
    small = [i for i in _load(out, "test")["images"] if i["original_file"] == "small.jpg"]
    assert small[0]["window"] == [0, 0, 640, 480]
    assert small[0]["file_name"].endswith(".jpg")    # JPEG in, JPEG out; PNG in, PNG out
    assert all(i["file_name"].endswith(".png") for i in train["images"])


def test_downscale_policy_records_scale_and_window(tmp_path: Path) -> None:
    info = make_info("srcd", build={"downscale": 0.5})
    conv = make_source(tmp_path / "raw", "srcd", [
        ("scene.png", 3000, 2000, "train", [("car", (2000, 1000, 40, 20), 0)])], info=info)
    record = build_from_conversions([conv], tmp_path / "raw", tmp_path / "out",
                                    stats=False).record
    imgs = _load(tmp_path / "out", "train")
    assert [i["window"] for i in imgs["images"]] == [[0, 0, 2048, 2000], [952, 0, 3000, 2000]]
    assert {i["scale"] for i in imgs["images"]} == {0.5}
    # The box maps back: original = window origin + output / scale.
    for a in imgs["annotations"]:
        img = imgs["images"][a["image_id"] - 1]
        x = img["window"][0] + a["bbox"][0] / img["scale"]
        assert x == pytest.approx(2000) and a["bbox"][2] == pytest.approx(20)
    assert record["sources"]["srcd"]["downscale"] == 0.5


def test_dedupe_across_sources_keeps_the_first_in_sources_order(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "out"
    shared = pixels(700, 500, seed=42)
    hrsid = make_source(raw, "hrsid", [
        ("JPEGImages/P0001.png", 700, 500, "train", [("ship", (10, 10, 12, 12), 0)]),
        ("JPEGImages/P0002.png", 700, 500, "test", [("ship", (20, 20, 12, 12), 0)])],
        info=make_info("hrsid", ("ship",), domain="satellite"),
        arrays={"JPEGImages/P0001.png": shared})
    # SARDet-100K holds the same picture under another name, format and split.
    sardet = make_source(raw, "sardet_100k", [
        ("a_first_name.tiff", 700, 500, "test", [("ship", (10, 10, 12, 12), 0),
                                                  ("ship", (30, 30, 9, 9), 0)]),
        ("other.png", 700, 500, "train", [("ship", (5, 5, 12, 12), 0)])],
        info=make_info("sardet_100k", ("ship", "aircraft"), domain="satellite"),
        arrays={"a_first_name.tiff": shared}, seed=7)
    # Conversions given in the "wrong" order: the rule follows SOURCES, not the argument order.
    record = build_from_conversions([sardet, hrsid], raw, out, stats=False).record
    s = record["sources"]["sardet_100k"]
    assert s["images"]["duplicate"] == 1
    assert s["duplicates"] == [{"file": "a_first_name.tiff", "kept": "hrsid/JPEGImages/P0001.png"}]
    assert s["annotations"]["dropped"]["duplicate_image"] == 2
    assert record["sources"]["hrsid"]["images"]["duplicate"] == 0
    files = {i["original_file"] for i in _all_images(out)}
    assert files == {"JPEGImages/P0001.png", "JPEGImages/P0002.png", "other.png"}
    # The duplicate's tile was written by its task, then swept: no unreferenced file is left.
    on_disk = {p.name for p in (out / "images").rglob("*") if p.is_file()}
    assert on_disk == {i["file_name"] for i in _all_images(out)}
    # Category ids: SOURCES order (hrsid before sardet_100k), then manifest order.
    cats = _load(out, "train")["categories"]
    names = [c["name"] for c in cats]
    assert names.index("hrsid/ship") < names.index("sardet_100k/ship") < \
        names.index("sardet_100k/aircraft")
    verify_build(out)


def test_no_split_leakage_and_hash_splits(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "out"
    images = [(f"scene_{i}.jpg", 1900, 1100, None,
               [("car", (float(x), float(y), 14, 10), 0) for x in range(50, 1850, 300)
                for y in range(40, 1050, 250)]) for i in range(4, 10)]
    conv = make_source(raw, "srcn", images)
    build_from_conversions([conv], raw, out, stats=False)
    imgs = _all_images(out)
    assert len(imgs) == 6 * 6                      # 3 × 2 windows per image, none empty
    assert find_leaks([CocoImage.from_dict(i) for i in imgs]) == {}
    for i in imgs:
        assert i["split"] == hash_split("srcn", i["original_file"])
    assert len({i["split"] for i in imgs}) >= 2    # the hash does spread images over splits


def test_bad_images_are_skipped_with_a_reason_and_counted(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "out"
    conv = make_source(raw, "srce", [
        ("ok.png", 600, 400, "train", [("car", (1, 1, 10, 10), 0)]),
        ("truncated.jpg", 600, 400, "train", [("car", (1, 1, 10, 10), 0)]),
        ("missing.png", 600, 400, "train", [("car", (1, 1, 10, 10), 0),
                                            ("car", (20, 1, 10, 10), 0)]),
        ("huge.png", 1300, 1000, "train", [("car", (1, 1, 10, 10), 0)]),
        ("garbage.png", 600, 400, "val", [("car", (1, 1, 10, 10), 0)]),
    ])
    data = (raw / "srce" / "truncated.jpg").read_bytes()
    (raw / "srce" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (raw / "srce" / "missing.png").unlink()
    (raw / "srce" / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    report = build_from_conversions([conv], raw, out,
                                    options=BuildOptions(max_pixels=1_000_000), stats=False)
    s = report.record["sources"]["srce"]
    assert s["images"]["failed"] == {"corrupt_image": 2, "missing_image": 1,
                                     "over_pixel_limit": 1}
    assert {f["file"]: f["reason"] for f in s["failed_images"]} == {
        "truncated.jpg": "corrupt_image", "missing.png": "missing_image",
        "huge.png": "over_pixel_limit", "garbage.png": "corrupt_image"}
    assert all("srce" in f["message"] for f in s["failed_images"])
    assert s["annotations"]["dropped"]["image_error"] == 5
    assert s["annotations"]["kept"] == 1 and s["images"]["out"] == 1
    assert report.failed_images == 4
    verify_build(out)


def test_cli_build_reports_skips_and_verify_catches_tampering(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tinyset_builder.cli import main
    from tinyset_builder.sources import get_source

    raw, out = tmp_path / "raw", tmp_path / "out"
    get_source("visdrone").synthesize(raw / "visdrone", seed=0)
    victim = sorted((raw / "visdrone").rglob("*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[:3000])            # truncated JPEG
    assert main(["build", "--raw", str(raw), "--out", str(out), "--workers", "1"]) == 0
    err = capsys.readouterr().err
    assert "corrupt_image" in err and "1 image(s) could not be read" in err
    record = json.loads((out / "build.json").read_text())
    assert record["sources"]["visdrone"]["images"]["failed"] == {"corrupt_image": 1}
    assert (out / "stats" / "summary.md").is_file()
    assert main(["build", "--out", str(out), "--verify"]) == 0
    # Tampering: a changed annotation file no longer matches build.json.
    path = out / "annotations" / "train.json"
    path.write_text(path.read_text().replace('"iscrowd":0', '"iscrowd":1', 1))
    assert main(["build", "--out", str(out), "--verify"]) == 2
    assert "sha256 differs" in capsys.readouterr().err


def test_build_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(TinysetError, match="raw folder not found"):
        build(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "raw").mkdir()
    with pytest.raises(TinysetError, match="no source folder found"):
        build(tmp_path / "raw", tmp_path / "out")
    save(tmp_path / "raw" / "x.png", pixels(4, 4, 0))
    with pytest.raises(TinysetError, match="unknown source"):
        build(tmp_path / "raw", tmp_path / "out", sources="visdrone,nosuch")


def test_record_text_is_json_dumps_of_the_records_signed_zero_included() -> None:
    """The hand-formatted records (with their memoised float text) equal json.dumps's bytes."""
    from tinyset_builder.build import _Labels, _RecordText
    from tinyset_builder.coco import CocoAnnotation
    from tinyset_builder.tiling import TileBoxes

    anns = [CocoAnnotation(id=1, image_id=1, category_id=1, bbox=(0.5, 0.0, 2.5, 3.0)),
            CocoAnnotation(id=2, image_id=1, category_id=2, bbox=(0.0, 0.0, 1.0, 1.0),
                           extra={"difficult": 1, "note": "ä\"", "segmentation": [[1, 2]]})]
    xyxy = [[-0.0, 0.0, 2.5, 3.0], [0.0, -0.0, 1.0, 1.0], [0.1, 1e-05, 2.75, 3.0],
            [0.0, 0.0, 2.5, 3.0]]
    index, crowd = [0, 1, 0, 0], [0, 1, 1, 0]
    tb = TileBoxes(index=np.array(index), xyxy=np.array(xyxy), iscrowd=np.array(crowd),
                   whole=np.zeros(4, bool), made_ignore=np.zeros(4, bool))
    got = _RecordText(_Labels.of(anns), {1: 7, 2: 9}).records(tb, 5, 3)
    expected = []
    for k, (i, (x0, y0, x1, y1), c) in enumerate(zip(index, xyxy, crowd, strict=True)):
        d = {"id": 5 + k, "image_id": 3, "category_id": [7, 9][i],
             "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": c}
        if i == 1:
            d |= {"difficult": 1, "note": "ä\""}  # scalar attributes only, sorted by key
        expected.append(json.dumps(d, ensure_ascii=False, separators=(",", ":")))
    assert got == ",".join(expected)
    assert '"bbox":[-0.0,0.0,' in got and '"bbox":[0.0,-0.0,' in got and '"bbox":[0.0,0.0,' in got
