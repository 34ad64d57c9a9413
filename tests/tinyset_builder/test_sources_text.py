"""Quirks and bad input of the YOLO / CSV / custom-text sources.

Quirk tests build tiny native trees by hand (or change a synthetic one) so the expected boxes can be
worked out on paper; bad-input tests check the one-line error (file and line/record) and the
counted skip under ``on_error="skip"``.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tinyset_builder.coco import CocoDataset
from tinyset_builder.errors import SourceError, reason_kind
from tinyset_builder.formats.ccpd_name import format_ccpd_name
from tinyset_builder.sources import convert_source, get_source
from tinyset_builder.sources import license_plate as ccpd
from tinyset_builder.sources.base import SynthSummary
from tinyset_builder.synth.canvas import save_image


def blank(path: Path, size: tuple[int, int], mode: str = "RGB") -> Path:
    """A flat image of ``size = (width, height)`` (JPEG or PNG by suffix)."""
    w, h = size
    shape = (h, w) if mode == "L" else (h, w, 3)
    return save_image(path, np.full(shape, 90, dtype=np.uint8))


_SYNTH: dict[str, tuple[Path, SynthSummary]] = {}


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("synth")


def synth(tmp_path: Path, name: str, cache: Path) -> tuple[Path, SynthSummary]:
    """A private copy of the source's synthetic tree (synthesized once per module)."""
    if name not in _SYNTH or not _SYNTH[name][0].is_dir():
        _SYNTH[name] = (cache / name, get_source(name).synthesize(cache / name, seed=11))
    source, summary = _SYNTH[name]
    root = tmp_path / "raw" / name
    shutil.copytree(source, root)
    return root, summary


def boxes_by_name(ds: CocoDataset) -> dict[str, list[tuple[float, ...]]]:
    files = {i.id: i.file_name for i in ds.images}
    out: dict[str, list[tuple[float, ...]]] = {}
    for a in ds.annotations:
        out.setdefault(files[a.image_id], []).append(tuple(a.bbox))
    return out


def append_line(path: Path, line: str) -> str:
    """Append a line; returns its ``path:line`` location."""
    text = path.read_text()
    if text and not text.endswith("\n"):
        text += "\n"
    path.write_text(text + line + "\n")
    return f"{path}:{len(path.read_text().splitlines())}"


def first(root: Path, pattern: str) -> Path:
    return sorted(root.glob(pattern))[0]


# ------------------------------------------------------------------------------- bad input

Mutation = Callable[[Path], tuple[str, str]]  # root -> (location, reason)


def yolo_line(pattern: str, line: str, reason: str) -> Mutation:
    return lambda root: (append_line(first(root, pattern), line), reason)


def sku_line(kind: str) -> Mutation:
    def mutate(root: Path) -> tuple[str, str]:
        path = root / "SKU110K_fixed/annotations/annotations_train.csv"
        name, *_, w, h = path.read_text().splitlines()[0].split(",")
        line, reason = {
            "malformed": (f"{name},1,2,3", "expected 8 columns"),
            "outside": (f"{name},{int(w) + 10},5,{int(w) + 50},40,object,{w},{h}", "outside"),
            "category": (f"{name},1,1,20,20,bottle,{w},{h}", "unknown category 'bottle'"),
        }[kind]
        return append_line(path, line), reason
    return mutate


def ccpd_name_record(kind: str) -> Mutation:
    def mutate(root: Path) -> tuple[str, str]:
        source = first(root, "CCPD2019/ccpd_base/*.jpg")
        if kind == "malformed":
            target, reason = source.with_name("0123-90_90-bad.jpg"), "expected 7"
        else:
            corners = [(900, 700), (800, 700), (800, 650), (900, 650)]
            target = source.with_name(format_ccpd_name("01", (90, 90), (800, 650, 900, 700),
                                                       corners, [0] * 7, 50, 50))
            reason = "outside"
        shutil.copy(source, target)
        return str(target), reason
    return mutate


def unreadable(pattern: str) -> Mutation:
    def mutate(root: Path) -> tuple[str, str]:
        path = first(root, pattern)
        path.write_bytes(b"this is not an image")
        return str(path), "unreadable image"
    return mutate


