"""Explicitly seeded random streams, one per (purpose, seed, key).

Every protocol draws from :func:`stream`, a :class:`numpy.random.Generator` whose
:class:`~numpy.random.SeedSequence` entropy is ``(seed, purpose tag, key)``. Keying per image (not
one stream walked in file order) makes a variant independent of the order in which images are
stored, and lets the nested settings (1 ⊂ 3 ⊂ 5 shot, 1 % ⊂ 5 % ⊂ 10 %) share their draws.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from tinyset_builder.errors import TinysetError


class Purpose(IntEnum):
    """Tags that separate the streams of the different protocols (never renumber them)."""

    NOISE = 1
    SEMI = 2
    SHOT = 3
    POINTS = 4
    PROMPTS = 5


def _natural(value: int) -> int:
    """Map any int to a distinct non-negative one (SeedSequence refuses negatives)."""
    return 2 * value if value >= 0 else -2 * value - 1


def stream(seed: int, purpose: Purpose, key: int = 0) -> np.random.Generator:
    """The generator for ``purpose`` under ``seed``, keyed by ``key`` (an image id or a fold).

    Args:
        seed: the user's seed (non-negative).
        purpose: which protocol draws.
        key: image id (per-image streams) or fold (semi split).

    Returns:
        A fresh PCG64 generator; the same arguments always give the same draws.
    """
    if seed < 0:
        raise TinysetError(f"seed must be >= 0, got {seed}")
    return np.random.default_rng(np.random.SeedSequence([seed, int(purpose), _natural(key)]))
