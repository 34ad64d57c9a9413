"""Quirks and bad input of the VOC-XML and mask sources: LS-SSDD, SCUT-HEAD, Pest24, SIRST,
IRSTD-1K, TYC. Each test converts a synthetic native copy (written once per module, copied per
test) after changing it the way a real download differs or breaks."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tinyset_builder.errors import SourceError
from tinyset_builder.formats.masks import binary_mask_boxes, read_label_image
from tinyset_builder.sources import Conversion, convert_source, get_source
from tinyset_builder.sources import sirst as sirst_module
from tinyset_builder.sources.base import SynthSummary

Make = Callable[[str], tuple[Path, SynthSummary]]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Make:
    """Synthesize each source once per module (``sirst-v2`` = SIRST in its v2 layout)."""
    base = tmp_path_factory.mktemp("synth")
    cache: dict[str, tuple[Path, SynthSummary]] = {}

    def get(key: str) -> tuple[Path, SynthSummary]:
        if key not in cache:
            root = base / key
            if key == "sirst-v2":
                summary = sirst_module.synthesize(root, 11, layout="v2")
            else:
                summary = get_source(key).synthesize(root, 11)
            cache[key] = (root, summary)
        return cache[key]

    return get


@pytest.fixture
def make(tmp_path: Path, pristine: Make) -> Make:
    """Copy a pristine synthetic source to ``tmp_path/raw/<name>``; returns (its root, summary)."""

    def copy(key: str) -> tuple[Path, SynthSummary]:
        src, summary = pristine(key)
        root = tmp_path / "raw" / key.split("-")[0]
        shutil.copytree(src, root)
        return root, summary

    return copy


def _convert(root: Path, on_error: str = "raise") -> Conversion:
    return convert_source(root.name, root.parent, on_error=on_error)  # type: ignore[arg-type]


def _split_counts(conv: Conversion) -> dict[str | None, int]:
    return dict(Counter(img.split for img in conv.dataset.images))


def _category_names(conv: Conversion) -> list[str]:
    names = {c.id: c.name for c in conv.dataset.categories}
    return [names[a.category_id] for a in conv.dataset.annotations]


def _move_into(folder: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for child in list(folder.iterdir()):
        if child != target:
            shutil.move(str(child), str(target / child.name))


# ---------------------------------------------------------------- layouts that must convert alike


def _kaggle_nesting(root: Path) -> None:
    for d in ("JPEGImages_sub_train", "JPEGImages_sub_test", "Annotations_sub"):
        _move_into(root / d, root / d / d)


def _wrapped_and_nested(root: Path) -> None:
    _kaggle_nesting(root)
    _move_into(root, root / "LS-SSDD-v1.0-OPEN")


def _ls_ssdd_release_layout(root: Path, moved: str = "") -> None:
    """The release's layout: one ``JPEGImages_sub/`` and ``ImageSets/Main/{train,test}.txt``
    (names one per line, as VOC lists them), wrapped in the release's top folder. ``moved``:
    a train tile listed under test instead."""
    lists = root / "ImageSets" / "Main"
    lists.mkdir(parents=True)
    for split in ("train", "test"):
        folder = root / f"JPEGImages_sub_{split}"
        stems = sorted(p.stem for p in folder.glob("*.jpg") if p.stem != moved)
        stems = [moved, *stems] if moved and split == "test" else stems
        (lists / f"{split}.txt").write_text("".join(f"{s}\n" for s in stems))
        _move_into(folder, root / "JPEGImages_sub")
        folder.rmdir()
    _move_into(root, root / "LS-SSDD-v1.0-OPEN")


def _sirst_clone_folder(root: Path) -> None:
    _move_into(root, root / "sirst")


def _pest24_flattened_with_imagesets_main(root: Path) -> None:
    _move_into(root / "ImageSets" if (root / "ImageSets").is_dir() else root / "Pest24" /
               "ImageSets", root / "Pest24" / "ImageSets" / "Main")
    for child in list((root / "Pest24").iterdir()):
        shutil.move(str(child), str(root / child.name))
    (root / "Pest24").rmdir()


def _irstd_flattened_renamed(root: Path) -> None:
    for child in list((root / "IRSTD-1k").iterdir()):
        new = {"IRSTD1k_Img": "images", "IRSTD1k_Label": "masks"}.get(child.name, child.name)
        shutil.move(str(child), str(root / new))
    (root / "IRSTD-1k").rmdir()


def _tyc_flattened(root: Path) -> None:
    for child in list((root / "labeled_set").iterdir()):
        shutil.move(str(child), str(root / child.name))
    (root / "labeled_set").rmdir()


@pytest.mark.parametrize(("key", "change"), [
    pytest.param("ls_ssdd", _kaggle_nesting, id="ls_ssdd-kaggle-folders-nested-twice"),
    pytest.param("ls_ssdd", _wrapped_and_nested, id="ls_ssdd-wrapped-in-one-more-folder"),
    pytest.param("ls_ssdd", _ls_ssdd_release_layout, id="ls_ssdd-release-JPEGImages_sub-ImageSets"),
    pytest.param("sirst", _sirst_clone_folder, id="sirst-clone-in-its-own-folder"),
    pytest.param("sirst-v2", _sirst_clone_folder, id="sirst_v2-clone-in-its-own-folder"),
    pytest.param("pest24", _pest24_flattened_with_imagesets_main,
                 id="pest24-flattened-and-ImageSets-Main"),
    pytest.param("irstd_1k", _irstd_flattened_renamed, id="irstd_1k-flattened-images-masks"),
    pytest.param("tyc", _tyc_flattened, id="tyc-labeled_set-flattened"),
])
def test_layout_variants_convert_to_the_same_records(make: Make, key: str,
                                                     change: Callable[[Path], None]) -> None:
    root, summary = make(key)
    change(root)
    conv = _convert(root)
    assert len(conv.dataset.images) == summary.images
    assert len(conv.dataset.annotations) == summary.annotations
    assert _split_counts(conv) == dict(summary.splits)


# ---------------------------------------------------------------- LS-SSDD


def test_ls_ssdd_split_is_the_scene_number_and_empty_tiles_are_kept(make: Make) -> None:
    root, _ = make("ls_ssdd")
    conv = _convert(root)
    per_image = Counter(a.image_id for a in conv.dataset.annotations)
    by_name = {Path(i.file_name).stem: i for i in conv.dataset.images}
    for stem, img in by_name.items():
        assert img.split == ("train" if int(stem[:2]) <= 10 else "test")
    xml = (root / "Annotations_sub" / "07_2_3.xml").read_text()
    assert "<object>" not in xml and per_image[by_name["07_2_3"].id] == 0


@pytest.mark.parametrize(("change", "fragment"), [
    pytest.param(lambda r: shutil.copy(r / "Annotations_sub" / "01_1_1.xml",
                                       r / "Annotations_sub" / "16_1_1.xml"),
                 "not <scene>_<row>_<col> with scene 01-15", id="scene-16"),
    pytest.param(lambda r: (r / "Annotations_sub" / "10_4_2.xml").unlink(),
                 "no annotation file Annotations_sub/10_4_2.xml", id="tile-without-xml"),
    pytest.param(lambda r: _ls_ssdd_release_layout(r, moved="10_4_2"),
                 "test.txt:1: 10_4_2 is listed for test, but scene 10 is train",
                 id="release-list-disagrees-with-scene"),
])
def test_ls_ssdd_inconsistent_tiles_are_bad_records(make: Make, change: Callable[[Path], None],
                                                    fragment: str) -> None:
    root, _ = make("ls_ssdd")
    change(root)
    with pytest.raises(SourceError, match=re.escape(fragment)):
        _convert(root)
    assert sum(_convert(root, "skip").skipped.values()) == 1


# ---------------------------------------------------------------- SCUT-HEAD


def test_scut_head_person_and_head_are_one_head_category_and_border_boxes_are_clipped(
        make: Make) -> None:
    root, summary = make("scut_head")
    texts = [p.read_text() for p in sorted(root.rglob("*.xml"))]
    assert any("<name>person</name>" in t for t in texts)
    assert any("<name>head</name>" in t for t in texts)
    conv = _convert(root)
    assert [c.name for c in conv.dataset.categories] == ["scut_head/head"]
    assert len(conv.dataset.annotations) == summary.annotations
    # one head per image runs past the right border in the synthetic copy
    assert conv.counts["clipped_to_image"] == summary.images
    sizes = {i.id: (i.width, i.height) for i in conv.dataset.images}
    assert sum(a.bbox[0] + a.bbox[2] == sizes[a.image_id][0]
               for a in conv.dataset.annotations) >= summary.images


def test_scut_head_without_split_lists_leaves_the_split_to_the_build(make: Make) -> None:
    root, summary = make("scut_head")
    for lists in root.glob("*/ImageSets"):
        shutil.rmtree(lists)
    assert _split_counts(_convert(root)) == {None: summary.images}


# ---------------------------------------------------------------- Pest24


def test_pest24_numeric_classes_padding_and_difficult_flags(make: Make) -> None:
    root, summary = make("pest24")
    texts = [p.read_text() for p in sorted((root / "Pest24" / "Annotations").glob("*.xml"))]
    assert any(re.search(r"<name>0\d+</name>", t) for t in texts)  # zero-padded spelling
    conv = _convert(root)
    expected = Counter()
    for t in texts:
        for name in re.findall(r"<name>(\d+)</name>", t):
            expected[f"pest24/{int(name)}"] += 1
    assert Counter(_category_names(conv)) == expected
    difficult = sum(t.count("<difficult>1</difficult>") for t in texts)
    crowd = [a for a in conv.dataset.annotations if a.iscrowd]
    assert len(crowd) == difficult == summary.ignore
    assert all(a.extra["difficult"] == 1 for a in crowd)


def test_pest24_species_name_is_an_unknown_category_naming_file_and_line(make: Make) -> None:
    root, _ = make("pest24")
    xml = sorted((root / "Pest24" / "Annotations").glob("*.xml"))[0]
    text = xml.read_text()
    first = re.search(r"<name>\d+</name>", text)
    assert first is not None
    xml.write_text(text[:first.start()] + "<name>Spodoptera litura</name>" + text[first.end():])
    line = text[:text.index("<object>")].count("\n") + 1
    with pytest.raises(SourceError) as err:
        _convert(root)
    assert str(err.value).startswith(f"{xml}:{line} (object 1): unknown category "
                                     f"'Spodoptera litura'")


# ---------------------------------------------------------------- SIRST


def test_sirst_v1_boxes_come_from_masks_not_the_spanning_xml_box(make: Make) -> None:
    root, summary = make("sirst")
    conv = _convert(root)
    assert len(conv.dataset.annotations) == summary.annotations
    assert conv.counts == {"dropped_mask_speck": 1}
    xml_boxes = set()
    for xml in (root / "masks").glob("*.xml"):
        nums = [int(v) for v in re.findall(r"<(?:xmin|ymin|xmax|ymax)>(\d+)<", xml.read_text())]
        xml_boxes.add((nums[0], nums[1], nums[2] - nums[0], nums[3] - nums[1]))
    assert not xml_boxes & {tuple(a.bbox) for a in conv.dataset.annotations}
    # an independent count of the masks' objects
    expected = 0
    for mask in (root / "masks").glob("*_pixels0.png"):
        expected += len(binary_mask_boxes(read_label_image(mask))[0])
    assert expected == summary.annotations


def test_sirst_v1_image_without_mask_falls_back_to_its_xml_and_counts_it(make: Make) -> None:
    root, summary = make("sirst")
    (root / "masks" / "Misc_4_pixels0.png").unlink()
    conv = _convert(root)
    assert conv.counts["boxes_from_v1_xml"] == 1
    assert len(conv.dataset.images) == summary.images


def test_sirst_v2_layout_masks_and_inclusive_xml_boxes_agree(make: Make) -> None:
    root, summary = make("sirst-v2")
    assert sirst_module.detect_layout(root) == "v2"
    with_masks = _convert(root)
    assert len(with_masks.dataset.images) == summary.images
    assert len(with_masks.dataset.annotations) == summary.annotations
    assert with_masks.counts["dropped_object_without_bndbox"] == 1  # the background negative
    assert _split_counts(with_masks) == dict(summary.splits)
    for mask in (root / "annotations" / "masks").glob("*.png"):
        mask.unlink()
    from_xml = _convert(root)
    # v2's XML boxes are tight pixel extents: read inclusively they equal the mask components
    assert (sorted((a.image_id, a.bbox) for a in from_xml.dataset.annotations)
            == sorted((a.image_id, a.bbox) for a in with_masks.dataset.annotations))


def test_sirst_image_with_neither_mask_nor_xml_is_a_bad_record(make: Make) -> None:
    root, _ = make("sirst")
    (root / "masks" / "Misc_2_pixels0.png").unlink()
    (root / "masks" / "Misc_2.xml").unlink()
    with pytest.raises(SourceError, match=r"Misc_2\.png: no mask masks/Misc_2_pixels0\.png"):
        _convert(root)


# ---------------------------------------------------------------- IRSTD-1K


def test_irstd_split_lists_speck_and_unlisted_image(make: Make) -> None:
    root, summary = make("irstd_1k")
    base = root / "IRSTD-1k"
    trainval = (base / "trainval.txt").read_text().split()
    conv = _convert(root)
    splits = {Path(i.file_name).stem: i.split for i in conv.dataset.images}
    assert {k for k, v in splits.items() if v == "train"} == set(trainval)
    assert conv.counts == {"dropped_mask_speck": 1}
    (base / "test.txt").write_text("")
    assert _split_counts(_convert(root)) == {"train": 3, None: 1}
    assert summary.splits == {"train": 3, "test": 1}


def test_irstd_touching_targets_merge_into_one_box(make: Make) -> None:
    root, _ = make("irstd_1k")
    mask_path = root / "IRSTD-1k" / "IRSTD1k_Label" / "XDU0.png"
    mask = np.zeros((512, 512), dtype=np.uint8)
    mask[100:103, 100:103] = 255
    mask[103:105, 103:106] = 255  # touches the first diagonally
    mask[300:302, 300:302] = 255
    Image.fromarray(mask).save(mask_path)
    conv = _convert(root)
    image_id = next(i.id for i in conv.dataset.images if i.file_name.endswith("XDU0.png"))
    boxes = sorted(tuple(a.bbox) for a in conv.dataset.annotations if a.image_id == image_id)
    assert boxes == [(100, 100, 6, 5), (300, 300, 2, 2)]


# ---------------------------------------------------------------- TYC


def test_tyc_pairing_rule_classes_and_16bit_images(make: Make) -> None:
    root, summary = make("tyc")
    conv = _convert(root)
    assert _split_counts(conv) == {"train": 1, "val": 1, "test": 2}  # test_ood joins test
    ids = [a.extra["instance_id"] for a in conv.dataset.annotations]
    assert max(ids) > 255  # the green channel carries part of the id
    names = Counter(_category_names(conv))
    expected = Counter()
    for cls in sorted(root.rglob("classes/*.json")):
        for entry in json.loads(cls.read_text())["annotations"]:
            expected["tyc/" + ("trap", "cell")[entry["category_id"]]] += 1
    assert names == expected and names["tyc/trap"] > 0 and names["tyc/cell"] > 0
    with Image.open(root / "labeled_set" / "train" / "images" / "img_0000.tif") as im:
        assert im.mode.startswith("I;16") and im.size == (2048, 2048)
    # the JSON "id" field is not a lookup key: renumbering it changes nothing
    for cls in sorted(root.rglob("classes/*.json")):
        data = json.loads(cls.read_text())
        for entry in data["annotations"]:
            entry["id"] = 10_000 - entry["id"]
        cls.write_text(json.dumps(data))
    again = _convert(root)
    assert [a.bbox for a in again.dataset.annotations] == [a.bbox for a in conv.dataset.annotations]
    assert _category_names(again) == _category_names(conv)
    assert len(conv.dataset.annotations) == summary.annotations


def test_tyc_folders_that_cannot_be_paired_stop_the_run(make: Make) -> None:
    root, _ = make("tyc")
    (root / "labeled_set" / "val" / "labels" / "masks" / "img_0001.png").unlink()
    with pytest.raises(SourceError, match=r"val: 1 images, 0 masks and 1 class files"):
        _convert(root, "skip")


# ---------------------------------------------------------------- bad input


def _first_xml(root: Path) -> Path:
    return sorted(p for p in root.rglob("*.xml") if "<object>" in p.read_text())[0]


def _object_line(xml: Path) -> int:
    text = xml.read_text()
    return text[:text.index("<object>")].count("\n") + 1


def _voc_malformed(root: Path) -> tuple[str, str, int]:
    xml = _first_xml(root)
    text = xml.read_text()
    xml.write_text(text[: len(text) // 2])
    return rf"{re.escape(str(xml))}:\d+", "malformed XML", 1


def _voc_outside(root: Path) -> tuple[str, str, int]:
    xml = _first_xml(root)
    text = re.sub(r"<xmin>[\d.]+</xmin>", "<xmin>99000</xmin>", xml.read_text(), count=1)
    xml.write_text(re.sub(r"<xmax>[\d.]+</xmax>", "<xmax>99010</xmax>", text, count=1))
    return rf"{re.escape(str(xml))}:{_object_line(xml)} \(object 1\)", "lies outside", 0


def _voc_unknown(root: Path) -> tuple[str, str, int]:
    xml = _first_xml(root)
    xml.write_text(re.sub(r"<name>[^<]+</name>", "<name>zebra</name>", xml.read_text(), count=1))
    return rf"{re.escape(str(xml))}:{_object_line(xml)} \(object 1\)", "unknown category 'zebra'", 0


def _sirst_v2_unknown(root: Path) -> tuple[str, str, int]:
    xml = root / "annotations" / "bboxes" / "Misc_4.xml"  # an image without a mask
    assert not list((root / "annotations" / "masks").glob("Misc_4_*"))
    xml.write_text(re.sub(r"<name>[^<]+</name>", "<name>zebra</name>", xml.read_text(), count=1))
    return rf"{re.escape(str(xml))}:{_object_line(xml)} \(object 1\)", "unknown category 'zebra'", 0


def _voc_non_numeric(root: Path) -> tuple[str, str, int]:
    xml = _first_xml(root)
    xml.write_text(re.sub(r"<ymin>[\d.]+</ymin>", "<ymin>12px</ymin>", xml.read_text(), count=1))
    return rf"{re.escape(str(xml))}:{_object_line(xml)} \(object 1\)", "not a number: '12px'", 0


def _voc_unreadable_image(root: Path) -> tuple[str, str, int]:
    xml = _first_xml(root)
    image = next(p for p in root.rglob(f"{xml.stem}.jpg"))
    image.write_bytes(b"this is not a JPEG")
    return re.escape(f"{xml}: {image}"), "unreadable image", 1


def _mask_unreadable(root: Path) -> tuple[str, str, int]:
    mask = sorted(p for p in root.rglob("*.png") if "Label" in str(p) or "_pixels" in p.name)[0]
    mask.write_bytes(b"\x89PNG but truncated")
    return re.escape(str(mask)), "unreadable image", 1


def _mask_wrong_size(root: Path) -> tuple[str, str, int]:
    mask = sorted(p for p in root.rglob("*.png") if "Label" in str(p) or "_pixels" in p.name)[0]
    Image.fromarray(np.zeros((10, 12), dtype=np.uint8)).save(mask)
    return re.escape(str(mask)), "mask is 12x10 but its image is", 1


def _irstd_listed_missing(root: Path) -> tuple[str, str, int]:
    listing = root / "IRSTD-1k" / "test.txt"
    listing.write_text(listing.read_text() + "XDU777\n")
    line = len(listing.read_text().splitlines())
    return re.escape(f"{listing}:{line}"), "'XDU777' is listed but", 0


def _irstd_unreadable_image(root: Path) -> tuple[str, str, int]:
    image = root / "IRSTD-1k" / "IRSTD1k_Img" / "XDU92.png"
    image.write_bytes(b"not a png")
    return re.escape(f"{image}: {image}"), "unreadable image", 1


def _tyc_class_file(root: Path) -> Path:
    return root / "labeled_set" / "train" / "labels" / "classes" / "img_0000.json"


def _tyc_malformed_json(root: Path) -> tuple[str, str, int]:
    cls = _tyc_class_file(root)
    cls.write_text('{"annotations": [\n{"id": 1, "category_id": 0},\n{"id": 2 "category_id"}')
    return re.escape(f"{cls}:3"), "invalid JSON", 1


def _tyc_unknown_category(root: Path) -> tuple[str, str, int]:
    cls = _tyc_class_file(root)
    data = json.loads(cls.read_text())
    data["annotations"][3]["category_id"] = 2
    cls.write_text(json.dumps(data))
    # One bad entry costs its own instance only: the image and its other instances stay.
    return re.escape(f"{cls}:annotations[3]"), "category_id must be 0 (trap) or 1 (cell), got 2", 0


def _tyc_count_mismatch(root: Path) -> tuple[str, str, int]:
    cls = _tyc_class_file(root)
    data = json.loads(cls.read_text())
    data["annotations"].pop()
    cls.write_text(json.dumps(data))
    return re.escape(str(cls)), "class entries but", 1


def _tyc_unreadable_image(root: Path) -> tuple[str, str, int]:
    image = root / "labeled_set" / "val" / "images" / "img_0001.tif"
    image.write_bytes(b"II*\x00broken")
    return re.escape(str(image)), "unreadable image", 1


VOC_CASES = [(_voc_malformed, "malformed"), (_voc_outside, "box-outside-image"),
             (_voc_unknown, "unknown-category"), (_voc_non_numeric, "non-numeric"),
             (_voc_unreadable_image, "unreadable-image")]
BAD_INPUT = [pytest.param(src, fn, id=f"{src}-{name}")
             for src in ("ls_ssdd", "scut_head", "pest24") for fn, name in VOC_CASES] + [
    pytest.param("sirst-v2", _sirst_v2_unknown, id="sirst_v2-xml-unknown-category"),
    pytest.param("sirst", _mask_unreadable, id="sirst-unreadable-mask"),
    pytest.param("sirst", _mask_wrong_size, id="sirst-mask-size"),
    pytest.param("irstd_1k", _mask_unreadable, id="irstd_1k-unreadable-mask"),
    pytest.param("irstd_1k", _mask_wrong_size, id="irstd_1k-mask-size"),
    pytest.param("irstd_1k", _irstd_listed_missing, id="irstd_1k-listed-id-without-image"),
    pytest.param("irstd_1k", _irstd_unreadable_image, id="irstd_1k-unreadable-image"),
    pytest.param("tyc", _tyc_malformed_json, id="tyc-malformed-json"),
    pytest.param("tyc", _tyc_unknown_category, id="tyc-unknown-category"),
    pytest.param("tyc", _tyc_count_mismatch, id="tyc-entries-vs-instances"),
    pytest.param("tyc", _tyc_unreadable_image, id="tyc-unreadable-image",
                 marks=pytest.mark.filterwarnings("ignore:Corrupt EXIF data")),
]


@pytest.mark.parametrize(("key", "breaks"), BAD_INPUT)
def test_bad_input_is_one_line_naming_file_and_record_or_a_counted_skip(
        make: Make, key: str, breaks: Callable[[Path], tuple[str, str, int]]) -> None:
    root, summary = make(key)
    location, fragment, images_lost = breaks(root)
    with pytest.raises(SourceError) as err:
        _convert(root)
    message = str(err.value)
    assert "\n" not in message
    assert re.match(location, message), message
    assert fragment in message
    conv = _convert(root, "skip")
    assert sum(conv.skipped.values()) == 1, conv.skipped
    (reason, example), = conv.examples.items()
    assert fragment in reason or fragment in example
    assert re.match(location, f"{example}: {reason}")
    assert len(conv.dataset.images) == summary.images - images_lost


@pytest.mark.parametrize(("name", "fragment"), [
    pytest.param("ls_ssdd", "Annotations_sub: annotation folder not found", id="ls_ssdd"),
    pytest.param("scut_head", "neither SCUT_HEAD_Part_A nor SCUT_HEAD_Part_B found",
                 id="scut_head"),
    pytest.param("pest24", "Annotations: folder not found", id="pest24"),
    pytest.param("irstd_1k", "IRSTD1k_Img: image folder not found", id="irstd_1k"),
    pytest.param("sirst", "images: folder not found", id="sirst"),
    pytest.param("tyc", "no split folder (train, val, test, test_ood)", id="tyc"),
])
def test_root_without_the_native_layout_is_one_line_with_the_expected_tree(
        tmp_path: Path, name: str, fragment: str) -> None:
    (tmp_path / name).mkdir()
    (tmp_path / name / "README.txt").write_text("unpacked into the wrong folder")
    with pytest.raises(SourceError) as err:
        convert_source(name, tmp_path, on_error="skip")
    message = str(err.value)
    assert fragment in message and "expected layout: " in message and "\n" not in message
