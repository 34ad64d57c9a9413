"""Quirks and bad input of the COCO/JSON-family sources, on their synthetic native copies.

Each source is synthesized once per module; every test works on its own copy. Expected numbers
are counted from the native files directly (``json``/text), not through the readers under test.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tinyset_builder.coco import CocoDataset
from tinyset_builder.errors import ErrorPolicy, SourceError, TinysetError, reason_kind
from tinyset_builder.sources import Conversion, convert_source, get_source
from tinyset_builder.sources.base import load_info

JSON_SOURCES = ["aitod_v2", "hrsid", "sardet_100k", "rgbt_tiny", "coco", "soda_d", "livecell",
                "soda_a", "crowdhuman"]

#: The native annotation file each bad-input test corrupts (soda_a: a folder of per-image files).
ANN_FILE = {
    "aitod_v2": "annotations/aitodv2_train.json",
    "hrsid": "HRSID_JPG/annotations/train2017.json",
    "sardet_100k": "SARDet_100K/Annotations/train.json",
    "rgbt_tiny": "annotations_coco/instances_00_train2017.json",
    "coco": "annotations/instances_train2017.json",
    "soda_d": "Annotations/train.json",
    "livecell": "annotations/LIVECell/livecell_coco_train.json",
    "soda_a": "Annotations/train",
    "crowdhuman": "annotation_train.odgt",
}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All nine sources synthesized once (seed 11) under one RAW folder."""
    raw = tmp_path_factory.mktemp("raw")
    for i, name in enumerate(JSON_SOURCES):
        get_source(name).synthesize(raw / name, seed=11 + i)
    return raw


@pytest.fixture
def raw_copy(synthetic: Path, tmp_path: Path) -> Callable[[str], Path]:
    """Copy one synthesized source into this test's RAW folder; returns the source root."""
    def copy(name: str) -> Path:
        shutil.copytree(synthetic / name, tmp_path / "raw" / name)
        return tmp_path / "raw" / name
    return copy


def _load(path: Path) -> Any:
    return json.loads(path.read_text())


def _save(path: Path, doc: Any) -> None:
    path.write_text(json.dumps(doc))


def _names(ds: CocoDataset) -> Counter[str]:
    cats = {c.id: c.name for c in ds.categories}
    return Counter(cats[a.category_id] for a in ds.annotations)


def _convert(root: Path, **kw: Any) -> Conversion:
    return convert_source(root.name, root.parent, **kw)


# ------------------------------------------------------------------------------- quirks


def quirk_coco_names_and_crowds(root: Path) -> None:
    expected: Counter[str] = Counter()
    crowd = empty = gaps = 0
    for path in sorted((root / "annotations").glob("*.json")):
        doc = _load(path)
        table = {c["id"]: c["name"] for c in doc["categories"]}
        gaps += sorted(table) != list(range(min(table), max(table) + 1))
        expected.update(f"coco/{table[a['category_id']]}" for a in doc["annotations"])
        crowd += sum(a["iscrowd"] for a in doc["annotations"])
        with_boxes = {a["image_id"] for a in doc["annotations"]}
        empty += sum(i["id"] not in with_boxes for i in doc["images"])
    assert gaps  # the files' category ids are not contiguous
    ds = _convert(root).dataset
    assert _names(ds) == expected
    assert sum(a.iscrowd for a in ds.annotations) == crowd == 2
    counts = Counter(a.image_id for a in ds.annotations)
    assert sum(counts[i.id] == 0 for i in ds.images) == empty == 2  # empty images are kept
    assert [c.name for c in ds.categories][:3] == ["coco/person", "coco/bicycle", "coco/car"]


def quirk_hrsid_id_zero_and_union_file(root: Path) -> None:
    ann = root / "HRSID_JPG" / "annotations"
    assert _load(ann / "train2017.json")["categories"] == [
        {"id": 0, "name": "ship", "supercategory": ""}]
    n_images = sum(len(_load(ann / f"{s}.json")["images"]) for s in ("train2017", "test2017"))
    assert len(_load(ann / "train_test2017.json")["images"]) == n_images
    ds = _convert(root).dataset
    assert len(ds.images) == n_images  # the union file is not read on top
    assert set(_names(ds)) == {"hrsid/ship"}