YOLO_SOURCES = {"sh17": "labels/*.txt", "visalgae": "train/labels/[0-9]*.txt",
                "dfl": "train/labels/*.txt", "tacna_olive": "valid/labels/*.txt"}
BAD_INPUT = [
    *(pytest.param(src, yolo_line(pat, line, reason), id=f"{src}-{kind}")
      for src, pat in YOLO_SOURCES.items()
      for kind, line, reason in [("malformed", "0 0.5 0.5", "expected 5 fields"),
                                 ("outside", "0 1.7 0.5 0.1 0.1", "normalised"),
                                 ("category", "99 0.5 0.5 0.1 0.1", "unknown class id 99")]),
    *(pytest.param("sku110k", sku_line(k), id=f"sku110k-{k}")
      for k in ("malformed", "outside", "category")),
    pytest.param("jhu_crowd", yolo_line("jhu_crowd_v2.0/train/gt/*.txt", "1 2 3", "expected 6"),
                 id="jhu_crowd-malformed"),
    pytest.param("jhu_crowd", yolo_line("jhu_crowd_v2.0/train/gt/*.txt", "99999 9 10 10 1 0",
                                        "outside"), id="jhu_crowd-outside"),
    pytest.param("license_plate", ccpd_name_record("malformed"), id="license_plate-malformed"),
    pytest.param("license_plate", ccpd_name_record("outside"), id="license_plate-outside"),
    *(pytest.param("ir_wildlife", yolo_line("TrainReal/annotations/*.csv", line, reason),
                   id=f"ir_wildlife-{kind}")
      for kind, line, reason in [("malformed", "1,2,3", "expected 10"),
                                 ("outside", "1,99,900,900,5,5,0,1,0,0", "outside"),
                                 ("category", "1,99,10,10,5,5,0,42,0,0", "unknown species 42"),
                                 ("class", "1,99,10,10,5,5,7,1,0,0", "with class 7")]),
    *(pytest.param(src, unreadable(pattern), id=f"{src}-unreadable-image")
      for src, pattern in [("sh17", "images/*"), ("visalgae", "train/images/*"),
                           ("dfl", "train/images/*"), ("tacna_olive", "valid/images/*"),
                           ("sku110k", "SKU110K_fixed/images/train_*"),
                           ("jhu_crowd", "jhu_crowd_v2.0/train/images/*"),
                           ("license_plate", "CCPD2019/ccpd_base/*"),
                           ("ir_wildlife", "TrainReal/images/*/*")]),
]


@pytest.mark.parametrize(("name", "mutate"), BAD_INPUT)
def test_bad_input_is_one_line_naming_the_record_or_a_counted_skip(
        name: str, mutate: Mutation, tmp_path: Path, synth_dir: Path) -> None:
    root, summary = synth(tmp_path, name, synth_dir)
    location, reason = mutate(root)
    with pytest.raises(SourceError) as err:
        convert_source(name, root.parent)
    message = str(err.value)
    assert "\n" not in message
    conv = convert_source(name, root.parent, on_error="skip")
    assert sum(conv.skipped.values()) == 1
    (why,) = conv.skipped
    assert reason_kind(reason) in why
    if "unreadable" in reason:
        # Named as "<annotation file>: <image>: unreadable image (...)": both files appear.
        assert f"{location}: unreadable image" in message, message
        assert f"{location}: unreadable image" in f"{conv.examples[why]}: {why}"
        assert len(conv.dataset.images) == summary.images - 1
        return
    assert message.startswith(f"{location}: ") and reason in message, message
    assert conv.examples[why].startswith(f"{location}: ")
    # A bad CCPD box comes with its own (valid) image, which stays, without the box.
    extra_image = name == "license_plate" and reason == "outside"
    assert len(conv.dataset.images) == summary.images + extra_image
    assert len(conv.dataset.annotations) == summary.annotations


# ---------------------------------------------------------------------------- YOLO sources


