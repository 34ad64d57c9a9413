"""Fixtures of the DEAL tests: tiny configs, small synthetic datasets, one thread."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from deal.config import DealConfig, get_config  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)


@pytest.fixture
def cfg() -> DealConfig:
    """The tiny preset at full input scale with 64-px crops (fast on a CPU)."""
    return get_config("tiny", input_scale=1.0, train_crop=64, batch_size=2, max_queries=30,
                      min_queries=5)


@pytest.fixture(scope="session")
def scene_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6-image 96-px synthetic dataset (every third image empty) with a test split."""
    from deal.synthetic import make_scene_coco

    root = tmp_path_factory.mktemp("scenes")
    make_scene_coco(root, n_images=6, size=96, n_objects=8, n_categories=3, seed=0,
                    empty_every=3, split="train")
    make_scene_coco(root, n_images=3, size=96, n_objects=8, n_categories=3, seed=1,
                    split="test")
    return root
