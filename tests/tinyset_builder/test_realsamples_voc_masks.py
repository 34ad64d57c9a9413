"""The genuine annotation files of SIRST (v1, v2), IRSTD-1K, SCUT-HEAD and Pest24 convert.

The samples hold annotations but no images, so each test copies them into a RAW layout, writes
blank images of the size the annotation states, converts, and compares with counts taken from
the files directly (regular expressions and line counts, not the toolkit's parser).
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from tinyset_builder.sources import Conversion, convert_source


def _blank(path: Path, size: tuple[int, int], mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size).save(path)


def _xml_size(text: str) -> tuple[int, int]:
    w = re.search(r"<width>\s*(\d+)\s*</width>", text)
    h = re.search(r"<height>\s*(\d+)\s*</height>", text)
    assert w and h
    return int(w[1]), int(h[1])


def _xml_boxes(text: str) -> list[tuple[int, int, int, int]]:
    """Every ``<bndbox>`` as (xmin, ymin, xmax, ymax), read with a regular expression."""
    out = []
    for box in re.findall(r"<bndbox>(.*?)</bndbox>", text, flags=re.S):
        v = {t: int(re.search(rf"<{t}>\s*(\d+)\s*</{t}>", box)[1])  # type: ignore[index]
             for t in ("xmin", "ymin", "xmax", "ymax")}
        out.append((v["xmin"], v["ymin"], v["xmax"], v["ymax"]))
    return out


def _names(conv: Conversion) -> Counter[str]:
    names = {c.id: c.name for c in conv.dataset.categories}
    return Counter(names[a.category_id] for a in conv.dataset.annotations)


def _boxes(conv: Conversion) -> list[tuple[float, ...]]:
    return sorted(tuple(a.bbox) for a in conv.dataset.annotations)


def test_sirst_v1_xml_alone_converts_and_its_mask_splits_the_spanning_box(
        realsamples: Path, tmp_path: Path) -> None:
    sample = realsamples / "SIRST" / "v1_sirst" / "masks" / "Misc_1.xml"
    text = sample.read_text()
    root = tmp_path / "raw" / "sirst"
    (root / "masks").mkdir(parents=True)
    shutil.copy(sample, root / "masks" / "Misc_1.xml")
    width, height = _xml_size(text)
    _blank(root / "images" / "Misc_1.png", (width, height))

    conv = convert_source("sirst", tmp_path / "raw")
    assert len(conv.dataset.images) == 1
    assert len(conv.dataset.annotations) == text.count("<bndbox>") == 1
    assert conv.counts["boxes_from_v1_xml"] == 1
    (x0, y0, x1, y1), = _xml_boxes(text)
    assert _boxes(conv) == [(x0, y0, x1 - x0 + 1, y1 - y0 + 1)]

    # With the mask present (two 3x3 / 4x4 targets where SIRST v2 puts them), the two targets
    # come out as two boxes and the v1 box that spans both is gone.
    v2 = (realsamples / "SIRST" / "v2_open-sirst-v2" / "annotations" / "bboxes" /
          "Misc_1.xml").read_text()
    mask = np.zeros((height, width), dtype=np.uint8)
    for bx0, by0, bx1, by1 in _xml_boxes(v2):
        mask[by0:by1 + 1, bx0:bx1 + 1] = 255
    Image.fromarray(mask).save(root / "masks" / "Misc_1_pixels0.png")
    conv = convert_source("sirst", tmp_path / "raw")
    assert _boxes(conv) == sorted((bx0, by0, bx1 - bx0 + 1, by1 - by0 + 1)
                                  for bx0, by0, bx1, by1 in _xml_boxes(v2))
    assert len(conv.dataset.annotations) == 2 and "boxes_from_v1_xml" not in conv.counts


def test_sirst_v2_xml_with_extensionless_names_and_a_boxless_background(
        realsamples: Path, tmp_path: Path) -> None:
    samples = sorted((realsamples / "SIRST" / "v2_open-sirst-v2" / "annotations" /
                      "bboxes").glob("*.xml"))
    root = tmp_path / "raw" / "sirst"
    (root / "annotations" / "bboxes").mkdir(parents=True)
    objects = bndboxes = 0
    expected = []
    for sample in samples:
        text = sample.read_text()
        shutil.copy(sample, root / "annotations" / "bboxes" / sample.name)
        folder = "backgrounds" if "<folder>backgrounds</folder>" in text else "targets"
        _blank(root / "images" / folder / f"{sample.stem}.png", _xml_size(text), "L")
        objects += text.count("<object>")
        bndboxes += text.count("<bndbox>")
        expected += [(x0, y0, x1 - x0 + 1, y1 - y0 + 1) for x0, y0, x1, y1 in _xml_boxes(text)]
    conv = convert_source("sirst", tmp_path / "raw")
    assert len(conv.dataset.images) == len(samples) == 2
    assert len(conv.dataset.annotations) == bndboxes == 2
    assert conv.counts["dropped_object_without_bndbox"] == objects - bndboxes == 1
    assert _boxes(conv) == sorted(expected)
    assert _names(conv) == {"sirst/Target": 2}


def test_irstd_1k_official_trainval_list_is_the_train_split(realsamples: Path,
                                                            tmp_path: Path) -> None:
    sample = realsamples / "IRSTD-1K" / "IRSTD-1k" / "trainval.txt"
    ids = [line.strip() for line in sample.read_text().splitlines() if line.strip()]
    base = tmp_path / "raw" / "irstd_1k" / "IRSTD-1k"
    base.mkdir(parents=True)
    shutil.copy(sample, base / "trainval.txt")
    for image_id in ids:  # the real source's documented size: 512x512
        _blank(base / "IRSTD1k_Img" / f"{image_id}.png", (512, 512), "L")
        _blank(base / "IRSTD1k_Label" / f"{image_id}.png", (512, 512), "L")
    conv = convert_source("irstd_1k", tmp_path / "raw")
    assert len(conv.dataset.images) == len(ids) == 40
    assert Counter(i.split for i in conv.dataset.images) == {"train": len(ids)}
    assert {Path(i.file_name).stem for i in conv.dataset.images} == set(ids)
    assert conv.dataset.annotations == [] and conv.skipped == {}


def test_scut_head_part_a_and_b_annotations(realsamples: Path, tmp_path: Path) -> None:
    root = tmp_path / "raw" / "scut_head"
    expected = []
    texts = []
    for sample in sorted((realsamples / "SCUT-HEAD" / "Annotations").glob("*.xml")):
        part = "SCUT_HEAD_Part_A" if sample.name.startswith("PartA") else "SCUT_HEAD_Part_B"
        (root / part / "Annotations").mkdir(parents=True, exist_ok=True)
        shutil.copy(sample, root / part / "Annotations" / sample.name)
        text = sample.read_text()
        texts.append(text)
        width, height = _xml_size(text)
        _blank(root / part / "JPEGImages" / f"{sample.stem}.jpg", (width, height))
        for x0, y0, x1, y1 in _xml_boxes(text):
            expected.append((x0, y0, min(x1, width) - x0, min(y1, height) - y0))
    conv = convert_source("scut_head", tmp_path / "raw")
    assert len(conv.dataset.images) == 2
    n_objects = sum(t.count("<object>") for t in texts)
    assert len(conv.dataset.annotations) == n_objects == 9
    assert _names(conv) == {"scut_head/head": n_objects}
    assert _boxes(conv) == sorted(expected)
    # Part B's last head ends exactly at the border (xmax = width = 600): nothing to clip
    assert "clipped_to_image" not in conv.counts
    assert Counter(i.split for i in conv.dataset.images) == {None: 2}  # the mirror has no lists


def test_pest24_numeric_class_xml_and_test_list(realsamples: Path, tmp_path: Path) -> None:
    sample = realsamples / "Pest24" / "Pest24" / "Annotations" / "0000001.xml"
    listing = realsamples / "Pest24" / "Pest24" / "ImageSets" / "test.txt"
    base = tmp_path / "raw" / "pest24" / "Pest24"
    (base / "Annotations").mkdir(parents=True)
    (base / "ImageSets").mkdir()
    shutil.copy(sample, base / "Annotations" / sample.name)
    shutil.copy(listing, base / "ImageSets" / "test.txt")
    text = sample.read_text()
    _blank(base / "JPEGImages" / "0000001.jpg", _xml_size(text))
    conv = convert_source("pest24", tmp_path / "raw")
    names = re.findall(r"<name>\s*([^<]+?)\s*</name>", text)
    assert len(conv.dataset.annotations) == text.count("<object>") == len(names) == 3
    assert _names(conv) == Counter(f"pest24/{n}" for n in names)
    assert _boxes(conv) == sorted((x0, y0, x1 - x0, y1 - y0)
                                  for x0, y0, x1, y1 in _xml_boxes(text))
    test_ids = listing.read_text().split()
    assert len(test_ids) == 20 and "0000001" not in test_ids
    assert conv.dataset.images[0].split is None
    assert conv.counts == {}
