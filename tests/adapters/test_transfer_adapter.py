"""Transfer rows (Tables III, VI) end to end on tiny synthetic builds: pre-train on a TinySet
build, fine-tune on (or predict zero-shot) a DIOR build, report Table III; plus the checkpoint
loading the fine-tune relies on."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytestmark = pytest.mark.torch

from benchmark.manifest import load_methods  # noqa: E402
from benchmark.report_tables import render_table  # noqa: E402
from benchmark.runner import plan, run_benchmark  # noqa: E402
from tinyset_builder.build import build  # noqa: E402
from tinyset_builder.errors import TinysetError  # noqa: E402
from tinyset_builder.sources import get_source  # noqa: E402

ROWS = ["tr-fcos-tinyset", "tr-deal-zero-shot", "tr-deal-finetuned"]
#: Plumbing-sized runs: one torchvision step on 128-px inputs; two DEAL steps on 1/8-size
#: images (the DEAL and torchvision option names differ, hence two sets).
TINY = {"smoke_iters": 1, "backbone": "resnet18", "fpn_channels": 64}
TINY_DEAL = {"steps": 2, "config": {"input_scale": 0.125, "train_crop": 64}}


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A TinySet build of one small source (SIRST) and a DIOR target build."""
    base = tmp_path_factory.mktemp("transfer")
    get_source("sirst").synthesize(base / "raw" / "sirst", seed=0)
    get_source("dior").synthesize(base / "raw" / "dior", seed=0)
    build(base / "raw", base / "tinyset", sources="sirst", stats=False)
    build(base / "raw", base / "dior", sources="dior", stats=False)
    return base / "tinyset", base / "dior"


@pytest.mark.slow
@pytest.mark.integration
def test_transfer_rows_run_ok_and_table_iii_shows_them(builds: tuple[Path, Path],
                                                       tmp_path: Path) -> None:
    tinyset, dior = builds
    runs = tmp_path / "runs"
    specs = []
    for ids, extra in ((ROWS[:1], TINY), (ROWS[1:], TINY_DEAL)):
        specs += plan([load_methods().get(i) for i in ids], dior, runs, schedule="smoke",
                      extra={**extra, "pretrain_data": str(tinyset)})
    records = {r["key"]["method"]: r for r in run_benchmark(specs)}
    assert {m: r["status"] for m, r in records.items()} == dict.fromkeys(ROWS, "ok")
    # the pre-trainings are ordinary runs of rows 3 and deal on the TinySet build
    pre = sorted(p.parent.parent.parent.name for p in runs.glob("tinyset-*/*/*/seed0/work"))
    assert pre == ["3", "deal"]
    fcos = records["tr-fcos-tinyset"]["notes"]
    assert fcos["pretrain"]["method"] == "3" and fcos["target"] == ["dior"]
    assert fcos["weights"].startswith("backbone from ") and "model.pt" in fcos["weights"]
    zs = records["tr-deal-zero-shot"]
    assert zs["notes"]["zero_shot"] and not (Path(zs["config"]["job"]["work_dir"]) /
                                             "deal").exists()  # nothing trained on DIOR
    assert zs["metrics"]["AP50"] >= 0
    # Table III: the DEAL row's DIOR cells are measured, the DOTA-v2.0 ones not run
    rows = list(csv.reader(io.StringIO(render_table("3", runs, "csv"))))
    head, deal = rows[0], next(r for r in rows if r[2].startswith("DEAL"))
    cell = dict(zip(head, deal, strict=True))
    assert cell["DIOR w/o FT paper"] == "54.30" and cell["DIOR w/o FT measured"] != ""
    assert cell["DIOR w/ FT measured"] != "" and cell["DOTA-v2.0 w/o FT measured"] == ""
    assert "dota_v2/tr-deal-zero-shot: not run" in cell["Status"]


def test_tinyset_init_needs_the_pretrain_build(builds: tuple[Path, Path],
                                               tmp_path: Path) -> None:
    _, dior = builds
    specs = plan([load_methods().get("tr-fcos-tinyset")], dior, tmp_path / "runs",
                 schedule="smoke", extra=TINY)
    [record] = run_benchmark(specs)
    assert record["status"].startswith("unavailable: needs the TinySet build to pre-train on")


def test_load_init_copies_the_backbone_and_refuses_another_model(tmp_path: Path) -> None:
    import torch

    from baselines.detectors import DetectorSpec, build_detector
    from baselines.supervised import load_init, save_model

    spec = DetectorSpec(model="fcos", num_classes=1, size=64, backbone="resnet18",
                        fpn_channels=32)
    torch.manual_seed(0)
    source = build_detector(spec)
    save_model(tmp_path / "model.pt", source, spec, {}, {})
    torch.manual_seed(1)
    target = build_detector(spec)
    n = load_init(target, tmp_path / "model.pt", "backbone")
    got, want = target.state_dict(), source.state_dict()
    body = [k for k in want if k.startswith("backbone.body.")]
    assert n == len([k for k in body if not k.endswith("num_batches_tracked")])
    assert all(torch.equal(got[k], want[k]) for k in body)
    head = "head.classification_head.cls_logits.weight"
    assert not torch.equal(got[head], want[head])  # the head keeps its own start
    load_init(target, tmp_path / "model.pt", "all")
    assert torch.equal(target.state_dict()[head], want[head])
    other = build_detector(DetectorSpec(model="fcos", num_classes=1, size=64,
                                        backbone="resnet34", fpn_channels=32))
    with pytest.raises(TinysetError, match="missing or of another shape"):
        load_init(other, tmp_path / "model.pt", "backbone")