def quirk_sardet_split_folder_in_file_name(root: Path) -> None:
    base = root / "SARDet_100K"
    train = _load(base / "Annotations" / "train.json")
    assert all(i["file_name"].startswith("train/") for i in train["images"])
    val = _load(base / "Annotations" / "val.json")
    # Move a val image from JPEGImages/val/ to JPEGImages/ (the other layout seen).
    name = val["images"][0]["file_name"]
    (base / "JPEGImages" / "val" / name).rename(base / "JPEGImages" / name)
    ds = _convert(root).dataset
    files = {i.original_file for i in ds.images}
    assert {f"SARDet_100K/JPEGImages/{i['file_name']}" for i in train["images"]} <= files
    assert f"SARDet_100K/JPEGImages/{name}" in files
    flags = sum(a.get("iscrowd") == 1 or a.get("ignore") is True
                for s in ("train", "val", "test")
                for a in _load(base / "Annotations" / f"{s}.json")["annotations"])
    assert sum(a.iscrowd for a in ds.annotations) == flags == 10


def quirk_rgbt_two_modalities(root: Path) -> None:
    ds = _convert(root).dataset
    files = [i.original_file for i in ds.images]
    visible = {f.replace("/00/", "/") for f in files if "/00/" in f}
    thermal = {f.replace("/01/", "/") for f in files if "/01/" in f}
    assert visible == thermal and len(visible) * 2 == len(files) == 6
    assert all("tracking_id" in a.extra for a in ds.annotations)
    # The thermal files number categories from 0, the visible ones from 1: same names.
    vis = _load(root / "annotations_coco" / "instances_00_train2017.json")["categories"]
    th = _load(root / "annotations_coco" / "instances_01_train2017.json")["categories"]
    assert vis[0]["id"] == 1 and th[0]["id"] == 0
    assert [c["name"] for c in vis] == [c["name"] for c in th]


def quirk_soda_d_ignore_id_10(root: Path) -> None:
    ignore = total = 0
    for split in ("train", "val", "test"):
        doc = _load(root / "Annotations" / f"{split}.json")
        has_10 = any(c["id"] == 10 for c in doc["categories"])
        assert has_10 is (split == "train")  # val/test leave id 10 out of their table
        ignore += sum(a["category_id"] == 10 for a in doc["annotations"])
        total += len(doc["annotations"])
    ds = _convert(root).dataset
    assert len(ds.annotations) == total  # the *_wo_ignore.json copies are not read
    assert _names(ds)["soda_d/ignore"] == ignore == 4
    cats = {c.id: c.name for c in ds.categories}
    assert all(a.iscrowd == (cats[a.category_id] == "soda_d/ignore") for a in ds.annotations)


def quirk_livecell_duplicates(root: Path) -> None:
    path = root / "annotations" / "LIVECell" / "livecell_coco_train.json"
    doc = _load(path)
    assert isinstance(doc["annotations"], dict)
    by_name: dict[str, list[int]] = {}
    for im in doc["images"]:
        by_name.setdefault(im["file_name"], []).append(im["id"])
    dropped_ids = {i for ids in by_name.values() for i in sorted(ids)[1:]}
    dropped = sum(a["image_id"] in dropped_ids for a in doc["annotations"].values())
    assert len(dropped_ids) == 1 and dropped == 7
    first = _convert(root)
    assert first.counts["dropped_duplicate_image_entry"] == dropped
    # Reversing the entries in the file keeps the same (lowest-id) entry: identical output.
    doc["images"].reverse()
    _save(path, doc)
    second = _convert(root)
    assert second.dataset.to_dict() == first.dataset.to_dict()
    # Cell-type sub-folders are searched recursively.
    assert any(i.original_file.count("/") == 3 for i in first.dataset.images)
    # A record without bbox gets the bounds of its polygon.
    poly_only = [a for a in doc["annotations"].values() if "bbox" not in a]
    assert poly_only
    boxes = {tuple(a.bbox) for a in first.dataset.annotations}
    for a in poly_only:
        xs, ys = a["segmentation"][0][0::2], a["segmentation"][0][1::2]
        assert (min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)) in boxes


