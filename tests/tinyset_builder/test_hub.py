"""``tinyset publish``: the Hub-ready export reloads with ``datasets``; the card validates; the
push makes exactly the expected Hub calls and never shows the token.

The Hub itself is replaced by a recording stand-in for ``huggingface_hub.HfApi`` whose methods
accept exactly the real methods' signatures (checked with ``inspect.signature(...).bind``).
We chose this over a local HTTP server speaking the Hub's endpoints because no local Hub server
exists (ecosystem.md §2.4) and ``upload_folder``'s wire protocol (preupload negotiation, LFS/Xet
transfers, NDJSON commits) is private and changes between releases; the public ``HfApi`` methods
are the contract our code relies on. The real client is still exercised once, offline
(``HF_HUB_OFFLINE=1``), to check that its failure reaches the user as one line without the token.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

import pytest

from tests.tinyset_builder._hub_fixtures import SOURCES, build_small, load_split
from tinyset_builder import hub
from tinyset_builder.coco import SPLITS
from tinyset_builder.errors import TinysetError

TOKEN = "hf_SeCrEtT0kenForTests1234567890abcd"


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_small(tmp_path_factory.mktemp("hub-build"))


@pytest.fixture(scope="session")
def exported(built: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    # A small shard size, so every split spans several shards (the plan is exercised).
    folder = tmp_path_factory.mktemp("hub-export") / "export"
    return folder, hub.export(built, folder, max_shard_bytes=400_000)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    # huggingface_hub reads HF_HUB_OFFLINE once, at import; an earlier import may have missed it.
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_export_reloads_with_datasets(built: Path, exported: tuple[Path, Any], offline: None,
                                      tmp_path: Path) -> None:
    import datasets

    folder, summary = exported
    assert sum(name.startswith("data/train-") for name in summary.shards) > 1
    ds = datasets.load_dataset(str(folder), cache_dir=str(tmp_path / "cache"))
    assert set(ds) == set(SPLITS)
    for split in SPLITS:
        coco = load_split(built, split)
        rows = ds[split]
        assert len(rows) == len(coco["images"])
        names = rows.features["objects"]["category"].feature.names
        assert names == [c["name"] for c in sorted(coco["categories"], key=lambda c: c["id"])]
        cat_name = {c["id"]: c["name"] for c in coco["categories"]}
        by_image: dict[int, list[dict[str, Any]]] = {}
        for a in coco["annotations"]:
            by_image.setdefault(a["image_id"], []).append(a)
        n_objects = 0
        for img, row in zip(coco["images"], rows, strict=True):
            assert row["image_id"] == img["id"] and row["file_name"] == img["file_name"]
            assert (row["width"], row["height"]) == (img["width"], img["height"])
            assert row["image"].size == (img["width"], img["height"])
            assert (row["source"], row["domain"]) == (img["source"], img["domain"])
            assert row["window"] == img["window"] and row["original_file"] == img["original_file"]
            anns = by_image.get(img["id"], [])
            objs = row["objects"]
            assert objs["id"] == [a["id"] for a in anns]
            assert objs["bbox"] == [a["bbox"] for a in anns]  # float64: exactly the COCO values
            assert objs["area"] == [a["area"] for a in anns]
            assert objs["iscrowd"] == [a["iscrowd"] for a in anns]
            assert [names[c] for c in objs["category"]] == [cat_name[a["category_id"]]
                                                            for a in anns]
            n_objects += len(anns)
        assert n_objects == len(coco["annotations"])
    # The image column holds the file's own bytes (embedded, not a path).
    raw = ds["val"].cast_column("image", datasets.Image(decode=False))[0]["image"]
    first = load_split(built, "val")["images"][0]["file_name"]
    assert raw["bytes"] == (built / "images" / "val" / first).read_bytes()
    # The build has ignore regions, and they survive the trip.
    assert any(1 in r["objects"]["iscrowd"] for r in ds["train"])


def test_card_yaml_validates(built: Path, exported: tuple[Path, Any]) -> None:
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard

    folder, _ = exported
    card = DatasetCard.load(folder / "README.md")
    data = card.data
    assert data.license == "other" and data.license_link == "LICENSE.md"
    assert data.task_categories == ["object-detection"]
    assert data.size_categories == ["n<1K"]
    infos = DatasetInfosDict.from_dataset_card_data(data)
    names = [c["name"] for c in sorted(load_split(built, "train")["categories"],
                                       key=lambda c: c["id"])]
    assert infos["default"].features == hub.hub_features(names)
    for split in SPLITS:
        s = infos["default"].splits[split]
        assert s.num_examples == len(load_split(built, split)["images"])
        assert s.num_bytes > 0  # without num_bytes datasets ignores the splits as malformed
    configs = MetadataConfigs.from_dataset_card_data(data)
    assert configs["default"]["data_files"] == [{"split": s, "path": f"data/{s}-*"}
                                                for s in SPLITS]
    text = card.text
    build_sha = hub.build_hash(built)
    assert build_sha in text
    from tinyset_builder.sources.base import load_info

    licences = (folder / "LICENSE.md").read_text(encoding="utf-8")
    for name in SOURCES:
        info = load_info(name)
        assert info.license in text and info.citation in text and info.license in licences
    for plot in hub.STATS_PLOTS:
        assert f"(stats/{plot})" in text
        assert (folder / "stats" / plot).read_bytes() == (built / "stats" / plot).read_bytes()
    assert "Mean object scale" in text  # the statistics of `tinyset stats`
    assert "COCO `[x, y, w, h]` in absolute pixels" in text


def test_export_resumes_byte_identical(built: Path, exported: tuple[Path, Any],
                                       tmp_path: Path) -> None:
    reference, summary = exported
    folder = tmp_path / "export"
    first = hub.export(built, folder, max_shard_bytes=400_000, stop_after=2)
    assert first.written == 2 and not (folder / "README.md").exists()  # "killed" after 2 shards
    # What a kill leaves behind: a half-written temporary file and a damaged finished shard.
    done = sorted((folder / "data").glob("*.parquet"))
    (folder / "data" / f".{done[0].name}.x.part").write_bytes(b"half")
    done[1].write_bytes(done[1].read_bytes()[:100])
    again = hub.export(built, folder, max_shard_bytes=400_000)
    assert again.reused == 1 and again.written == len(summary.shards) - 1
    assert not (folder / "data" / f".{done[0].name}.x.part").exists()  # swept when finished
    ref_tree = _tree(reference)
    assert _tree(folder) == ref_tree
    # A finished export run again writes nothing and changes nothing.
    third = hub.export(built, folder, max_shard_bytes=400_000)
    assert third.written == 0 and _tree(folder) == ref_tree


def test_export_of_other_build_replaces_stale_shards(built: Path, tmp_path: Path) -> None:
    folder = tmp_path / "export"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "train-00000-of-00009.parquet").write_bytes(b"old build")
    summary = hub.export(built, folder)
    assert sorted(p.name for p in (folder / "data").iterdir()) == sorted(
        Path(p).name for p in summary.shards)
    assert len(summary.shards) == 3  # one shard per split at the default size


def test_export_refuses_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "notbuilt").mkdir()
    with pytest.raises(TinysetError, match="not a dataset built by tinyset"):
        hub.export(tmp_path / "notbuilt", tmp_path / "export")


class FakeHfApi:
    """Records calls; each must bind to the real ``HfApi`` method's signature."""

    def __init__(self, fail_with: Exception | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.uploaded: dict[str, bytes] = {}
        self.fail_with = fail_with

    def _record(self, name: str, *args: Any, **kwargs: Any) -> None:
        from huggingface_hub.hf_api import HfApi  # the real class, even when patched

        bound = inspect.signature(getattr(HfApi, name)).bind(self, *args, **kwargs)
        self.calls.append((name, {k: v for k, v in bound.arguments.items() if k != "self"}))

    def create_repo(self, *args: Any, **kwargs: Any) -> str:
        self._record("create_repo", *args, **kwargs)
        if self.fail_with is not None:
            raise self.fail_with
        return f"https://huggingface.co/datasets/{args[0] if args else kwargs['repo_id']}"

    def upload_folder(self, *args: Any, **kwargs: Any) -> Any:
        import fnmatch

        self._record("upload_folder", *args, **kwargs)
        root = Path(kwargs["folder_path"])
        for p in sorted(root.rglob("*")):
            rel = p.relative_to(root).as_posix()
            if p.is_file() and not any(fnmatch.fnmatch(rel, pat) or fnmatch.fnmatch(p.name, pat)
                                       for pat in kwargs["ignore_patterns"]):
                self.uploaded[rel] = p.read_bytes()

        class Info:
            commit_url = f"https://huggingface.co/datasets/{kwargs['repo_id']}/commit/abc123"
        return Info()


def test_push_makes_exactly_the_expected_calls(built: Path, exported: tuple[Path, Any]) -> None:
    folder, summary = exported
    api = FakeHfApi()
    url = hub.push(folder, "tinyset-org/tinyset-small", token=TOKEN, private=True, api=api)
    assert url.endswith("/commit/abc123")
    assert api.calls == [
        ("create_repo", {"repo_id": "tinyset-org/tinyset-small", "token": TOKEN,
                         "repo_type": "dataset", "private": True, "exist_ok": True}),
        ("upload_folder", {"repo_id": "tinyset-org/tinyset-small", "folder_path": str(folder),
                           "repo_type": "dataset", "token": TOKEN,
                           "commit_message": f"TinySet build {summary.build_sha256[:12]}",
                           "ignore_patterns": list(hub.UPLOAD_IGNORE)}),
    ]
    # What reaches the Hub: the card, licences, plots and shards; never the export's state.
    assert sorted(api.uploaded) == sorted(rel for rel, _ in summary.files())
    assert hub.STATE_FILE not in api.uploaded and "README.md" in api.uploaded
    assert all(api.uploaded[p] == (folder / p).read_bytes() for p in summary.shards)


def test_push_error_is_one_line_without_token(exported: tuple[Path, Any],
                                              caplog: pytest.LogCaptureFixture) -> None:
    folder, _ = exported
    api = FakeHfApi(fail_with=RuntimeError(f"401 Unauthorized\nAuthorization: Bearer {TOKEN}"))
    with caplog.at_level(logging.DEBUG), pytest.raises(TinysetError) as err:
        hub.push(folder, "org/name", token=TOKEN, api=api)
    assert "\n" not in str(err.value) and "401 Unauthorized" in str(err.value)
    assert TOKEN not in str(err.value) and TOKEN not in caplog.text
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_push_with_real_client_offline(exported: tuple[Path, Any], offline: None,
                                       caplog: pytest.LogCaptureFixture) -> None:
    folder, _ = exported
    with caplog.at_level(logging.DEBUG), pytest.raises(TinysetError) as err:
        hub.push(folder, "org/name", token=TOKEN)
    assert "OfflineModeIsEnabled" in str(err.value)
    assert "connect_tcp" not in caplog.text  # refused before any connection
    assert TOKEN not in str(err.value) and TOKEN not in caplog.text


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from tinyset_builder.cli import main

    code = main(argv)
    out, errout = capsys.readouterr()
    return code, out + errout


def test_cli_dry_run_by_default_without_token(built: Path, tmp_path: Path, offline: None,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_TOKEN_PATH", str(tmp_path / "no-token"))
    folder = tmp_path / "export"
    code, text = _cli(["publish", str(built), "--repo-id", "org/name", "--export-dir",
                       str(folder)], capsys)
    assert code == 0, text
    assert "dry run: would upload" in text and "data/train-00000-of-00001.parquet" in text
    assert (folder / "README.md").is_file()
    code, text = _cli(["publish", str(built), "--repo-id", "org/name", "--export-dir",
                       str(folder), "--push"], capsys)
    assert code == 2 and "needs a Hugging Face token" in text


def test_cli_push_uses_env_token_and_never_prints_it(built: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import huggingface_hub

    folder = tmp_path / "export"
    made: list[FakeHfApi] = []

    def factory(*args: Any, **kwargs: Any) -> FakeHfApi:
        made.append(FakeHfApi())
        return made[-1]

    monkeypatch.setattr(huggingface_hub, "HfApi", factory)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with caplog.at_level(logging.DEBUG):
        code, text = _cli(["publish", str(built), "--repo-id", "org/name", "--export-dir",
                           str(folder)], capsys)
    assert code == 0, text
    assert [name for name, _ in made[0].calls] == ["create_repo", "upload_folder"]
    assert made[0].calls[0][1]["token"] == TOKEN and made[0].calls[0][1]["private"] is False
    assert "pushed" in text and "commit/abc123" in text
    assert TOKEN not in text and TOKEN not in caplog.text


def test_cli_bad_input_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, text = _cli(["publish", str(tmp_path), "--repo-id", "org/name", "--dry-run"], capsys)
    assert code == 2 and text.startswith("error:") and text.count("\n") == 1
    code, text = _cli(["publish", str(tmp_path), "--repo-id", "no-slash", "--dry-run"], capsys)
    assert code == 2 and "expected ORG/NAME" in text and "Traceback" not in text
