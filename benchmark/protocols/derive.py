"""The dispatcher: ``derive_variant(data_dir, setting)`` writes ``data_dir/variants/<name>/``.

A variant folder holds the setting's COCO or prompt files and a ``meta.json`` that records the
request (setting, seed, fold, options, sha256 of every annotation file read) and the result
(counts, size and sha256 of every file written). The folder is assembled under a hidden
``.<name>.*.part`` name and renamed into place only when complete, so a killed run never leaves a
folder that looks finished; an existing folder whose ``meta.json`` matches the request and whose
files match their recorded hashes is reused as is. See ``docs/variants.md``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from benchmark.protocols.noise import add_box_noise
from benchmark.protocols.points import add_points
from benchmark.protocols.prompts import prompt_file
from benchmark.protocols.semi import split_semi
from benchmark.protocols.shot import sparse_shot
from tinyset_builder.built import load_build_record
from tinyset_builder.coco import CocoDataset, RecordError
from tinyset_builder.errors import TinysetError
from tinyset_builder.io import FILE_MODE, read_json, sha256_file, write_json
from tinyset_builder.progress import console

META_SCHEMA = "tinyset-variant/1"
#: Bump when a protocol's definition changes, so old variants are rebuilt rather than reused.
PROTOCOL_VERSION = 1
PROMPT_SPLITS = ("val", "test")
#: mkdtemp makes 0700 folders; a published variant gets the usual 0777 & ~umask.
DIR_MODE = FILE_MODE | ((FILE_MODE >> 2) & 0o111)

Kind = Literal["noise", "semi", "shot", "points", "p2sod"]


@dataclass(frozen=True)
class Setting:
    """One named setting.

    Attributes:
        name: the setting name (``noise-20`` …).
        kind: which protocol derives it.
        value: the protocol's parameter: noise level, labeled percent, k, default jitter, or the
            paper's prompt setting number.
        defaults: the options the setting accepts, with their default values.
    """

    name: str
    kind: Kind
    value: float
    defaults: tuple[tuple[str, Any], ...] = ()

    @property
    def splits(self) -> tuple[str, ...]:
        """The dataset splits this setting reads."""
        return PROMPT_SPLITS if self.kind == "p2sod" else ("train",)

    @property
    def files(self) -> tuple[str, ...]:
        """The files this setting writes besides ``meta.json``."""
        if self.kind == "semi":
            return ("train_labeled.json", "train_unlabeled.json")
        if self.kind == "p2sod":
            return tuple(f"prompts_{s}.json" for s in PROMPT_SPLITS)
        return ("train.json",)


def _settings() -> dict[str, Setting]:
    items = [Setting("noise-20", "noise", 0.2), Setting("noise-40", "noise", 0.4)]
    items += [Setting(f"semi-{p}", "semi", p) for p in (1, 5, 10)]
    items += [Setting(f"shot-{k}", "shot", k) for k in (1, 3, 5)]
    items += [Setting("points-center", "points", 0.0),
              Setting("points-jitter", "points", 1.0, (("jitter", 1.0),))]
    for n in (1, 2, 3, 4):
        # Settings 1 and 3 take one point per entry by default; 2 and 4 prompt every instance.
        defaults = (("num_points", 1), ("jitter", 0.0)) if n in (1, 3) else (("jitter", 0.0),)
        items.append(Setting(f"p2sod-{n}", "p2sod", n, defaults))
    return {s.name: s for s in items}


#: Every setting by name, in the order ``tinyset derive --setting all`` derives them.
SETTINGS: dict[str, Setting] = _settings()


def get_setting(name: str) -> Setting:
    """The setting called ``name``; a one-line error listing the known names otherwise."""
    try:
        return SETTINGS[name]
    except KeyError:
        raise TinysetError(f"unknown setting {name!r}; known: {', '.join(SETTINGS)}") from None


def resolve_options(setting: Setting, fold: int, options: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``options`` against what ``setting`` accepts and fill in the defaults.

    ``None`` means "not given". Raises :class:`TinysetError` for an option the setting does not
    take, an out-of-range value, or a fold on a setting that has no folds.
    """
    if fold < 0:
        raise TinysetError(f"fold must be >= 0, got {fold}")
    if fold and setting.kind != "semi":
        raise TinysetError(f"--fold applies to the semi settings only, not {setting.name}")
    defaults = dict(setting.defaults)
    given = {k: v for k, v in options.items() if v is not None}
    for key in given:
        if key not in defaults:
            takes = ", ".join(defaults) or "no options"
            raise TinysetError(f"option {key!r} does not apply to setting {setting.name} "
                               f"(it takes {takes})")
    resolved = {**defaults, **given}
    if "jitter" in resolved:
        jitter = resolved["jitter"]
        if not isinstance(jitter, (int, float)) or isinstance(jitter, bool) \
                or not 0.0 <= jitter <= 1.0:
            raise TinysetError(f"jitter must be a fraction in [0, 1], got {jitter!r}")
        resolved["jitter"] = float(jitter)
    if "num_points" in resolved:
        k = resolved["num_points"]
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise TinysetError(f"num_points must be an int >= 1, got {k!r}")
    return resolved


