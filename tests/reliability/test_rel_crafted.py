"""Crafted files: annotation file names that escape the source root, decompression bombs, XML
entity expansion and external entities. (The toolkit unpacks no archives: users unpack downloads
themselves, see docs/reliability.md; ``test_toolkit_unpacks_no_archives`` keeps it that way.)"""

from __future__ import annotations

import json
import re
import shutil
import struct
import zlib
from pathlib import Path

import pytest

from tinyset_builder.errors import ErrorPolicy, SourceError, TinysetError
from tinyset_builder.formats.voc_xml import read_voc_xml
from tinyset_builder.imageio import image_size, read_array, read_image
from tinyset_builder.paths import safe_join
from tinyset_builder.sources import convert_source, synthesize_sources

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------
# File names escaping the source root

@pytest.fixture(scope="module")
def coco_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = tmp_path_factory.mktemp("raw")
    synthesize_sources(raw, ["coco"])
    return raw


@pytest.mark.parametrize("name", ["../../secret.jpg", "val2017/../../secret.jpg",
                                  "/etc/passwd", "..\\..\\secret.jpg", "C:\\Windows\\win.ini",
                                  "link_out/secret.jpg", "val2017/link_file.jpg"])
def test_coco_file_name_escaping_root_is_refused(coco_raw: Path, tmp_path: Path,
                                                 name: str) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(coco_raw / "coco", raw / "coco")
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.jpg"
    shutil.copy(next((raw / "coco" / "val2017").glob("*.jpg")), secret)
    (raw / "coco" / "val2017" / "link_out").symlink_to(outside, target_is_directory=True)
    (raw / "coco" / "val2017" / "link_file.jpg").symlink_to(secret)

    ann = raw / "coco" / "annotations" / "instances_val2017.json"
    doc = json.loads(ann.read_text())
    doc["images"][0]["file_name"] = name
    n_anns = sum(a["image_id"] == doc["images"][0]["id"] for a in doc["annotations"])
    ann.write_text(json.dumps(doc))

    with pytest.raises(TinysetError) as exc:
        convert_source("coco", raw, on_error="raise")
    msg = str(exc.value)
    assert "\n" not in msg and "instances_val2017.json" in msg, msg
    assert re.search(r"relative to the source root|escapes the source root|resolves outside",
                     msg), msg

    conv = convert_source("coco", raw, on_error="skip")
    files = {i.original_file for i in conv.dataset.images}
    assert not any("secret" in f or f == name for f in files)
    assert all((raw / "coco" / f).resolve().is_relative_to((raw / "coco").resolve())
               for f in files)
    # The refused image and its annotations are counted, not lost silently.
    assert sum(conv.skipped.values()) == 1, conv.skipped
    assert conv.counts.get("dropped_with_bad_image") == n_anns, conv.counts


