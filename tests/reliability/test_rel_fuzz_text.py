"""Property-based fuzzing of the line-oriented native readers (YOLO, VisDrone, JHU, MOT, SKU110K,
odgt, CCPD names and split lists).

Each file mixes lines written by the format's own writer (valid) with hostile lines (wrong field
counts, NaN/inf, huge or negative numbers, odd Unicode) or is hostile as a whole (random bytes,
UTF-16, Latin-1, empty). For every example:

- with ``on_error="raise"`` the reader returns or raises a one-line ``TinysetError`` that names the
  file (and the line);
- with ``on_error="skip"`` it never raises, and every non-blank input line is accounted for exactly
  once: it is either a row of the output or a counted skip at that line (records in = records out
  + skipped), and every valid line comes out as a row.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _hostile import (
    RecordingPolicy,
    check_error,
    hostile_bytes,
    hostile_line,
    line_numbers,
    nonblank_lines,
    tried,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyset_builder.errors import ErrorPolicy, TinysetError
from tinyset_builder.formats import (
    ccpd_name,
    jhu_txt,
    mot_csv,
    odgt,
    sku110k_csv,
    visdrone_txt,
    yolo_txt,
)
from tinyset_builder.formats.text import split_lines

# derandomize: the same examples on every run (CI stays reproducible); known bugs are pinned
# below as explicit tests.
FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


# ---------------------------------------------------------------------------------------------
# Valid lines from each format's writer

px = st.integers(0, 4000)
size = st.integers(1, 300)


def _yolo_valid() -> st.SearchStrategy[str]:
    def make(c: int, x: int, y: int, w: int, h: int) -> str:
        return yolo_txt.format_yolo_row(c, (x, y, w, h), 1000, 800)
    return st.builds(make, st.integers(0, 20), st.integers(0, 600), st.integers(0, 500),
                     st.integers(1, 300), st.integers(1, 250))


def _visdrone_valid() -> st.SearchStrategy[str]:
    return st.builds(lambda b, s, c, t, o: visdrone_txt.format_visdrone_row(b, s, c, t, o),
                     st.tuples(px, px, size, size), st.integers(0, 1), st.integers(0, 11),
                     st.integers(0, 1), st.integers(0, 2))


def _jhu_valid() -> st.SearchStrategy[str]:
    return st.builds(jhu_txt.format_jhu_head, st.tuples(px, px, size, size),
                     st.integers(1, 3), st.integers(0, 1))


def _jhu_labels_valid() -> st.SearchStrategy[str]:
    return st.builds(jhu_txt.format_image_label, st.text(string.digits, min_size=1, max_size=5),
                     st.integers(0, 9999), st.sampled_from(["stadium", "street"]),
                     st.integers(0, 3), st.booleans())


def _mot_valid() -> st.SearchStrategy[str]:
    return st.builds(mot_csv.format_mot_row, st.integers(0, 9999), st.integers(0, 99),
                     st.tuples(px, px, size, size), st.integers(0, 1), st.integers(-1, 8))


def _sku_valid() -> st.SearchStrategy[str]:
    return st.builds(lambda n, x, y, w, h: sku110k_csv.format_sku110k_row(
        f"train_{n}.jpg", (x, y, x + w, y + h), 3024, 3024),
        st.integers(0, 999), px, px, size, size)


def _odgt_valid() -> st.SearchStrategy[str]:
    box = st.tuples(px, px, size, size).map(list)
    gtbox = st.builds(lambda t, f, v, h: odgt.odgt_gtbox(t, f, v, h, box_id=0),
                      st.sampled_from(["person", "mask"]), box, box, box)
    return st.builds(odgt.format_odgt_line, st.text(string.hexdigits + ",", min_size=1,
                                                    max_size=12), st.lists(gtbox, max_size=4))


LINE_READERS: dict[str, tuple[Callable[[Path, ErrorPolicy], Any], st.SearchStrategy[str],
                              str, int]] = {
    # name: (reader, valid line, field separator, field count)
    "yolo": (yolo_txt.read_yolo_txt, _yolo_valid(), " ", 5),
    "visdrone": (visdrone_txt.read_visdrone_txt, _visdrone_valid(), ",", 8),
    "jhu_gt": (jhu_txt.read_jhu_gt, _jhu_valid(), " ", 6),
    "jhu_labels": (lambda p, pol: list(jhu_txt.read_image_labels(p, pol).values()),
                   _jhu_labels_valid(), ",", 5),
    "mot": (mot_csv.read_mot_csv, _mot_valid(), ",", 10),
    "sku110k": (sku110k_csv.read_sku110k_csv, _sku_valid(), ",", 8),
    "odgt": (odgt.read_odgt, _odgt_valid(), " ", 3),
}


def _row_line(row: Any) -> int:
    return int(row.line)


@st.composite
def _file(draw: st.DrawFn, valid: st.SearchStrategy[str], sep: str, n: int,
          ) -> tuple[bytes, set[int]]:
    """File bytes and the line numbers of the valid lines in it."""
    if draw(st.integers(0, 9)) == 0:
        return draw(hostile_bytes), set()
    lines = draw(st.lists(st.one_of(valid.map(lambda v: (v, True)),
                                    hostile_line(n, sep).map(lambda v: (v, False)),
                                    st.just(("", False))), max_size=12))
    texts = [t for t, _ in lines]
    valid_at = {i for i, (_, ok) in enumerate(lines, start=1) if ok}
    # A hostile line may contain its own line breaks; then line numbers shift: keep only the
    # examples where each logical line is one physical line, so "valid at line k" stays true.
    data = ("\n".join(texts) + draw(st.sampled_from(["", "\n", "\r\n"]))).encode("utf-8")
    if any(len(split_lines(t)) > 1 for t in texts):
        valid_at = set()
    return data, valid_at


@pytest.mark.parametrize("name", sorted(LINE_READERS))
def test_line_reader_accounts_for_every_line(name: str, tmp_path: Path) -> None:
    reader, valid, sep, n = LINE_READERS[name]
    path = tmp_path / f"{name}.txt"

    @FUZZ
    @given(_file(valid, sep, n))
    def run(example: tuple[bytes, set[int]]) -> None:
        data, valid_at = example
        path.write_bytes(data)
        # raise: a row list or a one-line error naming the file
        try:
            reader(path, ErrorPolicy("raise"))
        except Exception as e:
            check_error(e, path)
        # skip: never raises; every non-blank line is a row or a skip, exactly once
        policy = RecordingPolicy("skip")
        rows = reader(path, policy)
        tried(name, bool(policy.locations))
        lines = nonblank_lines(data)
        if lines is None:  # undecodable: one file-level skip, no rows
            assert rows == [] and policy.locations == [str(path)]
            return
        out = [_row_line(r) for r in rows]
        skipped = line_numbers(policy.locations, path)
        if name == "odgt":  # gtbox-level skips are checked in their own test
            skipped = line_numbers([x for x in policy.locations if " gtboxes[" not in x], path)
        if name == "jhu_labels":  # a later row with the same name replaces an earlier one
            assert len(set(out)) == len(out)
            assert set(out) | set(skipped) <= set(lines)
            assert len(out) + len(skipped) <= len(lines)
            return
        assert sorted(out + skipped) == lines, (out, skipped, lines)
        assert valid_at <= set(out), f"valid lines {sorted(valid_at - set(out))} were rejected"
        assert policy.total_skipped == len(policy.locations)

    run()


@FUZZ
@given(st.lists(st.one_of(st.text(max_size=40), st.builds(
    lambda a, b: f'{{"ID": "x", "gtboxes": [{a}, {{"tag": "person", "fbox": {b}}}]}}',
    st.sampled_from(["1", "null", '{"tag": 3}', '{"tag": "p", "hbox": [1, 2, "3", 4]}', "[]",
                     '{"tag": "p", "vbox": [NaN, 1, 2, 3]}', '{"tag": "p", "extra": 5}']),
    st.sampled_from(["[1, 2, 3, 4]", "[1, 2, 3]", "[1e999, 0, 1, 1]", '"x"', "[true, 1, 1, 1]",
                     "[-5, -5, 0, 0]"]))), max_size=8))
def test_odgt_gtboxes_are_kept_or_counted(tmp_path_factory: pytest.TempPathFactory,
                                          lines: list[str]) -> None:
    """Inside a usable odgt line, every gtbox is a box of the record or one counted skip."""
    import json

    path = tmp_path_factory.mktemp("odgt") / "a.odgt"
    path.write_text("\n".join(lines), encoding="utf-8")
    policy = RecordingPolicy("skip")
    records = odgt.read_odgt(path, policy)
    tried("odgt", bool(policy.locations))
    for rec in records:
        raw = json.loads(split_lines(path.read_bytes().decode("utf-8"))[rec.line - 1])
        box_skips = [loc for loc in policy.locations
                     if loc.startswith(f"{path}:{rec.line} gtboxes[")]
        assert len(rec.boxes) + len(box_skips) == len(raw["gtboxes"])


@FUZZ
@given(st.one_of(st.text(max_size=80),
                 st.lists(st.one_of(st.text(string.digits + "&_", max_size=12), st.just(""),
                                    st.sampled_from(["1&2_3&4", "1&2&3", "x&y", "9" * 40])),
                          min_size=1, max_size=9).map("-".join)))
def test_ccpd_names_raise_only_value_error(name: str) -> None:
    """A CCPD file name parses or fails with a ValueError the converter turns into a skip."""
    try:
        label = ccpd_name.parse_ccpd_name(name + ".jpg")
    except ValueError as e:
        assert "\n" not in str(e)
        tried("ccpd", True)
        return
    tried("ccpd", False)
    assert len(label.corners) == 4 and len(label.plate) in (7, 8)


@FUZZ
@given(hostile_bytes)
def test_ccpd_split_list_accounts_for_every_line(tmp_path_factory: pytest.TempPathFactory,
                                                 data: bytes) -> None:
    path = tmp_path_factory.mktemp("ccpd") / "train.txt"
    path.write_bytes(data)
    policy = RecordingPolicy("skip")
    entries = ccpd_name.read_split_list(path, policy)
    tried("ccpd", bool(policy.locations))
    lines = nonblank_lines(data)
    if lines is None:
        assert entries == [] and policy.locations == [str(path)]
    else:
        assert [n for n, _ in entries] == lines
    try:
        ccpd_name.read_split_list(path, ErrorPolicy("raise"))
    except Exception as e:
        check_error(e, path)


@FUZZ
@given(st.one_of(
    st.binary(max_size=100),
    st.dictionaries(st.sampled_from(["names", "nc", "train"]),
                    st.one_of(st.integers(-2, 5), st.text(max_size=5), st.none(),
                              st.lists(st.one_of(st.text(max_size=5), st.integers()), max_size=4),
                              st.dictionaries(st.one_of(st.integers(-1, 4), st.text(max_size=2)),
                                              st.one_of(st.text(max_size=5), st.integers()),
                                              max_size=4)),
                    max_size=3).map(lambda d: __import__("yaml").safe_dump(d).encode())))
def test_yolo_data_yaml_names_or_one_line_error(tmp_path_factory: pytest.TempPathFactory,
                                                data: bytes) -> None:
    path = tmp_path_factory.mktemp("yaml") / "data.yaml"
    path.write_bytes(data)
    try:
        names = yolo_txt.read_class_names(path)
    except Exception as e:
        check_error(e, path)
        tried("yolo", True)
        return
    tried("yolo", False)
    assert names and all(isinstance(n, str) for n in names)


def test_sku110k_oversized_quoted_field_is_one_bad_row(tmp_path: Path) -> None:
    """csv's 128 kB field limit used to escape as a csv.Error traceback."""
    path = tmp_path / "annotations_train.csv"
    good = sku110k_csv.format_sku110k_row("a.jpg", (1, 2, 30, 40), 100, 100)
    path.write_text(f'{good}\n"{"x" * 200_000}\n{good}\n,,,,,,,\n')
    policy = RecordingPolicy("skip")
    rows = sku110k_csv.read_sku110k_csv(path, policy)
    assert [r.line for r in rows] == [1, 3]
    assert line_numbers(policy.locations, path) == [2, 4]
    with pytest.raises(TinysetError, match=f"{path}:2"):
        sku110k_csv.read_sku110k_csv(path, ErrorPolicy("raise"))