def test_dfl_class_names_come_from_data_yaml_with_aliases(tmp_path: Path, synth_dir: Path) -> None:
    root, _ = synth(tmp_path, "dfl", synth_dir)
    label = first(root, "train/labels/*.txt")
    label.write_text("0 0.5 0.5 0.004 0.014\n3 0.25 0.5 0.01 0.05\n")
    ds = convert_source("dfl", root.parent).dataset
    names = {c.id: c.name for c in ds.categories}
    key = f"train/images/{label.stem}.jpg"
    got = [names[a.category_id] for a in ds.annotations
           if ds.images[a.image_id - 1].file_name == key]
    assert got == ["dfl/ball", "dfl/referee"]  # data.yaml says "football", aliased to ball
    # Reordering data.yaml re-maps the ids: nothing about the order is hard-coded.
    (root / "data.yaml").write_text("names: [referee, goalkeeper, player, ball]\nnc: 4\n")
    ds = convert_source("dfl", root.parent).dataset
    got = [names[a.category_id] for a in ds.annotations
           if ds.images[a.image_id - 1].file_name == key]
    assert got == ["dfl/referee", "dfl/ball"]


@pytest.mark.parametrize(("yaml_text", "reason"), [
    pytest.param(None, "data.yaml not found", id="missing"),
    pytest.param("names: [ball, goalie, player, referee]\n", "unknown class name(s) 'goalie'",
                 id="unknown-name"),
])
def test_dfl_data_yaml_problems_are_clear(tmp_path: Path, synth_dir: Path,
                                          yaml_text: str | None, reason: str) -> None:
    root, _ = synth(tmp_path, "dfl", synth_dir)
    if yaml_text is None:
        (root / "data.yaml").unlink()
    else:
        (root / "data.yaml").write_text(yaml_text)
    with pytest.raises(SourceError, match=re.escape(reason)) as err:
        convert_source("dfl", root.parent, on_error="skip")
    assert str(err.value).startswith(str(root / "data.yaml"))


def test_yolo_image_without_label_file_is_an_image_without_objects(
        tmp_path: Path, synth_dir: Path) -> None:
    root, summary = synth(tmp_path, "tacna_olive", synth_dir)
    label = first(root, "test/labels/*.txt")
    n_lines = len(label.read_text().splitlines())
    label.unlink()
    ds = convert_source("tacna_olive", root.parent).dataset
    assert len(ds.images) == summary.images
    assert len(ds.annotations) == summary.annotations - n_lines > 0


def test_yolo_label_without_image_is_a_bad_record(tmp_path: Path, synth_dir: Path) -> None:
    root, _ = synth(tmp_path, "visalgae", synth_dir)
    orphan = root / "train" / "labels" / "99999.txt"
    orphan.write_text("1 0.5 0.5 0.01 0.01\n")
    with pytest.raises(SourceError, match=rf"^{orphan}: no image for this label file"):
        convert_source("visalgae", root.parent)
    assert sum(convert_source("visalgae", root.parent, on_error="skip").skipped.values()) == 1


def test_yolo_boxes_scale_by_the_real_image_size(tmp_path: Path) -> None:
    #  1904 x 608 micrograph; "1 0.5 0.5 0.25 0.5" is a 476x304 box centred in it.
    root = tmp_path / "raw" / "visalgae"
    blank(root / "train" / "images" / "00001.jpg", (1904, 608))
    (root / "train" / "labels").mkdir(parents=True)
    (root / "train" / "labels" / "00001.txt").write_text("1,0.5,0.5,0.25,0.5\n5 0.5 0.5 0.25 0.5")
    (root / "train" / "labels" / "classes.txt").write_text("Platymonas\nChlorella\n")
    ds = convert_source("visalgae", root.parent).dataset
    assert [tuple(a.bbox) for a in ds.annotations] == [(714, 152, 476, 304)] * 2
    assert [ds.categories[a.category_id - 1].name for a in ds.annotations] == \
        ["visalgae/Chlorella", "visalgae/Haematococcus"]


