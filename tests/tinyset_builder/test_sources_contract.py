"""One contract every source converter obeys, checked on its own synthetic native copy."""

from __future__ import annotations

from pathlib import Path

import pytest

from tinyset_builder.errors import SourceError
from tinyset_builder.sources import SOURCES, TARGETS, convert_source, get_source
from tinyset_builder.sources.base import DOMAINS, load_info

#: The 24 TinySet sources and the transfer targets obey one contract.
NAMES = list(SOURCES) + list(TARGETS)


def test_there_are_24_sources_each_with_a_manifest() -> None:
    assert len(SOURCES) == 24 and not set(SOURCES) & set(TARGETS)
    domains = {load_info(n).domain for n in SOURCES}
    assert domains == set(DOMAINS)


@pytest.mark.parametrize("name", NAMES)
def test_missing_root_is_a_clear_error(name: str, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="source folder not found"):
        convert_source(name, tmp_path)


@pytest.mark.parametrize("name", NAMES)
def test_converter_reproduces_its_synthetic_source(name: str, tmp_path: Path) -> None:
    summary = get_source(name).synthesize(tmp_path / "raw" / name, seed=3)
    conv = convert_source(name, tmp_path / "raw")
    ds = conv.dataset
    assert conv.skipped == {}
    assert len(ds.images) == summary.images
    assert len(ds.annotations) == summary.annotations
    assert sum(a.iscrowd for a in ds.annotations) == summary.ignore
    if summary.splits:
        got: dict[str, int] = {}
        for img in ds.images:
            got[img.split] = got.get(img.split, 0) + 1
        assert got == dict(summary.splits)
    sizes = {i.id: (i.width, i.height) for i in ds.images}
    cat_ids = {c.id for c in ds.categories}
    prefix = f"{name}/"
    assert all(c.name.startswith(prefix) for c in ds.categories)
    for a in ds.annotations:
        x, y, w, h = a.bbox
        W, H = sizes[a.image_id]
        assert w > 0 and h > 0
        assert 0 <= x and 0 <= y and x + w <= W and y + h <= H
        assert a.category_id in cat_ids
    for img in ds.images:
        assert img.source == name and img.domain == load_info(name).domain
        assert img.window == (0, 0, img.width, img.height) and img.scale == 1.0
        assert (tmp_path / "raw" / name / img.original_file).is_file()


@pytest.mark.parametrize("name", NAMES)
def test_conversion_is_byte_identical_across_runs(name: str, tmp_path: Path) -> None:
    get_source(name).synthesize(tmp_path / "raw" / name, seed=5)
    a = convert_source(name, tmp_path / "raw").dataset.save(tmp_path / "a.json")
    b = convert_source(name, tmp_path / "raw").dataset.save(tmp_path / "b.json")
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize("name", NAMES)
def test_synthesis_is_deterministic(name: str, tmp_path: Path) -> None:
    get_source(name).synthesize(tmp_path / "a", seed=7)
    get_source(name).synthesize(tmp_path / "b", seed=7)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*")
                     if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*")
                     if p.is_file())
    assert files_a == files_b and files_a
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