def quirk_livecell_ambiguous_name(root: Path) -> None:
    images = root / "images" / "livecell_train_val_images"
    tif = next(images.rglob("A172*.tif"))
    shutil.copy(tif, images / "BT474" / tif.name)
    with pytest.raises(SourceError, match=rf"{tif.name}' found 2 times"):
        _convert(root)


def quirk_soda_a_polygons(root: Path) -> None:
    files = sorted((root / "Annotations").rglob("*.json"))
    empty = [p for p in files if p.stat().st_size == 0]
    docs = [_load(p) for p in files if p.stat().st_size]
    over_8 = sum(len(a["poly"]) > 8 for d in docs for a in d["annotations"])
    ignore = sum(a["category_id"] == 9 for d in docs for a in d["annotations"])
    conv = _convert(root)
    assert len(empty) == 1 and conv.counts["skipped_empty_annotation_file"] == 1
    assert len(conv.dataset.images) == len(docs)
    assert conv.counts["polygon_over_8_numbers"] == over_8 == 3
    assert sum(a.iscrowd for a in conv.dataset.annotations) == ignore == 3
    assert any(isinstance(d["images"], list) for d in docs)
    # Every horizontal box is the min/max of its polygon (compare as multisets).
    expected = Counter()
    for d in docs:
        for a in d["annotations"]:
            xs, ys = a["poly"][0::2], a["poly"][1::2]
            expected[(min(xs), min(ys))] += 1
    got = Counter((a.bbox[0], a.bbox[1]) for a in conv.dataset.annotations)
    assert got == expected
    # The rawData/<split>/{Images,Annotations} layout converts to the same dataset.
    for split in ("train", "val", "test"):
        (root / "rawData" / split).mkdir(parents=True)
        (root / "Images" / split).rename(root / "rawData" / split / "Images")
        (root / "Annotations" / split).rename(root / "rawData" / split / "Annotations")
    moved = _convert(root)
    assert len(moved.dataset.annotations) == len(conv.dataset.annotations)
    assert moved.counts == conv.counts


def _crowdhuman_with(root: Path, box: str) -> Conversion:
    info = dataclasses.replace(load_info("crowdhuman"), build={"box": box})
    policy = ErrorPolicy()
    ds = get_source("crowdhuman").convert(root, info, policy)
    return Conversion(info=info, dataset=ds, skipped={}, examples={},
                      counts=dict(ds.info["counts"]))


def _attributes_are_the_boxed_objects(lines: list[Any], conv: Conversion, native: str,
                                      keys: tuple[str, ...]) -> None:
    """Each person annotation carries the attributes of the object its box outlines: the
    head's (``head_attr``) for heads, the body's (``extra``) for bodies; matched by image and
    ``box_id``, and the synthetic data has heads and bodies with different ``occ``."""
    image_of = {i.id: i.file_name for i in conv.dataset.images}
    want = {(f"Images/{r['ID']}.jpg", g["extra"]["box_id"]): {k: g[native][k] for k in keys}
            for r in lines for g in r["gtboxes"] if g["tag"] == "person"}
    got = {(image_of[a.image_id], a.extra["box_id"]): {k: a.extra[k] for k in keys}
           for a in conv.dataset.annotations if "box_id" in a.extra}
    assert got and got.items() <= want.items()
    assert any(g["head_attr"]["occ"] != g["extra"]["occ"]
               for r in lines for g in r["gtboxes"] if g["tag"] == "person")