def test_visalgae_unlabelled_test_split_is_left_out_and_counted(
        tmp_path: Path, synth_dir: Path) -> None:
    root, summary = synth(tmp_path, "visalgae", synth_dir)
    shutil.rmtree(root / "test" / "labels")
    conv = convert_source("visalgae", root.parent)
    assert len(conv.dataset.images) == summary.images - summary.splits["test"]
    assert conv.counts["dropped_unlabelled_images"] == summary.splits["test"]
    assert {i.split for i in conv.dataset.images} == {"train"}


def test_sh17_split_lists_match_by_file_name_whatever_the_prefix(tmp_path: Path) -> None:
    root = tmp_path / "raw" / "sh17"
    for name in ("a.jpeg", "b.jpg", "c.png", "d.jpg"):
        blank(root / "images" / name, (64, 48))
        (root / "labels").mkdir(parents=True, exist_ok=True)
        (root / "labels" / f"{Path(name).stem}.txt").write_text("10 0.5 0.5 0.1 0.1\n")
    (root / "train_files.txt").write_text("images/a.jpeg\n/kaggle/working/images/b.jpg\n")
    (root / "val_files.txt").write_text("c.png\r\n")
    ds = convert_source("sh17", root.parent).dataset
    assert {i.file_name: i.split for i in ds.images} == {
        "images/a.jpeg": "train", "images/b.jpg": "train", "images/c.png": "val",
        "images/d.jpg": None}  # in no list: the build assigns a split by hash
    assert {c.name for c in ds.categories if c.id == ds.annotations[0].category_id} == \
        {"sh17/helmet"}  # class 10 in sh17.yaml


@pytest.mark.parametrize(("train", "val", "location", "reason"), [
    pytest.param("images/a.jpg\n", "a.jpg\n", "val_files.txt:1", "listed in both",
                 id="in-both-lists"),
    pytest.param("images/a.jpg\nimages/zz.jpg\n", "", "train_files.txt:2",
                 "listed image zz.jpg not found", id="listed-but-missing"),
])
def test_sh17_split_list_errors(tmp_path: Path, train: str, val: str, location: str,
                                reason: str) -> None:
    root = tmp_path / "raw" / "sh17"
    blank(root / "images" / "a.jpg", (64, 48))
    (root / "labels").mkdir(parents=True)
    (root / "train_files.txt").write_text(train)
    (root / "val_files.txt").write_text(val)
    with pytest.raises(SourceError, match=rf"^{re.escape(str(root / location))}: .*{reason}"):
        convert_source("sh17", root.parent)
    assert sum(convert_source("sh17", root.parent, on_error="skip").skipped.values()) == 1


# ---------------------------------------------------------------------------------- SKU110K


def sku_tree(tmp_path: Path, rows: dict[str, list[str]], size: tuple[int, int] = (200, 100),
             ) -> Path:
    root = tmp_path / "raw" / "sku110k"
    ann = root / "SKU110K_fixed" / "annotations"
    ann.mkdir(parents=True)
    for split, lines in rows.items():
        (ann / f"annotations_{split}.csv").write_text("".join(f"{r}\n" for r in lines))
        for line in lines:
            name = line.split(",")[0]
            if not (root / "SKU110K_fixed" / "images" / name).exists():
                blank(root / "SKU110K_fixed" / "images" / name, size)
    return root


@pytest.mark.parametrize(("rows", "location", "reason"), [
    pytest.param({"train": ["train_0.jpg,1,1,9,9,object,100,200"]}, "annotations_train.csv:1",
                 "row says train_0.jpg is 100x200 but its header says 200x100",
                 id="size-differs-from-header"),
    pytest.param({"val": ["train_0.jpg,1,1,9,9,object,200,100"]}, "annotations_val.csv:1",
                 "its name says another split", id="prefix-disagrees-with-csv"),
    pytest.param({"train": ["train_0.jpg,1,1,9,9,object,200,100"],
                  "test": ["train_0.jpg,1,1,9,9,object,200,100"]}, "annotations_test.csv:1",
                 "also listed in annotations_train.csv", id="in-two-csvs"),
])
def test_sku110k_consistency_checks(tmp_path: Path, rows: dict[str, list[str]], location: str,
                                   reason: str) -> None:
    root = sku_tree(tmp_path, rows)
    ann = re.escape(f"{root}/SKU110K_fixed/annotations/{location}")
    with pytest.raises(SourceError, match=rf"^{ann}: .*{reason}"):
        convert_source("sku110k", root.parent)
    conv = convert_source("sku110k", root.parent, on_error="skip")
    assert sum(conv.skipped.values()) == 1


