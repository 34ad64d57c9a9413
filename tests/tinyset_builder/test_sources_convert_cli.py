"""`tinyset sources convert`: writes each source, and holds one converted source at a time."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import tinyset_builder.sources as sources_pkg
from tinyset_builder.cli import main
from tinyset_builder.io import dumps_json


def test_convert_writes_each_source_and_releases_it(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    names = ["jhu_crowd", "sku110k"]
    sources_pkg.synthesize_sources(tmp_path / "raw", names)
    real = sources_pkg.convert_source
    returned: list = []
    refs_when_next_asked: list[int] = []

    def watched(name: str, raw: Path, **kw: object):  # type: ignore[no-untyped-def]
        if returned:  # only our list may still refer to the previous source's records
            refs_when_next_asked.append(sys.getrefcount(returned[-1]) - 1)
        conv = real(name, raw, **kw)  # type: ignore[arg-type]
        returned.append(conv.dataset)
        return conv

    monkeypatch.setattr(sources_pkg, "convert_source", watched)
    out = tmp_path / "coco"
    assert main(["sources", "convert", str(tmp_path / "raw"), "--out", str(out),
                 "--sources", ",".join(names)]) == 0
    assert refs_when_next_asked == [1]
    for name, ds in zip(names, returned, strict=True):
        assert (out / f"{name}.json").read_bytes() == dumps_json(ds.to_dict())
        assert len(ds.annotations) > 0
