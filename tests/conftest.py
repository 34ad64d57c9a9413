"""Shared fixtures. Tests write into tmp_path only; nothing lands in the repository tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: ``../shared`` beside the checkout (as CI lays it out), or wherever TINYSET_SHARED points.
SHARED = Path(os.environ.get("TINYSET_SHARED", Path(__file__).resolve().parents[2] / "shared"))
REALSAMPLES = SHARED / "realsamples"


def pytest_configure(config: pytest.Config) -> None:
    """In the controller only (before xdist starts workers): write yapf's grammar cache."""
    if not hasattr(config, "workerinput"):
        from _yapf_grammar import prime_yapf_grammar

        prime_yapf_grammar()


@pytest.fixture(scope="session")
def realsamples() -> Path:
    """The genuine annotation files of ``../shared/realsamples`` (beside every checkout)."""
    if not REALSAMPLES.is_dir():
        pytest.fail(f"{REALSAMPLES} not found: the shared/ folder must sit beside the checkout")
    return REALSAMPLES
