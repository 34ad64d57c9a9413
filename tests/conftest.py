"""Shared fixtures. Tests write into tmp_path only; nothing lands in the repository tree."""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

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


# ---------------------------------------------------------------------------------------------
# The reliability suite's figures (tests/reliability/_hostile.py counts them), summed over xdist
# workers: each worker sends its counts to the controller in ``workeroutput``.

_FIGURES = pytest.StashKey[dict[str, Counter[str]]]()


def _local_figures() -> dict[str, Counter[str]]:
    hostile = sys.modules.get("_hostile")  # imported only where reliability tests ran
    if hostile is None:
        return {}
    return {"tried": hostile.TRIED, "hostile": hostile.HOSTILE, "kills": hostile.CRASHES}


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker
        workeroutput["reliability"] = {k: dict(v) for k, v in _local_figures().items()}


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: add up what a finished worker counted."""
    figures = node.config.stash.setdefault(_FIGURES, {})
    for key, counts in getattr(node, "workeroutput", {}).get("reliability", {}).items():
        figures.setdefault(key, Counter()).update(counts)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    figures = config.stash.get(_FIGURES, None) or _local_figures()
    tried, hostile, kills = (figures.get(k, Counter()) for k in ("tried", "hostile", "kills"))
    if not (tried or kills):
        return

    def listed(c: Counter[str]) -> str:
        return ", ".join(f"{k}: {v}" for k, v in sorted(c.items()))

    terminalreporter.write_line(
        f"reliability: {sum(hostile.values())} hostile inputs refused, of "
        f"{sum(tried.values())} generated ({listed(hostile)}); {sum(kills.values())} SIGKILLs "
        f"landed mid-run and resumed ({listed(kills)})")
