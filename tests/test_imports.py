"""Heavy frameworks stay optional: importing the core must not import torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

LIGHT_MODULES = [
    "tinyset_builder",
    "tinyset_builder.cli",
    "tinyset_builder.sources",
    "tinyset_builder.build",
    "tinyset_builder.stats",
    "benchmark.protocols",
    "benchmark.evaluate",
    "benchmark.cli_eval",
    "benchmark.manifest",
    "benchmark.results",
    "benchmark.runner",
    "benchmark.report",
    "benchmark.cli_bench",
    "adapters.torchvision_adapter",
    "adapters.coco_data",
    "adapters.ultralytics_adapter",
    "adapters.mmdet_adapter",
    "adapters.external",
    "adapters.zeroshot",
    "adapters.deal_adapter",
    "deal.config",
    "deal.cli",
    "tinyset_builder.sources.coco_common",
    "tinyset_builder.sources.crowdhuman",
    "tinyset_builder.sources.tyc",
    "tinyset_builder.sources.sirst",
    "tinyset_builder.sources.yolo_common",
    "tinyset_builder.sources.license_plate",
    "tinyset_builder.browse",
    "tinyset_builder.hub",
    "tinyset_builder.cli_hub",
]


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_module_does_not_import_torch(module: str) -> None:
    code = (f"import sys, {module}; heavy = [m for m in ('torch', 'ultralytics', 'fiftyone', "
            f"'datasets', 'ray', 'mmengine') if m in sys.modules]; print(heavy); "
            f"sys.exit(1 if heavy else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cli_help_does_not_import_torch() -> None:
    code = ("import sys\nfrom tinyset_builder.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_evaluation_does_not_import_scipy() -> None:
    """numba's BLAS probe would import SciPy (~0.5 s of a small evaluation); jit.py skips it."""
    code = ("import sys\nfrom benchmark.evaluate import evaluate\n"
            "gt = {'images': [{'id': 1, 'width': 64, 'height': 64}], 'categories': "
            "[{'id': 1, 'name': 'a'}], 'annotations': [{'id': 1, 'image_id': 1, "
            "'category_id': 1, 'bbox': [1, 1, 5, 5], 'area': 25, 'iscrowd': 0}]}\n"
            "m = evaluate(gt, [{'image_id': 1, 'category_id': 1, 'bbox': [1, 1, 5, 5], "
            "'score': 0.9}])\n"
            "assert abs(m['AP50'] - 1) < 1e-9, m\n"
            "sys.exit(1 if 'scipy.linalg' in sys.modules else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