def test_yolo_data_yaml_mixed_name_keys(tmp_path: Path) -> None:
    """``names: {0: a, x: b}`` used to escape as a TypeError from sorting mixed keys."""
    path = tmp_path / "data.yaml"
    path.write_text("names:\n  0: a\n  x: b\n")
    with pytest.raises(TinysetError, match="names must be indexed"):
        yolo_txt.read_class_names(path)


# ---------------------------------------------------------------------------------------------
# End to end through a converter: reader + SourceAssembler + CocoDataset.validate

@pytest.fixture(scope="module")
def visdrone_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image

    raw = tmp_path_factory.mktemp("raw")
    images = raw / "visdrone" / "VisDrone2019-DET-val" / "images"
    images.mkdir(parents=True)
    Image.new("RGB", (64, 48), (90, 120, 60)).save(images / "0000001_00000_d_0000001.jpg")
    (images.parent / "annotations").mkdir()
    return raw


@FUZZ
@given(st.lists(st.one_of(_visdrone_valid(), hostile_line(8, ","),
                          st.builds(lambda v: f"{v},4,4,1,{4},0,0", st.sampled_from(
                              ["nan,1", "inf,1", "1e308,1e308", "-50,-50", "70,10", "0,0,-0",
                               "10,10", "1,1"]))), max_size=10))
def test_visdrone_conversion_accounts_for_every_line(visdrone_raw: Path,
                                                     lines: list[str]) -> None:
    from tinyset_builder.sources import convert_source

    ann = (visdrone_raw / "visdrone" / "VisDrone2019-DET-val" / "annotations"
           / "0000001_00000_d_0000001.txt")
    ann.write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        convert_source("visdrone", visdrone_raw, on_error="raise")
    except Exception as e:
        check_error(e, ann)
    conv = convert_source("visdrone", visdrone_raw, on_error="skip")
    tried("visdrone_convert", bool(conv.skipped))
    dropped = sum(n for k, n in conv.counts.items() if k.startswith("dropped_"))
    n_lines = len(nonblank_lines(ann.read_bytes()) or [])
    assert len(conv.dataset.annotations) + sum(conv.skipped.values()) + dropped == n_lines
    for a in conv.dataset.annotations:
        x, y, w, h = a.bbox
        assert w > 0 and h > 0 and 0 <= x and x + w <= 64 and 0 <= y and y + h <= 48