def test_sku110k_corners_to_xywh_and_overshoot_clipped(tmp_path: Path) -> None:
    root = sku_tree(tmp_path, {"train": ["train_0.jpg,10,20,40,60,object,200,100",
                                         "train_0.jpg,180,90,205,104,object,200,100"]})
    conv = convert_source("sku110k", root.parent)
    assert [tuple(a.bbox) for a in conv.dataset.annotations] == [(10, 20, 30, 40),
                                                                 (180, 90, 20, 10)]
    assert conv.counts == {"clipped_to_image": 1}
    assert conv.dataset.images[0].split == "train"


# ------------------------------------------------------------------------------ JHU-CROWD++


def jhu_tree(tmp_path: Path, gts: dict[str, str | None], labels: str = "") -> Path:
    root = tmp_path / "raw" / "jhu_crowd"
    split = root / "jhu_crowd_v2.0" / "train"
    for name, gt in gts.items():
        blank(split / "images" / f"{name}.jpg", (100, 80))
        if gt is not None:
            (split / "gt").mkdir(parents=True, exist_ok=True)
            (split / "gt" / f"{name}.txt").write_text(gt)
    if labels:
        (split / "image_labels.txt").write_text(labels)
    return root


def test_jhu_centre_boxes_distractors_and_edge_heads(tmp_path: Path) -> None:
    #  gt "50 40 10 20": a 10x20 head centred on (50, 40) -> [45, 30, 10, 20].
    #  gt "2 40 10 10": centred 2 px from the left edge -> [-3, 35, 10, 10],
    #  clipped to [0, 35, 7, 10].
    root = jhu_tree(tmp_path, {"0001": "50 40 10 20 1 0\n2 40 10 10 3 1\n", "0002": ""},
                    labels="0001,2,stadium,0,0\n0002,0,park,0,1\n")
    conv = convert_source("jhu_crowd", root.parent)
    assert boxes_by_name(conv.dataset) == {
        "jhu_crowd_v2.0/train/images/0001.jpg": [(45, 30, 10, 20), (0, 35, 7, 10)]}
    assert len(conv.dataset.images) == 2  # the distractor is an image without heads
    assert conv.counts == {"clipped_to_image": 1}
    assert [a.extra for a in conv.dataset.annotations] == [{"occlusion": 1, "blur": 0},
                                                           {"occlusion": 3, "blur": 1}]


def test_jhu_count_mismatch_is_counted_not_dropped(tmp_path: Path) -> None:
    root = jhu_tree(tmp_path, {"0001": "50 40 10 20 1 0\n"}, labels="0001,5,stadium,0,0\n")
    conv = convert_source("jhu_crowd", root.parent)
    assert len(conv.dataset.annotations) == 1
    assert conv.counts["label_count_mismatch"] == 1


def test_jhu_missing_gt_file_is_a_bad_record(tmp_path: Path) -> None:
    root = jhu_tree(tmp_path, {"0001": None, "0002": "50 40 10 20 1 0\n"})
    gt = root / "jhu_crowd_v2.0/train/gt/0001.txt"
    with pytest.raises(SourceError, match=rf"^{gt}: gt file not found"):
        convert_source("jhu_crowd", root.parent)
    conv = convert_source("jhu_crowd", root.parent, on_error="skip")
    assert len(conv.dataset.images) == 1 and sum(conv.skipped.values()) == 1


# ------------------------------------------------------------------------------------- CCPD

BASE_NAME = format_ccpd_name("0219683908046", (89, 84), (126, 620, 414, 687),
                             [(414, 688), (144, 694), (122, 619), (392, 613)],
                             [0, 0, 1, 25, 25, 26, 3], 36, 29)
