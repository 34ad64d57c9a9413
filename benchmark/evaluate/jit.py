"""numba, imported for the evaluator's cached kernels without SciPy's start-up cost.

Loading a cached kernel makes numba import its whole CPU target, and one of those modules
(``numba.np.arraymath``) probes for BLAS at import by importing ``scipy.linalg.cython_blas``.
That import pulls in most of SciPy and costs ~0.5 s, a quarter of a small evaluation from the
command line, yet the probe decides only whether numba's own ``np.correlate`` / ``np.convolve``
inner products call BLAS or a plain loop; nothing the evaluator compiles uses BLAS. So the probe
is answered "no BLAS" when SciPy's BLAS is not loaded yet. ``np.dot`` and ``np.linalg`` in other
numba code in the same process are unaffected: they import SciPy themselves when compiled.
"""

from __future__ import annotations

import sys

_BLAS = "scipy.linalg.cython_blas"


def _import_without_blas_probe() -> None:
    if "numba.np.arraymath" in sys.modules or _BLAS in sys.modules:
        return  # probed already, or SciPy's BLAS is loaded and the probe is free
    sys.modules[_BLAS] = None  # type: ignore[assignment]  # makes the probe's import fail
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        del sys.modules[_BLAS]


_import_without_blas_probe()

import numba as nb  # noqa: E402

__all__ = ["nb"]
