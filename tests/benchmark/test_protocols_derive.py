"""``derive_variant`` and ``tinyset derive``: files, meta, determinism, reuse, atomicity, errors."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from protocols_fixture import write_built_dataset

import benchmark.protocols.derive as derive_mod
from benchmark.protocols import SETTINGS, derive_variant, variant_name
from tinyset_builder.cli import main
from tinyset_builder.coco import CocoDataset
from tinyset_builder.errors import TinysetError

EXPECTED_FILES = {"noise": {"train.json"}, "shot": {"train.json"}, "points": {"train.json"},
                  "semi": {"train_labeled.json", "train_unlabeled.json"},
                  "p2sod": {"prompts_val.json", "prompts_test.json"}}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_built_dataset(tmp_path_factory.mktemp("fixture") / "data", seed=1)


@pytest.fixture
def data(built: Path, tmp_path: Path) -> Path:
    """A private copy of the fixture dataset (tests below write variants into it)."""
    return Path(shutil.copytree(built, tmp_path / "data"))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_setting_writes_its_files_and_meta_byte_identically(data: Path,
                                                                  tmp_path: Path) -> None:
    twin = Path(shutil.copytree(data, tmp_path / "twin"))
    for name, spec in SETTINGS.items():
        folder = derive_variant(data, name)
        assert folder == data / "variants" / name
        files = {p.name for p in folder.iterdir()}
        assert files == EXPECTED_FILES[spec.kind] | {"meta.json"}
        meta = json.loads((folder / "meta.json").read_text())
        assert (meta["setting"], meta["seed"], meta["fold"]) == (name, 0, 0)
        for split, digest in meta["source_sha256"].items():
            assert digest == _sha(data / "annotations" / f"{split}.json")
        assert set(meta["source_sha256"]) == set(spec.splits)
        for fname, info in meta["files"].items():
            assert info == {"bytes": (folder / fname).stat().st_size,
                            "sha256": _sha(folder / fname)}
        for fname in files - {"meta.json"}:
            if fname.startswith("prompts_"):
                doc = json.loads((folder / fname).read_text())
                split = fname.removeprefix("prompts_").removesuffix(".json")
                assert doc["dataset"] == meta["source_sha256"][split]
                assert doc["setting"] == name and doc["prompts"]
            else:
                CocoDataset.load(folder / fname).validate()
        # A fresh derive of an identical dataset gives the same bytes, file for file.
        other = derive_variant(twin, name)
        for fname in files:
            assert (other / fname).read_bytes() == (folder / fname).read_bytes(), (name, fname)
    assert not [p for p in (data / "variants").iterdir() if p.name.startswith(".")]


def test_outputs_load_in_pycocotools(data: Path) -> None:
    from pycocotools.coco import COCO

    for name in ("noise-40", "shot-3", "points-center", "semi-10"):
        folder = derive_variant(data, name)
        for path in sorted(folder.glob("train*.json")):
            coco = COCO(str(path))
            ds = CocoDataset.load(path)
            assert len(coco.getImgIds()) == len(ds.images)
            assert len(coco.getAnnIds()) == len(ds.annotations)


def test_non_default_requests_get_their_own_folder(data: Path) -> None:
    assert variant_name("semi-5", seed=1, fold=2) == "semi-5_seed1_fold2"
    assert variant_name("p2sod-3", num_points=2, jitter=0.25) == "p2sod-3_k2_jitter0.25"
    assert variant_name("p2sod-3", num_points=1, jitter=0.0) == "p2sod-3"  # the defaults
    assert variant_name("points-jitter", jitter=0.3) == "points-jitter_jitter0.3"
    a = derive_variant(data, "semi-5", seed=1, fold=2)
    b = derive_variant(data, "semi-5", seed=1, fold=3)
    assert a.name == "semi-5_seed1_fold2" and b.name == "semi-5_seed1_fold3"
    assert (a / "train_labeled.json").read_bytes() != (b / "train_labeled.json").read_bytes()
    k2 = derive_variant(data, "p2sod-3", num_points=2)
    doc = json.loads((k2 / "prompts_test.json").read_text())
    assert doc["num_points"] == 2 and max(len(p["points"]) for p in doc["prompts"]) == 2


def test_complete_variant_is_reused_and_a_damaged_one_rebuilt(data: Path) -> None:
    folder = derive_variant(data, "shot-3")
    train = folder / "train.json"
    before = train.stat()
    assert derive_variant(data, "shot-3") == folder
    assert train.stat().st_ino == before.st_ino  # not rewritten
    good = train.read_bytes()
    train.write_bytes(good[:-10])  # truncated by hand: no longer complete
    derive_variant(data, "shot-3")
    assert train.read_bytes() == good
    meta_path = folder / "meta.json"
    meta_bytes = meta_path.read_bytes()
    for damaged in (b"{not json", json.dumps({**json.loads(meta_bytes), "files": {"x": 1}})
                    .encode()):
        meta_path.write_bytes(damaged)
        derive_variant(data, "shot-3")
        assert meta_path.read_bytes() == meta_bytes
    # A changed dataset changes the source hash in the request, so the variant is rebuilt.
    ann = data / "annotations" / "train.json"
    ds = CocoDataset.load(ann)
    CocoDataset(images=ds.images, annotations=ds.annotations[1:], categories=ds.categories,
                info=ds.info).save(ann)
    derive_variant(data, "shot-3")
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["source_sha256"]["train"] == _sha(ann)


def test_a_killed_derive_leaves_no_variant(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def killed(tmp: Path, final: Path, request: object) -> None:
        raise KeyboardInterrupt  # dies after writing every file, before publishing

    monkeypatch.setattr(derive_mod, "_publish", killed)
    with pytest.raises(KeyboardInterrupt):
        derive_variant(data, "noise-20")
    assert list((data / "variants").iterdir()) == []
    monkeypatch.undo()
    assert (derive_variant(data, "noise-20") / "meta.json").is_file()


@pytest.mark.parametrize(("setting", "options", "message"), [
    ("noise-30", {}, "unknown setting 'noise-30'"),
    ("shot-3", {"fold": 1}, "--fold applies to the semi settings only"),
    ("p2sod-2", {"num_points": 2}, "option 'num_points' does not apply to setting p2sod-2"),
    ("points-center", {"jitter": 0.5}, "option 'jitter' does not apply"),
    ("p2sod-1", {"jitter": 1.5}, "jitter must be a fraction in [0, 1]"),
    ("p2sod-3", {"num_points": 0}, "num_points must be an int >= 1"),
    ("semi-1", {"seed": -1}, "seed must be >= 0"),
])
def test_bad_requests_are_refused_in_one_line(data: Path, setting: str, options: dict,
                                              message: str) -> None:
    with pytest.raises(TinysetError) as err:
        derive_variant(data, setting, **options)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (data / "variants").exists()


def test_folders_not_built_by_the_toolkit_are_refused(data: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(data / "annotations", plain / "annotations")
    with pytest.raises(TinysetError, match=r"not a dataset built by tinyset \(no build\.json"):
        derive_variant(plain, "noise-20")
    other = write_built_dataset(tmp_path / "other", train=2, val=1, test=1, tool="labelme")
    with pytest.raises(TinysetError, match="\"tool\" is 'labelme'"):
        derive_variant(other, "noise-20")
    (data / "annotations" / "test.json").unlink()
    with pytest.raises(TinysetError, match=r"test.json: missing; the dataset has no test split"):
        derive_variant(data, "p2sod-1")
    with pytest.raises(TinysetError, match="dataset folder not found"):
        derive_variant(tmp_path / "nowhere", "noise-20")


def test_prompts_for_a_split_without_objects_are_impossible(data: Path) -> None:
    val = data / "annotations" / "val.json"
    ds = CocoDataset.load(val)
    # Keep only ignore regions: no image has anything to point at.
    CocoDataset(images=ds.images, annotations=[a for a in ds.annotations if a.iscrowd],
                categories=ds.categories).save(val)
    with pytest.raises(TinysetError, match=r"val\.json: no image has an object annotation"):
        derive_variant(data, "p2sod-3")
    assert not [p for p in (data / "variants").iterdir()]


def test_cli_derives_and_reports_errors_in_one_line(data: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["derive", str(data), "--setting", "p2sod-3", "--num-points", "3",
                 "--jitter", "0.5", "--seed", "2"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == str(data / "variants" / "p2sod-3_seed2_k3_jitter0.5")
    assert main(["derive", str(data), "--setting", "bogus"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown setting 'bogus'") and "\n" not in err
    assert main(["derive", str(data.parent), "--setting", "noise-20"]) == 2
    assert "not a dataset built by tinyset" in capsys.readouterr().err
    assert main(["derive", str(data), "--setting", "all", "--jitter", "0.1"]) == 2
    assert "--setting all" in capsys.readouterr().err


def test_a_shared_cache_parses_each_annotation_file_once(data: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[Path] = []
    real = derive_mod._load_split

    def counting(path: Path) -> CocoDataset:
        loaded.append(path)
        return real(path)

    monkeypatch.setattr(derive_mod, "_load_split", counting)
    cache: dict = {}
    a = derive_variant(data, "noise-20", cache=cache)
    b = derive_variant(data, "shot-1", cache=cache)
    derive_variant(data, "p2sod-1", cache=cache)
    derive_variant(data, "p2sod-4", cache=cache)
    assert sorted(p.name for p in loaded) == ["test.json", "train.json", "val.json"]
    # Sharing the parsed dataset must not leak one protocol's output into the next.
    fresh = derive_variant(data, "shot-1", force=True)
    assert fresh == b and "clean_bbox" not in (b / "train.json").read_text()
    assert "clean_bbox" in (a / "train.json").read_text()


@given(requests=st.lists(st.tuples(st.sampled_from(["semi-5", "p2sod-1", "p2sod-3",
                                                    "points-jitter"]),
                                   st.integers(0, 3), st.integers(0, 2),
                                   st.one_of(st.none(), st.integers(1, 4)),
                                   st.one_of(st.none(), st.sampled_from([0.0, 0.1, 0.25, 1.0]))),
                         max_size=30))
def test_distinct_requests_get_distinct_folders(requests: list[tuple]) -> None:
    names: dict[str, tuple] = {}
    for setting, seed, fold, k, jitter in requests:
        spec = SETTINGS[setting]
        fold = fold if spec.kind == "semi" else 0
        opts = {"num_points": k if "num_points" in dict(spec.defaults) else None,
                "jitter": jitter if "jitter" in dict(spec.defaults) else None}
        resolved = derive_mod.resolve_options(spec, fold, opts)
        key = (setting, seed, fold, tuple(sorted(resolved.items())))
        name = variant_name(setting, seed=seed, fold=fold, **opts)
        assert names.setdefault(name, key) == key  # one name, one request