def quirk_crowdhuman_box_choice(root: Path) -> None:
    lines = [json.loads(t) for t in (root / "annotation_train.odgt").read_text().splitlines()]
    lines += [json.loads(t) for t in (root / "annotation_val.odgt").read_text().splitlines()]
    assert all("," in r["ID"] for r in lines)
    gts = [g for r in lines for g in r["gtboxes"]]
    masks = sum(g["tag"] == "mask" for g in gts)
    ignored = sum(g["extra"].get("ignore") == 1 for g in gts)
    empty_ignored_heads = sum(g["tag"] == "person" and g["extra"].get("ignore") == 1
                              and g["hbox"][2] * g["hbox"][3] == 0 for g in gts)
    ignored_heads = sum(g["tag"] == "person" and g["head_attr"].get("ignore") == 1
                        and g["extra"].get("ignore") != 1 for g in gts)
    hbox = _convert(root)
    heads = len(gts) - masks - empty_ignored_heads
    assert _names(hbox.dataset) == Counter({"crowdhuman/head": heads, "crowdhuman/mask": masks})
    assert hbox.counts["dropped_empty_ignored_box"] == empty_ignored_heads == 4
    assert sum(a.iscrowd for a in hbox.dataset.annotations) == (
        ignored - empty_ignored_heads + ignored_heads)
    _attributes_are_the_boxed_objects(lines, hbox, "head_attr", ("occ", "unsure"))
    fbox = _crowdhuman_with(root, "fbox")
    assert _names(fbox.dataset) == Counter({"crowdhuman/person": len(gts) - masks,
                                            "crowdhuman/mask": masks})
    dims = {i.file_name: (i.width, i.height) for i in fbox.dataset.images}
    outside = 0
    for r in lines:
        w, h = dims[f"Images/{r['ID']}.jpg"]
        outside += sum(g["fbox"][0] < 0 or g["fbox"][1] < 0 or g["fbox"][0] + g["fbox"][2] > w
                       or g["fbox"][1] + g["fbox"][3] > h for g in r["gtboxes"])
    assert fbox.counts["clipped_to_image"] == outside > 0
    assert len(lines) == len(fbox.dataset.images)
    _attributes_are_the_boxed_objects(lines, fbox, "extra", ("occ",))
    vbox = _crowdhuman_with(root, "vbox")
    assert sum(_names(vbox.dataset).values()) == len(gts)
    with pytest.raises(TinysetError, match=r"crowdhuman.toml: \[build\] box = 'body'"):
        _crowdhuman_with(root, "body")


def quirk_aitod_tile_lists(root: Path) -> None:
    lists = root / "aitodtoolkit" / "aitod_xview"
    listed = {s: eval_free_list((lists / f"aitod_xview_{s}.txt").read_text())
              for s in ("train", "val", "test")}
    conv = _convert(root)
    splits = {i.original_file.rsplit("/", 1)[1]: i.split for i in conv.dataset.images}
    for split, names in listed.items():
        assert names and all(splits[n] == split for n in names)
    assert conv.counts["xview_tiles"] == sum(map(len, listed.values())) == 3
    assert "xview_category_outside_mapping" not in conv.counts
    # Moving a val tile's entry into the train file contradicts the official list.
    ann = root / "annotations"
    train, val = _load(ann / "aitodv2_train.json"), _load(ann / "aitodv2_val.json")
    tile = next(i for i in val["images"] if i["file_name"] in listed["val"])
    train["images"].append(dict(tile, id=999))
    _save(ann / "aitodv2_train.json", train)
    with pytest.raises(SourceError, match=rf"images\[2\]: xView tile '{tile['file_name']}' is "
                                          r"listed in aitod_xview_val.txt but annotated in "
                                          r"aitodv2_train.json"):
        _convert(root)


def eval_free_list(text: str) -> list[str]:
    """Tile names from the list literal, by plain string splitting (independent of ast)."""
    return [t.strip().strip("'\"") for t in text.strip().strip("[]").split(",") if t.strip()]