def variant_name(setting: str, *, seed: int = 0, fold: int = 0, **options: Any) -> str:
    """The folder name under ``variants/`` for a request.

    Defaults give the bare setting name (``variants/<S>/``, as DESIGN.md fixes); each
    non-default parameter appends ``_seed<N>``, ``_fold<F>``, ``_k<k>`` or ``_jitter<f>`` in that
    order, e.g. ``semi-5_seed1_fold2`` or ``p2sod-3_k2_jitter0.25``.
    """
    s = get_setting(setting)
    resolved = resolve_options(s, fold, options)
    defaults = dict(s.defaults)
    parts = [s.name]
    if seed:
        parts.append(f"seed{seed}")
    if fold:
        parts.append(f"fold{fold}")
    if resolved.get("num_points", None) != defaults.get("num_points", None):
        parts.append(f"k{resolved['num_points']}")
    if resolved.get("jitter", None) != defaults.get("jitter", None):
        parts.append(f"jitter{resolved['jitter']!r}")
    return "_".join(parts)


def _annotation_path(data_dir: Path, split: str) -> Path:
    path = data_dir / "annotations" / f"{split}.json"
    if not path.is_file():
        raise TinysetError(f"{path}: missing; the dataset has no {split} split")
    return path


def _load_split(path: Path) -> CocoDataset:
    with console.status(f"loading {path}"):
        ds = CocoDataset.load(path)
    try:
        ds.validate()
    except RecordError as e:
        raise TinysetError(f"{path}: {e}") from None
    return ds


def _request(setting: Setting, seed: int, fold: int, options: dict[str, Any],
             sources: dict[str, str]) -> dict[str, Any]:
    return {"schema": META_SCHEMA, "protocol_version": PROTOCOL_VERSION,
            "setting": setting.name, "seed": seed, "fold": fold, "options": options,
            "source_sha256": sources}


def is_complete(folder: Path, request: Mapping[str, Any]) -> bool:
    """Whether ``folder`` holds a finished variant for ``request`` (meta matches, files intact)."""
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        return False
    try:
        meta = read_json(meta_path)
    except TinysetError:
        return False
    if not isinstance(meta, dict) or any(meta.get(k) != v for k, v in request.items()):
        return False
    files = meta.get("files")
    if not isinstance(files, dict) or not files:
        return False
    for name, info in files.items():
        path = folder / name
        if not isinstance(info, dict) or not path.is_file() \
                or path.stat().st_size != info.get("bytes") \
                or sha256_file(path) != info.get("sha256"):
            return False
    return True