TILT_NAME = format_ccpd_name("0569", (20, 26), (291, 512, 551, 695),
                             [(551, 695), (301, 603), (291, 512), (541, 604)],
                             [12, 6, 16, 15, 30, 26, 33], 63, 197)


def ccpd_tree(tmp_path: Path, images: list[str], lists: dict[str, list[str]]) -> Path:
    root = tmp_path / "raw" / "license_plate"
    for rel in images:
        blank(root / "CCPD2019" / rel, (720, 1160))
    (root / "CCPD2019" / "splits").mkdir(parents=True, exist_ok=True)
    for name, entries in lists.items():
        (root / "CCPD2019" / "splits" / name).write_text("".join(f"{e}\n" for e in entries))
    return root


def test_ccpd_box_split_rule_and_no_plate_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 ) -> None:
    images = [f"ccpd_base/{BASE_NAME}", f"ccpd_base/{BASE_NAME.replace('-36-29', '-40-29')}",
              f"ccpd_tilt/{TILT_NAME}", "ccpd_np/1005.jpg"]
    root = tmp_path / "raw" / "license_plate"
    for rel in images:
        blank(root / "CCPD2019" / rel, (720, 1160))
    (root / "CCPD2019" / "split").mkdir(parents=True)  # the repository's folder name
    (root / "CCPD2019" / "split" / "val.txt").write_text(images[0])  # no final newline
    ds = convert_source("license_plate", root.parent).dataset
    splits = {i.file_name.split("/", 1)[1]: i.split for i in ds.images}
    assert splits == {images[0]: "val", images[1]: None, images[2]: "test", images[3]: "test"}
    boxes = boxes_by_name(ds)
    assert f"CCPD2019/{images[3]}" not in boxes  # ccpd_np: no plate
    # ccpd_base: the vertices' extent (122,613)-(414,694), not the name's box (126,620)-(414,687).
    assert boxes[f"CCPD2019/{images[0]}"] == [(122, 613, 292, 81)]
    assert boxes[f"CCPD2019/{images[2]}"] == [(291, 512, 260, 183)]
    monkeypatch.setattr(ccpd, "BOX_FROM_CORNERS", False)
    boxes = boxes_by_name(convert_source("license_plate", root.parent).dataset)
    assert boxes[f"CCPD2019/{images[0]}"] == [(126, 620, 288, 67)]


@pytest.mark.parametrize(("lists", "location", "reason"), [
    pytest.param({"train.txt": [f"ccpd_base/{BASE_NAME}", "ccpd_base/gone.jpg"]}, "train.txt:2",
                 "listed image ccpd_base/gone.jpg not found", id="listed-but-missing"),
    pytest.param({"train.txt": [f"ccpd_base/{BASE_NAME}"], "val.txt": [f"ccpd_base/{BASE_NAME}"]},
                 "val.txt:1", "also in train.txt", id="in-two-lists"),
])
def test_ccpd_split_list_errors(tmp_path: Path, lists: dict[str, list[str]], location: str,
                                reason: str) -> None:
    root = ccpd_tree(tmp_path, [f"ccpd_base/{BASE_NAME}"], lists)
    lst = re.escape(f"{root}/CCPD2019/splits/{location}")
    with pytest.raises(SourceError, match=rf"^{lst}: .*{reason}"):
        convert_source("license_plate", root.parent)
    assert sum(convert_source("license_plate", root.parent,
                              on_error="skip").skipped.values()) == 1


# ---------------------------------------------------------------------------- BIRDSAI (IR)


def birdsai_tree(tmp_path: Path, rows: str, frames: list[int], folder: str = "TrainReal",
                 ) -> Path:
    root = tmp_path / "raw" / "ir_wildlife"
    video = "0000000060_0000000000"
    for n in frames:
        blank(root / folder / "images" / video / f"{video}_{n:010d}.jpg", (64, 48), mode="L")
    (root / folder / "annotations").mkdir(parents=True, exist_ok=True)
    (root / folder / "annotations" / f"{video}.csv").write_text(rows)
    return root