def quirk_aitod_missing_tile_and_trainval(root: Path) -> None:
    ann = root / "annotations"
    val = _load(ann / "aitodv2_val.json")
    tile = next(i["file_name"] for i in val["images"] if "__" in i["file_name"])
    (root / "images" / "val" / tile).unlink()
    with pytest.raises(SourceError, match="must be regenerated with aitodtoolkit/generate_aitod"):
        _convert(root)
    skipped = _convert(root, on_error="skip")
    n_tile = sum(a["image_id"] == next(i["id"] for i in val["images"] if i["file_name"] == tile)
                 for a in val["annotations"])
    assert skipped.counts["dropped_with_bad_image"] == n_tile and sum(skipped.skipped.values()) == 1
    # trainval only: xView tiles take train/val from the official lists, others get no split.
    train = _load(ann / "aitodv2_train.json")
    (root / "images" / "trainval").mkdir()
    for split in ("train", "val"):
        for p in (root / "images" / split).iterdir():
            p.rename(root / "images" / "trainval" / p.name)
    images = train["images"] + [dict(i, id=i["id"] + 1000) for i in val["images"]
                                if i["file_name"] != tile]
    anns = train["annotations"] + [dict(a, id=a["id"] + 10 ** 6, image_id=a["image_id"] + 1000)
                                   for a in val["annotations"]
                                   if a["image_id"] + 1000 in {i["id"] for i in images}]
    _save(ann / "aitodv2_trainval.json", dict(train, images=images, annotations=anns))
    (ann / "aitodv2_train.json").unlink()
    (ann / "aitodv2_val.json").unlink()
    ds = _convert(root).dataset
    got = Counter(("__" in i.file_name, i.split) for i in ds.images)
    assert got == Counter({(True, "train"): 1, (False, None): 2, (True, "test"): 1})


def quirk_aitod_class_mapping(root: Path) -> None:
    mapping = root / "aitodtoolkit" / "aitod_xview" / "converted_class.txt"
    ann = root / "annotations" / "aitodv2_test.json"
    doc = _load(ann)
    ids = {c["name"]: c["id"] for c in doc["categories"]}
    targets = {line.rsplit(":", 1)[1] for line in mapping.read_text().splitlines()} - {"None"}
    outside = [a for a in doc["annotations"] if a["image_id"] == doc["images"][0]["id"]][:3]
    for a in outside:
        a["category_id"] = ids["bridge"]
    _save(ann, doc)
    assert "bridge" not in targets
    conv = _convert(root)
    assert conv.counts["xview_category_outside_mapping"] == 3  # kept, but counted
    assert _names(conv.dataset)["aitod_v2/bridge"] >= 3
    # A mapping target the manifest does not know means toolkit and manifest disagree.
    mapping.write_text(mapping.read_text() + "\nHeliport:helipad")
    with pytest.raises(SourceError, match=r"converted_class.txt: .*\['helipad'\]"):
        _convert(root)


def quirk_hrsid_size_mismatch_is_counted(root: Path) -> None:
    path = root / "HRSID_JPG" / "annotations" / "test2017.json"
    doc = _load(path)
    doc["images"][0]["width"] = 801  # the JPEG is 800 wide: the header wins, the case is counted
    _save(path, doc)
    conv = _convert(root)
    assert conv.counts["image_size_differs_from_annotation"] == 1
    assert {(i.width, i.height) for i in conv.dataset.images} == {(800, 800)}


def quirk_soda_a_size_mismatch_is_counted(root: Path) -> None:
    path = _first_soda(root)
    doc = _load(path)
    image = doc["images"][0] if isinstance(doc["images"], list) else doc["images"]
    image["height"] += 1
    _save(path, doc)
    assert _convert(root).counts["image_size_differs_from_annotation"] == 1


QUIRKS = [
    pytest.param("coco", quirk_coco_names_and_crowds, id="coco-names-crowds-empty-images"),
    pytest.param("hrsid", quirk_hrsid_id_zero_and_union_file, id="hrsid-id0-union-file"),
    pytest.param("hrsid", quirk_hrsid_size_mismatch_is_counted, id="hrsid-size-mismatch"),
    pytest.param("soda_a", quirk_soda_a_size_mismatch_is_counted, id="soda_a-size-mismatch"),
    pytest.param("sardet_100k", quirk_sardet_split_folder_in_file_name,
                 id="sardet-split-folder-and-ignore-flags"),
    pytest.param("rgbt_tiny", quirk_rgbt_two_modalities, id="rgbt-two-modalities"),
    pytest.param("soda_d", quirk_soda_d_ignore_id_10, id="soda_d-ignore-10"),
    pytest.param("livecell", quirk_livecell_duplicates, id="livecell-duplicates-recursive"),
    pytest.param("livecell", quirk_livecell_ambiguous_name, id="livecell-ambiguous-name"),
    pytest.param("soda_a", quirk_soda_a_polygons, id="soda_a-ignore-empty-over8-layouts"),
    pytest.param("crowdhuman", quirk_crowdhuman_box_choice, id="crowdhuman-box-choice"),
    pytest.param("aitod_v2", quirk_aitod_tile_lists, id="aitod-tile-lists-split"),
    pytest.param("aitod_v2", quirk_aitod_missing_tile_and_trainval,
                 id="aitod-missing-tile-trainval"),
    pytest.param("aitod_v2", quirk_aitod_class_mapping, id="aitod-class-mapping"),
]