def test_safe_join_cases(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (tmp_path / "x").mkdir()
    (root / "a" / "up").symlink_to(tmp_path / "x", target_is_directory=True)
    (root / "a" / "in").symlink_to(root / "a", target_is_directory=True)
    assert safe_join(root, "a/in/f.jpg") == root / "a" / "in" / "f.jpg"  # a link inside is fine
    for bad in ["", "/abs.jpg", "../x/f.jpg", "a/../../x", "a\\..\\..\\x", "a/up/f.jpg",
                "D:/f.jpg", "\\\\server\\share\\f.jpg"]:
        with pytest.raises(SourceError):
            safe_join(root, bad, location="ann.json:images[0]")


# ---------------------------------------------------------------------------------------------
# Decompression bombs

def _png_header_only(width: int, height: int) -> bytes:
    """A tiny, valid-looking PNG that *declares* width x height (IDAT is one empty row)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def test_png_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(60000, 60000))  # 3.6 Gpx declared in < 100 bytes
    assert bomb.stat().st_size < 200
    for fn in (image_size, read_image, read_array):
        with pytest.raises(SourceError, match="exceeds the pixel limit") as exc:
            fn(bomb)
        assert str(bomb) in str(exc.value) and "\n" not in str(exc.value)
    # A lower limit (tinyset build --max-pixels) applies the same way.
    small = tmp_path / "small.png"
    small.write_bytes(_png_header_only(5000, 5000))
    with pytest.raises(SourceError, match="pixel limit"):
        image_size(small, max_pixels=1_000_000)


def test_bomb_in_a_source_is_a_counted_skip(coco_raw: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(coco_raw / "coco", raw / "coco")
    ann = raw / "coco" / "annotations" / "instances_val2017.json"
    doc = json.loads(ann.read_text())
    first = doc["images"][0]
    (raw / "coco" / "val2017" / first["file_name"]).write_bytes(_png_header_only(60000, 60000))
    first.pop("width", None), first.pop("height", None)  # force a header read
    ann.write_text(json.dumps(doc))
    conv = convert_source("coco", raw, on_error="skip")
    assert first["file_name"] not in {Path(i.original_file).name for i in conv.dataset.images}
    assert any("pixel limit" in e for e in conv.examples.values()), conv.examples


# ---------------------------------------------------------------------------------------------
# XML: entity expansion and external entities

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol9 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">]>
<annotation><filename>&lol9;</filename><size><width>8</width><height>8</height></size>
</annotation>"""


def test_billion_laughs_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "lol.xml"
    path.write_text(BILLION_LAUGHS)
    with pytest.raises(SourceError, match="unsafe XML refused") as exc:
        read_voc_xml(path, ErrorPolicy("raise"))
    assert str(path) in str(exc.value)
    policy = ErrorPolicy("skip")
    assert read_voc_xml(path, policy) is None and policy.total_skipped == 1


@pytest.mark.parametrize("decl", [
    '<!DOCTYPE a [<!ENTITY x SYSTEM "file://{secret}">]>',
    '<!DOCTYPE a [<!ENTITY % p SYSTEM "file://{secret}"> %p;]>',
])
def test_external_entities_are_refused_by_defusedxml(tmp_path: Path, decl: str) -> None:
    """Entity declarations are refused by defusedxml itself: the document never uses the
    entity, so the standard library's parser would accept it (checked below), and only
    defusedxml's ``EntitiesForbidden`` stands between the file and the secret."""
    import xml.etree.ElementTree as stdlib_etree

    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    path = tmp_path / "xxe.xml"
    path.write_text('<?xml version="1.0"?>\n' + decl.format(secret=secret)
                    + "\n<annotation><filename>y.jpg</filename></annotation>")
    assert stdlib_etree.fromstring(path.read_bytes()).findtext("filename") == "y.jpg"
    policy = ErrorPolicy("skip")
    assert read_voc_xml(path, policy) is None and policy.total_skipped == 1
    with pytest.raises(SourceError, match=r"unsafe XML refused \(EntitiesForbidden\)") as exc:
        read_voc_xml(path, ErrorPolicy("raise"))
    assert str(path) in str(exc.value) and "TOPSECRET" not in str(exc.value)


def test_external_dtd_is_never_loaded(tmp_path: Path) -> None:
    """An external DTD is not fetched (expat's default, which defusedxml keeps), so an entity it
    defines stays undefined: the file is refused as malformed and the secret never read."""
    dtd = tmp_path / "secret.dtd"
    dtd.write_text('<!ENTITY x "TOPSECRET">')
    path = tmp_path / "xxe.xml"
    path.write_text(f'<?xml version="1.0"?>\n<!DOCTYPE annotation SYSTEM "file://{dtd}">\n'
                    "<annotation><filename>&x;</filename></annotation>")
    policy = ErrorPolicy("skip")
    assert read_voc_xml(path, policy) is None and policy.total_skipped == 1
    with pytest.raises(SourceError, match="malformed XML") as exc:
        read_voc_xml(path, ErrorPolicy("raise"))
    assert "TOPSECRET" not in str(exc.value)


def test_every_xml_parse_in_the_toolkit_is_defused() -> None:
    """No module parses XML with the standard library's (entity-expanding) parsers."""
    offenders = []
    for folder in ("tinyset_builder", "benchmark", "adapters", "deal", "baselines"):
        for py in (ROOT / folder).rglob("*.py"):
            text = py.read_text(encoding="utf-8")
            if re.search(r"^\s*(from|import) (xml\.etree|xml\.dom|xml\.sax|lxml)(?!\.saxutils)",
                         text, re.M):
                offenders.append(str(py.relative_to(ROOT)))
    assert offenders == []


def test_toolkit_unpacks_no_archives() -> None:
    """docs/reliability.md says the toolkit extracts no archive to disk; if one starts to, it
    must get a path-traversal test here first. (Reading or writing zip members by fixed names,
    as the evaluator's ``.npz`` prediction columns do, writes no path taken from an archive.)"""
    users = []
    for folder in ("tinyset_builder", "benchmark", "adapters", "deal", "baselines"):
        for py in (ROOT / folder).rglob("*.py"):
            if re.search(r"\b(extractall|unpack_archive|tarfile\.open)\b|\.extract\(",
                         py.read_text(encoding="utf-8")):
                users.append(str(py.relative_to(ROOT)))
    assert users == []
