"""Make yapf's grammar cache before the xdist workers start (google/yapf#1204).

``mmengine.config`` imports yapf, whose ``pygram`` module loads its grammar from a pickle in the
user cache directory, regenerating it when the installed ``Grammar.txt`` is newer (after every
fresh install). yapf renames the temporary file into place before flushing it, so a second
process importing at the same moment can read a truncated pickle (``EOFError: Ran out of input``)
— and once a truncated pickle is newer than the grammar text, every later import fails. The test
controller therefore imports yapf once, alone, before any worker exists; a cached pickle that
cannot be read is deleted and regenerated.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path


def _purge() -> None:
    for name in [m for m in sys.modules if m.split(".")[0] in ("yapf", "yapf_third_party")]:
        del sys.modules[name]


def prime_yapf_grammar() -> None:
    """Load (or regenerate) yapf's grammar pickles in this process; a no-op without yapf."""
    try:
        import yapf
    except ModuleNotFoundError:
        return
    except (EOFError, pickle.UnpicklingError, ValueError, AttributeError):
        # A truncated or foreign pickle from an earlier race: remove both grammars' pickles.
        driver = sys.modules["yapf_third_party._ylib2to3.pgen2.driver"]
        for grammar in ("Grammar.txt", "PatternGrammar.txt"):
            Path(driver._generate_pickle_name(grammar)).unlink(missing_ok=True)
        _purge()
        import yapf  # noqa: F401