@pytest.mark.parametrize(("name", "check"), QUIRKS)
def test_quirk(name: str, check: Callable[[Path], None], raw_copy: Callable[[str], Path],
               ) -> None:
    check(raw_copy(name))


# ---------------------------------------------------------------------------- bad input


@dataclasses.dataclass
class Damage:
    """What a corruption should produce: message parts and the change in the output."""

    where: str
    reason: str
    images: int = 0
    annotations: int = -1


def _coco_first(doc: dict[str, Any]) -> tuple[dict[str, Any], str]:
    anns = doc["annotations"]
    if isinstance(anns, dict):
        key = next(iter(anns))
        return anns[key], f"annotations[{key!r}]"
    return anns[0], "annotations[0]"


def _first_soda(root: Path) -> Path:
    return next(p for p in sorted((root / ANN_FILE["soda_a"]).glob("*.json")) if p.stat().st_size)


def damage(name: str, root: Path, kind: str, clean: CocoDataset) -> Damage:
    """Corrupt one record of ``name`` in place; returns what the converter must report."""
    if name == "crowdhuman":
        path = root / ANN_FILE[name]
        lines = path.read_text().splitlines()
        rec = json.loads(lines[0])
        if kind == "malformed":
            lines[0] = lines[0][:40]
            path.write_text("\n".join(lines) + "\n")
            n = sum(1 for g in rec["gtboxes"] if g["tag"] == "mask" or g["hbox"][2] > 0)
            return Damage(f"{path}:1:", "invalid JSON", images=-1, annotations=-n)
        if kind == "outside":
            rec["gtboxes"][0]["hbox"] = [99999, 99999, 5, 5]
        elif kind == "category":
            rec["gtboxes"][0]["tag"] = "robot"
        lines[0] = json.dumps(rec)
        path.write_text("\n".join(lines) + "\n")
        return Damage(f"{path}:1 gtboxes[0]:",
                      "lies outside" if kind == "outside" else "unknown tag 'robot'")
    if name == "soda_a":
        path = _first_soda(root)
        doc = _load(path)
        ann, loc = doc["annotations"][0], "annotations[0]"
        if kind == "malformed":
            ann["poly"] = [1, 2, 3]
        elif kind == "outside":
            ann["poly"] = [99999, 99999, 99999 + 5, 99999, 99999 + 5, 99999 + 5, 99999, 99999 + 5]
        elif kind == "category":
            ann["category_id"] = 42
        _save(path, doc)
        reason = {"malformed": "poly must be", "outside": "lies outside",
                  "category": "unknown category_id 42"}[kind]
        return Damage(f"{path}:{loc}:", reason)
    path = root / ANN_FILE[name]
    doc = _load(path)
    ann, loc = _coco_first(doc)
    if kind == "malformed":
        ann["bbox"] = "oops"
        reason = "is not four finite numbers"
    elif kind == "outside":
        ann["bbox"] = [99999, 99999, 5, 5]
        reason = "lies outside"
    else:
        doc["categories"].append({"id": 777, "name": "not-a-class"})
        ann["category_id"] = 777
        reason = "unknown category 'not-a-class'"
    _save(path, doc)
    return Damage(f"{path}:{loc}:", reason)


def damage_image(root: Path, clean: CocoDataset) -> Damage:
    """Overwrite the first image that has boxes with bytes that are not an image."""
    per_image = Counter(a.image_id for a in clean.annotations)
    image = next(i for i in clean.images if per_image[i.id] > 0)
    (root / str(image.original_file)).write_bytes(b"this is not a JPEG")
    return Damage(str(root / str(image.original_file)), "unreadable image", images=-1,
                  annotations=-per_image[image.id])