def _produce(setting: Setting, data: dict[str, CocoDataset], sources: dict[str, str],
             seed: int, fold: int, options: dict[str, Any],
             tmp: Path) -> dict[str, Any]:
    """Write the setting's files into ``tmp`` and return its counts."""
    if setting.kind == "noise":
        ds, counts = add_box_noise(data["train"], setting.value, seed)
        ds.save(tmp / "train.json")
    elif setting.kind == "shot":
        ds, counts = sparse_shot(data["train"], int(setting.value), seed)
        ds.save(tmp / "train.json")
    elif setting.kind == "points":
        ds, counts = add_points(data["train"], options.get("jitter", setting.value), seed)
        ds.save(tmp / "train.json")
    elif setting.kind == "semi":
        labeled, unlabeled, counts = split_semi(data["train"], int(setting.value), seed, fold)
        labeled.save(tmp / "train_labeled.json")
        unlabeled.save(tmp / "train_unlabeled.json")
    else:
        counts = {}
        for split in setting.splits:
            doc, counts[split] = prompt_file(
                data[split], setting_name=setting.name, setting=int(setting.value), split=split,
                seed=seed, dataset_sha256=sources[split],
                num_points=options.get("num_points"), jitter=options["jitter"])
            if not doc["prompts"]:
                raise TinysetError(f"annotations/{split}.json: no image has an object "
                                   f"annotation, so {setting.name} has nothing to prompt")
            write_json(tmp / f"prompts_{split}.json", doc)
    return counts


def derive_variant(data_dir: Path, setting: str, *, seed: int = 0, fold: int = 0,
                   force: bool = False, cache: dict[str, CocoDataset] | None = None,
                   **options: Any) -> Path:
    """Derive (or reuse) one label-efficient variant of a toolkit-built dataset.

    Args:
        data_dir: the dataset folder (with ``build.json`` and ``annotations/<split>.json``).
        setting: a name from :data:`SETTINGS`.
        seed: the random seed (non-negative).
        fold: the fold of a semi setting (0 otherwise).
        force: rewrite even if a complete matching variant exists.
        cache: pass the same dict to several calls to parse each annotation file once (keyed
            by its sha256; the protocols never modify a loaded dataset).
        **options: ``num_points`` (p2sod-1, p2sod-3) and ``jitter`` (points-jitter, p2sod-*);
            ``None`` values count as not given.

    Returns:
        The variant folder ``data_dir/variants/<name>`` (see :func:`variant_name`).

    Raises:
        TinysetError: unknown setting or option, a folder ``tinyset build`` did not write, a
            missing split, or a request that cannot be met.
    """
    data_dir = Path(data_dir)
    spec = get_setting(setting)
    if seed < 0:
        raise TinysetError(f"seed must be >= 0, got {seed}")
    resolved = resolve_options(spec, fold, options)
    load_build_record(data_dir)
    paths = {split: _annotation_path(data_dir, split) for split in spec.splits}
    sources = {split: sha256_file(path) for split, path in paths.items()}
    request = _request(spec, seed, fold, resolved, sources)
    variants = data_dir / "variants"
    final = variants / variant_name(setting, seed=seed, fold=fold, **options)
    if not force and is_complete(final, request):
        return final

    cache = {} if cache is None else cache
    data = {}
    for split, path in paths.items():
        if sources[split] not in cache:
            cache[sources[split]] = _load_split(path)
        data[split] = cache[sources[split]]
    variants.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".part", dir=variants))
    try:
        os.chmod(tmp, DIR_MODE)
        with console.status(f"deriving {final.name}"):
            counts = _produce(spec, data, sources, seed, fold, resolved, tmp)
        files = {name: {"bytes": (tmp / name).stat().st_size, "sha256": sha256_file(tmp / name)}
                 for name in spec.files}
        # meta.json last: its presence plus matching hashes is what "complete" means.
        write_json(tmp / "meta.json", {**request, "counts": counts, "files": files}, indent=2)
        _publish(tmp, final, request)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _publish(tmp: Path, final: Path, request: Mapping[str, Any]) -> None:
    """Rename the finished ``tmp`` folder to ``final``, replacing a stale one."""
    trash = None
    if final.exists():
        trash = final.with_name(f".{final.name}.{uuid.uuid4().hex}.old")
        os.rename(final, trash)
    try:
        os.rename(tmp, final)
    except OSError:
        # Another process published the same variant between our rename and this one.
        if not is_complete(final, request):
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
