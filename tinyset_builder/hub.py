"""``tinyset publish``: a built TinySet as a Hugging Face Hub dataset.

Two steps, kept apart so that the slow, local one can be checked and resumed on its own
(ecosystem.md §2.4):

1. :func:`export` writes a Hub-ready folder::

       DIR/README.md                                    the dataset card (YAML header + text)
       DIR/LICENSE.md                                   every source's licence and citation
       DIR/stats/*.png                                  the plots of ``tinyset stats``
       DIR/data/<split>-00000-of-0000N.parquet          image bytes embedded, one row per image

   Rows follow the CPPE-5 object-detection schema (``image_id, image, width, height,
   objects{id, area, bbox, category}``) that the Transformers examples train on, plus TinySet's
   provenance (``source``, ``domain``, ``window``, ``original_file``, ``scale``, ``file_name``)
   and the per-object ``iscrowd`` flag (ignore regions must survive the trip). ``bbox`` is COCO
   ``[x, y, w, h]`` in pixels, stored as float64 so it equals the COCO file's numbers exactly.
   The Parquet schema carries the ``datasets`` features, so ``datasets.load_dataset(DIR)``
   reads the folder back with the same types.

   The export is atomic and resumable: each shard is written to a temporary file and renamed;
   ``DIR/.tinyset-export.json`` records each finished shard's SHA-256, so a killed export
   resumes at the first unfinished shard, and the result is byte-identical to an uninterrupted
   one (shard plan and row order depend only on the build).

2. :func:`push` creates the dataset repository (``exist_ok``) and uploads the folder with
   ``huggingface_hub.HfApi.upload_folder``. The token comes from ``HF_TOKEN`` or the stored
   ``hf auth login``; it is never printed, logged or put into an error message.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinyset_builder.browse import build_hash, built_splits
from tinyset_builder.built import load_build_record
from tinyset_builder.errors import TinysetError
from tinyset_builder.io import (
    atomic_path,
    atomic_write_bytes,
    read_json,
    sha256_file,
    write_json,
)

#: Nominal shard size, as ``datasets`` measures it (uncompressed Arrow bytes; images dominate).
DEFAULT_SHARD_BYTES = 500 * 1000**2
#: Rows per Parquet row group; ``datasets`` uses 100 for image datasets.
ROWS_PER_GROUP = 100
STATE_FILE = ".tinyset-export.json"
#: Never uploaded: the export's own bookkeeping and interrupted temporary files.
UPLOAD_IGNORE = (STATE_FILE, "*.part", ".*")
STATS_PLOTS = ("domain_composition.png", "object_scale.png", "object_density.png")
EXPORT_SCHEMA = "tinyset-hub-export/1"


def hub_features(category_names: Sequence[str]) -> Any:
    """The ``datasets.Features`` of an exported row (CPPE-5 schema plus provenance)."""
    from datasets import ClassLabel, Features, Image, Value  # type: ignore[import-untyped]
    from datasets import Sequence as Seq

    return Features({
        "image_id": Value("int64"),
        "image": Image(),
        "width": Value("int32"),
        "height": Value("int32"),
        # Sequence of a dict = struct of lists, the layout CPPE-5 and the Transformers guide use.
        "objects": Seq({"id": Value("int64"), "area": Value("float64"),
                        "bbox": Seq(Value("float64"), length=4),
                        "category": ClassLabel(names=list(category_names)),
                        "iscrowd": Value("int8")}),
        "source": Value("string"),
        "domain": Value("string"),
        "window": Seq(Value("int32"), length=4),
        "original_file": Value("string"),
        "scale": Value("float64"),
        "file_name": Value("string"),
    })


@dataclass
class ShardInfo:
    """One planned shard: its relative path and the positions of its images in the split."""

    path: str
    split: str
    images: list[int]


def plan_shards(out: Path, split: str, images: Sequence[Mapping[str, Any]],
                max_bytes: int) -> list[ShardInfo]:
    """Cut a split's images, in file order, into shards of about ``max_bytes`` image bytes.

    Depends only on the build (file sizes and order), so a resumed export plans the same shards.
    """
    groups: list[list[int]] = [[]]
    size = 0
    for k, img in enumerate(images):
        n = (out / "images" / split / img["file_name"]).stat().st_size
        if groups[-1] and size + n > max_bytes:
            groups.append([])
            size = 0
        groups[-1].append(k)
        size += n
    total = len(groups)
    return [ShardInfo(path=f"data/{split}-{i:05d}-of-{total:05d}.parquet", split=split,
                      images=g) for i, g in enumerate(groups)]


def _rows(out: Path, split: str, images: Sequence[Mapping[str, Any]],
          anns: Mapping[int, list[Mapping[str, Any]]], cat_index: Mapping[int, int],
          positions: Sequence[int]) -> Iterator[dict[str, Any]]:
    for k in positions:
        img = images[k]
        objs = anns.get(img["id"], [])
        data = (out / "images" / split / img["file_name"]).read_bytes()
        yield {
            "image_id": img["id"],
            "image": {"bytes": data, "path": img["file_name"]},
            "width": img["width"], "height": img["height"],
            "objects": {"id": [a["id"] for a in objs],
                        "area": [float(a["area"]) for a in objs],
                        "bbox": [[float(v) for v in a["bbox"]] for a in objs],
                        "category": [cat_index[a["category_id"]] for a in objs],
                        "iscrowd": [int(a.get("iscrowd", 0)) for a in objs]},
            "source": img.get("source"), "domain": img.get("domain"),
            "window": img.get("window"), "original_file": img.get("original_file"),
            "scale": img.get("scale"), "file_name": img["file_name"],
        }


def write_shard(path: Path, rows: Iterator[dict[str, Any]], features: Any) -> int:
    """Write ``rows`` as one Parquet file atomically; return the uncompressed Arrow bytes.

    Rows go out in row groups of :data:`ROWS_PER_GROUP`, so at most one group is in memory.
    """
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    schema = features.arrow_schema
    nbytes = 0
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, schema) as writer:
            batch: list[dict[str, Any]] = []

            def flush() -> None:
                nonlocal nbytes
                table = pa.Table.from_pylist(batch, schema=schema)
                nbytes += table.nbytes
                writer.write_table(table, row_group_size=ROWS_PER_GROUP)
                batch.clear()

            for row in rows:
                batch.append(row)
                if len(batch) == ROWS_PER_GROUP:
                    flush()
            if batch:
                flush()
    return nbytes


@dataclass
class ExportSummary:
    """What :func:`export` wrote (paths relative to the export folder)."""

    folder: Path
    build_sha256: str
    shards: dict[str, dict[str, Any]] = field(default_factory=dict)
    splits: dict[str, dict[str, int]] = field(default_factory=dict)
    reused: int = 0
    written: int = 0

    def files(self) -> list[tuple[str, int]]:
        """Every file that would be uploaded, with its size in bytes, sorted by path."""
        import fnmatch

        out = []
        for p in sorted(self.folder.rglob("*")):
            rel = p.relative_to(self.folder).as_posix()
            if p.is_file() and not any(fnmatch.fnmatch(part, pat) for pat in UPLOAD_IGNORE
                                       for part in rel.split("/")):
                out.append((rel, p.stat().st_size))
        return out


def _load_state(state_path: Path, want: Mapping[str, Any]) -> dict[str, Any]:
    if state_path.is_file():
        try:
            state = read_json(state_path)
        except TinysetError:
            state = None
        if isinstance(state, dict) and all(state.get(k) == v for k, v in want.items()):
            return state
    return {**want, "shards": {}}


def export(out: Path, export_dir: Path, *, max_shard_bytes: int = DEFAULT_SHARD_BYTES,
           stop_after: int | None = None) -> ExportSummary:
    """Write the Hub-ready folder for the built dataset ``out`` into ``export_dir``.

    Args:
        out: the built dataset.
        export_dir: destination (created; a finished or interrupted export there is resumed;
            one of another build is replaced).
        max_shard_bytes: about how many image bytes go into one Parquet shard.
        stop_after: write at most this many new shards, then stop (tests of resuming).

    Returns:
        An :class:`ExportSummary`.
    """
    from tinyset_builder.progress import make_progress

    out, export_dir = Path(out), Path(export_dir)
    record = load_build_record(out)
    if export_dir.resolve() == out.resolve() or out.resolve() in export_dir.resolve().parents:
        raise TinysetError(f"{export_dir}: the export folder must lie outside the dataset {out}")
    splits = built_splits(out, record)
    bh = build_hash(out)
    export_dir.mkdir(parents=True, exist_ok=True)
    state_path = export_dir / STATE_FILE
    want = {"schema": EXPORT_SCHEMA, "build_sha256": bh, "max_shard_bytes": max_shard_bytes,
            "rows_per_group": ROWS_PER_GROUP}
    state = _load_state(state_path, want)
    if not state["shards"]:
        # A fresh export (or one of another build): nothing old may be mixed in.
        shutil.rmtree(export_dir / "data", ignore_errors=True)
    summary = ExportSummary(folder=export_dir, build_sha256=bh)
    planned: set[str] = set()
    categories: list[dict[str, Any]] | None = None
    features = None
    with make_progress() as progress:
        for split in splits:
            coco = read_json(out / "annotations" / f"{split}.json")
            if categories is None:
                categories = sorted(coco["categories"], key=lambda c: c["id"])
                features = hub_features([c["name"] for c in categories])
            elif sorted(coco["categories"], key=lambda c: c["id"]) != categories:
                raise TinysetError(f"{out}/annotations/{split}.json: categories differ from "
                                   f"the other splits'")
            cat_index = {c["id"]: i for i, c in enumerate(categories)}
            anns: dict[int, list[Mapping[str, Any]]] = {}
            for a in coco["annotations"]:
                anns.setdefault(a["image_id"], []).append(a)
            shards = plan_shards(out, split, coco["images"], max_shard_bytes)
            summary.splits[split] = {"num_examples": len(coco["images"]), "num_bytes": 0}
            bar = progress.add_task(f"exporting {split}", total=len(coco["images"]))
            for shard in shards:
                planned.add(shard.path)
                target = export_dir / shard.path
                done = state["shards"].get(shard.path)
                if done and target.is_file() and sha256_file(target) == done["sha256"]:
                    summary.reused += 1
                else:
                    if stop_after is not None and summary.written >= stop_after:
                        return summary
                    nbytes = write_shard(target, _rows(out, split, coco["images"], anns,
                                                       cat_index, shard.images), features)
                    done = {"sha256": sha256_file(target), "rows": len(shard.images),
                            "num_bytes": nbytes}
                    state["shards"][shard.path] = done
                    write_json(state_path, state, indent=1)
                    summary.written += 1
                summary.shards[shard.path] = done
                summary.splits[split]["num_bytes"] += done["num_bytes"]
                progress.advance(bar, len(shard.images))
            del coco, anns
    for stray in (export_dir / "data").glob("*.parquet"):
        if f"data/{stray.name}" not in planned:
            stray.unlink()
    # Temporary files a killed export left mid-write (io.atomic_path's ``.<name>.*.part``) are
    # never read nor uploaded (UPLOAD_IGNORE); the finished export removes them.
    for part in export_dir.rglob(".*.part"):
        part.unlink(missing_ok=True)
    assert features is not None and categories is not None
    write_card(export_dir, out, record, features, summary, categories)
    return summary


# ---------------------------------------------------------------------------------------------
# the dataset card


def size_category(n: int) -> str:
    """The Hub's ``size_categories`` value for ``n`` examples."""
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
              (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")]
    for upper, name in bounds:
        if n < upper:
            return name
    return "n>1T" if n >= 10**12 else "100M<n<1B" if n < 10**9 else "1B<n<10B"


def _source_rows(record: Mapping[str, Any]) -> list[dict[str, str]]:
    from tinyset_builder.sources.base import load_info

    rows = []
    for name, s in record.get("sources", {}).items():
        try:
            info = load_info(name)
            rows.append({"name": name, "title": info.title, "domain": info.domain,
                         "license": info.license, "homepage": info.homepage,
                         "citation": info.citation})
        except TinysetError:
            rows.append({"name": name, "title": s.get("title", name),
                         "domain": s.get("domain", ""), "license": "unknown (no manifest)",
                         "homepage": "", "citation": ""})
    return rows


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def card_metadata(features: Any, summary: ExportSummary, n_images: int) -> Any:
    """The card's YAML header as ``huggingface_hub.DatasetCardData``."""
    from datasets.info import DatasetInfo, DatasetInfosDict  # type: ignore[import-untyped]
    from datasets.splits import SplitDict, SplitInfo  # type: ignore[import-untyped]
    from datasets.utils.metadata import MetadataConfigs  # type: ignore[import-untyped]
    from huggingface_hub import DatasetCardData

    data = DatasetCardData(
        license="other", license_name="tinyset-per-source-licences", license_link="LICENSE.md",
        task_categories=["object-detection"], pretty_name="TinySet",
        size_categories=[size_category(n_images)],
        tags=["small-object-detection", "tiny-object-detection", "coco"])
    splits = SplitDict()
    for name, s in summary.splits.items():
        splits.add(SplitInfo(name=name, num_bytes=s["num_bytes"], num_examples=s["num_examples"]))
    download = sum((summary.folder / p).stat().st_size for p in summary.shards)
    info = DatasetInfo(features=features, splits=splits, download_size=download,
                       dataset_size=sum(s["num_bytes"] for s in summary.splits.values()))
    MetadataConfigs({"default": {"data_files": [{"split": s, "path": f"data/{s}-*"}
                                                for s in summary.splits]}}
                    ).to_dataset_card_data(data)
    DatasetInfosDict({"default": info}).to_dataset_card_data(data)
    return data


def card_text(out: Path, record: Mapping[str, Any], features: Any, summary: ExportSummary,
              categories: Sequence[Mapping[str, Any]], plots: Sequence[str]) -> str:
    """The whole README.md: YAML header, description, sources, statistics, build, hash."""
    import json

    n_images = sum(s["num_examples"] for s in summary.splits.values())
    meta = card_metadata(features, summary, n_images)
    sources = _source_rows(record)
    opts = record.get("options", {})
    tiling = opts.get("tiling", {})
    lines = [
        "---", meta.to_yaml().rstrip("\n"), "---", "",
        "# TinySet", "",
        "TinySet is a small-object detection benchmark rebuilt from public datasets with the "
        "[TinySet toolkit](https://github.com/) (`tinyset build`), following *TinySet-9M and "
        "DEAL*: every image is cut or padded to "
        f"{tiling.get('tile', 1024)}×{tiling.get('tile', 1024)} px, outputs dominated by "
        "large objects are dropped, exact duplicates are removed, and each original image "
        "lands in exactly one split.", "",
        "## Splits", "",
        "| split | images | objects (incl. ignore regions) |", "|---|---|---|",
    ]
    for split, s in summary.splits.items():
        n_obj = record.get("annotation_files", {}).get(split, {}).get("annotations", "")
        lines.append(f"| {split} | {s['num_examples']:,} | {n_obj:,} |" if n_obj != ""
                     else f"| {split} | {s['num_examples']:,} | |")
    lines += [
        "", "## Schema", "",
        "One row per image, in the CPPE-5 object-detection layout used by the Transformers "
        "examples, plus TinySet's provenance:", "",
        "- `image_id` (int64, the COCO image id within its split), `image` (the PNG/JPEG bytes "
        "of `images/<split>/<file_name>`), `width`, `height` (int32)",
        "- `objects`: struct of lists — `id` (COCO annotation id), `area` (w·h, px²), `bbox` "
        "(**COCO `[x, y, w, h]` in absolute pixels**, float64, exactly the COCO file's values), "
        "`category` (ClassLabel; names are `<source>/<category>`), `iscrowd` (1 = ignore "
        "region: neither a true nor a false positive when evaluating)",
        "- `source`, `domain`: the public dataset and its domain",
        "- `window` (`[x0, y0, x1, y1]` in the original image's pixels), `original_file`, "
        "`scale` (output pixels per original pixel), `file_name`", "",
        "```python", "from datasets import load_dataset",
        "ds = load_dataset(\"<repo-id>\")  # or a local export folder", "```", "",
        "## Sources", "",
        "Each image keeps the licence of the dataset it comes from; see also `LICENSE.md`.", "",
        "| source | title | domain | licence | homepage |", "|---|---|---|---|---|",
    ]
    for src in sources:
        lines.append(f"| {_cell(src['name'])} | {_cell(src['title'])} | {_cell(src['domain'])} "
                     f"| {_cell(src['license'])} | {_cell(src['homepage'])} |")
    lines += ["", "### Citations", ""]
    for src in sources:
        lines.append(f"- **{_cell(src['title'])}**: "
                     f"{src['citation'] or 'no citation recorded'}")
    lines += ["", "## Statistics", ""]
    stats_md = out / "stats" / "summary.md"
    if stats_md.is_file():
        body = stats_md.read_text(encoding="utf-8").splitlines()
        # Demote the summary's headings under this section.
        lines += [("##" + ln) if ln.startswith("#") else ln for ln in body
                  if not ln.startswith("# ")]
    else:
        lines.append("(no `stats/` in this build; run `tinyset stats OUT`)")
    for name in plots:
        lines += ["", f"![{name.removesuffix('.png').replace('_', ' ')}](stats/{name})"]
    lines += [
        "", "## How it was built", "",
        f"Built by {record.get('tool')} {record.get('version')} with these options "
        "(from `build.json`):", "",
        "```json", json.dumps(opts, indent=1, sort_keys=False), "```", "",
        f"Categories: {len(categories)} (per source, `<source>/<name>`). Evaluation in the "
        "paper's protocol is class-agnostic with size ranges very tiny (≤ 8²), tiny (8²–16²), "
        "small (16²–32²) and medium (> 32²) px²: `tinyset eval`.", "",
        "## Build hash", "",
        f"SHA-256 of `build.json`: `{summary.build_sha256}`. The same raw sources and options "
        "rebuild byte-identical files.", "",
    ]
    return "\n".join(lines)


def write_card(export_dir: Path, out: Path, record: Mapping[str, Any], features: Any,
               summary: ExportSummary, categories: Sequence[Mapping[str, Any]]) -> Path:
    """Write ``README.md``, ``LICENSE.md`` and the stats plots into the export folder."""
    plots = []
    for name in STATS_PLOTS:
        src = out / "stats" / name
        if src.is_file():
            atomic_write_bytes(export_dir / "stats" / name, src.read_bytes())
            plots.append(name)
    licences = ["# Licences of TinySet's sources", "",
                "TinySet redistributes images and annotations of these datasets; each keeps "
                "its own licence.", ""]
    for s in _source_rows(record):
        licences += [f"## {s['title']} (`{s['name']}`)", "", f"- Licence: {s['license']}",
                     f"- Homepage: {s['homepage'] or '—'}",
                     f"- Citation: {s['citation'] or '—'}", ""]
    atomic_write_bytes(export_dir / "LICENSE.md", "\n".join(licences).encode("utf-8"))
    text = card_text(out, record, features, summary, categories, plots)
    return atomic_write_bytes(export_dir / "README.md", text.encode("utf-8"))


# ---------------------------------------------------------------------------------------------
# the upload


def resolve_token() -> str | None:
    """``HF_TOKEN`` or the token stored by ``hf auth login``; None if neither is set."""
    token = os.environ.get("HF_TOKEN")
    if token:
        return token
    from huggingface_hub import get_token

    return get_token()


def check_repo_id(repo_id: str) -> str:
    """Validate ``ORG/NAME`` the way the Hub does; one-line error otherwise."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if repo_id.count("/") != 1:
        raise TinysetError(f"--repo-id {repo_id!r}: expected ORG/NAME")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise TinysetError(f"--repo-id {repo_id!r}: {str(e).splitlines()[0]}") from None
    return repo_id


def _scrub(text: str, token: str | None) -> str:
    text = " ".join(text.split())
    return text.replace(token, "***") if token else text


def push(export_dir: Path, repo_id: str, *, token: str, private: bool = False,
         api: Any = None, commit_message: str | None = None) -> str:
    """Create the dataset repo (if missing) and upload the export folder in one commit.

    Args:
        export_dir: a folder written by :func:`export`.
        repo_id: ``ORG/NAME``.
        token: the Hub token (never printed or logged).
        private: create the repository private.
        api: an ``HfApi``-like object (default: ``huggingface_hub.HfApi()``).
        commit_message: default names the build hash.

    Returns:
        The URL of the commit.

    Raises:
        TinysetError: the Hub refused or could not be reached (the token is scrubbed).
    """
    export_dir = Path(export_dir)
    check_repo_id(repo_id)
    state = read_json(export_dir / STATE_FILE) if (export_dir / STATE_FILE).is_file() else {}
    if not (export_dir / "README.md").is_file():
        raise TinysetError(f"{export_dir}: no finished export here (README.md missing)")
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    message = commit_message or f"TinySet build {str(state.get('build_sha256', ''))[:12]}"
    try:
        api.create_repo(repo_id, token=token, repo_type="dataset", private=private,
                        exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=str(export_dir),
                                 repo_type="dataset", token=token, commit_message=message,
                                 ignore_patterns=list(UPLOAD_IGNORE))
    except Exception as e:
        raise TinysetError(f"push to {repo_id} failed: {type(e).__name__}: "
                           f"{_scrub(str(e), token)}"[:500]) from None
    return str(getattr(info, "commit_url", info))