def test_birdsai_species_fallback_and_empty_frames(tmp_path: Path) -> None:
    root = birdsai_tree(tmp_path, "278,1,10,11,9,6,1,0,0,0\n278,2,30,20,9,6,0,1,1,0\n"
                                  "279,1,12,11,9,6,1,-1,0,1\n279,3,40,30,4,4,0,-1,0,0\n",
                        frames=[278, 279, 280])
    ds = convert_source("ir_wildlife", root.parent).dataset
    names = {c.id: c.name.split("/")[1] for c in ds.categories}
    assert [names[a.category_id] for a in ds.annotations] == ["human", "elephant", "human",
                                                              "unknown-animal"]
    assert len(ds.images) == 3  # frame 280 has no rows: an image without objects
    assert ds.annotations[0].bbox == (10, 11, 9, 6)  # x, y is the top-left corner
    assert ds.annotations[2].extra == {"track": 1, "occlusion": 0, "noise": 1}
    assert {i.split for i in ds.images} == {"train"}


def test_birdsai_offset_file_numbers_fall_back_to_position(tmp_path: Path) -> None:
    # CSV frames 0 and 1, but the files are numbered from 500: matched by sorted position.
    root = birdsai_tree(tmp_path, "0,1,10,11,9,6,0,1,0,0\n1,1,12,11,9,6,0,1,0,0\n",
                        frames=[500, 501])
    conv = convert_source("ir_wildlife", root.parent)
    assert boxes_by_name(conv.dataset) == {
        f"TrainReal/images/0000000060_0000000000/0000000060_0000000000_{n:010d}.jpg": [box]
        for n, box in [(500, (10, 11, 9, 6)), (501, (12, 11, 9, 6))]}
    assert conv.counts == {"videos_matched_by_position": 1}


def test_birdsai_simulated_videos_are_counted_not_read(tmp_path: Path) -> None:
    root = birdsai_tree(tmp_path, "0,1,10,11,9,6,0,1,0,0\n", frames=[0])
    birdsai_tree(tmp_path, "0,1,10,11,9,6,0,1,0,0\n0,2,20,11,9,6,0,1,0,0\n", frames=[0],
                 folder="TrainSimulation")
    conv = convert_source("ir_wildlife", root.parent)
    assert len(conv.dataset.images) == 1 and len(conv.dataset.annotations) == 1
    assert conv.counts == {"dropped_simulated_boxes": 2}


def test_birdsai_row_for_a_frame_without_image_is_a_bad_record(tmp_path: Path) -> None:
    root = birdsai_tree(tmp_path, "0,1,10,11,9,6,0,1,0,0\n7,1,10,11,9,6,0,1,0,0\n",
                        frames=[0, 1])
    csv = root / "TrainReal/annotations/0000000060_0000000000.csv"
    # Frame 7 is neither a file number nor a position: the row cannot be placed.
    with pytest.raises(SourceError, match=rf"^{csv}:2: frame 7 has no image"):
        convert_source("ir_wildlife", root.parent)


@pytest.mark.parametrize(("name", "make"), [
    pytest.param("sku110k", lambda r: (r / "SKU110K_fixed").mkdir(parents=True), id="sku110k"),
    pytest.param("jhu_crowd", lambda r: r.mkdir(parents=True), id="jhu_crowd"),
    pytest.param("license_plate", lambda r: (r / "ccpd_base").mkdir(parents=True),
                 id="license_plate-unpacked-without-CCPD2019"),
    pytest.param("ir_wildlife", lambda r: (r / "images").mkdir(parents=True), id="ir_wildlife"),
    pytest.param("sh17", lambda r: (r / "images").mkdir(parents=True), id="sh17-no-labels"),
])
def test_wrong_layout_is_a_clear_error_not_an_empty_source(
        tmp_path: Path, name: str, make: Callable[[Path], None]) -> None:
    make(tmp_path / "raw" / name)
    with pytest.raises(SourceError, match=rf"^{tmp_path / 'raw' / name}") as err:
        convert_source(name, tmp_path / "raw", on_error="skip")
    assert "\n" not in str(err.value)
