"""Native text readers of the YOLO / CSV / custom-text sources: parsing, errors, round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyset_builder.errors import ErrorPolicy, SourceError
from tinyset_builder.formats import ccpd_name, jhu_txt, mot_csv, sku110k_csv, yolo_txt

# --------------------------------------------------------------------------------------- YOLO


@pytest.mark.parametrize(("line", "expected"), [
    pytest.param("0 0.5 0.25 0.1 0.2", (0, (0.5, 0.25, 0.1, 0.2)), id="spaces"),
    pytest.param("3,0.5,0.25,0.1,0.2", (3, (0.5, 0.25, 0.1, 0.2)), id="commas"),
    pytest.param("3, 0.5 ,0.25\t0.1  0.2", (3, (0.5, 0.25, 0.1, 0.2)), id="mixed-separators"),
    pytest.param("2.0 0.5 0.25 0.1 0.2", (2, (0.5, 0.25, 0.1, 0.2)), id="integral-float-class"),
    #   (0.1,0.2)──(0.3,0.2)
    #       │          │        polygon -> its extent: centre (0.2, 0.3), size 0.2 x 0.2
    #   (0.1,0.4)──(0.3,0.4)
    pytest.param("1 0.1 0.2 0.3 0.2 0.3 0.4 0.1 0.4", (1, (0.2, 0.3, 0.2, 0.2)),
                 id="segment-polygon-to-box"),
    pytest.param("0 1.0005 0.5 0.1 0.1", (0, (1.0005, 0.5, 0.1, 0.1)), id="rounding-overshoot"),
])
def test_yolo_line_parses(line: str, expected: tuple[int, tuple[float, ...]]) -> None:
    category, box = yolo_txt.parse_yolo_line(line)
    assert category == expected[0]
    assert box == pytest.approx(expected[1])


@pytest.mark.parametrize(("line", "reason"), [
    pytest.param("0 0.5 0.5 0.1", "expected 5 fields", id="four-fields"),
    pytest.param("0 0.5 0.5 0.1 0.1 0.9", "expected 5 fields", id="six-fields-prediction"),
    pytest.param("0 0.5 zero 0.1 0.1", "non-numeric", id="non-numeric"),
    pytest.param("-1 0.5 0.5 0.1 0.1", "non-negative integer", id="negative-class"),
    pytest.param("1.5 0.5 0.5 0.1 0.1", "non-negative integer", id="fractional-class"),
    pytest.param("0 512 300 14 16", "normalised", id="pixels-not-normalised"),
    pytest.param("0 1.7 0.5 0.1 0.1", "normalised", id="centre-outside"),
    pytest.param("0 nan 0.5 0.1 0.1", "non-finite", id="nan"),
])
def test_yolo_line_rejects(line: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        yolo_txt.parse_yolo_line(line)


def test_yolo_file_errors_name_file_and_line_and_skip_counts(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("0 0.5 0.5 0.1 0.1\n\n1 0.5 oops 0.1 0.1\n2 0.2 0.2 0.1 0.1")
    with pytest.raises(SourceError, match=rf"^{path}:3: non-numeric") as err:
        yolo_txt.read_yolo_txt(path, ErrorPolicy())
    assert "\n" not in str(err.value)
    policy = ErrorPolicy("skip")
    rows = yolo_txt.read_yolo_txt(path, policy)
    assert [(r.line, r.category) for r in rows] == [(1, 0), (4, 2)]
    assert policy.total_skipped == 1 and policy.examples[next(iter(policy.skipped))].startswith(
        f"{path}:3: ")


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 2500), st.integers(1, 2500), st.data())
def test_yolo_row_round_trips_pixels(width: int, height: int, data: st.DataObject) -> None:
    x = data.draw(st.integers(0, width - 1))
    y = data.draw(st.integers(0, height - 1))
    w = data.draw(st.integers(1, width - x))
    h = data.draw(st.integers(1, height - y))
    for sep in (" ", ","):
        category, box = yolo_txt.parse_yolo_line(
            yolo_txt.format_yolo_row(7, (x, y, w, h), width, height, sep=sep))
        row = yolo_txt.YoloRow(1, category, box)
        assert category == 7
        assert row.to_xywh(width, height) == pytest.approx((x, y, w, h), abs=1e-4)


@pytest.mark.parametrize(("text", "names"), [
    pytest.param("names:\n- ball\n- player\nnc: 2\n", ["ball", "player"], id="list"),
    pytest.param("names: [ball, player]\n", ["ball", "player"], id="flow-list"),
    pytest.param("names:\n  1: player\n  0: ball\n", ["ball", "player"], id="index-mapping"),
])
def test_data_yaml_names(tmp_path: Path, text: str, names: list[str]) -> None:
    (tmp_path / "data.yaml").write_text(text)
    assert yolo_txt.read_class_names(tmp_path / "data.yaml") == names


@pytest.mark.parametrize(("text", "reason"), [
    pytest.param("names: [a, b]\nnc: 3\n", "nc = 3 but 2 names", id="nc-mismatch"),
    pytest.param("train: x\n", "'names' must be", id="no-names"),
    pytest.param("names:\n  0: a\n  2: b\n", "indexed 0..n-1", id="gap-in-ids"),
    pytest.param("names: [a, b\nnc: 2\n", r"data.yaml:\d+: not valid YAML", id="bad-yaml"),
])
def test_data_yaml_errors_are_one_line(tmp_path: Path, text: str, reason: str) -> None:
    (tmp_path / "data.yaml").write_text(text)
    with pytest.raises(SourceError, match=reason) as err:
        yolo_txt.read_class_names(tmp_path / "data.yaml")
    assert "\n" not in str(err.value) and str(tmp_path / "data.yaml") in str(err.value)


def test_data_yaml_writer_is_read_back(tmp_path: Path) -> None:
    (tmp_path / "data.yaml").write_text(yolo_txt.format_data_yaml(["a b", "c:d"], {"train": "t"}))
    assert yolo_txt.read_class_names(tmp_path / "data.yaml") == ["a b", "c:d"]


# ---------------------------------------------------------------------------------- SKU110K


def test_sku110k_rows_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "annotations_train.csv"
    path.write_text("train_0.jpg,208,537,422,814,object,3024,3024\n"
                    '"train_1.jpg",1,2,3.5,4,object,10,20\n'
                    "train_2.jpg,1,2,3,object,10,20\n"
                    "train_3.jpg,1,2,x,4,object,10,20\n")
    policy = ErrorPolicy("skip")
    rows = sku110k_csv.read_sku110k_csv(path, policy)
    assert rows[0] == sku110k_csv.SkuRow(1, "train_0.jpg", (208, 537, 422, 814), "object",
                                         3024, 3024)
    assert rows[1].image == "train_1.jpg" and rows[1].xyxy == (1, 2, 3.5, 4)
    assert sum(policy.skipped.values()) == 2
    assert sorted(e.split(": ")[0] for e in policy.examples.values()) == [f"{path}:3",
                                                                          f"{path}:4"]
    with pytest.raises(SourceError, match=rf"^{path}:3: expected 8 columns"):
        sku110k_csv.read_sku110k_csv(path, ErrorPolicy())


def test_sku110k_format_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text(sku110k_csv.format_sku110k_row("val_3.jpg", (1, 2, 30, 40), 640, 480) + "\n")
    (row,) = sku110k_csv.read_sku110k_csv(path, ErrorPolicy())
    assert (row.image, row.xyxy, row.category, row.width, row.height) == \
        ("val_3.jpg", (1, 2, 30, 40), "object", 640, 480)


# ------------------------------------------------------------------------------ JHU-CROWD++


def test_jhu_xy_is_the_head_centre(tmp_path: Path) -> None:
    # The documented decision: "512 300 14 16" is a 14x16 head *centred* on (512, 300).
    assert jhu_txt.XY_IS_CENTRE
    path = tmp_path / "0001.txt"
    path.write_text("512 300 14 16 1 0\n530 298 12 13 2 1\n")
    heads = jhu_txt.read_jhu_gt(path, ErrorPolicy())
    assert heads[0].to_xywh() == (505, 292, 14, 16)
    assert heads[1].to_xywh() == (524, 291.5, 12, 13)
    assert (heads[1].occlusion, heads[1].blur, heads[1].line) == (2, 1, 2)


@pytest.mark.parametrize(("line", "reason"), [
    pytest.param("512 300 14 16 1", "expected 6", id="five-fields"),
    pytest.param("512 300 14 x 1 0", "non-numeric", id="non-numeric"),
    pytest.param("512 300 14 16 4 0", "occlusion must be 1-3", id="bad-occlusion"),
    pytest.param("512,300,14,16,1,0", "expected 6", id="commas"),
])
def test_jhu_bad_lines(tmp_path: Path, line: str, reason: str) -> None:
    path = tmp_path / "0001.txt"
    path.write_text(f"1 1 2 2 1 0\n{line}\n")
    with pytest.raises(SourceError, match=rf"^{path}:2: {reason}"):
        jhu_txt.read_jhu_gt(path, ErrorPolicy())


def test_jhu_empty_gt_is_valid(tmp_path: Path) -> None:
    (tmp_path / "0002.txt").write_text("")
    assert jhu_txt.read_jhu_gt(tmp_path / "0002.txt", ErrorPolicy()) == []


@pytest.mark.parametrize("box", [(10, 20, 14, 16), (0, 0, 3, 5), (7, 9, 1, 1)])
def test_jhu_head_writer_round_trips(tmp_path: Path, box: tuple[int, int, int, int]) -> None:
    path = tmp_path / "g.txt"
    path.write_text(jhu_txt.format_jhu_head(box, 3, 1) + "\n")
    (head,) = jhu_txt.read_jhu_gt(path, ErrorPolicy())
    assert head.to_xywh() == box and (head.occlusion, head.blur) == (3, 1)


def test_jhu_image_labels(tmp_path: Path) -> None:
    path = tmp_path / "image_labels.txt"
    path.write_text("0001,2,stadium,0,0\n0002,0,park,1,1\n0003,2,stadium\n")
    policy = ErrorPolicy("skip")
    labels = jhu_txt.read_image_labels(path, policy)
    assert labels["0001"].count == 2 and not labels["0001"].distractor
    assert labels["0002"].distractor and labels["0002"].weather == 1
    (example,) = policy.examples.values()
    assert example.startswith(f"{path}:3: expected 5 comma-separated fields")


# ------------------------------------------------------------------------------------- CCPD

TILT = ("ccpd_tilt/0569-20_26-291&512_551&695-551&695_301&603_291&512_541&604-"
        "12_6_16_15_30_26_33-63-197.jpg")
BASE = ("ccpd_base/0219683908046-89_84-126&620_414&687-414&688_144&694_122&619_392&613-"
        "0_0_1_25_25_26_3-36-29.jpg")


def test_ccpd_name_fields() -> None:
    label = ccpd_name.parse_ccpd_name(TILT)
    assert label.area == "0569" and label.tilt == (20, 26)
    assert label.box == (291, 512, 551, 695)
    assert label.corners == ((551, 695), (301, 603), (291, 512), (541, 604))
    assert label.plate == (12, 6, 16, 15, 30, 26, 33)
    assert (label.brightness, label.blur) == (63, 197)
    # In ccpd_tilt the name's box is exactly the vertices' extent.
    assert label.corners_xywh() == label.box_xywh() == (291, 512, 260, 183)


def test_ccpd_base_box_is_looser_than_the_vertices() -> None:
    label = ccpd_name.parse_ccpd_name(BASE)
    assert label.area == "0219683908046"  # 13 digits: not a percentage
    assert label.box_xywh() == (126, 620, 288, 67)
    assert label.corners_xywh() == (122, 613, 292, 81)


def test_ccpd_green_plate_has_eight_characters() -> None:
    name = "04-90_88-180&530_390&610-390&610_180&605_182&530_392&535-0_0_3_24_30_27_24_29-90-40.jpg"
    assert len(ccpd_name.parse_ccpd_name(name).plate) == 8


@pytest.mark.parametrize(("name", "reason"), [
    pytest.param("1005.jpg", "expected 7", id="ccpd-np-style"),
    pytest.param("03-92_88-249&560_561&670-561&668_265&654_266&562-0_0_10_8_30_26_28-114-73.jpg",
                 "expected 4 plate corners", id="three-corners"),
    pytest.param("03-92_88-249&560_561-561&668_265&654_266&562_562&576-0_0_10_8_30_26_28-114-73",
                 "malformed", id="box-without-ampersand"),
    pytest.param("0x-92_88-249&560_561&670-561&668_265&654_266&562_562&576-0_0_1_8_3_2_2-114-73",
                 "malformed", id="area-not-digits"),
    pytest.param("03-92_88-249&560_561&670-561&668_265&654_266&562_562&576-0_0_1-114-73",
                 "7 or 8 plate", id="short-plate"),
])
def test_ccpd_bad_names(name: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        ccpd_name.parse_ccpd_name(name)


def test_ccpd_name_writer_round_trips() -> None:
    name = ccpd_name.format_ccpd_name("0123", (90, 85), (10, 20, 110, 60),
                                      [(110, 60), (10, 60), (10, 20), (110, 20)],
                                      [0, 1, 2, 3, 4, 5, 6], 77, 12)
    label = ccpd_name.parse_ccpd_name(name)
    assert label.corners_xywh() == (10, 20, 100, 40) and label.plate == (0, 1, 2, 3, 4, 5, 6)


def test_ccpd_split_list_without_final_newline(tmp_path: Path) -> None:
    (tmp_path / "val.txt").write_text(f"{BASE}\n{TILT}")
    assert ccpd_name.read_split_list(tmp_path / "val.txt", ErrorPolicy()) == [(1, BASE),
                                                                               (2, TILT)]


# ---------------------------------------------------------------------------- MOT (BIRDSAI)


def test_mot_rows(tmp_path: Path) -> None:
    path = tmp_path / "v.csv"
    path.write_text("12,3,311,207,9,6,0,1,0,0\n13.0,3,311.5,207,9,6,0,-1,1,1,\n")
    rows = mot_csv.read_mot_csv(path, ErrorPolicy())
    assert rows[0] == mot_csv.MotRow(1, 12, 3, (311, 207, 9, 6), 0, 1, 0, 0)
    assert (rows[1].frame, rows[1].xywh[0], rows[1].species, rows[1].noise) == (13, 311.5, -1, 1)


@pytest.mark.parametrize(("line", "reason"), [
    pytest.param("12,3,311,207,9,6,0,1,0", "expected 10", id="nine-fields"),
    pytest.param("12,3,311,207,9,six,0,1,0,0", "non-numeric", id="non-numeric"),
    pytest.param("12,3,311,207,9,6,0.5,1,0,0", "non-numeric", id="fractional-class"),
    pytest.param("-1,3,311,207,9,6,0,1,0,0", "negative frame", id="negative-frame"),
])
def test_mot_bad_rows(tmp_path: Path, line: str, reason: str) -> None:
    path = tmp_path / "v.csv"
    path.write_text(f"0,1,1,1,2,2,0,1,0,0\n{line}\n")
    with pytest.raises(SourceError, match=rf"^{path}:2: {reason}"):
        mot_csv.read_mot_csv(path, ErrorPolicy())
    policy = ErrorPolicy("skip")
    assert len(mot_csv.read_mot_csv(path, policy)) == 1 and policy.total_skipped == 1


def test_mot_writer_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "v.csv"
    path.write_text(mot_csv.format_mot_row(4, 9, (1, 2, 3, 4), 1, 0, 1, 0) + "\n")
    assert mot_csv.read_mot_csv(path, ErrorPolicy()) == [
        mot_csv.MotRow(1, 4, 9, (1, 2, 3, 4), 1, 0, 1, 0)]