@pytest.mark.parametrize("kind", ["malformed", "outside", "category", "image"])
@pytest.mark.parametrize("name", JSON_SOURCES)
def test_bad_input_is_one_line_naming_file_and_record_or_a_counted_skip(
        name: str, kind: str, raw_copy: Callable[[str], Path]) -> None:
    root = raw_copy(name)
    clean = _convert(root).dataset
    expected = damage_image(root, clean) if kind == "image" else damage(name, root, kind, clean)
    with pytest.raises(SourceError) as e:
        _convert(root)
    msg = str(e.value)
    assert "\n" not in msg and expected.where in msg and expected.reason in msg, msg
    skipped = _convert(root, on_error="skip")
    assert sum(skipped.skipped.values()) == 1, skipped.skipped
    assert len(skipped.dataset.images) == len(clean.images) + expected.images
    assert len(skipped.dataset.annotations) == len(clean.annotations) + expected.annotations
    if kind == "image" and name != "crowdhuman":
        assert skipped.counts["dropped_with_bad_image"] == -expected.annotations


BAD_XVIEW_METADATA = [
    pytest.param("aitod_xview_val.txt", "['1__0_0.png', '2__0_0.png'", ":1: not a Python list",
                 id="unclosed-tile-list"),
    pytest.param("aitod_xview_val.txt", "[1, 2]", ":1: expected a list of tile-name strings",
                 id="tile-list-of-numbers"),
    pytest.param("aitod_xview_test.txt", "['11__0_600.png', '0__0_0.png']",
                 "is also listed in aitod_xview_", id="tile-in-two-lists"),
    pytest.param("converted_class.txt", "Small Car:vehicle\nBus vehicle", ":2: expected",
                 id="mapping-line-without-colon"),
]


@pytest.mark.parametrize(("file", "text", "expected"), BAD_XVIEW_METADATA)
def test_bad_xview_metadata_names_file_and_line(file: str, text: str, expected: str,
                                                raw_copy: Callable[[str], Path]) -> None:
    root = raw_copy("aitod_v2")
    lists = root / "aitodtoolkit" / "aitod_xview"
    if file == "aitod_xview_test.txt":  # claim a tile the train list already holds
        train = eval_free_list((lists / "aitod_xview_train.txt").read_text())
        text = repr([train[0]])
    (lists / file).write_text(text)
    with pytest.raises(SourceError) as e:
        _convert(root)
    assert str(e.value).startswith(str(lists / file)) and expected in str(e.value), str(e.value)
    assert "\n" not in str(e.value)
    skipped = _convert(root, on_error="skip").skipped
    reason = expected.split(": ", 1)[-1]
    assert any(reason_kind(reason) in r for r in skipped), skipped



@pytest.mark.parametrize("attack", ["climb", "absolute", "symlink"])
def test_image_names_from_json_cannot_leave_the_source_root(
        attack: str, raw_copy: Callable[[str], Path], tmp_path: Path) -> None:
    root = raw_copy("coco")
    secret = tmp_path / "secret.jpg"
    shutil.copy(next((root / "val2017").glob("*.jpg")), secret)  # a readable image outside
    path = root / "annotations" / "instances_val2017.json"
    doc = _load(path)
    n_boxes = sum(a["image_id"] == doc["images"][0]["id"] for a in doc["annotations"])
    if attack == "symlink":
        (root / "val2017" / "link.jpg").symlink_to(secret)
        doc["images"][0]["file_name"] = "link.jpg"
        reason = "resolves outside the source root"
    else:
        doc["images"][0]["file_name"] = ("../../secret.jpg" if attack == "climb"
                                         else str(secret))
        reason = "escapes the source root" if attack == "climb" else "must be relative"
    _save(path, doc)
    with pytest.raises(SourceError) as e:
        _convert(root)
    assert f"{path}:images[0]" in str(e.value) and reason in str(e.value)
    skipped = _convert(root, on_error="skip")
    assert sum(skipped.skipped.values()) == 1
    assert skipped.counts["dropped_with_bad_image"] == n_boxes
    assert all("secret" not in i.original_file for i in skipped.dataset.images)
